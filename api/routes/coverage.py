"""Vaccination coverage of an area (on a day, day by day, doses per day) and a person's record.

Aggregates are cached briefly and answered with an ETag (:meth:`api.edge.Ctx.aggregate`); a
person's record is personal data, audited and never cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import (
    AGGREGATE,
    Area,
    Ctx,
    Operation,
    area_name,
    check_area,
    day_range,
    read_in_reach,
)
from api.params import area_param, date_param, enum_param
from api.problems import Problem
from api.render import iso, iso_or_none, json_response
from domain import reference
from domain.coverage import (
    ADULT_BANDS,
    AGE_BANDS,
    CoverageCounts,
    Dose,
    InvalidDose,
    adult_population,
    metrics,
    person_status,
    scaled_population,
    sum_bands,
)
from domain.vaccines import VACCINES, UnknownVaccine
from projections import queries

__all__ = [
    "dose",
    "figures",
    "get_coverage",
    "get_coverage_series",
    "get_doses_daily",
    "get_vaccinations",
    "operations",
]


def figures(counts: CoverageCounts, population: int, places: int = 4) -> dict[str, Any]:
    """The coverage figures of ``counts`` in ``population``: counts, per hundred (rounded to
    ``places`` decimals) and the drop-out rate (to 6)."""
    m = metrics(counts, population)
    return {
        "population": m.population,
        "people_vaccinated": m.people_vaccinated,
        "people_fully_vaccinated": m.people_fully_vaccinated,
        "total_boosters": m.total_boosters,
        "total_doses": m.total_doses,
        "people_vaccinated_per_hundred": round(m.people_vaccinated_per_hundred, places),
        "people_fully_vaccinated_per_hundred": round(m.people_fully_vaccinated_per_hundred, places),
        "total_boosters_per_hundred": round(m.total_boosters_per_hundred, places),
        "total_doses_per_hundred": round(m.total_doses_per_hundred, places),
        "drop_out": None if m.drop_out is None else round(m.drop_out, 6),
    }


def _band_figures(
    area: str, band: str, by_band: Mapping[str, CoverageCounts], scale: float
) -> dict[str, Any]:
    """Figures of ``band`` in ``area``; denominators times ``scale`` (``population_scale``)."""
    if band == "all":
        counts, population = sum_bands(by_band), reference.population(area)
    elif band == "18+":
        counts, population = sum_bands(by_band, ADULT_BANDS), adult_population(area)
    else:
        counts, population = by_band.get(band, CoverageCounts()), reference.population(area, band)
    return figures(counts, scaled_population(population, scale))


def _bands_for(band: str) -> tuple[str, ...]:
    return AGE_BANDS if band in ("all", "18+") else (band,)


def _about(area: str, band: str, start: date, end: date) -> dict[str, Any]:
    """What a series of days is about: the area, its name, the age band and the days."""
    return {
        "area": area,
        "area_name": area_name(area),
        "age_band": band,
        "from": start.isoformat(),
        "to": end.isoformat(),
    }


async def get_coverage(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    check_area(ctx, area)
    day = ctx.params["date"] or ctx.today
    services = ctx.services
    scale = services.settings.population_scale

    async def compute() -> dict[str, Any]:
        by_band = await queries.coverage_as_of(services.store, area, day, _bands_for(band))
        out = {
            "area": area,
            "area_name": area_name(area),
            "date": day.isoformat(),
            "age_band": band,
            **_band_figures(area, band, by_band, scale),
        }
        if band == "all":
            out["by_age_band"] = [
                {"age_band": b, **_band_figures(area, b, by_band, scale)} for b in AGE_BANDS
            ]
        return out

    return await ctx.aggregate(("coverage", area, day, band), compute)


async def get_coverage_series(ctx: Ctx) -> Response:
    area, band = ctx.params["area"], ctx.params["age_band"]
    check_area(ctx, area)
    start, end = day_range(ctx, 30)
    services = ctx.services
    scale = services.settings.population_scale

    async def compute() -> dict[str, Any]:
        series = await queries.coverage_series(services.store, area, start, end, _bands_for(band))
        return {
            **_about(area, band, start, end),
            "points": [
                {"date": d.isoformat(), **_band_figures(area, band, by_band, scale)}
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
    start, end = day_range(ctx, 30)
    services = ctx.services

    async def compute() -> dict[str, Any]:
        days = await queries.doses_daily(services.store, area, start, end, _bands_for(band))
        total = queries.DailyDoses()
        rows = []
        for d, n in sorted(days.items()):
            total = total + n
            rows.append({"date": d.isoformat(), **n.__dict__})
        return {
            **_about(area, band, start, end),
            "days": rows,
            "total": total.__dict__,
        }

    return await ctx.aggregate(("doses", area, start, end, band), compute)


def dose(r: Mapping[str, Any]) -> dict[str, Any]:
    """A dose of a person's record (a row of ``doses_by_person``), with its vaccine's name."""
    vaccine = VACCINES.get(r["vaccine"])
    return {
        "dose_id": r["dose_id"],
        "administered_at": iso(r["administered_at"]),
        "vaccine": r["vaccine"],
        "vaccine_name": vaccine.name if vaccine is not None else None,
        "site_id": r["site_id"],
    }


async def get_vaccinations(ctx: Ctx) -> Response:
    person_id = ctx.params["person_id"]
    store = ctx.services.store
    reads = queries.person(store, person_id), queries.vaccinations(store, person_id)
    _, doses, province = await read_in_reach(ctx, "person", "residence_province", *reads)
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
            "doses": [{**dose(r), "residence_province": r["residence_province"]} for r in doses],
            "status": status,
        }
    )


def operations() -> tuple[Operation, ...]:
    """Coverage, its series, daily doses and a person's vaccinations."""
    area = Area("vaccination", auth.MOH_PROVINCE)
    band = enum_param(
        "age_band",
        ["all", "18+", *AGE_BANDS],
        "Age band (age at the first dose), 18+ (adults), or all.",
        default="all",
    )
    days = (
        area_param(required=True),
        date_param("from", "First day (default: to - 29 days)."),
        date_param("to", "Last day (default today)."),
        band,
    )
    return (
        area.get(
            "/v1/coverage",
            "getCoverage",
            "Vaccination coverage of an area on a day",
            get_coverage,
            params=(
                area_param(required=True),
                date_param("date", "As of this local day (default today)."),
                band,
            ),
            response="Coverage",
            **AGGREGATE,
        ),
        area.get(
            "/v1/coverage/series",
            "getCoverageSeries",
            "Coverage of an area, day by day",
            get_coverage_series,
            params=days,
            response="CoverageSeries",
            **AGGREGATE,
        ),
        area.get(
            "/v1/doses/daily",
            "getDosesDaily",
            "Doses given per day in an area",
            get_doses_daily,
            params=(
                *days,
                enum_param(
                    "vaccine",
                    sorted(VACCINES),
                    "Not available yet: per-product daily counts are not projected, so "
                    "this filter answers 400 filter-not-supported.",
                ),
            ),
            response="DosesDaily",
            **AGGREGATE,
        ),
        area.get(
            "/v1/people/{person_id}/vaccinations",
            "getVaccinations",
            "A person's vaccination record",
            get_vaccinations,
            response="VaccinationRecord",
            audited=True,
            description="province:<P> sees people registered (else vaccinated as residents) in "
            "P. Audited.",
        ),
    )
