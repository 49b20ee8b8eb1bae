"""Exposure: infectious windows, exposure windows, alerts and clusters (DESIGN.md "Domain rules").

Pure functions over frozen values; no I/O. The per-person agent computes a case's infectious
window and the exposure windows of its visits (:func:`infectious_window`,
:func:`exposure_windows`, :func:`diff_windows`). The per-venue agent holds the venue's visits and
windows and, on each change, recomputes only the affected alerts (:func:`alerts_for_visit`,
:func:`alerts_for_case`), compares them with the alerts it emitted before
(:func:`reconcile_alerts`) and checks the cluster rule (:func:`detect_cluster`).

Ordering guarantee: every function here is a function of its inputs as sets (the order of the
iterables never matters, outputs are sorted), and alert ids are derived from the alert's identity
only, so replaying the log or redelivering an event converges to the same alerts (DESIGN "Order
independence", "Exposure alerts").
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from domain.presence import Span, Visit, require_aware
from domain.rules import DEFAULT_RULES, PresenceRules

__all__ = [
    "Alert",
    "AlertStatus",
    "Cluster",
    "Interval",
    "Risk",
    "WindowDiff",
    "alert_id",
    "alerts_for_case",
    "alerts_for_venue",
    "alerts_for_visit",
    "alerts_of_case",
    "alerts_of_contact_visit",
    "classify",
    "detect_cluster",
    "diff_windows",
    "exposure_window",
    "exposure_windows",
    "infectious_window",
    "merge_intervals",
    "reconcile_alerts",
    "union_overlap",
]

_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True, order=True)
class Interval(Span):
    """A closed span of time ``[start, end]`` in UTC; ``end == start`` is an empty span."""

    @classmethod
    def of(cls, visit: Visit) -> Interval:
        """The span a visit covers."""
        return cls(visit.start, visit.end)

    def intersection(self, other: Interval | Visit) -> Interval | None:
        """The common part of two spans, or ``None`` when they are disjoint.

        Spans that only touch intersect in a zero-length interval (a point).
        """
        start = max(self.start, other.start)
        end = min(self.end, other.end)
        if end < start:
            return None
        return Interval(start, end)

    def overlap(self, other: Interval | Visit) -> timedelta:
        """Length of the common part; zero when disjoint or only touching."""
        return max(_ZERO, min(self.end, other.end) - max(self.start, other.start))

    def contains(self, other: Interval | Visit) -> bool:
        """True when ``other`` lies entirely inside this span."""
        return self.start <= other.start and other.end <= self.end


def merge_intervals(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """The union of spans as sorted, disjoint spans (touching spans are merged).

    Union, not sum: a case's windows at one venue may overlap each other (the aerosol tail of
    one visit runs into the next), and DESIGN "Exposure alerts" intersects a contact's visit with
    the *union* of the case's windows, so no minute may count twice.
    """
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return tuple(merged)


# --- infectious and exposure windows -----------------------------------------------------------


def _local_midnight_utc(day: date, rules: PresenceRules) -> datetime:
    return datetime.combine(day, time(0), tzinfo=rules.zone).astimezone(UTC)


def infectious_window(
    collected_at: datetime, symptom_onset: date | None, rules: PresenceRules = DEFAULT_RULES
) -> Interval:
    """When a case could infect others (DESIGN "Infectious window", the WHO contact definition).

    With a symptom onset date ``d`` (a local date in ``rules.timezone``): from local midnight of
    ``d - 2 days`` to local midnight of ``d + 11 days`` (the end of day ``d + 10``), returned in
    UTC; ``collected_at`` is not used then. Without an onset: from ``collected_at - 48 h`` to
    ``collected_at + 240 h``.
    """
    require_aware("collected_at", collected_at)
    if symptom_onset is not None:
        return Interval(
            _local_midnight_utc(
                symptom_onset + timedelta(days=rules.onset_window_start_days), rules
            ),
            _local_midnight_utc(symptom_onset + timedelta(days=rules.onset_window_end_days), rules),
        )
    at = collected_at.astimezone(UTC)
    return Interval(at + rules.no_onset_window_start, at + rules.no_onset_window_end)


def exposure_window(
    case_visit: Visit, infectious: Interval, rules: PresenceRules = DEFAULT_RULES
) -> Interval | None:
    """The exposure window a case's visit opens at its venue, or ``None`` if it opens none.

    DESIGN "Exposure windows": every visit of a case with positive length that overlaps the
    infectious window opens a window from the case's check-in to its check-out plus a
    lingering-aerosol tail of ``min(visit length, 30 min)`` (the Corona-Warn-App rule), clipped
    to the infectious window.

    "Overlaps" means a common part of positive length: a visit that only touches the infectious
    window (ends exactly when it opens) opens nothing. Decision: a window always has positive
    length, so ``None`` is returned whenever the clipped result would be empty; given the rule
    above that only happens for a visit that does not overlap. The tail of a visit that ends
    before the infectious window opens does not count, because the aerosol came from a
    non-infectious person.
    """
    if case_visit.length <= _ZERO or infectious.overlap(case_visit) <= _ZERO:
        return None
    tail = min(case_visit.length, rules.aerosol_tail_cap)
    window = Interval(case_visit.start, case_visit.end + tail).intersection(infectious)
    if window is None or window.length <= _ZERO:
        return None
    return window


def exposure_windows(
    case_visits: Iterable[Visit], infectious: Interval, rules: PresenceRules = DEFAULT_RULES
) -> dict[datetime, Interval]:
    """A case's exposure windows at one venue, keyed by the start of the visit that opened them.

    The key matches ExposureWindowChanged's ``visit_start``: a window is identified by its case,
    venue and visit, so re-pairing the visit moves the window instead of adding one. Recomputed
    from all the case's visits whenever a visit or the case changes (DESIGN "Data flow" 1), so a
    visit recorded before or after the confirmation both land.
    """
    windows: dict[datetime, Interval] = {}
    for visit in case_visits:
        window = exposure_window(visit, infectious, rules)
        if window is not None:
            windows[visit.start] = window
    return dict(sorted(windows.items()))


@dataclass(frozen=True, slots=True)
class WindowDiff:
    """What changed in a case's exposure windows at one venue."""

    upserted: tuple[tuple[datetime, Interval], ...]
    """``(visit_start, window)`` pairs that are new or moved, sorted by visit start."""
    removed: tuple[datetime, ...]
    """Visit starts whose window no longer exists, sorted."""

    @property
    def is_empty(self) -> bool:
        """True when nothing needs to be emitted."""
        return not self.upserted and not self.removed


