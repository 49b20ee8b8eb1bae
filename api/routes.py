"""Every route of the read API, declared once: scopes, parameters, caching, audit, handler.

:data:`OPERATIONS` drives both the Starlette routes (:func:`api.app.create_app`) and the
OpenAPI document (:mod:`api.openapi`), so the document cannot drift from what is served.
Each request goes through :func:`dispatch`: authenticate (unless public), check the route's
scope kinds (403 before anything is read), parse parameters (400), run the handler; errors are
answered as problems; metrics are recorded by route template.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api import auth
from api.auth import Reach, authenticate, reach_of
from api.paging import InvalidPageToken
from api.params import (
    Param,
    area_param,
    date_param,
    datetime_param,
    enum_param,
    id_path,
    int_param,
    parse_datetime,
    province_param,
    text_param,
)
from api.problems import LogUnavailable, Problem, exception_handlers
from api.ratelimit import TokenBuckets
from api.render import aggregate_response, iso, iso_or_none, json_response
from api.services import Services
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
from projections.queries import Cursor, Segment
from schemas.codec import encode

__all__ = ["OPERATIONS", "Operation", "dispatch"]

_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = (
    exception_handlers()
)

#: How far back lists of alerts and exposure sites reach by default (presence data lives 21 d).
PRESENCE_DAYS = 21
#: Longest turnaround report (a national one reads 63 partitions per day).
MAX_TURNAROUND_DAYS = 31
#: Longest audit query (one partition per day).
MAX_AUDIT_DAYS = 31
MAX_BODY_BYTES = 16 * 1024


@dataclass
class Ctx:
    """One request as a handler sees it."""

    request: Request
    services: Services
    op: Operation
    params: dict[str, Any]
    claims: Claims | None = None
    reach: Reach | None = None

    @property
    def now(self) -> datetime:
        return self.services.clock()

    @property
    def today(self) -> date:
        return self.now.astimezone(LOCAL_TZ).date()

    @property
    def client_address(self) -> str | None:
        client = self.request.client
        return client.host if client is not None else None

    def must_reach(self) -> Reach:
        assert self.reach is not None, "a public route asked for a reach"
        return self.reach

    async def audit(self, subject: str, person_ids: Iterable[str]) -> None:
        """Audit this read of personal data before answering (fail closed)."""
        assert self.claims is not None
        event = self.services.auditor.event(
            self.claims,
            method=self.request.method,
            route=self.op.path,
            subject=subject,
            person_ids=person_ids,
            client_address=self.client_address,
        )
        await self.services.auditor.record(event)

    def page_limit(self) -> int:
        limit = self.params.get("limit")
        return int(limit) if limit is not None else self.services.config.page_size

    def open_page(self, binding: Mapping[str, Any]) -> dict[str, Any] | None:
        token = self.params.get("page_token")
        if token is None:
            return None
        try:
            return self.services.pages.open(token, self.op.op_id, binding)
        except InvalidPageToken as e:
            raise Problem("invalid-page-token", str(e)) from e

    def mint_page(self, binding: Mapping[str, Any], position: Mapping[str, Any]) -> str:
        return self.services.pages.mint(self.op.op_id, binding, position)


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    """A route: method, path template, who may call it, its parameters and its answer."""

    method: str
    path: str
    op_id: str
    summary: str
    tag: str
    handler: Handler
    scopes: frozenset[ScopeKind] | None  # None: public (no token)
    params: tuple[Param, ...] = ()
    response: str | None = None  # component schema name of the success body
    status: int = 200
    media_type: str = "application/json"
    caching: str = "personal"  # "aggregate" | "personal" | "none"
    audited: bool = False
    body: str | None = None  # component schema name of the request body
    errors: tuple[int, ...] = (400, 401, 403, 404, 503)
    description: str = ""

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.where == "query")


# ------------------------------------------------------------------------------ dispatch


async def dispatch(op: Operation, request: Request) -> Response:
    """Run ``op`` for ``request``: auth, scope, parameters, handler, problems, metrics."""
    services: Services = request.app.state.services
    started = time.perf_counter()
    status = 500
    try:
        response = await _run(op, request, services)
        status = response.status_code
        return response
    except (Problem, StoreUnavailable, LogUnavailable) as e:
        handler = next(h for kind, h in _HANDLERS.items() if isinstance(e, kind))
        response = await handler(request, e)
        status = response.status_code
        return response
    finally:
        services.metrics.observe(op.path, op.method, status, time.perf_counter() - started)


async def _run(op: Operation, request: Request, services: Services) -> Response:
    ctx = Ctx(request, services, op, {})
    if op.scopes is not None:
        ctx.claims = authenticate(
            request.headers.get("authorization"),
            services.signer,
            services.clock(),
            services.revocations.is_revoked,
        )
        ctx.reach = reach_of(ctx.claims, op.scopes)
    unknown = sorted(set(request.query_params) - op.query_names)
    if unknown:  # a typo such as `provnce=79` must not silently widen a list
        raise Problem(
            "invalid-parameter",
            f"unknown query parameter {unknown[0]!r}",
            extra={"parameter": unknown[0]},
        )
    for p in op.params:
        if p.where == "path":
            raw = request.path_params.get(p.name)
        elif p.where == "header":
            raw = request.headers.get(p.name)
        else:
            raw = request.query_params.get(p.name)
        ctx.params[p.name] = p.read(raw)
    return await op.handler(ctx)


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


def _area_name(area: str) -> str:
    return "Việt Nam" if area == NATION else reference.PROVINCES[area].name


def _check_area(ctx: Ctx, area: str) -> None:
    reach = ctx.must_reach()
    if area == NATION:
        if not reach.everything:
            raise Problem("insufficient-scope", "national figures need the moh scope")
    elif not reach.allows(area):
        raise Problem("insufficient-scope", f"your token does not reach area {area}")


def _range(ctx: Ctx, start: date | None, end: date | None, default_days: int) -> tuple[date, date]:
    end = end or ctx.today
    start = start or end - timedelta(days=default_days - 1)
    if start > end:
        raise Problem("invalid-parameter", "from must not be after to", extra={"parameter": "from"})
    limit = ctx.services.config.max_range_days
    if (end - start).days + 1 > limit:
        raise Problem(
            "invalid-parameter",
            f"the range spans more than {limit} days",
            extra={"parameter": "from"},
        )
    return start, end


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _from_ms(value: Any) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Problem("invalid-page-token", "page token is malformed")
    return datetime.fromtimestamp(value / 1000, UTC)


def _cursor(position: Mapping[str, Any]) -> Cursor | None:
    if position.get("seg") is None:
        return None
    seg, at, ident = position.get("seg"), position.get("at"), position.get("id")
    if not isinstance(seg, str) or not isinstance(ident, str):
        raise Problem("invalid-page-token", "page token is malformed")
    return Cursor(seg, _from_ms(at), ident)


def _page(items: list[Any], token: str | None) -> dict[str, Any]:
    return {"items": items, "next_page_token": token}


async def _newest_page(
    ctx: Ctx,
    segments: Sequence[Segment],
    position: Mapping[str, Any] | None,
    *,
    time_col: str,
    id_col: str,
    keep: Callable[[Row], bool] = lambda r: True,
) -> tuple[list[Row], Cursor | None]:
    """One page of ``segments``, newest first, after the position of a page token."""
    try:
        return await queries.newest_first(
            ctx.services.store,
            segments,
            time_col=time_col,
            id_col=id_col,
            limit=ctx.page_limit(),
            after=_cursor(position) if position else None,
            keep=keep,
        )
    except ValueError as e:
        raise Problem("invalid-page-token", "page token is malformed") from e


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
    _check_area(ctx, area)
    day = ctx.params["date"] or ctx.today
    services = ctx.services

    async def compute() -> dict[str, Any]:
        by_band = await queries.coverage_as_of(services.store, area, day, _bands_for(band))
        out = {
            "area": area,
            "area_name": _area_name(area),
            "date": day.isoformat(),
            "age_band": band,
            **_band_figures(area, band, by_band),
        }
        if band == "all":
            out["by_age_band"] = [
                {"age_band": b, **_band_figures(area, b, by_band)} for b in AGE_BANDS
            ]
        return out

    data = await services.cache.get(("coverage", area, day, band), compute)
    return aggregate_response(ctx.request, data, services.config.cache_max_age)


async def get_coverage_series(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    _check_area(ctx, area)
    start, end = _range(ctx, ctx.params["from"], ctx.params["to"], 30)
    services = ctx.services

    async def compute() -> dict[str, Any]:
        series = await queries.coverage_series(services.store, area, start, end, _bands_for(band))
        return {
            "area": area,
            "area_name": _area_name(area),
            "age_band": band,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "points": [
                {"date": d.isoformat(), **_band_figures(area, band, by_band)}
                for d, by_band in sorted(series.items())
            ],
        }

    data = await services.cache.get(("series", area, start, end, band), compute)
    return aggregate_response(ctx.request, data, services.config.cache_max_age)


async def get_doses_daily(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    _check_area(ctx, area)
    if ctx.params["vaccine"] is not None:
        raise Problem(
            "filter-not-supported",
            "daily doses per vaccine product are not projected yet; ask without vaccine",
            extra={"parameter": "vaccine"},
        )
    start, end = _range(ctx, ctx.params["from"], ctx.params["to"], 30)
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
            "area_name": _area_name(area),
            "age_band": band,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "days": rows,
            "total": total.__dict__,
        }

    data = await services.cache.get(("doses", area, start, end, band), compute)
    return aggregate_response(ctx.request, data, services.config.cache_max_age)


async def get_vaccinations(ctx: Ctx) -> Response:
    person_id = ctx.params["person_id"]
    store = ctx.services.store
    person, doses = await asyncio.gather(
        queries.person(store, person_id), queries.vaccinations(store, person_id)
    )
    province = person["province"] if person is not None else None
    if province is None and doses:
        province = doses[0]["residence_province"]
    if province is None or not ctx.must_reach().allows(province):
        raise Problem("not-found", "no such person in your scope")
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
    _check_area(ctx, area)
    start, end = _range(ctx, ctx.params["from"], ctx.params["to"], 7)
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
            "area_name": _area_name(area),
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

    data = await services.cache.get(("turnaround", area, start, end, late_before), compute)
    return aggregate_response(ctx.request, data, services.config.cache_max_age)


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
        since = _from_ms(position.get("since"))
        try:
            top = date.fromisoformat(str(position.get("top")))
        except ValueError as e:
            raise Problem("invalid-page-token", "page token is malformed") from e
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

    rows, nxt = await _newest_page(
        ctx, segments, position, time_col="contact_visit_start", id_col="alert_id", keep=keep
    )
    items = [_alert(r) for r in rows]
    await ctx.audit(
        f"alerts:{_scope_label(provinces)}",
        (p for r in rows for p in (r["contact_person_id"], r["case_person_id"])),
    )
    token = None
    if nxt is not None:
        token = ctx.mint_page(
            binding,
            {
                "since": _ms(since),
                "top": top.isoformat(),
                "seg": nxt.segment,
                "at": _ms(nxt.at),
                "id": nxt.id,
            },
        )
    return json_response(_page(items, token))


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
        _from_ms(position.get("since")) if position else ctx.now - timedelta(days=PRESENCE_DAYS)
    )
    segment = Segment(
        "p",
        (Query("alerts_by_person", {"contact_person_id": person_id}, clustering_from=since),),
    )
    rows, nxt = await _newest_page(
        ctx, [segment], position, time_col="contact_visit_start", id_col="alert_id"
    )
    await ctx.audit(f"person:{person_id}", [person_id, *(r["case_person_id"] for r in rows)])
    items = [_alert({**r, "contact_person_id": person_id}) for r in rows]
    token = None
    if nxt is not None:
        token = ctx.mint_page(
            binding, {"since": _ms(since), "seg": nxt.segment, "at": _ms(nxt.at), "id": nxt.id}
        )
    return json_response(_page(items, token))


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
    rows, nxt = await _newest_page(
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
    token = None
    if nxt is not None:
        token = ctx.mint_page(binding, {"seg": nxt.segment, "at": _ms(nxt.at), "id": nxt.id})
    return json_response(_page(items, token))


async def get_exposure_windows(ctx: Ctx) -> Response:
    venue_id = ctx.params["venue_id"]
    store = ctx.services.store
    venue, windows = await asyncio.gather(
        queries.venue(store, venue_id), queries.exposure_windows(store, venue_id)
    )
    province = venue["province"] if venue is not None else None
    if province is None and windows:
        province = windows[0]["venue_province"]
    if province is None or not ctx.must_reach().allows(province):
        raise Problem("not-found", "no such venue in your scope")
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
            raise Problem("invalid-page-token", "page token is malformed") from e
    days = queries.days_between(since, top)[::-1]
    try:
        items, nxt = await queries.exposure_sites_page(
            ctx.services.store, provinces, days, limit=ctx.page_limit(), after=after
        )
    except ValueError as e:
        raise Problem("invalid-page-token", "page token is malformed") from e
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
    return json_response(_page(out, token), cache_control="private, no-cache")


async def list_clusters(ctx: Ctx) -> Response:
    provinces = ctx.must_reach().provinces_for(ctx.params["province"])
    binding = {"provinces": list(provinces)}
    position = ctx.open_page(binding)
    after = None
    if position is not None:
        after = position.get("key")
        if not isinstance(after, str):
            raise Problem("invalid-page-token", "page token is malformed")
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
    return json_response(_page(items, token))


# ------------------------------------------------------------------------------ MOH


async def list_audit(ctx: Ctx) -> Response:
    start, end = _range(ctx, ctx.params["from"], ctx.params["to"], 1)
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

    rows, nxt = await _newest_page(
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
    token = None
    if nxt is not None:
        token = ctx.mint_page(binding, {"seg": nxt.segment, "at": _ms(nxt.at), "id": nxt.id})
    return json_response(_page(items, token))


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
    start = 0
    if position is not None:
        offset = position.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise Problem("invalid-page-token", "page token is malformed")
        start = offset
    limit = ctx.page_limit()
    page = rows[start : start + limit]
    token = None
    if start + limit < len(rows):
        token = ctx.mint_page(binding, {"offset": start + limit})
    return json_response(_page([_grant(r, ctx.now) for r in page], token), cache_control="no-store")


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


def _page_params(default: int, maximum: int) -> tuple[Param, ...]:
    return (
        int_param("limit", 1, maximum, default, "Page size."),
        text_param("page_token", 2048, "Opaque token of the next page (from next_page_token)."),
    )


def build_operations(page_size: int, max_page_size: int) -> tuple[Operation, ...]:
    """Every operation; page sizes come from the config (they appear in the document)."""
    paging = _page_params(page_size, max_page_size)
    band = enum_param(
        "age_band",
        ["all", "18+", *AGE_BANDS],
        "Age band (age at the first dose), 18+ (adults), or all.",
        default="all",
    )
    since_time = datetime_param("since", "Only entries from this time on (default: 21 days ago).")
    personal = (400, 401, 403, 404, 503)
    return (
        Operation(
            "GET",
            "/v1/results/{lookup_code}",
            "getResult",
            "A citizen reads their test result",
            "citizens",
            get_result,
            None,
            (
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
            "GET",
            "/v1/samples/{sample_id}",
            "getSample",
            "A sample and its result",
            "health staff",
            get_sample,
            auth.MOH_PROVINCE,
            (id_path("sample_id"),),
            response="Sample",
            audited=True,
            errors=personal,
            description="province:<P> sees samples collected in P (others are 404). Audited.",
        ),
        Operation(
            "GET",
            "/v1/coverage",
            "getCoverage",
            "Vaccination coverage of an area on a day",
            "vaccination",
            get_coverage,
            auth.MOH_PROVINCE,
            (
                area_param(required=True),
                date_param("date", "As of this local day (default today)."),
                band,
            ),
            response="Coverage",
            caching="aggregate",
            errors=(304, 400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/coverage/series",
            "getCoverageSeries",
            "Coverage of an area, day by day",
            "vaccination",
            get_coverage_series,
            auth.MOH_PROVINCE,
            (
                area_param(required=True),
                date_param("from", "First day (default: to - 29 days)."),
                date_param("to", "Last day (default today)."),
                band,
            ),
            response="CoverageSeries",
            caching="aggregate",
            errors=(304, 400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/doses/daily",
            "getDosesDaily",
            "Doses given per day in an area",
            "vaccination",
            get_doses_daily,
            auth.MOH_PROVINCE,
            (
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
            errors=(304, 400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/people/{person_id}/vaccinations",
            "getVaccinations",
            "A person's vaccination record",
            "vaccination",
            get_vaccinations,
            auth.MOH_PROVINCE,
            (id_path("person_id"),),
            response="VaccinationRecord",
            audited=True,
            errors=personal,
            description="province:<P> sees people registered (else vaccinated as residents) in "
            "P. Audited.",
        ),
        Operation(
            "GET",
            "/v1/testing/turnaround",
            "getTurnaround",
            "Turnaround percentiles and samples pending too long, per lab and province",
            "health staff",
            get_turnaround,
            auth.MOH_PROVINCE,
            (
                area_param(required=True),
                date_param("from", "First local day of results (default: to - 6 days)."),
                date_param("to", "Last day (default today)."),
            ),
            response="Turnaround",
            caching="aggregate",
            errors=(304, 400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/alerts",
            "listAlerts",
            "Exposure alerts, newest contact visit first",
            "tracers",
            list_alerts,
            auth.MOH_PROVINCE_TRACER,
            (
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
            errors=personal,
        ),
        Operation(
            "GET",
            "/v1/alerts/stream",
            "streamAlerts",
            "Live exposure alerts (Server-Sent Events)",
            "tracers",
            stream_alerts,
            auth.MOH_PROVINCE_TRACER,
            (
                province_param(),
                enum_param("risk", ["HIGH", "LOW"]),
                text_param("Last-Event-ID", 20000, "Resume after this event id.", where="header"),
                text_param("last_event_id", 20000, "Same as the Last-Event-ID header."),
            ),
            media_type="text/event-stream",
            audited=True,
            errors=personal,
            description="Each event is `event: alert` with the alert as JSON data and an id "
            "that Last-Event-ID resumes from exactly. Keep-alive comments every 15 s.",
        ),
        Operation(
            "GET",
            "/v1/people/{person_id}/exposures",
            "listExposures",
            "Alerts where a person is the contact",
            "tracers",
            list_exposures,
            auth.MOH_TRACER,
            (id_path("person_id"), since_time, *paging),
            response="AlertPage",
            audited=True,
            errors=personal,
            description="tracer:<P> sees people registered in P; unknown people are 404.",
        ),
        Operation(
            "GET",
            "/v1/people/{person_id}/visits",
            "listVisits",
            "A person's visits",
            "tracers",
            list_visits,
            auth.MOH_TRACER,
            (
                id_path("person_id"),
                datetime_param("from", "Visits starting at or after."),
                datetime_param("to", "Visits starting at or before."),
                *paging,
            ),
            response="VisitPage",
            audited=True,
            errors=personal,
        ),
        Operation(
            "GET",
            "/v1/venues/{venue_id}/exposure-windows",
            "getExposureWindows",
            "Exposure windows at a venue",
            "tracers",
            get_exposure_windows,
            auth.MOH_PROVINCE_TRACER,
            (id_path("venue_id"),),
            response="ExposureWindows",
            caching="none",
            errors=personal,
        ),
        Operation(
            "GET",
            "/v1/exposure-sites",
            "listExposureSites",
            "Venues with exposure windows, by day",
            "tracers",
            list_exposure_sites,
            auth.MOH_PROVINCE_TRACER,
            (
                province_param(),
                date_param("since", "First local day (default: 20 days ago)."),
                *paging,
            ),
            response="ExposureSitePage",
            caching="none",
            errors=(400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/clusters",
            "listClusters",
            "Clusters of cases at venues",
            "tracers",
            list_clusters,
            auth.MOH_PROVINCE_TRACER,
            (province_param(), *paging),
            response="ClusterPage",
            audited=True,
            errors=(400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/audit",
            "listAudit",
            "Reads of personal data, newest first",
            "MOH",
            list_audit,
            auth.MOH,
            (
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
            "POST",
            "/v1/grants",
            "createGrant",
            "Grant an agency scopes until a date",
            "MOH",
            create_grant,
            auth.MOH,
            (),
            response="IssuedGrant",
            status=201,
            body="GrantRequest",
            errors=(400, 401, 403, 413, 415, 422, 503),
            description="Records the grant (event on `grants`, row in Cassandra) and returns the "
            "token, once: it is not stored.",
        ),
        Operation(
            "GET",
            "/v1/grants",
            "listGrants",
            "Grants, newest first",
            "MOH",
            list_grants,
            auth.MOH,
            paging,
            response="GrantPage",
            errors=(400, 401, 403, 503),
        ),
        Operation(
            "GET",
            "/v1/grants/{grant_id}",
            "getGrant",
            "One grant",
            "MOH",
            get_grant,
            auth.MOH,
            (id_path("grant_id"),),
            response="Grant",
            errors=(400, 401, 403, 404, 503),
        ),
        Operation(
            "DELETE",
            "/v1/grants/{grant_id}",
            "revokeGrant",
            "Revoke a grant: its token is refused by both APIs within seconds",
            "MOH",
            revoke_grant,
            auth.MOH,
            (id_path("grant_id"), text_param("reason", 500, "Why (recorded).")),
            response="Grant",
            errors=(400, 401, 403, 404, 503),
            description="Idempotent: revoking a revoked grant answers it unchanged.",
        ),
        Operation(
            "GET",
            "/healthz",
            "healthz",
            "Liveness",
            "operations",
            healthz,
            None,
            response="Health",
            caching="none",
            errors=(),
        ),
        Operation(
            "GET",
            "/readyz",
            "readyz",
            "Readiness (Cassandra, Kafka, revocations)",
            "operations",
            readyz,
            None,
            response="Ready",
            caching="none",
            errors=(503,),
        ),
        Operation(
            "GET",
            "/metrics",
            "metrics",
            "Prometheus metrics",
            "operations",
            metrics_text,
            None,
            media_type="text/plain",
            caching="none",
            errors=(),
        ),
        Operation(
            "GET",
            "/openapi.json",
            "openapi",
            "This document",
            "operations",
            openapi_json,
            None,
            caching="none",
            errors=(),
        ),
    )


OPERATIONS: tuple[Operation, ...] = build_operations(100, 500)
