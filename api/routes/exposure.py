"""Contact tracing: exposure alerts (listed and live), a person's exposures and visits, exposure
windows of a venue, exposure sites by day and clusters.

Lists reach back :data:`PRESENCE_DAYS` at most (presence data expires then); reads of people
are audited, person ids included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import (
    REACH_ERRORS,
    RESUME_PARAMS,
    Area,
    Ctx,
    Operation,
    from_ms,
    malformed_page,
    ms,
    newest_page,
    page,
    page_str,
    read_in_reach,
)
from api.params import (
    Param,
    date_param,
    datetime_param,
    enum_param,
    province_param,
)
from api.problems import Problem
from api.render import iso, iso_or_none, json_response
from domain.coverage import NATION
from projections import queries
from projections.access import LOCAL_TZ
from projections.model import Query, Row
from projections.queries import Segment

__all__ = [
    "PRESENCE_DAYS",
    "get_exposure_windows",
    "list_alerts",
    "list_clusters",
    "list_exposure_sites",
    "list_exposures",
    "list_visits",
    "operations",
    "stream_alerts",
]

#: How far back lists of alerts and exposure sites reach by default (presence data lives 21 d).
PRESENCE_DAYS = 21


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
        return bool(
            (risk is None or r["risk"] == risk) and (status == "ANY" or r["status"] == status)
        )

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
    reach = ctx.must_reach()
    requested = ctx.params["province"]
    provinces = reach.provinces_for(requested)
    everything = reach.everything and requested is None
    allowed = frozenset(provinces)
    risk = ctx.params["risk"]

    async def audit(records: list[Mapping[str, Any]]) -> None:
        """Every person id a stream sends is audited before it leaves, as ``GET /v1/alerts``
        audits them (a resumed stream's catch-up in one record)."""
        people = sorted({p for r in records for p in (r["case_person_id"], r["contact_person_id"])})
        await ctx.audit(f"alert-stream:{_scope_label(provinces)}", people)

    def wanted(record: Mapping[str, Any]) -> bool:
        if not everything and record.get("province") not in allowed:
            return False
        return risk is None or record.get("risk") == risk

    return await ctx.alert_stream(
        opened=(f"alert-stream:{_scope_label(provinces)}", ()),
        wanted=wanted,
        render=_alert,
        audit=audit,
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
    reads = queries.venue(store, venue_id), queries.exposure_windows(store, venue_id)
    venue, windows, province = await read_in_reach(ctx, "venue", "venue_province", *reads)
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


def operations(paging: tuple[Param, ...]) -> tuple[Operation, ...]:
    """The tracers' operations; ``paging``: the page parameters of the config."""
    area = Area("tracers", auth.MOH_PROVINCE_TRACER, audited=True)
    since_time = datetime_param("since", "Only entries from this time on (default: 21 days ago).")
    risk = enum_param("risk", ["HIGH", "LOW"])
    return (
        area.get(
            "/v1/alerts",
            "listAlerts",
            "Exposure alerts, newest contact visit first",
            list_alerts,
            params=(
                province_param(
                    description="Province of the venue (default: every province your "
                    "token reaches)."
                ),
                since_time,
                risk,
                enum_param(
                    "status",
                    ["ACTIVE", "WITHDRAWN", "ANY"],
                    "ACTIVE by default: a withdrawn alert (a later scan removed the overlap) "
                    "needs no call; WITHDRAWN for those only, ANY for both.",
                    default="ACTIVE",
                ),
                *paging,
            ),
            response="AlertPage",
        ),
        area.get(
            "/v1/alerts/stream",
            "streamAlerts",
            "Live exposure alerts (Server-Sent Events)",
            stream_alerts,
            params=(province_param(), risk, *RESUME_PARAMS),
            media_type="text/event-stream",
            description="Each event is `event: alert` with the alert as JSON data and an id "
            "that Last-Event-ID resumes from exactly. Keep-alive comments every 15 s.",
        ),
        area.get(
            "/v1/people/{person_id}/exposures",
            "listExposures",
            "Alerts where a person is the contact",
            list_exposures,
            scopes=auth.MOH_TRACER,
            params=(since_time, *paging),
            response="AlertPage",
            description="tracer:<P> sees people registered in P; unknown people are 404.",
        ),
        area.get(
            "/v1/people/{person_id}/visits",
            "listVisits",
            "A person's visits",
            list_visits,
            scopes=auth.MOH_TRACER,
            params=(
                datetime_param("from", "Visits starting at or after."),
                datetime_param("to", "Visits starting at or before."),
                *paging,
            ),
            response="VisitPage",
        ),
        area.get(
            "/v1/venues/{venue_id}/exposure-windows",
            "getExposureWindows",
            "Exposure windows at a venue",
            get_exposure_windows,
            response="ExposureWindows",
            caching="none",
            audited=False,
        ),
        area.get(
            "/v1/exposure-sites",
            "listExposureSites",
            "Venues with exposure windows, by day",
            list_exposure_sites,
            params=(
                province_param(),
                date_param("since", "First local day (default: 20 days ago)."),
                *paging,
            ),
            response="ExposureSitePage",
            caching="none",
            audited=False,
            errors=REACH_ERRORS,
        ),
        area.get(
            "/v1/clusters",
            "listClusters",
            "Clusters of cases at venues",
            list_clusters,
            params=(province_param(), *paging),
            response="ClusterPage",
            errors=REACH_ERRORS,
        ),
    )