def diff_windows(old: Mapping[datetime, Interval], new: Mapping[datetime, Interval]) -> WindowDiff:
    """What to emit to ``exposure-windows`` after recomputing a case's windows at one venue.

    Like :func:`~domain.presence.diff_visits`: unchanged windows are not re-emitted, a moved
    window is an upsert under the same visit start, a vanished one a removal.
    """
    upserted = tuple(sorted((k, w) for k, w in new.items() if old.get(k) != w))
    removed = tuple(sorted(k for k in old if k not in new))
    return WindowDiff(upserted=upserted, removed=removed)


# --- overlap and risk ---------------------------------------------------------------------------


def _overlap_with_merged(visit: Visit, merged: tuple[Interval, ...]) -> timedelta:
    """Overlap of a visit with sorted disjoint spans, skipping spans that end before it."""
    if visit.end <= visit.start or not merged:
        return _ZERO
    total = _ZERO
    # First span that could reach into the visit: spans are sorted by start and disjoint, so also
    # by end; everything before the last span starting at or before visit.start ends too early,
    # except possibly that one span itself.
    i = max(0, bisect_right(merged, visit.start, key=lambda w: w.start) - 1)
    for window in merged[i:]:
        if window.start >= visit.end:
            break
        total += window.overlap(visit)
    return total


