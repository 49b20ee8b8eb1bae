"""Presence: turning one person's QR scans at one venue into visits (DESIGN.md "Presence").

Pure functions over frozen values; no I/O. The per-person stream agent keeps a person's scans
of the last 21 days, calls :func:`pair_visits` with all their scans at the venue of a new scan,
and :func:`diff_visits` against the visits it emitted before, then emits only the difference.

Ordering guarantee: :func:`pair_visits` is a function of the *set* of scans (DESIGN "Order
independence"). Scans are deduplicated by ``scan_id`` and sorted by ``(scanned_at, scan_id)``
before pairing, so a redelivered, late or shuffled scan gives the same visits as the in-order
stream. The pairing therefore must be re-run over all the scans whenever one arrives; it is never
applied incrementally to the previous visits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.rules import DEFAULT_RULES, PresenceRules

__all__ = [
    "Direction",
    "Scan",
    "ScanInFuture",
    "ScanTimeError",
    "ScanTooLate",
    "Span",
    "Visit",
    "VisitDiff",
    "check_scan_time",
    "diff_visits",
    "pair_visits",
    "require_aware",
]

_ZERO = timedelta(0)


def require_aware(name: str, value: datetime) -> None:
    """Raise ``ValueError`` unless ``value`` is timezone-aware.

    DESIGN: all stored times are UTC. A naive datetime has no instant, so comparing or
    subtracting it would either raise deep inside a rule or silently assume a zone; we refuse it
    at the edge of the domain instead.
    """
    if value.tzinfo is UTC:
        return  # the common case, without calling utcoffset()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got {value!r}")


class Direction(StrEnum):
    """Which way a scan was made at the venue's door (the Avro enum of CheckInScanned)."""

    IN = "IN"
    OUT = "OUT"


@dataclass(frozen=True, slots=True)
class Scan:
    """One check-in scan of one person at one venue; ``scan_id`` is its idempotency key."""

    scan_id: str
    scanned_at: datetime
    direction: Direction

    def __post_init__(self) -> None:
        require_aware("scanned_at", self.scanned_at)


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """``[start, end]`` in UTC, ``end`` not before ``start``: what a visit and an interval
    (``domain.exposure``) share."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        require_aware("start", self.start)
        require_aware("end", self.end)
        if self.end < self.start:
            what = type(self).__name__.lower()
            raise ValueError(f"{what} ends ({self.end}) before it starts ({self.start})")

    @property
    def length(self) -> timedelta:
        """How long the span lasts."""
        return self.end - self.start


@dataclass(frozen=True, slots=True, order=True)
class Visit(Span):
    """A person's presence at a venue over ``[start, end]`` (both inclusive, UTC).

    A visit's identity, per person and venue, is its ``start``: re-pairing may move its end but
    a different start is a different visit. ``end == start`` is a zero-length visit (a bare OUT
    scan, or an IN and an OUT at the same instant): a point of presence, not a stay.
    """


@dataclass(frozen=True, slots=True)
class VisitDiff:
    """What changed between two pairings of the same person's scans at the same venue."""

    upserted: tuple[Visit, ...]
    """Visits that are new, or whose end moved (same start), sorted."""
    removed: tuple[Visit, ...]
    """Old visits whose start no longer exists, sorted."""

    @property
    def is_empty(self) -> bool:
        """True when nothing needs to be emitted."""
        return not self.upserted and not self.removed


class ScanTimeError(ValueError):
    """A scan's time is outside what ingestion accepts (DESIGN "Presence")."""

    def __init__(self, message: str, scanned_at: datetime, received_at: datetime) -> None:
        super().__init__(message)
        self.scanned_at = scanned_at
        self.received_at = received_at


class ScanTooLate(ScanTimeError):
    """The scan was received more than the lateness bound (72 h) after it was made."""


class ScanInFuture(ScanTimeError):
    """The scan claims a time more than the tolerance (5 min) ahead of the receiving clock."""


def check_scan_time(
    scanned_at: datetime, received_at: datetime, rules: PresenceRules = DEFAULT_RULES
) -> None:
    """Reject a scan whose time ingestion must not accept.

    DESIGN "Presence": scans may arrive late (offline devices) up to 72 h after ``scanned_at``;
    older ones, and ones more than 5 min in the future, are rejected at ingestion with a clear
    error. Both bounds are inclusive: exactly 72 h late or exactly 5 min ahead is accepted.
    Bounding lateness is what lets the pairing forget scans after the retention period and
    still be order independent for everything it accepts.

    Raises ``ScanInFuture`` or ``ScanTooLate`` (both ``ScanTimeError``, a ``ValueError``), and
    ``ValueError`` for a naive datetime.
    """
    require_aware("scanned_at", scanned_at)
    require_aware("received_at", received_at)
    ahead = scanned_at - received_at
    if ahead > rules.future_tolerance:
        raise ScanInFuture(
            f"scan time {scanned_at.isoformat()} is {ahead} ahead of the server clock "
            f"({received_at.isoformat()}); at most {rules.future_tolerance} is tolerated "
            "- check the device clock",
            scanned_at,
            received_at,
        )
    late = received_at - scanned_at
    if late > rules.lateness:
        raise ScanTooLate(
            f"scan time {scanned_at.isoformat()} is {late} before it was received "
            f"({received_at.isoformat()}); scans are accepted up to {rules.lateness} late",
            scanned_at,
            received_at,
        )


