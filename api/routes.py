"""The read API's own routes and their handlers, declared as :class:`api.edge.Operation`.

:func:`build_operations` gives both the Starlette routes (:func:`api.app.create_app`) and the
OpenAPI document (:mod:`api.openapi`), so the document cannot drift from what is served;
every request goes through :func:`api.edge.dispatch`.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api import auth
from api.edge import (
    AGGREGATE_ERRORS,
    PERSONAL_ERRORS,
    Ctx,
    Operation,
    area_name,
    check_area,
    day_range,
    from_ms,
    malformed_page,
    ms,
    newest_page,
    page,
    page_int,
    page_params,
    page_str,
    province_in_reach,
)
from api.params import (
    area_param,
    date_param,
    datetime_param,
    enum_param,
    id_path,
    parse_datetime,
    province_param,
    text_param,
)
from api.problems import Problem
from api.ratelimit import TokenBuckets
from api.render import iso, iso_or_none, json_response
from api.stream import EventStreamResponse, InvalidEventId, alert_events, parse_event_id
from covidtech.jsonbody import BodyError, parse_json
from covidtech.revocations import GRANT_ISSUED, GRANT_REVOKED
from covidtech.tokens import Claims, InvalidScope, Scope, ScopeKind
from covidtech.topics import GRANTS
from domain import reference
from domain.coverage import (
    ADULT_BANDS,
    AGE_BANDS,
    NATION,
    CoverageCounts,
    Dose,
    InvalidDose,
    adult_population,
    metrics,
    person_status,
    sum_bands,
)
from domain.results import InvalidLookupCode, lookup_code_hash
from domain.vaccines import VACCINES, UnknownVaccine
from projections import queries
from projections.access import LOCAL_TZ, grant_issued_row, grant_revoked_row
from projections.model import Query, Row, StoreUnavailable
from projections.queries import Segment
from schemas.codec import encode

__all__ = ["OPERATIONS", "build_operations"]

#: How far back lists of alerts and exposure sites reach by default (presence data lives 21 d).
PRESENCE_DAYS = 21
#: Longest turnaround report (a national one reads 63 partitions per day).
MAX_TURNAROUND_DAYS = 31
#: Longest audit query (one partition per day).
MAX_AUDIT_DAYS = 31
MAX_BODY_BYTES = 16 * 1024


# ------------------------------------------------------------------------------ rendering


def _alert(r: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "alert_id": r["alert_id"],
        "province": r["province"],
        "venue_id": r["venue_id"],
        "case_person_id": r["case_person_id"],
        "contact_person_id": r["contact_person_id"],
        "contact_visit_start": iso(r["contact_visit_start"]),
        "contact_visit_end": iso_or_none(r["contact_visit_end"]),
        "overlap_seconds": r["overlap_seconds"],
        "risk": r["risk"],
        "status": r["status"],
    }
    if r.get("version") is not None:  # events carry a version; the tables do not
        out["version"] = r["version"]
    return out


def _grant(r: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    if r.get("revoked_at") is not None:
        status = "revoked"
    elif r.get("expires_at") is not None and r["expires_at"] <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "grant_id": r["grant_id"],
        "token_id": r["token_id"],
        "agency": r["agency"],
        "scopes": list(r["scopes"] or []),
        "purpose": r["purpose"],
        "granted_by": r["granted_by"],
        "granted_at": iso_or_none(r["granted_at"]),
        "expires_at": iso_or_none(r["expires_at"]),
        "status": status,
        "revoked_at": iso_or_none(r.get("revoked_at")),
        "revoked_by": r.get("revoked_by"),
        "revoke_reason": r.get("revoke_reason"),
    }


def _figures(counts: CoverageCounts, population: int) -> dict[str, Any]:
    m = metrics(counts, population)
    return {
        "population": m.population,
        "people_vaccinated": m.people_vaccinated,
        "people_fully_vaccinated": m.people_fully_vaccinated,
        "total_boosters": m.total_boosters,
        "total_doses": m.total_doses,
        "people_vaccinated_per_hundred": round(m.people_vaccinated_per_hundred, 4),
        "people_fully_vaccinated_per_hundred": round(m.people_fully_vaccinated_per_hundred, 4),
        "total_boosters_per_hundred": round(m.total_boosters_per_hundred, 4),
        "total_doses_per_hundred": round(m.total_doses_per_hundred, 4),
        "drop_out": None if m.drop_out is None else round(m.drop_out, 6),
    }


def _band_figures(area: str, band: str, by_band: Mapping[str, CoverageCounts]) -> dict[str, Any]:
    if band == "all":
        return _figures(sum_bands(by_band), reference.population(area))
    if band == "18+":
        return _figures(sum_bands(by_band, ADULT_BANDS), adult_population(area))
    return _figures(by_band.get(band, CoverageCounts()), reference.population(area, band))


def _bands_for(band: str) -> tuple[str, ...]:
    return AGE_BANDS if band in ("all", "18+") else (band,)


# ------------------------------------------------------------------------------ citizen


def _take_lookup(ctx: Ctx, limiter: TokenBuckets, key: str, whose: str) -> None:
    """429 ``rate-limited`` (with Retry-After) unless ``limiter`` lets ``key`` look up now."""
    wait = limiter.take(key)
    if wait > 0:
        ctx.services.metrics.rate_limited.inc()
        raise Problem(
            "rate-limited",
            f"too many lookups {whose}; retry later",
            headers={"Retry-After": str(limiter.retry_after(wait))},
        )


async def get_result(ctx: Ctx) -> Response:
    services = ctx.services
    _take_lookup(ctx, services.limiter, ctx.client_address or "unknown", "from your address")
    not_found = Problem("not-found", "no result for this lookup code")
    try:
        code_hash = lookup_code_hash(ctx.params["lookup_code"])
    except InvalidLookupCode:
        raise not_found from None
    # One code's attempts are limited too, whatever the address: guessing one code from many
    # addresses (a botnet, or a proxy whose clients cannot be told apart) stays slow.
    _take_lookup(ctx, services.code_limiter, code_hash, "of this code")
    row = await queries.result_by_lookup(services.store, code_hash)
    if row is None:
        raise not_found
    return json_response(
        {
            "state": row["state"],
            "test_type": row["test_type"],
            "collected_at": iso_or_none(row["collected_at"]),
            "resulted_at": iso_or_none(row["resulted_at"]),
        },
        cache_control="no-store",
    )


# ------------------------------------------------------------------------------ health staff


async def get_sample(ctx: Ctx) -> Response:
    sample_id = ctx.params["sample_id"]
    row = await queries.sample(ctx.services.store, sample_id)
    if row is None or not ctx.must_reach().allows(row["province"]):
        raise Problem("not-found", "no such sample in your scope")
    await ctx.audit(f"sample:{sample_id}", ())
    count = row["member_count"] or 0
    return json_response(
        {
            "sample_id": row["sample_id"],
            "site_id": row["site_id"],
            "province": row["province"],
            "test_type": row["test_type"],
            "collected_at": iso_or_none(row["collected_at"]),
            "member_count": count,
            "pooled": count > 1,
            "state": row["result"] or "PENDING",
            "resulted_at": iso_or_none(row["resulted_at"]),
            "lab_id": row["lab_id"],
            "turnaround_seconds": row["turnaround_seconds"],
        }
    )


async def get_coverage(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    check_area(ctx, area)
    day = ctx.params["date"] or ctx.today
    services = ctx.services

    async def compute() -> dict[str, Any]:
        by_band = await queries.coverage_as_of(services.store, area, day, _bands_for(band))
        out = {
            "area": area,
            "area_name": area_name(area),
            "date": day.isoformat(),
            "age_band": band,
            **_band_figures(area, band, by_band),
        }
        if band == "all":
            out["by_age_band"] = [
                {"age_band": b, **_band_figures(area, b, by_band)} for b in AGE_BANDS
            ]
        return out

    return await ctx.aggregate(("coverage", area, day, band), compute)


async def get_coverage_series(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    check_area(ctx, area)
    start, end = day_range(ctx, ctx.params["from"], ctx.params["to"], 30)
    services = ctx.services

    async def compute() -> dict[str, Any]:
        series = await queries.coverage_series(services.store, area, start, end, _bands_for(band))
        return {
            "area": area,
            "area_name": area_name(area),
            "age_band": band,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "points": [
                {"date": d.isoformat(), **_band_figures(area, band, by_band)}
                for d, by_band in sorted(series.items())
            ],
        }

    return await ctx.aggregate(("series", area, start, end, band), compute)


async def get_doses_daily(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    check_area(ctx, area)
    if ctx.params["vaccine"] is not None:
        raise Problem(
            "filter-not-supported",
            "daily doses per vaccine product are not projected yet; ask without vaccine",
            extra={"parameter": "vaccine"},
        )
    start, end = day_range(ctx, ctx.params["from"], ctx.params["to"], 30)
    services = ctx.services

    async def compute() -> dict[str, Any]:
        days = await queries.doses_daily(services.store, area, start, end, _bands_for(band))
        total = queries.DailyDoses()
        rows = []
        for d, n in sorted(days.items()):
            total = total + n
            rows.append({"date": d.isoformat(), **n.__dict__})
        return {
            "area": area,
            "area_name": area_name(area),
            "age_band": band,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "days": rows,
            "total": total.__dict__,
        }

    return await ctx.aggregate(("doses", area, start, end, band), compute)


async def get_vaccinations(ctx: Ctx) -> Response:
    person_id = ctx.params["person_id"]
    store = ctx.services.store
    person, doses = await asyncio.gather(
        queries.person(store, person_id), queries.vaccinations(store, person_id)
    )
    province = province_in_reach(ctx, person, doses, "residence_province", "person")
    await ctx.audit(f"person:{person_id}", (person_id,))
    status: dict[str, Any] | None = None
    try:
        if doses:
            s = person_status(
                person_id,
                (
                    Dose(
                        r["dose_id"],
                        r["administered_at"],
                        r["vaccine"],
                        r["birth_year"],
                        r["residence_province"],
                    )
                    for r in doses
                ),
            )
            status = {
                "age_band": s.age_band,
                "first_dose_date": s.first_dose_date.isoformat(),
                "completed_date": iso_or_none(s.completed_date),
                "fully_vaccinated": s.completed_date is not None,
                "boosters": len(s.booster_dates),
            }
    except (InvalidDose, UnknownVaccine, ValueError, TypeError):
        status = None  # a record the rules cannot place: show the doses, not a status
    return json_response(
        {
            "person_id": person_id,
            "province": province,
            "doses": [
                {
                    "dose_id": r["dose_id"],
                    "administered_at": iso(r["administered_at"]),
                    "vaccine": r["vaccine"],
                    "vaccine_name": VACCINES[r["vaccine"]].name
                    if r["vaccine"] in VACCINES
                    else None,
                    "site_id": r["site_id"],
                    "residence_province": r["residence_province"],
                }
                for r in doses
            ],
            "status": status,
        }
    )


async def get_turnaround(ctx: Ctx) -> Response:
    area = ctx.params["area"]
    check_area(ctx, area)
    start, end = day_range(ctx, ctx.params["from"], ctx.params["to"], 7)
    if (end - start).days >= MAX_TURNAROUND_DAYS:
        raise Problem(
            "invalid-parameter",
            f"turnaround is reported {MAX_TURNAROUND_DAYS} days at a time",
            extra={"parameter": "from"},
        )
    services = ctx.services
    hours = services.config.pending_alarm_hours
    now = ctx.now
    # Minute resolution: answers computed within the same minute can be shared.
    late_before = (now - timedelta(hours=hours)).replace(second=0, microsecond=0)

    async def compute() -> dict[str, Any]:
        report = await queries.turnaround(
            services.store, queries.provinces_of(area), start, end, late_before
        )

        def stats(s: queries.TurnaroundStats) -> dict[str, Any]:
            return dict(s.__dict__)

        return {
            "area": area,
            "area_name": area_name(area),
            "from": start.isoformat(),
            "to": end.isoformat(),
            "overall": stats(report.overall),
            "by_lab": [{"lab_id": k, **stats(v)} for k, v in report.by_lab.items()],
            "by_province": [{"province": k, **stats(v)} for k, v in report.by_province.items()],
            "pending_late": {
                "hours": hours,
                "count": report.pending_late,
                "oldest_collected_at": iso_or_none(report.oldest_pending_collected_at),
                "by_province": [
                    {"province": k, "count": v} for k, v in report.pending_late_by_province.items()
                ],
                "by_site": [
                    {"site_id": k, "count": v} for k, v in report.pending_late_by_site.items()
                ],
            },
        }

    return await ctx.aggregate(("turnaround", area, start, end, late_before), compute)


# ------------------------------------------------------------------------------ tracers


def _scope_label(provinces: tuple[str, ...]) -> str:
    return NATION if provinces == auth.ALL_PROVINCES else ",".join(provinces)


async def list_alerts(ctx: Ctx) -> Response:
    provinces = ctx.must_reach().provinces_for(ctx.params["province"])
    since_param: datetime | None = ctx.params["since"]
    risk, status = ctx.params["risk"], ctx.params["status"]
    binding = {
        "provinces": list(provinces),
        "since": iso_or_none(since_param),
        "risk": risk,
        "status": status,
    }
    position = ctx.open_page(binding)
    if position is None:
        # Nothing older than the presence retention exists (TTL), so never read further back.
        oldest = ctx.now - timedelta(days=PRESENCE_DAYS)
        since = max(since_param or oldest, oldest)
        top = ctx.today + timedelta(days=1)  # a visit may start a few minutes "tomorrow"
    else:
        since = from_ms(position.get("since"))
        try:
            top = date.fromisoformat(str(position.get("top")))
        except ValueError as e:
            raise malformed_page() from e
    bottom = since.astimezone(LOCAL_TZ).date()
    segments = [
        Segment(
            d.isoformat(),
            tuple(
                Query("alerts_by_province", {"province": p, "day": d}, clustering_from=since)
                for p in provinces
            ),
        )
        for d in queries.days_between(bottom, top)[::-1]
    ]

    def keep(r: Row) -> bool:
        return (risk is None or r["risk"] == risk) and (status is None or r["status"] == status)

    rows, nxt = await newest_page(
        ctx, segments, position, time_col="contact_visit_start", id_col="alert_id", keep=keep
    )
    items = [_alert(r) for r in rows]
    await ctx.audit(
        f"alerts:{_scope_label(provinces)}",
        (p for r in rows for p in (r["contact_person_id"], r["case_person_id"])),
    )
    token = ctx.next_page(binding, nxt, since=ms(since), top=top.isoformat())
    return json_response(page(items, token))


async def stream_alerts(ctx: Ctx) -> Response:
    services = ctx.services
    reach = ctx.must_reach()
    requested = ctx.params["province"]
    provinces = reach.provinces_for(requested)
    everything = reach.everything and requested is None
    allowed = frozenset(provinces)
    risk = ctx.params["risk"]
    last = ctx.params["Last-Event-ID"] or ctx.params["last_event_id"]
    try:
        resume = parse_event_id(last) if last else None
    except InvalidEventId as e:
        raise Problem("invalid-last-event-id", str(e)) from e
    await ctx.audit(f"alert-stream:{_scope_label(provinces)}", ())
    broadcaster = services.broadcaster
    sub = broadcaster.subscribe()
    claims = ctx.claims
    assert claims is not None

    def refused() -> str | None:
        """Why the stream's token no longer reads, if it does not (checked every second)."""
        if services.revocations.claims_revoked(claims):
            return "token-revoked"
        if services.clock() >= claims.expires_at:
            return "token-expired"
        return None

    async def audit(records: list[Mapping[str, Any]]) -> None:
        """Every person id a stream sends is audited before it leaves, as ``GET /v1/alerts``
        audits them (a resumed stream's catch-up in one record)."""
        people = sorted({p for r in records for p in (r["case_person_id"], r["contact_person_id"])})
        await ctx.audit(f"alert-stream:{_scope_label(provinces)}", people)

    def wanted(record: Mapping[str, Any]) -> bool:
        if not everything and record.get("province") not in allowed:
            return False
        return risk is None or record.get("risk") == risk

    events = alert_events(
        broadcaster,
        sub,
        resume=resume,
        wanted=wanted,
        render=_alert,
        keepalive_s=services.config.sse_keepalive_seconds,
        catchup_timeout_s=services.config.catchup_timeout_seconds,
        on_event=services.metrics.stream_events.inc,
        refused=refused,
        audit=audit,
        recheck_s=services.config.stream_recheck_seconds,
    )
    return EventStreamResponse(
        events,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        on_close=lambda: broadcaster.unsubscribe(sub),
    )


