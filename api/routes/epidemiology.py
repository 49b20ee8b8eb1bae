"""The epidemic for MOH and provinces: cases, positivity, syndromic counts and Rt per day.

Aggregates scoped like coverage (``moh`` any area, ``province:<P>`` its own), each as JSON and
as CSV (the same rows; ``.csv`` routes). Counts are the stream processor's daily rows
(``streams.epidemiology``, summed over source partitions); Rt is computed here, at read
time, from the daily cases by sampling date with Cori's method (``domain.epidemiology``,
rules from ``COVIDTECH_RULES``): a pure function of replayable counts, so rules can change
without a replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import AGGREGATE, Area, Ctx, Handler, Operation, area_name, check_area, day_range
from api.params import area_param, date_param
from api.render import CSV, aggregate_response, csv_bytes
from domain.epidemiology import estimate_rt, positivity
from domain.reference import NATION
from projections import queries
from projections.epidemiology_queries import daily_counts

__all__ = ["operations"]

Rows = list[dict[str, Any]]
Compute = Callable[[Ctx, date, date], Awaitable[Rows]]


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _ratio(a: int, b: int) -> float | None:
    r = positivity(b, a)
    return None if r is None else round(r, 6)


async def _series(ctx: Ctx, table: str, start: date, end: date) -> dict[str, list[tuple[int, ...]]]:
    """Per province with any row in ``[start, end]`` (and the nation for ``VN``): the
    summed columns of every day, zero-filled."""
    area = ctx.params["area"]
    counts = await daily_counts(ctx.services.store, table, queries.provinces_of(area), start, end)
    days = _days(start, end)
    width = len(next(iter(next(iter(counts.values())).values()))) if counts else 0
    zero = (0,) * width
    out = {p: [by_day.get(d, zero) for d in days] for p, by_day in sorted(counts.items())}
    if area == NATION and out:
        out = {
            NATION: [
                tuple(map(sum, zip(*col, strict=True))) for col in zip(*out.values(), strict=True)
            ],
            **out,
        }
    return out


def _daily(table: str, first: str, second: str, share: str | None = None) -> Compute:
    """The rows of ``table``'s two daily counts, named ``first`` and ``second``, and
    ``share``: the second's share of the first (rounded; None where the first is 0)."""

    async def compute(ctx: Ctx, start: date, end: date) -> Rows:
        series = await _series(ctx, table, start, end)
        return [
            {
                "province": p,
                "date": d.isoformat(),
                first: c[0],
                second: c[1],
                **({share: _ratio(c[1], c[0])} if share else {}),
            }
            for p, values in series.items()
            for d, c in zip(_days(start, end), values, strict=True)
        ]

    return compute


async def _rt(ctx: Ctx, start: date, end: date) -> Rows:
    rules = ctx.services.settings.epidemiology_rules()
    # The infectiousness of the first day reported needs the serial interval's support before
    # it, and its window the days before that.
    history = start - timedelta(days=rules.si_max_days + rules.rt_window_days)
    series = await _series(ctx, "cases_by_province", history, end)
    days = _days(history, end)
    skip = (start - history).days
    rows: Rows = []
    for p, values in series.items():
        incidence = [c[0] for c in values]
        for d, cases, est in list(zip(days, incidence, estimate_rt(incidence, rules), strict=True))[
            skip:
        ]:
            rows.append(
                {
                    "province": p,
                    "date": d.isoformat(),
                    "cases": cases,
                    "window_cases": est.cases if est else None,
                    "rt": round(est.mean, 4) if est else None,
                    "rt_lower": round(est.lower, 4) if est else None,
                    "rt_upper": round(est.upper, 4) if est else None,
                }
            )
    return rows


def _method(ctx: Ctx) -> dict[str, Any]:
    r = ctx.services.settings.epidemiology_rules()
    return {
        "method": "Cori et al. 2013, cases by sampling date",
        "si_mean": r.si_mean,
        "si_sd": r.si_sd,
        "window_days": r.rt_window_days,
        "prior_shape": r.rt_prior_shape,
        "prior_scale": r.rt_prior_scale,
        "min_cases": r.rt_min_cases,
        "interval": 0.95,
    }


def _pair(name: str, compute: Compute, fields: list[str]) -> tuple[Handler, Handler]:
    async def data(ctx: Ctx) -> tuple[Any, dict[str, Any]]:
        area = ctx.params["area"]
        check_area(ctx, area)
        start, end = day_range(ctx, 30)

        async def build() -> dict[str, Any]:
            out: dict[str, Any] = {
                "area": area,
                "area_name": area_name(area),
                "from": start.isoformat(),
                "to": end.isoformat(),
                "rows": await compute(ctx, start, end),
            }
            if name == "rt":
                out["method"] = _method(ctx)
            return out

        key = ("epidemiology", name, area, start, end)
        return key, await ctx.services.cache.get(key, build)

    async def as_json(ctx: Ctx) -> Response:
        _, body = await data(ctx)
        return aggregate_response(ctx.request, body, ctx.services.config.cache_max_age)

    async def as_csv(ctx: Ctx) -> Response:
        _, body = await data(ctx)
        table = csv_bytes(fields, body["rows"])
        return aggregate_response(ctx.request, table, ctx.services.config.cache_max_age, CSV)

    return as_json, as_csv


_ROUTES: tuple[tuple[str, str, str, Compute, list[str]], ...] = (
    (
        "cases",
        "Cases",
        "Confirmed cases per province and day, by sampling date and by result date",
        _daily("cases_by_province", "by_sampling_date", "by_result_date"),
        ["province", "date", "by_sampling_date", "by_result_date"],
    ),
    (
        "positivity",
        "Positivity",
        "Tests resulted per province and day, the positive ones and their share",
        _daily("tests_by_province", "tests", "positives", "positivity"),
        ["province", "date", "tests", "positives", "positivity"],
    ),
    (
        "syndromic",
        "Syndromic",
        "Health declarations per province and day, the symptomatic ones and their share",
        _daily("syndromic_by_province", "declarations", "symptomatic", "symptomatic_share"),
        ["province", "date", "declarations", "symptomatic", "symptomatic_share"],
    ),
    (
        "rt",
        "Rt",
        "Reproduction number Rt per province and day (Cori), with its 95% credible interval",
        _rt,
        ["province", "date", "cases", "window_cases", "rt", "rt_lower", "rt_upper"],
    ),
)


def operations() -> tuple[Operation, ...]:
    """JSON and CSV of cases, positivity, syndromic counts and Rt."""
    area = Area(
        "epidemiology",
        auth.MOH_PROVINCE,
        params=(
            area_param(required=True),
            date_param("from", "First local day (default: to - 29 days)."),
            date_param("to", "Last local day (default today)."),
        ),
        **AGGREGATE,
    )
    ops: list[Operation] = []
    for name, op_name, summary, compute, fields in _ROUTES:
        as_json, as_csv = _pair(name, compute, fields)
        path, op_id = f"/v1/epidemiology/{name}", f"getEpidemiology{op_name}"
        ops += [
            area.get(
                path,
                op_id,
                summary,
                as_json,
                description="Rows per province (and VN, the nation's sum, for area=VN) and "
                "day, zero-filled; provinces without any row in the range are left out.",
            ),
            area.get(
                f"{path}.csv",
                f"{op_id}Csv",
                f"{summary} (CSV)",
                as_csv,
                media_type="text/csv",
                description=f"Columns: {', '.join(fields)}; empty cells for no value.",
            ),
        ]
    return tuple(ops)
