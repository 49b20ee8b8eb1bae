"""Read-side queries of the read API, over the :class:`ProjectionStore` protocol.

Pure async functions taking a store: no HTTP, no driver import, so they run against Cassandra
and the in-memory twin alike. Every read names its partition (no scans, except the small
``grants`` table); a national answer loops over the 63 province partitions concurrently.

Decisions kept here:

- The nation (``"VN"``) is the *sum* of the 63 province rows: the stream writes only province
  rows of ``coverage_daily`` (lead's decision), so national figures cannot disagree with them.
- ``coverage_daily`` has a row only on days with doses, and ``day`` clusters DESC, so the
  cumulative value "as of day d" of one (province, band) is the first row with ``day <= d``
  (``Query(..., clustering_to=d, limit=1)``); a series carries the last value forward.
- Lists that are newest-first walk *segments* (a day's partitions, merged) with a cursor
  ``(segment, time, id)``; a page reads ``limit + 1`` rows so the last page never points to an
  empty one. Clustering is ``(time DESC, id ASC)`` in every such table, so "after the cursor"
  is ``time < t or (time == t and id > i)``; rows filtered out in Python (risk, actor) make
  the reader fetch more from the same partition until it has enough or the partition ends.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from domain import reference
from domain.coverage import AGE_BANDS, NATION, CoverageCounts
from projections.model import ProjectionStore, Query, Row

__all__ = [
    "ALL_PROVINCES",
    "Cursor",
    "DailyDoses",
    "Segment",
    "TurnaroundReport",
    "TurnaroundStats",
    "all_grants",
    "clusters_page",
    "coverage_as_of",
    "coverage_series",
    "days_between",
    "doses_daily",
    "exposure_sites_page",
    "exposure_windows",
    "grant",
    "newest_first",
    "percentile",
    "person",
    "provinces_of",
    "result_by_lookup",
    "sample",
    "turnaround",
    "turnaround_stats",
    "vaccinations",
    "venue",
]

T = TypeVar("T")

ALL_PROVINCES: tuple[str, ...] = tuple(sorted(reference.PROVINCES))


async def _gather(calls: Iterable[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*calls))


async def _one(store: ProjectionStore, table: str, key: Mapping[str, Any]) -> Row | None:
    rows = await store.select(Query(table, key, limit=1))
    return rows[0] if rows else None


# --------------------------------------------------------------------------- single rows


async def result_by_lookup(store: ProjectionStore, code_sha256: str) -> Row | None:
    """The result row of a lookup code's SHA-256 (one partition read)."""
    return await _one(store, "results_by_lookup", {"lookup_code_sha256": code_sha256})


async def sample(store: ProjectionStore, sample_id: str) -> Row | None:
    """A sample as staff see it."""
    return await _one(store, "samples_by_id", {"sample_id": sample_id})


async def person(store: ProjectionStore, person_id: str) -> Row | None:
    """A registered person (province, district, birth year)."""
    return await _one(store, "people", {"person_id": person_id})


async def venue(store: ProjectionStore, venue_id: str) -> Row | None:
    """A venue (name, address, province...)."""
    return await _one(store, "venues", {"venue_id": venue_id})


async def grant(store: ProjectionStore, grant_id: str) -> Row | None:
    """A grant row."""
    return await _one(store, "grants", {"grant_id": grant_id})


async def all_grants(store: ProjectionStore) -> list[Row]:
    """Every grant, newest first (the table is small: one row per grant MOH makes)."""
    rows = await store.scan("grants")
    return sorted(
        rows,
        key=lambda r: (r["granted_at"] is not None, r["granted_at"], r["grant_id"]),
        reverse=True,
    )


async def vaccinations(store: ProjectionStore, person_id: str) -> list[Row]:
    """A person's doses in the order given (oldest first)."""
    return await store.select(Query("doses_by_person", {"person_id": person_id}))


async def exposure_windows(store: ProjectionStore, venue_id: str) -> list[Row]:
    """The exposure windows at a venue, by window start."""
    rows = await store.select(Query("exposure_windows_by_venue", {"venue_id": venue_id}))
    return sorted(rows, key=lambda r: (r["window_start"], r["window_end"], r["case_person_id"]))


# --------------------------------------------------------------------------- coverage


def provinces_of(area: str) -> tuple[str, ...]:
    """The province partitions an area sums: every province for ``"VN"``, else the area."""
    return ALL_PROVINCES if area == NATION else (area,)