async def _person_in_reach(ctx: Ctx, person_id: str) -> Row:
    row = await queries.person(ctx.services.store, person_id)
    if row is None or not ctx.must_reach().allows(row["province"]):
        raise Problem("not-found", "no such person in your scope")
    return row


async def list_exposures(ctx: Ctx) -> Response:
    person_id = ctx.params["person_id"]
    await _person_in_reach(ctx, person_id)
    since_param: datetime | None = ctx.params["since"]
    binding = {"person": person_id, "since": iso_or_none(since_param)}
    position = ctx.open_page(binding)
    since = since_param or (
        from_ms(position.get("since")) if position else ctx.now - timedelta(days=PRESENCE_DAYS)
    )
    segment = Segment(
        "p",
        (Query("alerts_by_person", {"contact_person_id": person_id}, clustering_from=since),),
    )
    rows, nxt = await newest_page(
        ctx, [segment], position, time_col="contact_visit_start", id_col="alert_id"
    )
    await ctx.audit(f"person:{person_id}", [person_id, *(r["case_person_id"] for r in rows)])
    items = [_alert({**r, "contact_person_id": person_id}) for r in rows]
    token = ctx.next_page(binding, nxt, since=ms(since))
    return json_response(page(items, token))


async def list_visits(ctx: Ctx) -> Response:
    person_id = ctx.params["person_id"]
    await _person_in_reach(ctx, person_id)
    start: datetime | None = ctx.params["from"]
    end: datetime | None = ctx.params["to"]
    if start is not None and end is not None and start > end:
        raise Problem("invalid-parameter", "from must not be after to", extra={"parameter": "from"})
    binding = {"person": person_id, "from": iso_or_none(start), "to": iso_or_none(end)}
    position = ctx.open_page(binding)
    segment = Segment(
        "p",
        (
            Query(
                "visits_by_person",
                {"person_id": person_id},
                clustering_from=start,
                clustering_to=end,
            ),
        ),
    )
    rows, nxt = await newest_page(
        ctx, [segment], position, time_col="visit_start", id_col="venue_id"
    )
    await ctx.audit(f"person:{person_id}", (person_id,))
    items = [
        {
            "venue_id": r["venue_id"],
            "venue_province": r["venue_province"],
            "visit_start": iso(r["visit_start"]),
            "visit_end": iso_or_none(r["visit_end"]),
        }
        for r in rows
    ]
    token = ctx.next_page(binding, nxt)
    return json_response(page(items, token))


