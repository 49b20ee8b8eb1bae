"""The citizen's own record (``/v1/me...``), read with the person's own token.

A token bound to one person (``person:<id>``, from ``POST /v1/people`` or ``POST
/v1/people/sessions`` on the ingest API; docs/security.md "Citizens") reads that person's
visits of the last :data:`PRESENCE_DAYS` days, test results, doses and exposure notices, and a
live stream of notices. Nothing of anyone else: the person id comes from the token, never from
the request. Every read is audited like any read of personal data (subject ``person:<id>``).

An exposure notice is the person's side of an exposure alert: the venue (name, address), the
local day and the person's own visit, the risk, and what to do (:class:`Advice`, texts from
``COVIDTECH_READ_NOTICE_ADVICE_*``). The source case is never named, not even through the
alert's id (a UUIDv5 of the case's and the contact's ids, which a person knowing a suspect's id
could recompute): a notice's id is a keyed hash of the alert id. A notice follows its alert:
withdrawn when the alert is (status ``WITHDRAWN``, with the withdrawal's advice).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import PERSONAL_ERRORS, REACH_ERRORS, RESUME_PARAMS, Area, Ctx, Operation
from api.params import enum_param
from api.render import iso, iso_or_none, json_response
from api.routes.coverage import dose
from projections import queries
from projections.access import LOCAL_TZ
from projections.model import Query, Row

__all__ = ["PRESENCE_DAYS", "Advice", "notice", "notice_id", "operations"]

#: How far back the record reaches (presence data and alerts expire then).
PRESENCE_DAYS = 21
_NOTICE_LABEL = b"covidtech/notice-id/v1"
_STATUSES = ("ACTIVE", "WITHDRAWN", "ANY")


@dataclass(frozen=True, slots=True)
class Advice:
    """What a notice tells the person to do, per risk level, and once withdrawn."""

    high: str
    low: str
    withdrawn: str

    def of(self, risk: str, status: str) -> str:
        if status == "WITHDRAWN":
            return self.withdrawn
        return self.high if risk == "HIGH" else self.low


def notice_id(secret: str, alert_id: str) -> str:
    """The notice's id: HMAC-SHA256 of the alert id under a key derived from the deployment
    secret, 128 bits in hex. Stable (a notice keeps its id when withdrawn), and reveals nothing
    of the alert id, hence of the case."""
    key = hmac.new(secret.encode(), _NOTICE_LABEL, hashlib.sha256).digest()
    return hmac.new(key, alert_id.encode(), hashlib.sha256).hexdigest()[:32]


def notice(
    alert: Mapping[str, Any], venue: Row | None, advice: Advice, secret: str
) -> dict[str, Any]:
    """The person's view of one alert (a row of ``alerts_by_person`` or an alert event): no
    case id, no alert id, no overlap."""
    start = alert["contact_visit_start"]
    return {
        "notice_id": notice_id(secret, alert["alert_id"]),
        "venue_id": alert["venue_id"],
        "venue_name": venue["name"] if venue is not None else None,
        "venue_address": venue["address"] if venue is not None else None,
        "province": alert["province"],
        "day": start.astimezone(LOCAL_TZ).date().isoformat(),
        "visit_start": iso(start),
        "visit_end": iso_or_none(alert["contact_visit_end"]),
        "risk": alert["risk"],
        "status": alert["status"],
        "advice": advice.of(alert["risk"], alert["status"]),
    }


def _advice(ctx: Ctx) -> Advice:
    c = ctx.services.config
    return Advice(c.notice_advice_high, c.notice_advice_low, c.notice_advice_withdrawn)


def _me(ctx: Ctx) -> str:
    person = ctx.must_reach().person
    assert person is not None, "a /v1/me route reached without a person token"
    return person


async def _venues(ctx: Ctx, venue_ids: set[str]) -> dict[str, Row | None]:
    ids = sorted(venue_ids)
    rows = await asyncio.gather(*(queries.venue(ctx.services.store, v) for v in ids))
    return dict(zip(ids, rows, strict=True))


async def _audited(ctx: Ctx, person: str, body: dict[str, Any]) -> Response:
    await ctx.audit(f"person:{person}", (person,))
    return json_response(body, cache_control="private, no-store")


async def get_me(ctx: Ctx) -> Response:
    person = _me(ctx)
    row = await queries.person(ctx.services.store, person)
    body = {
        "person_id": person,
        "province": row["province"] if row is not None else None,
        "district": row["district"] if row is not None else None,
        "birth_year": row["birth_year"] if row is not None else None,
        "registered_at": iso_or_none(row["registered_at"]) if row is not None else None,
    }
    return await _audited(ctx, person, body)


async def my_visits(ctx: Ctx) -> Response:
    person = _me(ctx)
    since = ctx.now - timedelta(days=PRESENCE_DAYS)
    rows = await ctx.services.store.select(
        Query("visits_by_person", {"person_id": person}, clustering_from=since)
    )
    rows = sorted(rows, key=lambda r: (r["visit_start"], r["venue_id"]), reverse=True)
    venues = await _venues(ctx, {r["venue_id"] for r in rows})
    items = [
        {
            "venue_id": r["venue_id"],
            "venue_name": v["name"] if (v := venues[r["venue_id"]]) is not None else None,
            "venue_province": r["venue_province"],
            "visit_start": iso(r["visit_start"]),
            "visit_end": iso_or_none(r["visit_end"]),
        }
        for r in rows
    ]
    return await _audited(ctx, person, {"since": iso(since), "items": items})


async def my_results(ctx: Ctx) -> Response:
    person = _me(ctx)
    rows = await ctx.services.store.select(Query("results_by_person", {"person_id": person}))
    rows = sorted(rows, key=lambda r: (r["collected_at"], r["sample_id"]), reverse=True)
    items = [
        {
            "sample_id": r["sample_id"],
            "test_type": r["test_type"],
            "state": r["state"],
            "collected_at": iso(r["collected_at"]),
            "resulted_at": iso_or_none(r["resulted_at"]),
        }
        for r in rows
    ]
    return await _audited(ctx, person, {"items": items})


async def my_doses(ctx: Ctx) -> Response:
    person = _me(ctx)
    rows = await queries.vaccinations(ctx.services.store, person)
    rows = sorted(rows, key=lambda r: (r["administered_at"], r["dose_id"]))
    return await _audited(ctx, person, {"items": [dose(r) for r in rows]})


async def my_notices(ctx: Ctx) -> Response:
    person = _me(ctx)
    status = ctx.params["status"]
    since = ctx.now - timedelta(days=PRESENCE_DAYS)
    rows = await ctx.services.store.select(
        Query("alerts_by_person", {"contact_person_id": person}, clustering_from=since)
    )
    rows = [r for r in rows if status == "ANY" or r["status"] == status]
    rows.sort(key=lambda r: (r["contact_visit_start"], r["alert_id"]), reverse=True)
    venues = await _venues(ctx, {r["venue_id"] for r in rows})
    advice, secret = _advice(ctx), ctx.services.settings.secret
    items = [notice(r, venues[r["venue_id"]], advice, secret) for r in rows]
    return await _audited(ctx, person, {"items": items})


async def stream_notices(ctx: Ctx) -> Response:
    """The person's notices as they are raised, changed or withdrawn (SSE ``event: notice``),
    from the same broadcaster as the tracers' alert stream; resumable by Last-Event-ID."""
    services = ctx.services
    person = _me(ctx)
    advice, secret = _advice(ctx), services.settings.secret
    venues: dict[str, Row | None] = {}

    async def before_send(records: list[Mapping[str, Any]]) -> None:
        """Audit what leaves, and look the venues up for :func:`render` (which is sync)."""
        missing = {r["venue_id"] for r in records} - venues.keys()
        if missing:
            venues.update(await _venues(ctx, missing))
        await ctx.audit(f"person:{person}", (person,))

    def render(record: Mapping[str, Any]) -> Mapping[str, Any]:
        return notice(record, venues.get(record["venue_id"]), advice, secret)

    return await ctx.alert_stream(
        opened=(f"person:{person}", (person,)),
        wanted=lambda record: record.get("contact_person_id") == person,
        render=render,
        audit=before_send,
        event="notice",
    )