def days_between(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end`` inclusive (empty if ``end < start``)."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _counts(row: Row | None) -> CoverageCounts:
    if row is None:
        return CoverageCounts()
    return CoverageCounts(
        people_vaccinated=int(row["people_vaccinated"] or 0),
        people_fully_vaccinated=int(row["people_fully_vaccinated"] or 0),
        total_boosters=int(row["total_boosters"] or 0),
        total_doses=int(row["total_doses"] or 0),
    )


async def coverage_as_of(
    store: ProjectionStore, area: str, day: date, bands: Sequence[str] = AGE_BANDS
) -> dict[str, CoverageCounts]:
    """Cumulative counts of ``area`` on ``day``, by age band (the sum of province rows)."""
    keys = [(p, b) for p in provinces_of(area) for b in bands]
    found = await _gather(
        store.select(
            Query("coverage_daily", {"province": p, "age_band": b}, clustering_to=day, limit=1)
        )
        for p, b in keys
    )
    out = {b: CoverageCounts() for b in bands}
    for (_, band), rows in zip(keys, found, strict=True):
        out[band] = out[band] + _counts(rows[0] if rows else None)
    return out


async def coverage_series(
    store: ProjectionStore,
    area: str,
    start: date,
    end: date,
    bands: Sequence[str] = AGE_BANDS,
) -> dict[date, dict[str, CoverageCounts]]:
    """Cumulative counts of ``area`` on every day of ``[start, end]``, by age band.

    Each (province, band) is read once for the range plus once for the value before it; a day
    without a row carries the previous day's value forward.
    """
    keys = [(p, b) for p in provinces_of(area) for b in bands]

    async def one_series(province: str, band: str) -> tuple[Row | None, list[Row]]:
        partition = {"province": province, "age_band": band}
        before, inside = await asyncio.gather(
            store.select(
                Query(
                    "coverage_daily",
                    partition,
                    clustering_to=start - timedelta(days=1),
                    limit=1,
                )
            ),
            store.select(
                Query("coverage_daily", partition, clustering_from=start, clustering_to=end)
            ),
        )
        return (before[0] if before else None), inside

    found = await _gather(one_series(p, b) for p, b in keys)
    days = days_between(start, end)
    out: dict[date, dict[str, CoverageCounts]] = {
        d: {b: CoverageCounts() for b in bands} for d in days
    }
    for (_, band), (before, inside) in zip(keys, found, strict=True):
        by_day = {r["day"]: r for r in inside}
        running = _counts(before)
        for d in days:
            row = by_day.get(d)
            if row is not None:
                running = _counts(row)
            out[d][band] = out[d][band] + running
    return out


@dataclass(frozen=True)
class DailyDoses:
    """Doses given on one day (not cumulative): first doses, completions, boosters, all."""

    first_doses: int = 0
    completions: int = 0
    boosters: int = 0
    doses: int = 0

    def __add__(self, other: DailyDoses) -> DailyDoses:
        return DailyDoses(
            self.first_doses + other.first_doses,
            self.completions + other.completions,
            self.boosters + other.boosters,
            self.doses + other.doses,
        )


async def doses_daily(
    store: ProjectionStore,
    area: str,
    start: date,
    end: date,
    bands: Sequence[str] = AGE_BANDS,
) -> dict[date, DailyDoses]:
    """Doses given in ``area`` on each day of ``[start, end]`` (zero on days without doses)."""
    keys = [(p, b) for p in provinces_of(area) for b in bands]
    found = await _gather(
        store.select(
            Query(
                "coverage_daily",
                {"province": p, "age_band": b},
                clustering_from=start,
                clustering_to=end,
            )
        )
        for p, b in keys
    )
    out = {d: DailyDoses() for d in days_between(start, end)}
    for rows in found:
        for r in rows:
            if r["day"] in out:
                out[r["day"]] = out[r["day"]] + DailyDoses(
                    int(r["first_doses"] or 0),
                    int(r["completions"] or 0),
                    int(r["boosters"] or 0),
                    int(r["doses"] or 0),
                )
    return out


# --------------------------------------------------------------------------- turnaround


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 < q <= 100) of sorted values by the nearest-rank method.

    Nearest rank returns an observed value (a turnaround some sample really had), never an
    interpolation: rank ``ceil(q / 100 * n)``, 1-based. Raises ValueError on no values.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class TurnaroundStats:
    """Turnaround (collection to result) of a set of samples, in seconds."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None
    max: float | None


def turnaround_stats(seconds: Iterable[float]) -> TurnaroundStats:
    """Count, nearest-rank p50/p90/p99, mean and max of turnaround times."""
    values = sorted(seconds)
    if not values:
        return TurnaroundStats(0, None, None, None, None, None)
    return TurnaroundStats(
        count=len(values),
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=sum(values) / len(values),
        max=values[-1],
    )


@dataclass(frozen=True)
class TurnaroundReport:
    """Turnaround of resulted samples and samples pending too long, per lab and province."""

    overall: TurnaroundStats
    by_lab: dict[str, TurnaroundStats]
    by_province: dict[str, TurnaroundStats]
    pending_late: int
    pending_late_by_province: dict[str, int]
    pending_late_by_site: dict[str, int]
    oldest_pending_collected_at: datetime | None


async def turnaround(
    store: ProjectionStore,
    provinces: Sequence[str],
    start: date,
    end: date,
    pending_collected_before: datetime,
) -> TurnaroundReport:
    """Turnaround of samples resulted on local days ``[start, end]`` in ``provinces``, and the
    samples still pending that were collected before ``pending_collected_before``."""
    days = days_between(start, end)
    parts = [(p, d) for p in provinces for d in days]
    resulted, pending = await asyncio.gather(
        _gather(
            store.select(Query("turnaround_by_province", {"province": p, "day": d}))
            for p, d in parts
        ),
        _gather(
            store.select(
                Query(
                    "pending_samples_by_province",
                    {"province": p},
                    clustering_to=pending_collected_before,
                )
            )
            for p in provinces
        ),
    )
    everything: list[float] = []
    by_lab: dict[str, list[float]] = defaultdict(list)
    by_province: dict[str, list[float]] = defaultdict(list)
    for (province, _), rows in zip(parts, resulted, strict=True):
        for r in rows:
            if r["turnaround_seconds"] is None:
                continue
            t = float(r["turnaround_seconds"])
            everything.append(t)
            by_lab[r["lab_id"] or "unknown"].append(t)
            by_province[province].append(t)
    late_by_province: dict[str, int] = {}
    late_by_site: dict[str, int] = defaultdict(int)
    oldest: datetime | None = None
    for province, rows in zip(provinces, pending, strict=True):
        if rows:
            late_by_province[province] = len(rows)
            first = rows[0]["collected_at"]  # collected_at ASC
            oldest = first if oldest is None or first < oldest else oldest
        for r in rows:
            late_by_site[r["site_id"] or "unknown"] += 1
    return TurnaroundReport(
        overall=turnaround_stats(everything),
        by_lab={k: turnaround_stats(v) for k, v in sorted(by_lab.items())},
        by_province={k: turnaround_stats(v) for k, v in sorted(by_province.items())},
        pending_late=sum(late_by_province.values()),
        pending_late_by_province=dict(sorted(late_by_province.items())),
        pending_late_by_site=dict(sorted(late_by_site.items())),
        oldest_pending_collected_at=oldest,
    )


# --------------------------------------------------------------------------- newest-first lists


@dataclass(frozen=True)
class Cursor:
    """Where a newest-first list stopped: the segment and the last row's (time, id)."""

    segment: str
    at: datetime
    id: str


