"""Reads of the vaccination-programme tables (V006) for the read API.

Lists are in clustering order (oldest first) and paged by the last row's clustering key:
:func:`page_after` reads one partition from the cursor's first clustering value on, dropping
rows at or before the cursor, and reads further when too many rows share that value (an
institution's list registered in one request shares one ``registered_at``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from domain import reference
from domain.coverage import AGE_BANDS, CoverageCounts, sum_bands
from domain.programme import PriorityGroup, RegistrationStatus
from projections import queries
from projections.model import TABLES, ProjectionStore, Query, Row

__all__ = [
    "PUBLIC_FIELDS",
    "ProvinceFigures",
    "page_after",
    "plan_progress",
    "public_figures",
    "registration_counts",
    "registrations_page",
    "stock",
    "totals",
    "waiting_list_page",
]

#: A list position: the clustering values of the last row returned.
Position = tuple[Any, ...]


async def page_after(
    store: ProjectionStore,
    query: Query,
    after: Position | None,
    need: int,
    keep: Callable[[Row], bool] = lambda r: True,
) -> list[Row]:
    """Up to ``need`` rows of one partition after ``after`` (clustering order), kept by ``keep``."""
    spec = TABLES[query.table]
    columns = spec.clustering
    if after is not None:
        query = replace(query, clustering_from=after[0])

    def beyond(r: Row) -> bool:
        return after is None or tuple(r[c] for c in columns) > after

    fetch = need + 1
    while True:
        raw = await store.select(replace(query, limit=fetch))
        got = [r for r in raw if beyond(r) and keep(r)]
        if len(got) >= need or len(raw) < fetch:
            return got[:need]
        fetch *= 4  # rows sharing the cursor's first clustering value: read further


# --------------------------------------------------------------------------- registrations


async def registration_counts(store: ProjectionStore, province: str) -> dict[tuple[str, str], int]:
    """People per (priority group, status) in a province (zero counts have no row)."""
    rows = await store.select(Query("registration_counts", {"province": province}))
    return {(r["priority_group"], r["status"]): int(r["people"] or 0) for r in rows}


#: The partitions of ``registrations_by_status`` of a province, in list order.
def _segments(
    group: PriorityGroup | None, status: RegistrationStatus | None
) -> list[tuple[PriorityGroup, RegistrationStatus]]:
    groups = [group] if group else sorted(PriorityGroup, key=lambda g: g.rank)
    statuses = [status] if status else list(RegistrationStatus)
    return [(g, s) for g in groups for s in statuses]


async def registrations_page(
    store: ProjectionStore,
    province: str,
    group: PriorityGroup | None,
    status: RegistrationStatus | None,
    limit: int,
    after: tuple[int, Position] | None = None,
) -> tuple[list[Row], tuple[int, Position] | None]:
    """One page of a province's registrations by (group, status) segment, then registration
    time; and the position of the next page (segment index, clustering key) or None."""
    segments = _segments(group, status)
    start = after[0] if after else 0
    if not 0 <= start < len(segments):
        raise ValueError("the position names no segment of this list")
    found: list[tuple[int, Row]] = []
    for index in range(start, len(segments)):
        g, s = segments[index]
        query = Query(
            "registrations_by_status",
            {"province": province, "priority_group": g.value, "status": s.value},
        )
        cursor = after[1] if after and index == start else None
        rows = await page_after(store, query, cursor, limit + 1 - len(found))
        found.extend((index, r) for r in rows)
        if len(found) > limit:
            break
    if len(found) <= limit:
        return [r for _, r in found], None
    page = found[:limit]
    index, last = page[-1]
    return [r for _, r in page], (index, (last["registered_at"], last["person_id"]))


async def waiting_list_page(
    store: ProjectionStore,
    province: str,
    district: str,
    limit: int,
    after: Position | None = None,
) -> tuple[list[Row], Position | None]:
    """People of a district not yet vaccinated, in serving order (priority, then time)."""
    query = Query("waiting_list_by_district", {"province": province, "district": district})
    rows = await page_after(store, query, after, limit + 1)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], (last["priority_rank"], last["registered_at"], last["person_id"])


# --------------------------------------------------------------------------- stock and plans


async def stock(store: ProjectionStore, provinces: Sequence[str]) -> list[Row]:
    """Stock rows of the provinces (by province, then product)."""
    parts = await asyncio.gather(
        *(store.select(Query("vaccine_stock", {"province": p})) for p in provinces)
    )
    return [r for rows in parts for r in rows]


async def plan_progress(store: ProjectionStore, province: str) -> list[Row]:
    """Progress rows of the plan in force in a province, in priority order."""
    rows = await store.select(Query("plan_progress", {"province": province}))
    return sorted(rows, key=lambda r: PriorityGroup(r["priority_group"]).rank)


async def totals(store: ProjectionStore) -> dict[str, Row]:
    """The public totals row of every province that has one (one partition)."""
    rows = await store.select(Query("vaccination_totals", {"area": "VN"}))
    return {r["province"]: r for r in rows}


# --------------------------------------------------------------------------- public


#: The fields of a province in the public view: aggregates only, nothing about a person.
PUBLIC_FIELDS: tuple[str, ...] = (
    "province",
    "name",
    "allocated",
    "administered",
    "registered",
    "people_vaccinated",
    "people_fully_vaccinated",
)


@dataclass(frozen=True)
class ProvinceFigures:
    """The public transparency figures of one province (DESIGN "Vaccination programme")."""

    province: str
    name: str
    allocated: int
    administered: int
    registered: int
    people_vaccinated: int
    people_fully_vaccinated: int

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PUBLIC_FIELDS}


async def public_figures(store: ProjectionStore, day: date) -> list[ProvinceFigures]:
    """Every province's public figures on ``day``: allocated, administered and registered from
    the programme's totals; people vaccinated and fully vaccinated from coverage (all
    residents with a dose, registered or not, as Our World in Data counts them)."""
    codes = sorted(reference.PROVINCES)
    rows, coverage = await asyncio.gather(
        totals(store),
        asyncio.gather(*(queries.coverage_as_of(store, p, day, AGE_BANDS) for p in codes)),
    )
    out = []
    for code, by_band in zip(codes, coverage, strict=True):
        row = rows.get(code) or {}
        counts: CoverageCounts = sum_bands(by_band)
        out.append(
            ProvinceFigures(
                code,
                reference.PROVINCES[code].name,
                int(row.get("allocated") or 0),
                int(row.get("administered") or 0),
                int(row.get("registered") or 0),
                counts.people_vaccinated,
                counts.people_fully_vaccinated,
            )
        )
    return out
