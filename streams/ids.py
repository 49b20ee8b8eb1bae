"""Deterministic ids and time conversions for derived events and handler state.

Derived events must be byte-identical on a replay, so their ids are digests of their content
and their times come from the input events, never from the wall clock. State is kept as
JSON-friendly values: times as epoch milliseconds (what Avro and Cassandra store).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY0 = date(1970, 1, 1).toordinal()
_MS = timedelta(milliseconds=1)


def derived_id(kind: str, *parts: object) -> str:
    """A stable id for a derived event: ``kind`` + a digest of the parts."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


def to_ms(t: datetime) -> int:
    return (t - EPOCH) // _MS


def duration_ms(d: timedelta) -> int:
    """A duration in whole milliseconds (truncated toward zero)."""
    return int(d / _MS)


def from_ms(ms: int) -> datetime:
    return EPOCH + _MS * ms


def to_days(d: date) -> int:
    return d.toordinal() - _DAY0


def from_days(n: int) -> date:
    return date.fromordinal(n + _DAY0)