def operations() -> tuple[Operation, ...]:
    """The citizen's own operations (a person token)."""
    area = Area("citizens", auth.PERSON, audited=True, errors=REACH_ERRORS)
    return (
        area.get(
            "/v1/me",
            "getMe",
            "Who this person token is: the pseudonymous id and what registration said",
            get_me,
            response="Me",
            description="Fields are null until the registration reached the read side.",
        ),
        area.get(
            "/v1/me/visits",
            "listMyVisits",
            f"My visits of the last {PRESENCE_DAYS} days, newest first",
            my_visits,
            response="MyVisits",
        ),
        area.get(
            "/v1/me/results",
            "listMyResults",
            "My test results, newest sample first",
            my_results,
            response="MyResults",
        ),
        area.get(
            "/v1/me/doses",
            "listMyDoses",
            "My vaccine doses, first dose first",
            my_doses,
            response="MyDoses",
        ),
        area.get(
            "/v1/me/notices",
            "listMyNotices",
            f"My exposure notices of the last {PRESENCE_DAYS} days, newest visit first",
            my_notices,
            params=(
                enum_param(
                    "status",
                    list(_STATUSES),
                    "ANY by default: a withdrawn notice is shown as WITHDRAWN (a later scan "
                    "removed the overlap); ACTIVE for the notices that still stand.",
                    default="ANY",
                ),
            ),
            response="NoticeList",
            description="A notice is the person's side of an exposure alert: venue, day, "
            "the person's own visit, risk and what to do. The case is never named.",
        ),
        area.get(
            "/v1/me/notices/stream",
            "streamMyNotices",
            "My exposure notices, live (Server-Sent Events)",
            stream_notices,
            params=RESUME_PARAMS,
            media_type="text/event-stream",
            errors=PERSONAL_ERRORS,
            description="Each event is `event: notice` with a notice as JSON data (raised, "
            "changed, or withdrawn: status WITHDRAWN), and an id that Last-Event-ID resumes "
            "from exactly. Keep-alive comments every 15 s.",
        ),
    )
