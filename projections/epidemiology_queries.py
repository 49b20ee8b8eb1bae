"""Reads of the daily epidemic counts (V003 syndromic, V008 cases and tests) for the read API.

Each table has one row per (province, local day, source partition) with absolute values
(``streams.epidemiology``); a day's figure is the sum of its partitions' rows. One query per
province reads a range of days (the day is the first clustering column).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date

from projections.model import ProjectionStore, Query

__all__ = ["COLUMNS", "DailyCounts", "daily_counts"]

#: The counted columns of each daily table, in the order :func:`daily_counts` gives them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "cases_by_province": ("by_sampling_date", "by_result_date"),
    "tests_by_province": ("tests", "positives"),
    "syndromic_by_province": ("declarations", "symptomatic"),
}

#: Per province, per local day with any row: the summed columns.
DailyCounts = dict[str, dict[date, tuple[int, ...]]]


async def daily_counts(
    store: ProjectionStore, table: str, provinces: Sequence[str], start: date, end: date
) -> DailyCounts:
    """The columns of ``table`` summed over source partitions, per province and day in
    ``[start, end]``; days without rows are absent."""
    columns = COLUMNS[table]
    results = await asyncio.gather(
        *(
            store.select(Query(table, {"province": p}, clustering_from=start, clustering_to=end))
            for p in provinces
        )
    )
    out: DailyCounts = {}
    for province, rows in zip(provinces, results, strict=True):
        days: dict[date, list[int]] = {}
        for row in rows:
            acc = days.setdefault(row["day"], [0] * len(columns))
            for i, c in enumerate(columns):
                acc[i] += row[c] or 0
        if days:
            out[province] = {d: tuple(v) for d, v in sorted(days.items())}
    return out