async def get_exposure_windows(ctx: Ctx) -> Response:
    venue_id = ctx.params["venue_id"]
    store = ctx.services.store
    venue, windows = await asyncio.gather(
        queries.venue(store, venue_id), queries.exposure_windows(store, venue_id)
    )
    province = province_in_reach(ctx, venue, windows, "venue_province", "venue")
    return json_response(
        {
            "venue_id": venue_id,
            "province": province,
            "name": venue["name"] if venue is not None else None,
            "address": venue["address"] if venue is not None else None,
            "cases": len({w["case_person_id"] for w in windows}),
            "windows": [
                {"window_start": iso(w["window_start"]), "window_end": iso(w["window_end"])}
                for w in windows
            ],
        },
        cache_control="private, no-cache",
    )


async def list_exposure_sites(ctx: Ctx) -> Response:
    provinces = ctx.must_reach().provinces_for(ctx.params["province"])
    since_param: date | None = ctx.params["since"]
    binding = {"provinces": list(provinces), "since": iso_or_none(since_param)}
    position = ctx.open_page(binding)
    after: tuple[date, str] | None = None
    if position is None:
        oldest = ctx.today - timedelta(days=PRESENCE_DAYS)
        since = max(since_param or oldest + timedelta(days=1), oldest)  # older rows expired
        top = ctx.today + timedelta(days=1)
    else:
        try:
            since = date.fromisoformat(str(position["since"]))
            top = date.fromisoformat(str(position["top"]))
            after = (date.fromisoformat(str(position["day"])), str(position["key"]))
        except (KeyError, ValueError) as e:
            raise malformed_page() from e
    days = queries.days_between(since, top)[::-1]
    try:
        items, nxt = await queries.exposure_sites_page(
            ctx.services.store, provinces, days, limit=ctx.page_limit(), after=after
        )
    except ValueError as e:
        raise malformed_page() from e
    venues = await asyncio.gather(
        *(queries.venue(ctx.services.store, i["venue_id"]) for i in items)
    )
    out = [
        {
            "day": i["day"].isoformat(),
            "province": i["province"],
            "venue_id": i["venue_id"],
            "venue_name": v["name"] if v is not None else None,
            "address": v["address"] if v is not None else None,
            "cases": i["cases"],
            "windows": [{"window_start": iso(s), "window_end": iso(e)} for s, e in i["windows"]],
        }
        for i, v in zip(items, venues, strict=True)
    ]
    token = None
    if nxt is not None:
        token = ctx.mint_page(
            binding,
            {
                "since": since.isoformat(),
                "top": top.isoformat(),
                "day": nxt[0].isoformat(),
                "key": nxt[1],
            },
        )
    return json_response(page(out, token), cache_control="private, no-cache")