def union_overlap(visit: Visit, windows: Iterable[Interval]) -> timedelta:
    """Length of ``visit`` intersected with the union of ``windows`` (DESIGN "Exposure alerts").

    Overlapping windows are merged first, so no time counts twice. Decision: a zero-length visit
    (a bare OUT scan) has overlap 0 and so raises no alert: it proves presence at one instant,
    not a stay, and DESIGN asks for an overlap greater than zero. It stays visible to tracers as
    a visit.
    """
    return _overlap_with_merged(visit, merge_intervals(windows))


class Risk(StrEnum):
    """Risk of an exposure alert (the Avro enum of ExposureAlertRaised)."""

    HIGH = "HIGH"
    LOW = "LOW"


class AlertStatus(StrEnum):
    """Whether an alert still stands; WITHDRAWN alerts are kept for audit."""

    ACTIVE = "ACTIVE"
    WITHDRAWN = "WITHDRAWN"


def classify(overlap: timedelta, rules: PresenceRules = DEFAULT_RULES) -> Risk | None:
    """The risk of an exposure with this overlap, ``None`` for no exposure.

    DESIGN "Exposure alerts": an alert exists only when the overlap is greater than zero; it is
    HIGH when the overlap is at least 15 minutes (inclusive), LOW otherwise. A negative overlap
    is a bug upstream and raises ``ValueError``.
    """
    if overlap < _ZERO:
        raise ValueError(f"overlap must not be negative, got {overlap}")
    if overlap == _ZERO:
        return None
    return Risk.HIGH if overlap >= rules.high_risk_threshold else Risk.LOW


# --- alerts -------------------------------------------------------------------------------------

_ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:covidtech:exposure-alert")