@dataclass(frozen=True)
class Segment:
    """A slice of a newest-first list (e.g. a local day), read from one or more partitions
    whose rows are merged by (time DESC, id ASC). Bounds set on the queries are kept."""

    key: str
    queries: tuple[Query, ...]


def _after(cursor: Cursor | None, time_col: str, id_col: str) -> Callable[[Row], bool]:
    if cursor is None:
        return lambda r: True
    return lambda r: r[time_col] < cursor.at or (r[time_col] == cursor.at and r[id_col] > cursor.id)


async def _partition_after(
    store: ProjectionStore,
    query: Query,
    cursor: Cursor | None,
    need: int,
    time_col: str,
    id_col: str,
    keep: Callable[[Row], bool],
) -> list[Row]:
    """Up to ``need`` rows of one partition after ``cursor`` that ``keep`` accepts."""
    upper = query.clustering_to
    if cursor is not None and (upper is None or cursor.at < upper):
        upper = cursor.at
    after = _after(cursor, time_col, id_col)
    fetch = need + 1
    while True:
        raw = await store.select(replace(query, clustering_to=upper, limit=fetch))
        got = [r for r in raw if after(r) and keep(r)]
        if len(got) >= need or len(raw) < fetch:
            return got[:need]
        fetch *= 4  # rows at the cursor's time or filtered out: read further


