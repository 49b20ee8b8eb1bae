"""Chains of transmission (tracers, provinces, MOH): a province's cases linked through the
venues where an earlier case exposed them, as one graph with generations
(:func:`domain.chains.chain_graph`; the links are folded by ``streams/chains.py``)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import REACH_ERRORS, Area, Ctx, Operation
from api.params import date_param, int_param, province_path, text_param
from api.problems import Problem
from api.render import iso, json_response
from domain.chains import CaseRef, Link, chain_graph
from domain.results import case_id
from projections import queries
from projections.access import LOCAL_TZ
from projections.model import Query

__all__ = ["get_chains", "operations"]

#: How many days of case samples one chains request may span (link rows live 21 days after
#: the exposure, and a case is sampled at most 14 days after it).
CHAIN_DAYS = 35
#: Links one chains request returns at most (the graph is not paginated: generations need the
#: whole of it); more makes the answer ``truncated`` at the latest days.
CHAIN_LINKS = 2000


def _case(ref: CaseRef, generation: int) -> dict[str, Any]:
    return {
        "case_id": case_id(ref.person_id, ref.sample_id),
        "person_id": ref.person_id,
        "sample_id": ref.sample_id,
        "collected_at": iso(ref.collected_at),
        "sample_day": ref.collected_at.astimezone(LOCAL_TZ).date().isoformat(),
        "generation": generation,
    }


async def get_chains(ctx: Ctx) -> Response:
    """Chains of transmission of a province (cases sampled from ``from`` to ``to``)."""
    province = ctx.params["province"]
    if not ctx.must_reach().allows(province):
        raise Problem("insufficient-scope", f"your token does not reach province {province}")
    end: date = ctx.params["to"] or ctx.today
    start: date = ctx.params["from"] or end - timedelta(days=CHAIN_DAYS - 1)
    if start > end:
        raise Problem("invalid-parameter", "from must not be after to", extra={"parameter": "from"})
    if (end - start).days >= CHAIN_DAYS:
        raise Problem(
            "invalid-parameter",
            f"from and to may span {CHAIN_DAYS} days at most",
            extra={"parameter": "from"},
        )
    venue_id: str | None = ctx.params["venue_id"]
    limit: int = ctx.params["limit"]
    store = ctx.services.store
    days = queries.days_between(start, end)
    parts = await asyncio.gather(
        *(
            store.select(
                Query(
                    "transmission_links_by_province",
                    {"province": province, "day": d},
                    limit=None if venue_id else limit + 1,
                )
            )
            for d in days
        )
    )
    found: list[Link] = []
    truncated = False
    for rows in parts:  # oldest day first: generations are known from the roots on
        for r in rows:
            if venue_id is not None and r["venue_id"] != venue_id:
                continue
            if len(found) == limit:
                truncated = True
                break
            found.append(
                Link(
                    r["alert_id"],
                    CaseRef(r["source_collected_at"], r["source_person_id"], r["source_sample_id"]),
                    CaseRef(r["case_collected_at"], r["case_person_id"], r["case_sample_id"]),
                    r["venue_id"],
                    r["province"],
                    r["exposure_at"],
                )
            )
        if truncated:
            break
    graph = chain_graph(found)
    venues = await asyncio.gather(*(queries.venue(store, v) for v in graph.venues))
    per_venue = {v: sum(1 for k in graph.links if k.venue_id == v) for v in graph.venues}
    await ctx.audit(f"chains:{province}", sorted({n.case.person_id for n in graph.nodes}))
    return json_response(
        {
            "province": province,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "venue_id": venue_id,
            "generations": graph.generations,
            "truncated": truncated,
            "cases": [_case(n.case, n.generation) for n in graph.nodes],
            "links": [
                {
                    "alert_id": k.alert_id,
                    "source_case_id": case_id(k.source.person_id, k.source.sample_id),
                    "case_id": case_id(k.case.person_id, k.case.sample_id),
                    "source_person_id": k.source.person_id,
                    "case_person_id": k.case.person_id,
                    "venue_id": k.venue_id,
                    "exposure_at": iso(k.exposure_at),
                }
                for k in graph.links
            ],
            "venues": [
                {
                    "venue_id": v,
                    "name": row["name"] if row is not None else None,
                    "links": per_venue[v],
                }
                for v, row in zip(graph.venues, venues, strict=True)
            ],
        }
    )


def operations() -> tuple[Operation, ...]:
    """The chains' operation."""
    return (
        Area("tracers", auth.MOH_PROVINCE_TRACER).get(
            "/v1/provinces/{province}/chains",
            "getChains",
            "Chains of transmission of a province, as a graph",
            get_chains,
            params=(
                province_path(),
                date_param(
                    "from",
                    f"First local day of the cases' samples (default: {CHAIN_DAYS - 1} days "
                    "before to).",
                ),
                date_param("to", "Last local day of the cases' samples (default: today)."),
                text_param("venue_id", 128, "Only links through this venue (a cluster)."),
                int_param("limit", 1, CHAIN_LINKS, 500, "Links at most."),
            ),
            response="ChainGraph",
            audited=True,
            errors=REACH_ERRORS,
            description="A case sampled within the incubation period (14 days) after a HIGH "
            "exposure to an earlier-sampled case at a venue is linked to it through that "
            "venue; links belong to the venue's province. Generation 0 is a case with no "
            "known source in the graph returned; any other case is one more than its "
            f"lowest-generation source. At most {CHAIN_DAYS} days of samples; `truncated` "
            "when more links than `limit` exist (the latest days are left out).",
        ),
    )