def alert_id(
    case_person_id: str, contact_person_id: str, venue_id: str, contact_visit_start: datetime
) -> str:
    """The id of the alert for (case, contact, venue, contact visit start).

    DESIGN "Exposure alerts": the id is derived from these four, so a replay or a duplicate
    never makes a second alert and a recomputation updates it in place. A UUIDv5 over a JSON
    array (unambiguous whatever characters the ids hold) of the ids and the start as a UTC
    instant with microseconds: the same instant written in another zone gives the same id.
    """
    require_aware("contact_visit_start", contact_visit_start)
    instant = contact_visit_start.astimezone(UTC).isoformat(timespec="microseconds")
    name = json.dumps([case_person_id, contact_person_id, venue_id, instant])
    return str(uuid.uuid5(_ALERT_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class Alert:
    """One exposure alert: a contact's visit overlapped one case's exposure windows at a venue.

    ACTIVE alerts have a positive overlap; WITHDRAWN ones have overlap 0 and keep the last risk
    they had (for audit). The venue's province, the event id and the version are added by the
    stream agent.
    """

    alert_id: str
    case_person_id: str
    contact_person_id: str
    venue_id: str
    contact_visit: Visit
    overlap: timedelta
    risk: Risk
    status: AlertStatus

    def __post_init__(self) -> None:
        if self.status is AlertStatus.ACTIVE and self.overlap <= _ZERO:
            raise ValueError(f"active alert {self.alert_id} must have a positive overlap")
        if self.status is AlertStatus.WITHDRAWN and self.overlap != _ZERO:
            raise ValueError(f"withdrawn alert {self.alert_id} must have overlap 0")

    @property
    def sort_key(self) -> tuple[str, str, str, datetime]:
        """Deterministic order of alerts: case, contact, venue, contact visit start."""
        return (
            self.case_person_id,
            self.contact_person_id,
            self.venue_id,
            self.contact_visit.start,
        )

    def withdrawn(self) -> Alert:
        """This alert with no overlap left: status WITHDRAWN, last risk kept."""
        return replace(self, overlap=_ZERO, status=AlertStatus.WITHDRAWN)


def _active_alert(
    case_id: str, person_id: str, venue_id: str, visit: Visit, overlap: timedelta, risk: Risk
) -> Alert:
    return Alert(
        alert_id=alert_id(case_id, person_id, venue_id, visit.start),
        case_person_id=case_id,
        contact_person_id=person_id,
        venue_id=venue_id,
        contact_visit=visit,
        overlap=overlap,
        risk=risk,
        status=AlertStatus.ACTIVE,
    )


def _alerts_against(
    case_id: str,
    merged: tuple[Interval, ...],
    person_id: str,
    visits: Iterable[Visit],
    venue_id: str,
    rules: PresenceRules,
) -> list[Alert]:
    if person_id == case_id or not merged:
        return []  # a case is not a contact of itself
    alerts = []
    for visit in set(visits):
        overlap = _overlap_with_merged(visit, merged)
        risk = classify(overlap, rules)
        if risk is not None:
            alerts.append(_active_alert(case_id, person_id, venue_id, visit, overlap, risk))
    return alerts


def alerts_for_visit(
    person_id: str,
    visit: Visit,
    windows_by_case: Mapping[str, Iterable[Interval]],
    *,
    venue_id: str,
    rules: PresenceRules = DEFAULT_RULES,
) -> tuple[Alert, ...]:
    """The active alerts of one contact visit against every case's windows at the venue.

    Used by the per-venue agent when a visit changes (DESIGN "Data flow" 2): only this visit's
    alerts can change. One alert per case whose windows overlap the visit by more than zero; the
    person's own windows (if they are a case) are skipped. Pass the result, with the previous
    alerts of this visit (:func:`alerts_of_contact_visit`), to :func:`reconcile_alerts`.
    """
    alerts: list[Alert] = []
    for case_id, windows in windows_by_case.items():
        merged = merge_intervals(windows)
        alerts += _alerts_against(case_id, merged, person_id, (visit,), venue_id, rules)
    return tuple(sorted(alerts, key=lambda a: a.sort_key))


def alerts_for_case(
    case_id: str,
    windows: Iterable[Interval],
    visits_by_person: Mapping[str, Iterable[Visit]],
    *,
    venue_id: str,
    rules: PresenceRules = DEFAULT_RULES,
) -> tuple[Alert, ...]:
    """The active alerts of one case's windows at a venue against every other person's visits.

    Used by the per-venue agent when one of the case's windows changes (DESIGN "Data flow" 2):
    only this case's alerts can change, and the overlap is with the union of *all* its windows at
    the venue, so pass them all (empty when the last one was removed). Pass the result, with the
    previous alerts of this case at the venue (:func:`alerts_of_case`), to
    :func:`reconcile_alerts`.
    """
    merged = merge_intervals(windows)
    alerts: list[Alert] = []
    for person_id, visits in visits_by_person.items():
        alerts += _alerts_against(case_id, merged, person_id, visits, venue_id, rules)
    return tuple(sorted(alerts, key=lambda a: a.sort_key))


def alerts_for_venue(
    visits_by_person: Mapping[str, Iterable[Visit]],
    windows_by_case: Mapping[str, Iterable[Interval]],
    *,
    venue_id: str,
    rules: PresenceRules = DEFAULT_RULES,
) -> tuple[Alert, ...]:
    """Every active alert at a venue, from all its visits and all its exposure windows.

    DESIGN "Exposure alerts": for every other person's visit at the venue, the overlap is the
    length of the visit intersected with the union of that case's windows there; one alert per
    (case, contact visit) with overlap > 0, HIGH at 15 minutes or more. This is the reference
    the incremental forms must agree with (and what a rebuild uses).
    """
    visits = {person: tuple(v) for person, v in visits_by_person.items()}
    alerts: list[Alert] = []
    for case_id, windows in windows_by_case.items():
        alerts += alerts_for_case(case_id, windows, visits, venue_id=venue_id, rules=rules)
    return tuple(sorted(alerts, key=lambda a: a.sort_key))


def alerts_of_contact_visit(
    alerts: Iterable[Alert], person_id: str, visit_start: datetime
) -> dict[str, Alert]:
    """The alerts about one contact visit (the scope of :func:`alerts_for_visit`), by id."""
    return {
        a.alert_id: a
        for a in alerts
        if a.contact_person_id == person_id and a.contact_visit.start == visit_start
    }


def alerts_of_case(alerts: Iterable[Alert], case_id: str) -> dict[str, Alert]:
    """The alerts about one case (the scope of :func:`alerts_for_case`), by id."""
    return {a.alert_id: a for a in alerts if a.case_person_id == case_id}


def reconcile_alerts(previous: Mapping[str, Alert], current: Iterable[Alert]) -> tuple[Alert, ...]:
    """The alerts to emit so that what was emitted before becomes ``current``.

    ``previous`` holds the alerts emitted before *within the scope ``current`` was computed
    for* (one contact visit, one case, or the whole venue); an alert outside that scope would be
    withdrawn wrongly, so narrow it with :func:`alerts_of_contact_visit` or
    :func:`alerts_of_case`. Emitted, sorted:

    - an alert of ``current`` that is new, or differs in any field from the previous one
      (overlap or risk raised or lowered, the contact visit's end moved, a withdrawn alert
      active again): it is upserted in place under the same id (DESIGN "Exposure alerts");
    - a previous ACTIVE alert absent from ``current``: its WITHDRAWN version, overlap 0, last
      risk kept, for audit.

    An unchanged alert, or a WITHDRAWN one still absent, is not re-emitted, so a redelivered
    event emits nothing. ``ValueError`` if ``current`` holds two different alerts with one id.
    """
    current_by_id: dict[str, Alert] = {}
    for alert in current:
        kept = current_by_id.setdefault(alert.alert_id, alert)
        if kept != alert:
            raise ValueError(f"two different alerts with id {alert.alert_id}")
    emitted = [a for a_id, a in current_by_id.items() if previous.get(a_id) != a]
    emitted += [
        a.withdrawn()
        for a in previous.values()
        if a.alert_id not in current_by_id and a.status is AlertStatus.ACTIVE
    ]
    return tuple(sorted(emitted, key=lambda a: a.sort_key))


# --- clusters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cluster:
    """A venue where enough distinct cases had exposure windows starting close together."""

    case_ids: tuple[str, ...]
    """The distinct cases of the qualifying group, sorted."""
    first_window_start: datetime
    """Earliest window start of the group."""
    last_window_start: datetime
    """Latest window start of the group (at most ``cluster_span`` after the first)."""


def detect_cluster(
    window_starts_by_case: Mapping[str, Iterable[datetime]], rules: PresenceRules = DEFAULT_RULES
) -> Cluster | None:
    """The venue's cluster, if it is one (DESIGN "Clusters").

    A venue is a cluster when at least ``cluster_min_cases`` (3) distinct cases have exposure
    windows starting within ``cluster_span`` (7 days, inclusive) of one another: there is a span
    ``[a, a + 7 days]`` holding a window start of each of them. A case may have several windows
    at the venue; any one of them may be the one that counts.

    Decision, so that the answer is a function of the set of windows: the group reported is
    anchored at the earliest window start ``a`` for which ``[a, a + span]`` qualifies; it holds
    every case with a window start in that span (possibly more than the minimum), and its last
    window start is the latest start in that span. Later groups at the same venue are not
    reported separately (the venue is a cluster; the earliest group is when it became one).
    ``None`` when no span qualifies.
    """
    unique: set[tuple[datetime, str]] = set()
    for case, starts in window_starts_by_case.items():
        for start in starts:
            require_aware("window start", start)
            unique.add((start.astimezone(UTC), case))
    points = sorted(unique)
    counts: dict[str, int] = {}
    right = 0
    for left, (anchor, _) in enumerate(points):
        while right < len(points) and points[right][0] - anchor <= rules.cluster_span:
            case = points[right][1]
            counts[case] = counts.get(case, 0) + 1
            right += 1
        if len(counts) >= rules.cluster_min_cases:
            group = points[left:right]
            return Cluster(
                case_ids=tuple(sorted({case for _, case in group})),
                first_window_start=anchor,
                last_window_start=group[-1][0],
            )
        leaving = points[left][1]
        counts[leaving] -= 1
        if counts[leaving] == 0:
            del counts[leaving]
    return None
