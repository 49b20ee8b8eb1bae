"""The instants and visits of the presence and exposure unit tests, in minutes after ``T0``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.presence import Visit

T0 = datetime(2021, 7, 10, 1, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def visit(start_min: float, end_min: float) -> Visit:
    return Visit(at(start_min), at(end_min))