async def list_clusters(ctx: Ctx) -> Response:
    provinces = ctx.must_reach().provinces_for(ctx.params["province"])
    binding = {"provinces": list(provinces)}
    position = ctx.open_page(binding)
    after = page_str(position.get("key")) if position is not None else None
    rows, nxt = await queries.clusters_page(
        ctx.services.store, provinces, limit=ctx.page_limit(), after=after
    )
    await ctx.audit(
        f"clusters:{_scope_label(provinces)}",
        (p for r in rows for p in (r["case_person_ids"] or [])),
    )
    items = [
        {
            "province": r["province"],
            "venue_id": r["venue_id"],
            "case_count": len(r["case_person_ids"] or []),
            "case_person_ids": list(r["case_person_ids"] or []),
            "first_window_start": iso_or_none(r["first_window_start"]),
            "last_window_start": iso_or_none(r["last_window_start"]),
        }
        for r in rows
    ]
    token = ctx.mint_page(binding, {"key": nxt}) if nxt is not None else None
    return json_response(page(items, token))


# ------------------------------------------------------------------------------ MOH


async def list_audit(ctx: Ctx) -> Response:
    start, end = day_range(ctx, ctx.params["from"], ctx.params["to"], 1)
    if (end - start).days >= MAX_AUDIT_DAYS:
        raise Problem(
            "invalid-parameter",
            f"the audit log is read {MAX_AUDIT_DAYS} days at a time",
            extra={"parameter": "from"},
        )
    actor, subject = ctx.params["actor"], ctx.params["subject"]
    binding = {"from": start.isoformat(), "to": end.isoformat(), "actor": actor, "subject": subject}
    position = ctx.open_page(binding)
    segments = [
        Segment(d.isoformat(), (Query("audit_log", {"day": d}),))
        for d in queries.days_between(start, end)[::-1]
    ]

    def keep(r: Row) -> bool:
        return (actor is None or r["actor"] == actor) and (
            subject is None or r["subject"] == subject
        )

    rows, nxt = await newest_page(
        ctx, segments, position, time_col="read_at", id_col="audit_id", keep=keep
    )
    items = [
        {
            "audit_id": r["audit_id"],
            "read_at": iso(r["read_at"]),
            "actor": r["actor"],
            "grant_id": r["grant_id"],
            "token_id": r["token_id"],
            "scopes": list(r["scopes"] or []),
            "method": r["method"],
            "route": r["route"],
            "subject": r["subject"],
            "person_ids": list(r["person_ids"] or []),
            "client_address": r["client_address"],
            "status": r["status"],
        }
        for r in rows
    ]
    token = ctx.next_page(binding, nxt)
    return json_response(page(items, token))