async def newest_first(
    store: ProjectionStore,
    segments: Sequence[Segment],
    *,
    time_col: str,
    id_col: str,
    limit: int,
    after: Cursor | None = None,
    keep: Callable[[Row], bool] = lambda r: True,
) -> tuple[list[Row], Cursor | None]:
    """One page of a list ordered by segment, then (time DESC, id ASC), and the cursor of the
    next page (None on the last page). Raises ValueError if ``after`` names no segment."""
    need = limit + 1
    found: list[tuple[str, Row]] = []
    started = after is None
    for seg in segments:
        cursor: Cursor | None = None
        if not started:
            assert after is not None
            if seg.key != after.segment:
                continue
            started, cursor = True, after
        want = need - len(found)
        parts = await _gather(
            _partition_after(store, q, cursor, want, time_col, id_col, keep) for q in seg.queries
        )
        merged = sorted(
            (r for rows in parts for r in rows), key=lambda r: (-r[time_col].timestamp(), r[id_col])
        )
        found.extend((seg.key, r) for r in merged[:want])
        if len(found) >= need:
            break
    if not started:
        raise ValueError("the cursor names no segment of this list")
    if len(found) <= limit:
        return [r for _, r in found], None
    page = found[:limit]
    key, last = page[-1]
    return [r for _, r in page], Cursor(key, last[time_col], last[id_col])


# --------------------------------------------------------------------------- grouped lists


async def exposure_sites_page(
    store: ProjectionStore,
    provinces: Sequence[str],
    days: Sequence[date],
    *,
    limit: int,
    after: tuple[date, str] | None = None,
) -> tuple[list[dict[str, Any]], tuple[date, str] | None]:
    """Exposure sites: one item per (local day of the window start, province, venue), days in
    the order given (newest first), then by (province, venue). Each item merges the windows
    of every case at that venue that day. The cursor is (day, "province/venue")."""
    items: list[dict[str, Any]] = []
    started = after is None
    for day in days:
        if not started:
            assert after is not None
            if day != after[0]:
                continue
            started = True
            skip_to = after[1]
        else:
            skip_to = ""
        parts = await _gather(
            store.select(Query("exposure_sites_by_province", {"province": p, "day": day}))
            for p in provinces
        )
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for province, rows in zip(provinces, parts, strict=True):
            for r in rows:
                groups[(province, r["venue_id"])].append(r)
        for (province, venue_id), rows in sorted(groups.items()):
            key = f"{province}/{venue_id}"
            if key <= skip_to:
                continue
            items.append(
                {
                    "day": day,
                    "province": province,
                    "venue_id": venue_id,
                    "cases": len({r["case_person_id"] for r in rows}),
                    "windows": _merge_windows(rows),
                    "_key": key,
                }
            )
            if len(items) > limit:
                break
        if len(items) > limit:
            break
    if not started:
        raise ValueError("the cursor names no day of this list")
    if len(items) <= limit:
        return [_strip(i) for i in items], None
    page = items[:limit]
    last = page[-1]
    return [_strip(i) for i in page], (last["day"], last["_key"])


def _strip(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _merge_windows(rows: Iterable[Row]) -> list[tuple[datetime, datetime]]:
    spans = sorted((r["window_start"], r["window_end"]) for r in rows)
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


async def clusters_page(
    store: ProjectionStore,
    provinces: Sequence[str],
    *,
    limit: int,
    after: str | None = None,
) -> tuple[list[Row], str | None]:
    """Clusters of ``provinces``, by (province, venue); the cursor is "province/venue"."""
    parts = await _gather(
        store.select(Query("clusters_by_province", {"province": p})) for p in provinces
    )
    rows = sorted(
        (r for found in parts for r in found), key=lambda r: (r["province"], r["venue_id"])
    )
    if after is not None:
        rows = [r for r in rows if f"{r['province']}/{r['venue_id']}" > after]
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, f"{page[-1]['province']}/{page[-1]['venue_id']}"
