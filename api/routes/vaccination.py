"""Vaccination-programme reads (DESIGN.md "Vaccination programme"); :func:`operations` is
routed and documented by :func:`api.app.create_app` with the read API's own.

- ``GET /v1/vaccination/registrations?province=&group=&status=`` (``moh``/``province:<P>``):
  counts by priority group x status, and the registrations behind them (personal data:
  paginated, audited, never cached).
- ``GET /v1/vaccination/waiting-list?province=&district=`` (same scopes): people not yet
  vaccinated, in serving order (priority group, then registration time); audited.
- ``GET /v1/vaccination/stock[?province=]`` and ``GET /v1/vaccination/plans/{province}/progress``
  (same scopes): aggregates, cached briefly, private to the caller.
- ``GET /v1/public/vaccination`` and ``/v1/public/vaccination.csv`` (no token): per province
  allocated, administered, registered, people vaccinated, fully vaccinated. Aggregates only
  (:data:`projections.programme_queries.PUBLIC_FIELDS`), ``Cache-Control: public``.

Statuses are those of the projection, evaluated as of the province's clock (``as_of``: the
latest supply or dose event of the province; see ``streams/programme.py``). The waiting list
also says, by the wall clock, whether a scheduled appointment's day has already ended
(``appointment_overdue``), so a caller sees a no-show before the province's next event.
Every route goes through :func:`api.edge.dispatch` (auth, 403 before any read, strict
parameters, problems, metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api import auth
from api.edge import (
    AGGREGATE,
    REACH_ERRORS,
    Area,
    Ctx,
    Operation,
    from_ms,
    ms,
    page_int,
    page_params,
    page_str,
)
from api.params import enum_param, province_param, province_path, text_param
from api.problems import Problem
from api.render import (
    CSV,
    conditional_response,
    csv_bytes,
    iso,
    iso_or_none,
    json_bytes,
    json_response,
)
from domain import reference
from domain.programme import (
    DEFAULT_PROGRAMME_RULES,
    PriorityGroup,
    RegistrationStatus,
    no_show_deadline,
)
from projections import programme_queries as pq

__all__ = ["PUBLIC_MAX_AGE", "operations"]

#: How long anyone (browsers, CDNs) may keep the public figures, in seconds.
PUBLIC_MAX_AGE = 300

_GROUPS = [g.value for g in sorted(PriorityGroup, key=lambda g: g.rank)]
_STATUSES = [s.value for s in RegistrationStatus]


# --------------------------------------------------------------------------- helpers


def _province(ctx: Ctx, province: str) -> str:
    ctx.must_reach().provinces_for(province)  # 403 when out of reach
    return province


async def _as_of(ctx: Ctx, province: str) -> str | None:
    row = (await pq.totals(ctx.services.store)).get(province)
    return iso_or_none(row["as_of"]) if row else None


# --------------------------------------------------------------------------- registrations


#: The fields of a registration, in the order answered.
_REGISTRATION = (
    "person_id registration_id priority_group status district registered_at institution_id "
    "appointment_at appointment_site_id doses first_dose_date completed_date"
)
#: The fields of a place on the waiting list, in the order answered.
_WAITING = (
    "person_id registration_id priority_group registered_at status appointment_at "
    "appointment_site_id appointment_overdue institution_id"
)
#: Fields answered as RFC 3339 (times) or ISO dates.
_TIMES = {"registered_at", "appointment_at", "first_dose_date", "completed_date"}


def _fields(r: Mapping[str, Any], names: str) -> dict[str, Any]:
    """The fields ``names`` (space-separated) of a row of registrations (or of the waiting
    list), times rendered."""
    return {n: iso_or_none(r[n]) if n in _TIMES else r[n] for n in names.split()}


async def list_registrations(ctx: Ctx) -> Response:
    province = _province(ctx, ctx.params["province"])
    group_raw, status_raw = ctx.params["group"], ctx.params["status"]
    group = PriorityGroup(group_raw) if group_raw else None
    status = RegistrationStatus(status_raw) if status_raw else None
    binding = {"province": province, "group": group_raw, "status": status_raw}
    position = ctx.open_page(binding)
    after = None
    if position is not None:
        after = (
            page_int(position.get("seg")),
            (from_ms(position.get("at")), page_str(position.get("id"))),
        )
    store = ctx.services.store
    counts = await pq.registration_counts(store, province)
    try:
        rows, following = await pq.registrations_page(
            store, province, group, status, ctx.page_limit(), after
        )
    except ValueError as e:
        raise Problem("invalid-page-token", str(e)) from e
    await ctx.audit(f"registrations:{province}", (r["person_id"] for r in rows))
    token = None
    if following is not None:
        seg, (at, ident) = following
        token = ctx.mint_page(binding, {"seg": seg, "at": ms(at), "id": ident})
    return json_response(
        {
            "province": province,
            "as_of": await _as_of(ctx, province),
            "counts": [
                {"priority_group": g, "status": s, "people": n}
                for (g, s), n in sorted(
                    counts.items(),
                    key=lambda kv: (_GROUPS.index(kv[0][0]), _STATUSES.index(kv[0][1])),
                )
            ],
            "items": [_fields(r, _REGISTRATION) for r in rows],
            "next_page_token": token,
        }
    )


async def waiting_list(ctx: Ctx) -> Response:
    province = _province(ctx, ctx.params["province"])
    district = ctx.params["district"]
    binding = {"province": province, "district": district}
    position = ctx.open_page(binding)
    after = None
    if position is not None:
        after = (
            page_int(position.get("rank")),
            from_ms(position.get("at")),
            page_str(position.get("id")),
        )
    rows, following = await pq.waiting_list_page(
        ctx.services.store, province, district, ctx.page_limit(), after
    )
    await ctx.audit(f"waiting-list:{province}:{district}", (r["person_id"] for r in rows))
    now = ctx.now
    items = []
    for r in rows:
        overdue = (
            r["status"] == RegistrationStatus.SCHEDULED
            and r["appointment_at"] is not None
            and now >= no_show_deadline(r["appointment_at"], DEFAULT_PROGRAMME_RULES)
        )
        items.append(_fields({**r, "appointment_overdue": overdue}, _WAITING))
    token = None
    if following is not None:
        rank, at, ident = following
        token = ctx.mint_page(binding, {"rank": rank, "at": ms(at), "id": ident})
    return json_response(
        {
            "province": province,
            "district": district,
            "as_of": await _as_of(ctx, province),
            "items": items,
            "next_page_token": token,
        }
    )


# --------------------------------------------------------------------------- aggregates


def _stock(r: Mapping[str, Any]) -> dict[str, Any]:
    left = r["days_of_stock_left"]
    return {
        "province": r["province"],
        "vaccine": r["vaccine"],
        "allocated": r["allocated"],
        "administered": r["administered"],
        "discarded": r["discarded"],
        "in_stock": r["in_stock"],
        "rate_days": r["rate_days"],
        "administered_in_window": r["administered_in_window"],
        "daily_rate": round(float(r["daily_rate"] or 0), 4),
        "days_of_stock_left": None if left is None else round(float(left), 1),
        "as_of": iso_or_none(r["as_of"]),
    }


async def get_stock(ctx: Ctx) -> Response:
    provinces = ctx.must_reach().provinces_for(ctx.params["province"])
    services = ctx.services

    async def compute() -> dict[str, Any]:
        rows = await pq.stock(services.store, provinces)
        items = [_stock(r) for r in rows]
        keys = ("allocated", "administered", "discarded", "in_stock")
        return {
            "provinces": list(provinces) if len(provinces) < len(reference.PROVINCES) else "all",
            "items": items,
            "total": {k: sum(int(i[k] or 0) for i in items) for k in keys},
        }

    return await ctx.aggregate(("programme-stock", provinces), compute)


def _progress(r: Mapping[str, Any]) -> dict[str, Any]:
    def measure(target: str, achieved: str, rate: str, projected: str) -> dict[str, Any]:
        date_: date | None = r[projected]
        return {
            "target": r[target],
            "achieved": r[achieved],
            "reached": r[achieved] >= r[target],
            "daily_rate": round(float(r[rate] or 0), 4),
            "completion_date": iso_or_none(date_),
            "on_track": date_ is not None and date_ <= r["target_date"],
        }

    return {
        "priority_group": r["priority_group"],
        "people_vaccinated": measure(
            "target_people_vaccinated",
            "people_vaccinated",
            "vaccinated_daily_rate",
            "projected_vaccinated_date",
        ),
        "people_fully_vaccinated": measure(
            "target_people_fully_vaccinated",
            "people_fully_vaccinated",
            "fully_vaccinated_daily_rate",
            "projected_fully_vaccinated_date",
        ),
    }


async def get_plan_progress(ctx: Ctx) -> Response:
    province = _province(ctx, ctx.params["province"])
    services = ctx.services

    async def compute() -> dict[str, Any]:
        rows = await pq.plan_progress(services.store, province)
        if not rows:
            return {"province": province, "plan": None, "groups": []}
        first = rows[0]
        return {
            "province": province,
            "plan": {
                "plan_id": first["plan_id"],
                "target_date": iso(first["target_date"]),
                "set_at": iso(first["set_at"]),
            },
            "as_of": iso_or_none(first["as_of"]),
            "rate_days": DEFAULT_PROGRAMME_RULES.plan_rate_days,
            "groups": [_progress(r) for r in rows],
        }

    return await ctx.aggregate(("programme-plan", province), compute)


# --------------------------------------------------------------------------- public


async def _public(ctx: Ctx) -> dict[str, Any]:
    day = ctx.today
    services = ctx.services

    async def compute() -> dict[str, Any]:
        figures = await pq.public_figures(services.store, day)
        nation = {f: sum(getattr(p, f) for p in figures) for f in pq.PUBLIC_FIELDS[2:]}
        return {
            "date": day.isoformat(),
            "nation": nation,
            "provinces": [p.as_dict() for p in figures],
        }

    return await services.cache.get(("programme-public", day), compute)


def _public_response(request: Request, body: bytes, media_type: str) -> Response:
    return conditional_response(request, body, media_type, f"public, max-age={PUBLIC_MAX_AGE}")


async def public_json(ctx: Ctx) -> Response:
    data = await _public(ctx)
    return _public_response(ctx.request, json_bytes(data), "application/json")


async def public_csv(ctx: Ctx) -> Response:
    data = await _public(ctx)
    rows = ({"date": data["date"], **row} for row in data["provinces"])
    return _public_response(ctx.request, csv_bytes(["date", *pq.PUBLIC_FIELDS], rows), CSV)


# --------------------------------------------------------------------------- routes


def operations(max_page_size: int = 500) -> tuple[Operation, ...]:
    """The programme's read operations (scopes, parameters, handlers)."""
    paging = page_params(None, max_page_size)
    area = Area("vaccination", auth.MOH_PROVINCE)
    public = Area("public", None, caching="aggregate", errors=(304, 503))
    province = province_param(required=True)
    return (
        area.get(
            "/v1/vaccination/registrations",
            "listVaccinationRegistrations",
            "Registrations of a province by priority group and status",
            list_registrations,
            params=(
                province,
                enum_param("group", _GROUPS, "Only this priority group."),
                enum_param("status", _STATUSES, "Only this status."),
                *paging,
            ),
            description="Counts by group x status and the registrations behind them. Audited.",
            audited=True,
            errors=REACH_ERRORS,
        ),
        area.get(
            "/v1/vaccination/waiting-list",
            "getVaccinationWaitingList",
            "People of a district not yet vaccinated, in serving order",
            waiting_list,
            params=(province, text_param("district", 64, "District code.", required=True), *paging),
            description="Priority group first, then registration time. Audited.",
            audited=True,
            errors=REACH_ERRORS,
        ),
        area.get(
            "/v1/vaccination/stock",
            "getVaccineStock",
            "Stock per province and product, with days left at the last 7 days' rate",
            get_stock,
            params=(province_param(description="One province (default: every one in reach)."),),
            **AGGREGATE,
        ),
        area.get(
            "/v1/vaccination/plans/{province}/progress",
            "getVaccinationPlanProgress",
            "Plan progress per priority group and projected completion",
            get_plan_progress,
            params=(province_path(),),
            **AGGREGATE,
        ),
        public.get(
            "/v1/public/vaccination",
            "getPublicVaccination",
            "Public figures per province (no token; aggregates only)",
            public_json,
        ),
        public.get(
            "/v1/public/vaccination.csv",
            "getPublicVaccinationCsv",
            "Public figures per province as CSV",
            public_csv,
            media_type="text/csv",
        ),
    )