def _canonical_scans(scans: Iterable[Scan]) -> list[Scan]:
    """Scans deduplicated by id and sorted by ``(scanned_at, scan_id)``.

    Two scans with the same id but different contents should not exist (the id is the event's
    idempotency key). If they do, keeping the first one seen would depend on arrival order, so we
    keep the smallest by ``(scanned_at, direction)`` instead: deterministic for the set.
    """
    by_id: dict[str, Scan] = {}
    for scan in scans:
        kept = by_id.get(scan.scan_id)
        if kept is None or (scan.scanned_at, scan.direction.value) < (
            kept.scanned_at,
            kept.direction.value,
        ):
            by_id[scan.scan_id] = scan
    return sorted(by_id.values(), key=lambda s: (s.scanned_at, s.scan_id))


def pair_visits(
    scans: Iterable[Scan], dwell: timedelta, rules: PresenceRules = DEFAULT_RULES
) -> tuple[Visit, ...]:
    """Pair one person's scans at one venue into visits, exactly as DESIGN "Presence" says.

    In ``(scanned_at, scan_id)`` order, with ``s`` the start of the open visit:

    - IN at ``t``: if ``t - s < dwell`` it is a double scan and changes nothing; otherwise the
      open visit (if any) ends at ``s + dwell`` and a new one opens at ``t``.
    - OUT at ``t``: if ``t - s <= 12 h`` the visit is ``[s, t]``; if the open visit is older, it
      ends at ``s + dwell`` and the OUT becomes ``[t, t]``; with no open visit, ``[t, t]``.
    - A visit still open after the last scan ends at ``s + dwell``.

    ``dwell`` is the venue's dwell, clamped to ``rules.max_dwell`` (``ValueError`` if not
    positive). Duplicate scan ids count once (at-least-once delivery).

    The result is a function of the set of scans (DESIGN "Order independence"). It is sorted,
    and visits never share an interior: each ends at or before the next one starts (they may
    touch). Starts are unique, because a start identifies a visit: the algorithm can produce a
    zero-length visit and another visit at the same instant (an OUT and then an IN at ``t``,
    or two OUTs at ``t``); the zero-length one is contained in the other and is dropped, which
    loses no presence. Every scan's time lies within some visit.
    """
    dwell = rules.effective_dwell(dwell)
    visits: list[Visit] = []
    open_start: datetime | None = None
    for scan in _canonical_scans(scans):
        t = scan.scanned_at
        if scan.direction is Direction.IN:
            if open_start is not None:
                if t - open_start < dwell:
                    continue  # double scan at the door
                visits.append(Visit(open_start, open_start + dwell))
            open_start = t
        elif open_start is None:
            visits.append(Visit(t, t))
        elif t - open_start <= rules.out_pairing_limit:
            visits.append(Visit(open_start, t))
            open_start = None
        else:
            # Too long for one stay: the IN was a visit of its own (forgotten OUT), and this
            # OUT is a point of presence on a later occasion.
            visits.append(Visit(open_start, open_start + dwell))
            visits.append(Visit(t, t))
            open_start = None
    if open_start is not None:
        visits.append(Visit(open_start, open_start + dwell))
    return _one_per_start(visits)


def _one_per_start(visits: list[Visit]) -> tuple[Visit, ...]:
    """Keep, for each start, the visit that ends last, sorted.

    Pairing appends visits with non-decreasing starts, each ending at or before the next one's
    start; so equal starts only happen when the earlier visit has zero length, and keeping the
    longest loses nothing.
    """
    by_start: dict[datetime, Visit] = {}
    for visit in visits:
        kept = by_start.get(visit.start)
        if kept is None or visit.end > kept.end:
            by_start[visit.start] = visit
    return tuple(sorted(by_start.values()))


def _by_start(visits: Iterable[Visit], which: str) -> dict[datetime, Visit]:
    by_start: dict[datetime, Visit] = {}
    for visit in visits:
        kept = by_start.setdefault(visit.start, visit)
        if kept != visit:
            raise ValueError(
                f"{which} visits hold two visits starting at {visit.start.isoformat()} "
                f"({kept.end.isoformat()} and {visit.end.isoformat()}); a start identifies a visit"
            )
    return by_start


def diff_visits(old: Iterable[Visit], new: Iterable[Visit]) -> VisitDiff:
    """What to emit to the ``visits`` topic after re-pairing (DESIGN "Data flow" 1).

    A visit's identity is its start (per person and venue), so a visit whose end moved is an
    upsert of the same visit, and an old start that disappeared is a removal. Visits identical
    in both are not re-emitted, which keeps redeliveries silent downstream. Both inputs must be
    visit sets of one person at one venue (unique starts); ``ValueError`` otherwise.
    """
    old_by_start = _by_start(old, "old")
    new_by_start = _by_start(new, "new")
    upserted = tuple(sorted(v for start, v in new_by_start.items() if old_by_start.get(start) != v))
    removed = tuple(sorted(v for start, v in old_by_start.items() if start not in new_by_start))
    return VisitDiff(upserted=upserted, removed=removed)
