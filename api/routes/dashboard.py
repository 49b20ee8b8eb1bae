"""The MOH dashboard: a static page at ``/`` and the two aggregates it needs that the read API
lacks (docs/dashboard.md).

- ``GET /`` and ``GET /dashboard/{asset}``: the page, its script and its style sheet, bundled in
  ``api/static`` (no CDN, no build step). They hold no data, so they need no token; the page
  reads the MOH token from the URL fragment (``#token=``, never sent to a server), keeps it in
  the tab's ``sessionStorage`` and sends it as ``Authorization: Bearer`` on every data call,
  the live alert stream included (``fetch`` with a stream reader, not ``EventSource``, which
  cannot send a header): no token ever appears in a URL the server sees or logs.
- ``GET /v1/dashboard/coverage-by-province``: coverage per hundred of all 63 provinces on a day
  in one answer (63 x 5 partitions, cached like the other aggregates).
- ``GET /v1/ops/rates``: events/s appended to the source topics (their end offsets) and
  processed by the stream worker (its group's committed offsets), sampled over time
  (:mod:`api.rates`).

Both data routes are ``moh`` only and go through :func:`api.edge.dispatch` like every other
route (authentication, 403 before any read, strict parameters, problems, metrics), and are in
the OpenAPI document like them; the page and its assets are not API operations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import auth
from api.edge import AGGREGATE, Area, Ctx, Operation
from api.params import date_param, enum_param
from api.problems import Problem
from api.rates import KafkaOffsets, OffsetReader, RateSampler
from api.render import conditional_response, json_response
from api.routes.coverage import figures
from covidtech.topics import SOURCE_TOPICS
from domain import reference
from domain.coverage import ADULT_BANDS, AGE_BANDS, CoverageCounts, scaled_population, sum_bands
from projections import queries
from streams.handlers import all_handlers

__all__ = ["PAGE_PATHS", "operations", "page_routes"]

#: Files of ``api/static`` the page may load, with their media types (nothing else is served).
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

#: The page loads only its own files and talks only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Figures of the bar chart, per hundred of the band's population.
_BANDS = {"all": AGE_BANDS, "18+": ADULT_BANDS}


# ------------------------------------------------------------------------------ static page


def _asset_bytes(name: str) -> bytes:
    return resources.files("api").joinpath("static", name).read_bytes()


def _static_response(request: Request, name: str) -> Response:
    """A bundled file with an ETag; ``no-cache`` so a new release is picked up at once."""
    return conditional_response(
        request,
        _asset_bytes(name),
        ASSETS[name],
        "no-cache",
        {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


async def page(request: Request) -> Response:
    return _static_response(request, "index.html")


async def asset(request: Request) -> Response:
    name = request.path_params["asset"]
    if name not in ASSETS or name == "index.html":
        raise Problem("not-found", "no such dashboard file")
    return _static_response(request, name)


# ------------------------------------------------------------------------------ coverage


#: Figures of :func:`api.routes.coverage.figures` the page does not show.
_NOT_SHOWN = frozenset({"total_boosters_per_hundred", "drop_out"})


def _figures(counts: CoverageCounts, population: int) -> dict[str, Any]:
    # six decimals: a small simulated outbreak is a few thousandths of a percent
    shown = figures(counts, population, places=6).items()
    return {name: value for name, value in shown if name not in _NOT_SHOWN}


def _population(area: str, bands: Sequence[str], scale: float) -> int:
    return scaled_population(sum(reference.population(area, b) for b in bands), scale)


async def coverage_by_province(ctx: Ctx) -> Response:
    """Per-hundred coverage of every province on a day, and of the nation (their sum)."""
    band = ctx.params["age_band"]
    bands = _BANDS[band]
    day = ctx.params["date"] or ctx.today
    services = ctx.services
    scale = services.settings.population_scale
    codes = sorted(reference.PROVINCES)

    async def compute() -> dict[str, Any]:
        by_province = await asyncio.gather(
            *(queries.coverage_as_of(services.store, p, day, bands) for p in codes)
        )
        nation = CoverageCounts()
        provinces = []
        for code, by_band in zip(codes, by_province, strict=True):
            counts = sum_bands(by_band, bands)
            nation = nation + counts
            province = reference.PROVINCES[code]
            provinces.append(
                {
                    "province": code,
                    "name": province.name,
                    "region": province.region,
                    **_figures(counts, _population(code, bands, scale)),
                }
            )
        return {
            "date": day.isoformat(),
            "age_band": band,
            "nation": _figures(nation, _population(reference.NATION, bands, scale)),
            "provinces": provinces,
        }

    return await ctx.aggregate(("dashboard-coverage", day, band), compute)


# ------------------------------------------------------------------------------ rates


class _Rates:
    """The sampler of one app, built on first use from the app's settings."""

    def __init__(self, reader: OffsetReader | None) -> None:
        self._reader = reader
        self._sampler: RateSampler | None = None

    def sampler(self, ctx: Ctx) -> RateSampler:
        if self._sampler is None:
            reader = self._reader
            if reader is None:
                s = ctx.services.settings
                read = {t for h in all_handlers() for t in h.topics}
                sources = {t.name for t in SOURCE_TOPICS}
                reader = KafkaOffsets(
                    s,
                    [s.topic(t.name) for t in SOURCE_TOPICS],
                    s.app_id,
                    derived=[s.topic(t) for t in sorted(read - sources)],
                )
            self._sampler = RateSampler(reader)
        return self._sampler


# ------------------------------------------------------------------------------ routes


def _operations(rates: _Rates) -> tuple[Operation, ...]:
    async def ops_rates(ctx: Ctx) -> Response:
        sampler = rates.sampler(ctx)
        report = sampler.report(await sampler.samples())
        s = ctx.services.settings
        report["group"] = s.app_id
        sources = {s.topic(t.name) for t in SOURCE_TOPICS}
        for row in report["topics"]:
            full = row["topic"]
            row["kind"] = "source" if full in sources else "derived"
            for prefix in (s.derived_topic_prefix, s.topic_prefix):
                if prefix and full.startswith(prefix):
                    row["topic"] = full[len(prefix) :]
                    break
        return json_response(report, cache_control="no-store")

    area = Area("dashboard", auth.MOH)
    return (
        area.get(
            "/v1/dashboard/coverage-by-province",
            "getCoverageByProvince",
            "Coverage per hundred of every province on a day",
            coverage_by_province,
            params=(
                date_param("date", "As of this local day (default today)."),
                enum_param(
                    "age_band", ["all", "18+"], "Whole population or adults.", default="all"
                ),
            ),
            **AGGREGATE,
        ),
        area.get(
            "/v1/ops/rates",
            "getOpsRates",
            "Ingest and processing rates of the source topics",
            ops_rates,
            caching="none",
            errors=(401, 403, 503),
        ),
    )


def operations(offsets: OffsetReader | None = None) -> tuple[Operation, ...]:
    """The dashboard's JSON operations (in the read API's OpenAPI document and routes;
    ``offsets``: tests pass a fake)."""
    return _operations(_Rates(offsets))


#: The page and its static assets: HTML, scripts and styles, not API operations (so not in
#: the OpenAPI document).
PAGE_PATHS = ("/", "/dashboard/{asset}")


def page_routes() -> list[Route]:
    """The dashboard page and its assets."""
    return [
        Route(PAGE_PATHS[0], page, methods=["GET"]),
        Route(PAGE_PATHS[1], asset, methods=["GET"]),
    ]
