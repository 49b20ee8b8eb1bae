"""Daily counts per province for the epidemic curve: cases and tests (issue 15).

Two agents fold them where the decision is taken, so a count changes exactly when the thing
it counts does:

- the per-person agent (``streams.people``) counts **cases** (one per person per 90 days,
  ``domain.results.cases``) by the local day of the anchoring sample's collection and of its
  result, in ``case_counts``; a case re-anchored by a late, earlier positive moves from its
  old days to its new ones (a decrement and an increment);
- the per-sample agent (``streams.testing``) counts **tests** (samples resulted, a pool is one
  test) and the positive ones by the local day of the result, in ``test_counts``.

Like the syndromic counts, a count is kept per (province, local day, source partition) and
written as an absolute value to a row of that key: each source partition has one writer, so
rows never race, and readers sum the partitions. The count changes in the same state commit
as the person's or the sample's state (one record batch per partition,
``streams.context``), so a redelivered message, skipped or found to change nothing, never
counts twice. A person's (or sample's) events always reach the same partition, so each
partition's counts are a function of the set of its events: replays in any order converge.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from projections.model import Delete, Upsert
from streams.context import BatchContext, Message
from streams.ids import from_days, to_days, to_ms

__all__ = [
    "CASE_COLUMNS",
    "CASE_COUNTS",
    "COUNT_RETENTION",
    "TEST_COLUMNS",
    "TEST_COUNTS",
    "add_to_day_count",
    "prune_day_count",
]

#: State of the per-person agent: [by sampling date, by result date] per key.
CASE_COUNTS = "case_counts"
CASE_COLUMNS = ("by_sampling_date", "by_result_date")
#: State of the per-sample agent: [tests, positives] per key.
TEST_COUNTS = "test_counts"
TEST_COLUMNS = ("tests", "positives")
#: How long a day's counts (rows and state) live after the end of the day.
COUNT_RETENTION = timedelta(days=90)

_ROWS = {
    CASE_COUNTS: ("cases_by_province", CASE_COLUMNS),
    TEST_COUNTS: ("tests_by_province", TEST_COLUMNS),
}


def _end_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)


def add_to_day_count(
    ctx: BatchContext,
    msg: Message,
    table: str,
    province: str,
    day: date,
    column: int,
    delta: int,
    zone: ZoneInfo,
) -> None:
    """Add ``delta`` to ``column`` of the count of (``province``, ``day``) kept for the
    partition of ``msg`` in state ``table``, and write the row with its absolute values; a
    count back to all zeros (a case moved to other days) deletes its key and row, so the rows
    are the same as if it had never been counted, whatever the order."""
    row_table, columns = _ROWS[table]
    key = f"{province}|{to_days(day)}|{msg.partition}"
    counts = list(ctx.state(table, key) or [0] * len(columns))
    counts[column] += delta
    row_key = {"province": province, "day": day, "source_partition": msg.partition}
    if not any(counts):
        ctx.set_state(table, key, None, msg)
        ctx.write([Delete(row_table, row_key)])
        return
    ctx.set_state(table, key, counts, msg)
    ctx.write(
        [
            Upsert(
                row_table,
                {**row_key, **dict(zip(columns, counts, strict=True))},
                expires_at=_end_of(day, zone) + COUNT_RETENTION,
            )
        ]
    )


def prune_day_count(key: str, value: Any, now_ms: int, zone: ZoneInfo) -> Any:
    """None (delete the key) once its day ended more than ``COUNT_RETENTION`` before
    ``now_ms``: its row has expired by then too. Counts, not personal data."""
    day = from_days(int(key.split("|")[1]))
    return None if to_ms(_end_of(day, zone) + COUNT_RETENTION) <= now_ms else value