_GRANT_FIELDS = {"agency", "scopes", "purpose", "expires_at"}


def _covers(issuer: Claims, scope: Scope) -> bool:
    """Whether a token may hand ``scope`` on: it holds ``moh`` (every scope) or that scope.
    A grant never outranks the token that issued it."""
    return issuer.has(ScopeKind.MOH) or scope in issuer.scopes


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem("unsupported-media-type", "send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Problem("body-too-large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        return parse_json(body)
    except BodyError as e:
        raise Problem("malformed-json", f"the body is not valid JSON: {e}") from None


def _invalid(errors: list[dict[str, str]]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem("validation-failed", detail, extra={"errors": errors})


async def create_grant(ctx: Ctx) -> Response:
    services = ctx.services
    issuer = ctx.claims
    assert issuer is not None
    body = await _json_body(ctx.request)
    if not isinstance(body, dict):
        raise _invalid([{"field": "", "message": "the body must be a JSON object"}])
    errors: list[dict[str, str]] = []
    for name in sorted(set(body) - _GRANT_FIELDS):
        errors.append({"field": name, "message": "unknown field"})
    agency, purpose = body.get("agency"), body.get("purpose")
    if not isinstance(agency, str) or not 1 <= len(agency) <= 128:
        errors.append({"field": "agency", "message": "a name of 1 to 128 characters"})
    if not isinstance(purpose, str) or not 1 <= len(purpose) <= 500:
        errors.append({"field": "purpose", "message": "a text of 1 to 500 characters"})
    scopes: list[Scope] = []
    raw_scopes = body.get("scopes")
    if not isinstance(raw_scopes, list) or not 1 <= len(raw_scopes) <= 16:
        errors.append({"field": "scopes", "message": "a list of 1 to 16 scopes"})
    else:
        for i, text in enumerate(raw_scopes):
            try:
                if not isinstance(text, str):
                    raise InvalidScope("a scope is a string")
                scope = Scope.parse(text)
            except InvalidScope as e:
                errors.append({"field": f"scopes[{i}]", "message": str(e)})
                continue
            province = scope.province_code
            if province is not None and not reference.is_province(province):
                errors.append({"field": f"scopes[{i}]", "message": "unknown province code"})
                continue
            if not _covers(issuer, scope):
                errors.append(
                    {"field": f"scopes[{i}]", "message": "the issuing token does not hold it"}
                )
                continue
            scopes.append(scope)
    now = ctx.now
    expires_at: datetime | None = None
    raw_expiry = body.get("expires_at")
    try:
        if not isinstance(raw_expiry, str):
            raise ValueError("an RFC 3339 date-time")
        expires_at = parse_datetime(raw_expiry)
        longest = timedelta(days=services.config.max_grant_days)
        if expires_at <= now + timedelta(minutes=1):
            raise ValueError("must be in the future")
        if expires_at > now + longest:
            raise ValueError(f"must be within {longest.days} days")
        if expires_at > issuer.expires_at:
            raise ValueError(
                "must not be later than the issuing token's own expiry "
                f"({issuer.expires_at.isoformat()})"
            )
    except ValueError as e:
        errors.append({"field": "expires_at", "message": str(e)})
    if errors:
        raise _invalid(errors)
    assert isinstance(agency, str) and isinstance(purpose, str) and expires_at is not None
    grant_id = uuid.uuid4().hex
    token_id = secrets.token_urlsafe(12)
    try:
        token = services.signer.issue(
            agency,
            scopes,
            expires_at - now,
            now=now,
            grant_id=grant_id,
            token_id=token_id,
        )
    except (ValueError, InvalidScope) as e:
        raise _invalid([{"field": "agency", "message": str(e)}]) from e
    event = {
        "event_id": f"{grant_id}:issued",
        "grant_id": grant_id,
        "token_id": token_id,
        "agency": agency,
        "scopes": sorted(str(s) for s in scopes),
        "purpose": purpose,
        "granted_by": issuer.subject,
        "granted_by_grant_id": issuer.grant_id,
        "granted_by_token_id": issuer.token_id,
        "granted_at": now,
        # the token's own expiry (whole seconds), so the record says what the token says
        "expires_at": now.replace(microsecond=0)
        + timedelta(seconds=max(1, int((expires_at - now).total_seconds()))),
    }
    await services.event_log.publish(
        services.settings.topic(GRANTS.name), grant_id, encode(GRANT_ISSUED, event)
    )
    services.revocations.issued(grant_id, issuer.grant_id or issuer.token_id)
    await services.store.apply([grant_issued_row(event)])
    services.metrics.grants_issued.inc()
    row = {**grant_issued_row(event).row, "revoked_at": None}
    return json_response(
        {**_grant(row, now), "token": token},
        status=201,
        cache_control="no-store",
        headers={"Location": f"/v1/grants/{grant_id}"},
    )


async def list_grants(ctx: Ctx) -> Response:
    binding: dict[str, Any] = {}
    position = ctx.open_page(binding)
    rows = await queries.all_grants(ctx.services.store)
    start = page_int(position.get("offset")) if position is not None else 0
    if start < 0:
        raise malformed_page()
    limit = ctx.page_limit()
    chunk = rows[start : start + limit]
    token = None
    if start + limit < len(rows):
        token = ctx.mint_page(binding, {"offset": start + limit})
    return json_response(page([_grant(r, ctx.now) for r in chunk], token), cache_control="no-store")


async def get_grant(ctx: Ctx) -> Response:
    row = await queries.grant(ctx.services.store, ctx.params["grant_id"])
    if row is None:
        raise Problem("not-found", "no such grant")
    return json_response(_grant(row, ctx.now), cache_control="no-store")


async def revoke_grant(ctx: Ctx) -> Response:
    services = ctx.services
    grant_id = ctx.params["grant_id"]
    row = await queries.grant(services.store, grant_id)
    if row is None:
        raise Problem("not-found", "no such grant")
    if row.get("revoked_at") is None:
        claims = ctx.claims
        assert claims is not None
        event = {
            "event_id": f"{grant_id}:revoked",
            "grant_id": grant_id,
            "token_id": row["token_id"],
            "revoked_by": claims.subject,
            "revoked_at": ctx.now,
            "reason": ctx.params["reason"],
        }
        await services.event_log.publish(
            services.settings.topic(GRANTS.name), grant_id, encode(GRANT_REVOKED, event)
        )
        services.revocations.revoke((grant_id, row["token_id"]))
        mutation = grant_revoked_row(event)
        await services.store.apply([mutation])
        services.metrics.grants_revoked.inc()
        row = {**row, **mutation.row}
    return json_response(_grant(row, ctx.now), cache_control="no-store")


# ------------------------------------------------------------------------------ operations


async def healthz(ctx: Ctx) -> Response:
    return json_response({"status": "ok"}, cache_control="no-store")


async def readyz(ctx: Ctx) -> Response:
    services = ctx.services

    async def store_ok() -> bool:
        try:
            await asyncio.wait_for(queries.grant(services.store, "readyz-probe"), 2.0)
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    store, kafka = await asyncio.gather(store_ok(), services.event_log.ping())
    checks = {
        "cassandra": store,
        "kafka": kafka,
        "topics": services.topics is None or not await services.topics.missing(),
        "revocations": services.revocations.healthy,
        "alert_stream": services.broadcaster.healthy,
    }
    if not all(checks.values()):
        failing = ", ".join(k for k, ok in checks.items() if not ok)
        raise Problem(
            "not-ready",
            f"not ready: {failing}",
            headers={"Retry-After": "2"},
            extra={"checks": checks},
        )
    return json_response({"status": "ready", "checks": checks}, cache_control="no-store")


async def metrics_text(ctx: Ctx) -> Response:
    from api.metrics import CONTENT_TYPE

    return Response(
        ctx.services.metrics.render(),
        media_type=CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )


async def openapi_json(ctx: Ctx) -> Response:
    return json_response(ctx.services.openapi, cache_control="public, max-age=300")


def build_operations(page_size: int, max_page_size: int) -> tuple[Operation, ...]:
    """Every operation; page sizes come from the config (they appear in the document)."""
    paging = page_params(page_size, max_page_size)
    band = enum_param(
        "age_band",
        ["all", "18+", *AGE_BANDS],
        "Age band (age at the first dose), 18+ (adults), or all.",
        default="all",
    )
    since_time = datetime_param("since", "Only entries from this time on (default: 21 days ago).")
    return (
        Operation(
            method="GET",
            path="/v1/results/{lookup_code}",
            op_id="getResult",
            summary="A citizen reads their test result",
            tag="citizens",
            handler=get_result,
            scopes=None,
            params=(
                text_param(
                    "lookup_code",
                    64,
                    "The code on the receipt or SMS (dashes optional).",
                    where="path",
                    required=True,
                ),
            ),
            response="Result",
            caching="none",
            errors=(404, 429, 503),
            description="No token. Looked up by the code's SHA-256; an unknown or malformed "
            "code is a 404 like any other. Rate limited per client address (429 + Retry-After). "
            "Only the state, test type and times are returned.",
        ),
        Operation(
            method="GET",
            path="/v1/samples/{sample_id}",
            op_id="getSample",
            summary="A sample and its result",
            tag="health staff",
            handler=get_sample,
            scopes=auth.MOH_PROVINCE,
            params=(id_path("sample_id"),),
            response="Sample",
            audited=True,
            errors=PERSONAL_ERRORS,
            description="province:<P> sees samples collected in P (others are 404). Audited.",
        ),
        Operation(
            method="GET",
            path="/v1/coverage",
            op_id="getCoverage",
            summary="Vaccination coverage of an area on a day",
            tag="vaccination",
            handler=get_coverage,
            scopes=auth.MOH_PROVINCE,
            params=(
                area_param(required=True),
                date_param("date", "As of this local day (default today)."),
                band,
            ),
            response="Coverage",
            caching="aggregate",
            errors=AGGREGATE_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/coverage/series",
            op_id="getCoverageSeries",
            summary="Coverage of an area, day by day",
            tag="vaccination",
            handler=get_coverage_series,
            scopes=auth.MOH_PROVINCE,
            params=(
                area_param(required=True),
                date_param("from", "First day (default: to - 29 days)."),
                date_param("to", "Last day (default today)."),
                band,
            ),
            response="CoverageSeries",
            caching="aggregate",
            errors=AGGREGATE_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/doses/daily",
            op_id="getDosesDaily",
            summary="Doses given per day in an area",
            tag="vaccination",
            handler=get_doses_daily,
            scopes=auth.MOH_PROVINCE,
            params=(
                area_param(required=True),
                date_param("from", "First day (default: to - 29 days)."),
                date_param("to", "Last day (default today)."),
                band,
                enum_param(
                    "vaccine",
                    sorted(VACCINES),
                    "Not available yet: per-product daily counts are not projected, so "
                    "this filter answers 400 filter-not-supported.",
                ),
            ),
            response="DosesDaily",
            caching="aggregate",
            errors=AGGREGATE_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/people/{person_id}/vaccinations",
            op_id="getVaccinations",
            summary="A person's vaccination record",
            tag="vaccination",
            handler=get_vaccinations,
            scopes=auth.MOH_PROVINCE,
            params=(id_path("person_id"),),
            response="VaccinationRecord",
            audited=True,
            errors=PERSONAL_ERRORS,
            description="province:<P> sees people registered (else vaccinated as residents) in "
            "P. Audited.",
        ),
        Operation(
            method="GET",
            path="/v1/testing/turnaround",
            op_id="getTurnaround",
            summary="Turnaround percentiles and samples pending too long, per lab and province",
            tag="health staff",
            handler=get_turnaround,
            scopes=auth.MOH_PROVINCE,
            params=(
                area_param(required=True),
                date_param("from", "First local day of results (default: to - 6 days)."),
                date_param("to", "Last day (default today)."),
            ),
            response="Turnaround",
            caching="aggregate",
            errors=AGGREGATE_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/alerts",
            op_id="listAlerts",
            summary="Exposure alerts, newest contact visit first",
            tag="tracers",
            handler=list_alerts,
            scopes=auth.MOH_PROVINCE_TRACER,
            params=(
                province_param(
                    description="Province of the venue (default: every province your "
                    "token reaches)."
                ),
                since_time,
                enum_param("risk", ["HIGH", "LOW"]),
                enum_param("status", ["ACTIVE", "WITHDRAWN"]),
                *paging,
            ),
            response="AlertPage",
            audited=True,
            errors=PERSONAL_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/alerts/stream",
            op_id="streamAlerts",
            summary="Live exposure alerts (Server-Sent Events)",
            tag="tracers",
            handler=stream_alerts,
            scopes=auth.MOH_PROVINCE_TRACER,
            params=(
                province_param(),
                enum_param("risk", ["HIGH", "LOW"]),
                text_param("Last-Event-ID", 20000, "Resume after this event id.", where="header"),
                text_param("last_event_id", 20000, "Same as the Last-Event-ID header."),
            ),
            media_type="text/event-stream",
            audited=True,
            errors=PERSONAL_ERRORS,
            description="Each event is `event: alert` with the alert as JSON data and an id "
            "that Last-Event-ID resumes from exactly. Keep-alive comments every 15 s.",
        ),
        Operation(
            method="GET",
            path="/v1/people/{person_id}/exposures",
            op_id="listExposures",
            summary="Alerts where a person is the contact",
            tag="tracers",
            handler=list_exposures,
            scopes=auth.MOH_TRACER,
            params=(id_path("person_id"), since_time, *paging),
            response="AlertPage",
            audited=True,
            errors=PERSONAL_ERRORS,
            description="tracer:<P> sees people registered in P; unknown people are 404.",
        ),
        Operation(
            method="GET",
            path="/v1/people/{person_id}/visits",
            op_id="listVisits",
            summary="A person's visits",
            tag="tracers",
            handler=list_visits,
            scopes=auth.MOH_TRACER,
            params=(
                id_path("person_id"),
                datetime_param("from", "Visits starting at or after."),
                datetime_param("to", "Visits starting at or before."),
                *paging,
            ),
            response="VisitPage",
            audited=True,
            errors=PERSONAL_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/venues/{venue_id}/exposure-windows",
            op_id="getExposureWindows",
            summary="Exposure windows at a venue",
            tag="tracers",
            handler=get_exposure_windows,
            scopes=auth.MOH_PROVINCE_TRACER,
            params=(id_path("venue_id"),),
            response="ExposureWindows",
            caching="none",
            errors=PERSONAL_ERRORS,
        ),
        Operation(
            method="GET",
            path="/v1/exposure-sites",
            op_id="listExposureSites",
            summary="Venues with exposure windows, by day",
            tag="tracers",
            handler=list_exposure_sites,
            scopes=auth.MOH_PROVINCE_TRACER,
            params=(
                province_param(),
                date_param("since", "First local day (default: 20 days ago)."),
                *paging,
            ),
            response="ExposureSitePage",
            caching="none",
            errors=(400, 401, 403, 503),
        ),
        Operation(
            method="GET",
            path="/v1/clusters",
            op_id="listClusters",
            summary="Clusters of cases at venues",
            tag="tracers",
            handler=list_clusters,
            scopes=auth.MOH_PROVINCE_TRACER,
            params=(province_param(), *paging),
            response="ClusterPage",
            audited=True,
            errors=(400, 401, 403, 503),
        ),
        Operation(
            method="GET",
            path="/v1/audit",
            op_id="listAudit",
            summary="Reads of personal data, newest first",
            tag="MOH",
            handler=list_audit,
            scopes=auth.MOH,
            params=(
                date_param("from", "First local day (default: to)."),
                date_param("to", "Last local day (default today)."),
                text_param("actor", 128, "Only reads by this token subject."),
                text_param("subject", 256, "Only reads of this subject, e.g. person:<id>."),
                *paging,
            ),
            response="AuditPage",
            errors=(400, 401, 403, 503),
        ),
        Operation(
            method="POST",
            path="/v1/grants",
            op_id="createGrant",
            summary="Grant an agency scopes until a date",
            tag="MOH",
            handler=create_grant,
            scopes=auth.MOH,
            params=(),
            response="IssuedGrant",
            status=201,
            body="GrantRequest",
            errors=(400, 401, 403, 413, 415, 422, 503),
            description="Records the grant (event on `grants`, row in Cassandra) and returns the "
            "token, once: it is not stored.",
        ),
        Operation(
            method="GET",
            path="/v1/grants",
            op_id="listGrants",
            summary="Grants, newest first",
            tag="MOH",
            handler=list_grants,
            scopes=auth.MOH,
            params=paging,
            response="GrantPage",
            errors=(400, 401, 403, 503),
        ),
        Operation(
            method="GET",
            path="/v1/grants/{grant_id}",
            op_id="getGrant",
            summary="One grant",
            tag="MOH",
            handler=get_grant,
            scopes=auth.MOH,
            params=(id_path("grant_id"),),
            response="Grant",
            errors=PERSONAL_ERRORS,
        ),
        Operation(
            method="DELETE",
            path="/v1/grants/{grant_id}",
            op_id="revokeGrant",
            summary="Revoke a grant: its token is refused by both APIs within seconds",
            tag="MOH",
            handler=revoke_grant,
            scopes=auth.MOH,
            params=(id_path("grant_id"), text_param("reason", 500, "Why (recorded).")),
            response="Grant",
            errors=PERSONAL_ERRORS,
            description="Idempotent: revoking a revoked grant answers it unchanged.",
        ),
        Operation(
            method="GET",
            path="/healthz",
            op_id="healthz",
            summary="Liveness",
            tag="operations",
            handler=healthz,
            scopes=None,
            response="Health",
            caching="none",
            errors=(),
        ),
        Operation(
            method="GET",
            path="/readyz",
            op_id="readyz",
            summary="Readiness (Cassandra, Kafka, revocations)",
            tag="operations",
            handler=readyz,
            scopes=None,
            response="Ready",
            caching="none",
            errors=(503,),
        ),
        Operation(
            method="GET",
            path="/metrics",
            op_id="metrics",
            summary="Prometheus metrics",
            tag="operations",
            handler=metrics_text,
            scopes=None,
            media_type="text/plain",
            caching="none",
            errors=(),
        ),
        Operation(
            method="GET",
            path="/openapi.json",
            op_id="openapi",
            summary="This document",
            tag="operations",
            handler=openapi_json,
            scopes=None,
            caching="none",
            errors=(),
        ),
    )


OPERATIONS: tuple[Operation, ...] = build_operations(100, 500)
