"""A chain of transmission as events: the same events drive the unit and integration tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.scenarios import T0, Ev, result, sample, stay

#: The venue visit of the chain: 18 days before T0's day, so the 14 days of incubation after
#: it are past and every row is still inside the 21 days of presence retention.
B = T0 - timedelta(days=16)
DAY = timedelta(days=1)


def at(minutes: float, days: float = 0) -> datetime:
    return B + timedelta(days=days, minutes=minutes)


def positive(person: str, when: datetime, tube: str | None = None) -> list[Ev]:
    tube = tube or f"tube-{person}"
    return [sample(tube, [person], when), result(tube, "POSITIVE", when + timedelta(hours=6))]


def chain_at_venue(prefix: str = "") -> list[Ev]:
    """``src`` visits 10:00-11:00 (window to 11:30) and tests positive the next day. At the
    same venue ``p`` stays 40 min (HIGH) and tests positive 4 days later: linked to ``src``.
    ``low`` overlaps 10 min (LOW) and tests positive: not linked. ``late`` stays 40 min
    (HIGH) but tests positive 15 days later: not linked. ``q`` meets ``p`` at another venue 6
    days after the first visit (``p`` infectious) for an hour and tests positive 3 days later:
    ``src`` -> ``p`` -> ``q``, three generations."""
    s, p, low, late, q = (f"{prefix}{n}" for n in ("src", "p", "low", "late", "q"))
    v, w = f"{prefix}venue", f"{prefix}cafe"
    return [
        *stay(s, v, at(0), at(60)),
        *stay(p, v, at(10), at(50)),
        *stay(low, v, at(80), at(100)),
        *stay(late, v, at(5), at(45)),
        *stay(p, w, at(0, 6), at(60, 6)),
        *stay(q, w, at(0, 6), at(60, 6)),
        *positive(s, at(0, 1)),
        *positive(p, at(0, 4)),
        *positive(low, at(0, 3)),
        *positive(late, at(0, 15)),
        *positive(q, at(0, 9)),
    ]
