"""Exposure windows, alerts and clusters (DESIGN.md "Infectious window" .. "Clusters")."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.exposure import (
    Alert,
    AlertStatus,
    Cluster,
    Interval,
    Risk,
    WindowDiff,
    alert_id,
    alerts_for_case,
    alerts_for_venue,
    alerts_for_visit,
    alerts_of_case,
    alerts_of_contact_visit,
    classify,
    detect_cluster,
    diff_windows,
    exposure_window,
    exposure_windows,
    infectious_window,
    merge_intervals,
    reconcile_alerts,
    union_overlap,
)
from domain.presence import Direction, Scan, Visit, diff_visits, pair_visits
from domain.rules import DEFAULT_RULES, PresenceRules
from tests.unit.presence_support import DAY, HOUR, MIN, T0, at, visit

VENUE = "venue-1"
PROPERTY = settings(max_examples=200, deadline=None)


def iv(start_min: float, end_min: float) -> Interval:
    return Interval(at(start_min), at(end_min))


# --- intervals ----------------------------------------------------------------------------------


def test_interval_overlap_intersection_contains() -> None:
    a = iv(0, 60)
    assert a.length == HOUR
    assert a.overlap(iv(30, 90)) == 30 * MIN
    assert a.overlap(iv(60, 90)) == timedelta(0)  # touching
    assert a.overlap(iv(70, 90)) == timedelta(0)
    assert a.intersection(iv(30, 90)) == iv(30, 60)
    assert a.intersection(iv(60, 90)) == iv(60, 60)
    assert a.intersection(iv(70, 90)) is None
    assert a.overlap(visit(50, 55)) == 5 * MIN
    assert a.contains(iv(10, 20))
    assert a.contains(a)
    assert not a.contains(iv(50, 70))
    assert Interval.of(visit(5, 6)) == iv(5, 6)
    with pytest.raises(ValueError, match="before it starts"):
        iv(10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(datetime(2021, 7, 10), datetime(2021, 7, 11))


def test_merge_intervals() -> None:
    assert merge_intervals([]) == ()
    assert merge_intervals([iv(50, 70), iv(0, 10), iv(5, 20), iv(20, 30), iv(60, 65)]) == (
        iv(0, 30),
        iv(50, 70),
    )


# --- infectious window --------------------------------------------------------------------------


def test_infectious_window_with_onset_is_local_midnights() -> None:
    window = infectious_window(T0, date(2021, 7, 10))
    assert window == Interval(
        datetime(2021, 7, 7, 17, 0, tzinfo=UTC), datetime(2021, 7, 20, 17, 0, tzinfo=UTC)
    )


def test_infectious_window_with_onset_ignores_collection_time() -> None:
    onset = date(2021, 7, 10)
    assert infectious_window(T0, onset) == infectious_window(T0 + 30 * DAY, onset)


def test_infectious_window_without_onset_is_around_collection() -> None:
    collected = datetime(2021, 7, 10, 3, 30, tzinfo=UTC)
    assert infectious_window(collected, None) == Interval(
        datetime(2021, 7, 8, 3, 30, tzinfo=UTC), datetime(2021, 7, 20, 3, 30, tzinfo=UTC)
    )
    # the same instant written in local time gives the same window
    ict = timezone(timedelta(hours=7))
    assert infectious_window(collected.astimezone(ict), None) == infectious_window(collected, None)


def test_infectious_window_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        infectious_window(datetime(2021, 7, 10), None)


@PROPERTY
@given(
    onset=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
    zone=st.sampled_from(["Asia/Ho_Chi_Minh", "Europe/Berlin", "America/Santiago"]),
)
def test_onset_window_bounds_are_local_midnights(onset: date, zone: str) -> None:
    rules = PresenceRules(timezone=zone)
    window = infectious_window(T0, onset, rules)
    start, end = window.start.astimezone(rules.zone), window.end.astimezone(rules.zone)
    assert window.start.utcoffset() == timedelta(0)
    assert start.date() == onset - 2 * DAY
    assert end.date() == onset + 11 * DAY
    if zone == "Asia/Ho_Chi_Minh":  # no DST: exactly at midnight, exactly 13 days
        assert start.time() == end.time() == time(0)
        assert window.length == 13 * DAY


# --- exposure windows ---------------------------------------------------------------------------

INFECTIOUS = iv(0, 10 * 24 * 60)


def test_exposure_window_tail_is_the_visit_length_up_to_30_min() -> None:
    assert exposure_window(visit(100, 120), INFECTIOUS) == iv(100, 140)
    assert exposure_window(visit(100, 130), INFECTIOUS) == iv(100, 160)
    assert exposure_window(visit(100, 220), INFECTIOUS) == iv(100, 250)


def test_exposure_window_is_clipped_to_the_infectious_window() -> None:
    assert exposure_window(visit(-30, 30), INFECTIOUS) == iv(0, 60)
    end = 10 * 24 * 60
    assert exposure_window(visit(end - 60, end - 10), INFECTIOUS) == iv(end - 60, end)


def test_no_exposure_window_without_an_overlapping_visit_of_positive_length() -> None:
    assert exposure_window(visit(100, 100), INFECTIOUS) is None  # zero-length visit
    assert exposure_window(visit(-60, -1), INFECTIOUS) is None  # before; its tail would reach in
    assert exposure_window(visit(-60, 0), INFECTIOUS) is None  # only touches the start
    end = 10 * 24 * 60
    assert exposure_window(visit(end, end + 60), INFECTIOUS) is None  # starts as it closes


def test_exposure_tail_cap_is_a_setting() -> None:
    rules = PresenceRules(aerosol_tail_cap=timedelta(0))
    assert exposure_window(visit(100, 220), INFECTIOUS, rules) == iv(100, 220)


def test_exposure_windows_keyed_by_visit_start_and_diffed() -> None:
    visits = [visit(-120, -60), visit(100, 120), visit(300, 300), visit(400, 460)]
    windows = exposure_windows(visits, INFECTIOUS)
    assert windows == {at(100): iv(100, 140), at(400): iv(400, 490)}
    assert list(windows) == sorted(windows)
    # a late OUT shortens the visit at 400; the one at 100 disappears (re-paired away)
    later = exposure_windows([visit(400, 410), visit(500, 520)], INFECTIOUS)
    assert diff_windows(windows, later) == WindowDiff(
        upserted=((at(400), iv(400, 420)), (at(500), iv(500, 540))),
        removed=(at(100),),
    )
    assert diff_windows(later, dict(later)).is_empty


minute_st = st.integers(-3 * 24 * 60, 14 * 24 * 60)


@st.composite
def visits_st(draw: st.DrawFn, max_len: int = 16 * 60) -> Visit:
    start = draw(minute_st)
    return visit(start, start + draw(st.integers(0, max_len)))


@PROPERTY
@given(
    case_visit=visits_st(),
    collected=minute_st,
    onset=st.none() | st.integers(-5, 15).map(lambda d: T0.date() + d * DAY),
)
def test_exposure_window_lies_inside_the_infectious_window(
    case_visit: Visit, collected: int, onset: date | None
) -> None:
    infectious = infectious_window(at(collected), onset)
    window = exposure_window(case_visit, infectious)
    overlaps = case_visit.length > timedelta(0) and infectious.overlap(case_visit) > timedelta(0)
    assert (window is not None) == overlaps
    if window is not None:
        assert infectious.contains(window)
        assert window.length > timedelta(0)
        assert window.start == max(case_visit.start, infectious.start)
        assert window.end <= case_visit.end + min(case_visit.length, 30 * MIN)
        assert window.overlap(case_visit) == infectious.overlap(case_visit)


# --- overlap and risk ---------------------------------------------------------------------------


def test_union_overlap_does_not_count_overlapping_windows_twice() -> None:
    windows = [iv(0, 40), iv(20, 60), iv(100, 110)]
    assert union_overlap(visit(10, 105), windows) == 50 * MIN + 5 * MIN
    assert union_overlap(visit(10, 105), []) == timedelta(0)
    assert union_overlap(visit(60, 100), windows) == timedelta(0)  # touches both, inside neither


def test_zero_length_visit_has_no_overlap() -> None:
    assert union_overlap(visit(30, 30), [iv(0, 60)]) == timedelta(0)


windows_st = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 120)).map(lambda p: iv(p[0], p[0] + p[1])),
    max_size=8,
)
small_visit_st = st.tuples(st.integers(0, 300), st.integers(0, 150)).map(
    lambda p: visit(p[0], p[0] + p[1])
)


def covered_minutes(v: Visit, windows: Iterable[Interval]) -> int:
    """Oracle on the minute grid: minutes of the visit inside some window."""
    windows = list(windows)
    count = 0
    m = v.start
    while m < v.end:
        cell = Interval(m, m + MIN)
        if any(w.contains(cell) for w in windows):
            count += 1
        m += MIN
    return count


@PROPERTY
@given(v=small_visit_st, windows=windows_st, extra=windows_st)
def test_union_overlap_properties(v: Visit, windows: list[Interval], extra: list[Interval]) -> None:
    overlap = union_overlap(v, windows)
    singles = [w.overlap(v) for w in windows]
    assert timedelta(0) <= overlap <= v.length
    assert overlap <= sum(singles, timedelta(0))
    assert overlap >= max(singles, default=timedelta(0))
    assert union_overlap(v, [*windows, *extra]) >= overlap  # monotone
    assert union_overlap(v, reversed(windows)) == overlap
    assert overlap == covered_minutes(v, windows) * MIN


def test_classify() -> None:
    assert classify(timedelta(0)) is None
    assert classify(timedelta(seconds=1)) is Risk.LOW
    assert classify(15 * MIN - timedelta(milliseconds=1)) is Risk.LOW
    assert classify(15 * MIN) is Risk.HIGH  # "at least 15 minutes"
    assert classify(3 * HOUR) is Risk.HIGH
    assert classify(10 * MIN, PresenceRules(high_risk_threshold=10 * MIN)) is Risk.HIGH
    with pytest.raises(ValueError, match="negative"):
        classify(-MIN)


# --- alert ids ----------------------------------------------------------------------------------


def test_alert_id_is_stable_and_derived_from_its_identity() -> None:
    a = alert_id("case", "contact", VENUE, at(0))
    assert a == alert_id("case", "contact", VENUE, at(0))
    assert uuid.UUID(a).version == 5
    # the same instant in another zone is the same visit start
    ict = timezone(timedelta(hours=7))
    assert a == alert_id("case", "contact", VENUE, at(0).astimezone(ict))
    others = {
        alert_id("case2", "contact", VENUE, at(0)),
        alert_id("case", "contact2", VENUE, at(0)),
        alert_id("case", "contact", "venue-2", at(0)),
        alert_id("case", "contact", VENUE, at(0) + timedelta(milliseconds=1)),
        alert_id("contact", "case", VENUE, at(0)),
    }
    assert a not in others
    assert len(others) == 5


def test_alert_id_components_cannot_run_into_each_other() -> None:
    assert alert_id("a:b", "c", VENUE, at(0)) != alert_id("a", "b:c", VENUE, at(0))
    assert alert_id('a","b', "c", VENUE, at(0)) != alert_id("a", 'b","c', VENUE, at(0))


def test_alert_id_pinned() -> None:
    # Pinned: changing the derivation would duplicate every alert on the next replay.
    assert alert_id("case", "contact", VENUE, at(0)) == "fb026816-6770-5a79-a07f-c7ae272d8d66"


def test_alert_invariants() -> None:
    good = make_alert("c", "p", visit(0, 30), 20 * MIN, Risk.HIGH)
    with pytest.raises(ValueError, match="positive overlap"):
        replace(good, overlap=timedelta(0))
    with pytest.raises(ValueError, match="overlap 0"):
        replace(good, status=AlertStatus.WITHDRAWN)
    withdrawn = good.withdrawn()
    assert (withdrawn.status, withdrawn.overlap, withdrawn.risk) == (
        AlertStatus.WITHDRAWN,
        timedelta(0),
        Risk.HIGH,
    )
    assert withdrawn.alert_id == good.alert_id


def make_alert(
    case: str,
    person: str,
    contact_visit: Visit,
    overlap: timedelta,
    risk: Risk,
    status: AlertStatus = AlertStatus.ACTIVE,
) -> Alert:
    return Alert(
        alert_id=alert_id(case, person, VENUE, contact_visit.start),
        case_person_id=case,
        contact_person_id=person,
        venue_id=VENUE,
        contact_visit=contact_visit,
        overlap=overlap,
        risk=risk,
        status=status,
    )


# --- alerts -------------------------------------------------------------------------------------


def test_alerts_for_venue() -> None:
    visits_by_person = {
        "case-a": [visit(0, 60)],  # the case's own visit: not a contact of itself
        "p1": [visit(30, 120), visit(500, 560)],  # 60 min in case-a's first window; 2nd none
        "p2": [visit(85, 95)],  # 5 min in the tail of window 1 (tail ends at 90)
        "p3": [visit(50, 50)],  # bare OUT scan: no overlap
        "case-b": [visit(200, 230)],  # in case-a's second window; also a case itself
    }
    windows_by_case = {
        "case-a": [iv(0, 90), iv(200, 215)],
        "case-b": [iv(20, 40)],
    }
    alerts = alerts_for_venue(visits_by_person, windows_by_case, venue_id=VENUE)
    assert alerts == (
        make_alert("case-a", "case-b", visit(200, 230), 15 * MIN, Risk.HIGH),
        make_alert("case-a", "p1", visit(30, 120), 60 * MIN, Risk.HIGH),
        make_alert("case-a", "p2", visit(85, 95), 5 * MIN, Risk.LOW),
        make_alert("case-b", "case-a", visit(0, 60), 20 * MIN, Risk.HIGH),
        make_alert("case-b", "p1", visit(30, 120), 10 * MIN, Risk.LOW),
    )


def test_alert_overlap_uses_the_union_of_the_cases_windows() -> None:
    alerts = alerts_for_visit(
        "p", visit(0, 60), {"c": [iv(0, 10), iv(5, 12), iv(50, 53)]}, venue_id=VENUE
    )
    assert alerts == (make_alert("c", "p", visit(0, 60), 15 * MIN, Risk.HIGH),)


def test_a_case_raises_no_alert_about_itself() -> None:
    assert alerts_for_visit("c", visit(0, 60), {"c": [iv(0, 60)]}, venue_id=VENUE) == ()
    assert alerts_for_case("c", [iv(0, 60)], {"c": [visit(0, 60)]}, venue_id=VENUE) == ()


def test_reconcile_emits_new_and_changed_alerts_only() -> None:
    a1 = make_alert("c", "p1", visit(0, 30), 10 * MIN, Risk.LOW)
    a2 = make_alert("c", "p2", visit(0, 30), 20 * MIN, Risk.HIGH)
    assert reconcile_alerts({}, [a2, a1]) == (a1, a2)
    previous = {a.alert_id: a for a in (a1, a2)}
    assert reconcile_alerts(previous, [a1, a2]) == ()
    raised = replace(a1, overlap=16 * MIN, risk=Risk.HIGH)
    assert reconcile_alerts(previous, [raised, a2]) == (raised,)
    moved_end = replace(a2, contact_visit=visit(0, 40))
    assert reconcile_alerts(previous, [a1, moved_end]) == (moved_end,)


def test_reconcile_withdraws_what_is_gone_once() -> None:
    a1 = make_alert("c", "p1", visit(0, 30), 20 * MIN, Risk.HIGH)
    emitted = reconcile_alerts({a1.alert_id: a1}, [])
    assert emitted == (a1.withdrawn(),)
    assert emitted[0].risk is Risk.HIGH  # last risk kept for audit
    # already withdrawn: not re-emitted
    assert reconcile_alerts({a1.alert_id: emitted[0]}, []) == ()
    # active again: upserted under the same id
    assert reconcile_alerts({a1.alert_id: emitted[0]}, [a1]) == (a1,)


def test_reconcile_refuses_two_alerts_with_one_id() -> None:
    a1 = make_alert("c", "p1", visit(0, 30), 20 * MIN, Risk.HIGH)
    with pytest.raises(ValueError, match="two different alerts"):
        reconcile_alerts({}, [a1, replace(a1, overlap=MIN, risk=Risk.LOW)])
    assert reconcile_alerts({}, [a1, a1]) == (a1,)


def test_later_out_shortens_a_contact_visit_out_of_the_window_and_withdraws_the_alert() -> None:
    """Contact checks in at 10:00 and forgets to check out; the OUT arrives a day later."""
    dwell = 60 * MIN
    windows_by_case = {"case": [iv(40, 90)]}  # the case was there from 10:40
    scans = [Scan("in-1", at(0), Direction.IN)]

    visits = pair_visits(scans, dwell)  # [10:00, 11:00]: 20 min with the case
    emitted_before: list[Alert] = []
    for v in diff_visits((), visits).upserted:
        current = alerts_for_visit("contact", v, windows_by_case, venue_id=VENUE)
        emitted_before += reconcile_alerts({}, current)
    assert [(a.risk, a.overlap, a.status) for a in emitted_before] == [
        (Risk.HIGH, 20 * MIN, AlertStatus.ACTIVE)
    ]
    held = {a.alert_id: a for a in emitted_before}

    later = pair_visits([*scans, Scan("out-1", at(30), Direction.OUT)], dwell)  # [10:00, 10:30]
    diff = diff_visits(visits, later)
    assert diff.upserted == (visit(0, 30),)
    (changed,) = diff.upserted
    current = alerts_for_visit("contact", changed, windows_by_case, venue_id=VENUE)
    assert current == ()
    previous = alerts_of_contact_visit(held.values(), "contact", changed.start)
    (withdrawn,) = reconcile_alerts(previous, current)
    assert withdrawn.alert_id == emitted_before[0].alert_id
    assert withdrawn.status is AlertStatus.WITHDRAWN
    assert withdrawn.overlap == timedelta(0)
    assert withdrawn.risk is Risk.HIGH


def test_case_confirmed_after_the_visits_raises_the_same_alerts() -> None:
    """A case's windows computed before or after the contact's visit arrive converge."""
    infectious = infectious_window(at(0), None)
    case_visits = pair_visits([Scan("c-in", at(60), Direction.IN)], 60 * MIN)
    windows = list(exposure_windows(case_visits, infectious).values())
    contact = visit(90, 150)

    # windows first, then the contact's visit
    by_visit = alerts_for_visit("p", contact, {"case": windows}, venue_id=VENUE)
    # the contact's visit first, then the case's windows
    by_case = alerts_for_case("case", windows, {"p": [contact]}, venue_id=VENUE)
    assert by_visit == by_case == (make_alert("case", "p", contact, 60 * MIN, Risk.HIGH),)


def test_alert_scopes() -> None:
    a1 = make_alert("c1", "p1", visit(0, 30), 20 * MIN, Risk.HIGH)
    a2 = make_alert("c2", "p1", visit(0, 30), 5 * MIN, Risk.LOW)
    a3 = make_alert("c1", "p1", visit(100, 130), 5 * MIN, Risk.LOW)
    assert alerts_of_contact_visit([a1, a2, a3], "p1", at(0)) == {
        a1.alert_id: a1,
        a2.alert_id: a2,
    }
    assert alerts_of_case([a1, a2, a3], "c1") == {a1.alert_id: a1, a3.alert_id: a3}


# The per-venue agent, simulated: events on the venue's key in any order, each recomputing only
# the affected alerts, must end with exactly the alerts a full recomputation gives.

people = ["c1", "c2", "p1", "p2", "p3"]
cases = ["c1", "c2"]
slot_st = st.integers(0, 3)  # a small pool of visit starts, so events hit the same keys


@st.composite
def venue_event_st(draw: st.DrawFn) -> tuple[str, str, int, Interval | None]:
    kind = draw(st.sampled_from(["visit", "window"]))
    who = draw(st.sampled_from(people if kind == "visit" else cases))
    slot = draw(slot_st)
    removed = draw(st.integers(0, 3)) == 0
    start = slot * 40 + draw(st.sampled_from([0, 0, 5]))
    span = None if removed else iv(start, start + draw(st.integers(0, 90)))
    return kind, who, slot, span


@PROPERTY
@given(events=st.lists(venue_event_st(), max_size=30))
def test_incremental_alerts_converge_to_the_full_recomputation(
    events: list[tuple[str, str, int, Interval | None]],
) -> None:
    visits: dict[str, dict[int, Visit]] = {p: {} for p in people}
    windows: dict[str, dict[int, Interval]] = {c: {} for c in cases}
    held: dict[str, Alert] = {}

    def apply(emitted: Iterable[Alert]) -> None:
        for alert in emitted:
            held[alert.alert_id] = alert

    def windows_by_case() -> Mapping[str, list[Interval]]:
        return {c: list(w.values()) for c, w in windows.items()}

    def visits_by_person() -> Mapping[str, list[Visit]]:
        return {p: list(v.values()) for p, v in visits.items()}

    for kind, who, slot, span in events:
        if kind == "visit":
            old = visits[who].pop(slot, None)
            new = None if span is None else Visit(span.start, span.end)
            if old is not None and (new is None or new.start != old.start):
                # a visit removed or re-paired to another start: its alerts are withdrawn
                scope = alerts_of_contact_visit(held.values(), who, old.start)
                apply(reconcile_alerts(scope, ()))
            if new is not None:
                visits[who][slot] = new
                current = alerts_for_visit(who, new, windows_by_case(), venue_id=VENUE)
                scope = alerts_of_contact_visit(held.values(), who, new.start)
                apply(reconcile_alerts(scope, current))
        else:
            if span is None:
                windows[who].pop(slot, None)
            else:
                windows[who][slot] = span
            current = alerts_for_case(
                who, windows[who].values(), visits_by_person(), venue_id=VENUE
            )
            apply(reconcile_alerts(alerts_of_case(held.values(), who), current))

    expected = alerts_for_venue(visits_by_person(), windows_by_case(), venue_id=VENUE)
    active = tuple(
        sorted(
            (a for a in held.values() if a.status is AlertStatus.ACTIVE), key=lambda a: a.sort_key
        )
    )
    assert active == expected
    # and a redelivery of the final state emits nothing
    assert reconcile_alerts(held, expected) == ()


# --- clusters -----------------------------------------------------------------------------------


def days(n: float) -> datetime:
    return T0 + n * DAY


def test_three_cases_within_7_days_are_a_cluster() -> None:
    cluster = detect_cluster({"a": [days(0)], "b": [days(3)], "c": [days(6.5)]})
    assert cluster == Cluster(("a", "b", "c"), days(0), days(6.5))


def test_three_cases_spread_over_8_days_are_not() -> None:
    assert detect_cluster({"a": [days(0)], "b": [days(4)], "c": [days(8)]}) is None


def test_cluster_span_is_inclusive() -> None:
    cluster = detect_cluster({"a": [days(0)], "b": [days(4)], "c": [days(7)]})
    assert cluster == Cluster(("a", "b", "c"), days(0), days(7))


def test_one_case_with_many_windows_is_not_a_cluster() -> None:
    starts = {"a": [days(0), days(1), days(2)], "b": [days(1)]}
    assert detect_cluster(starts) is None
    assert detect_cluster({"a": [], "b": [], "c": []}) is None
    assert detect_cluster({}) is None


def test_any_window_of_a_case_may_count() -> None:
    starts = {"a": [days(0), days(10)], "b": [days(12)], "c": [days(-5), days(15)]}
    assert detect_cluster(starts) == Cluster(("a", "b", "c"), days(10), days(15))


def test_the_earliest_qualifying_group_is_reported_with_every_case_in_its_span() -> None:
    starts = {
        "a": [days(0)],
        "b": [days(2)],
        "c": [days(5)],
        "d": [days(6)],
        "e": [days(8)],  # outside [day 0, day 7]
    }
    assert detect_cluster(starts) == Cluster(("a", "b", "c", "d"), days(0), days(6))


def test_cluster_numbers_are_settings() -> None:
    rules = PresenceRules(cluster_min_cases=2, cluster_span=DAY)
    assert detect_cluster({"a": [days(0)], "b": [days(1)]}, rules) == Cluster(
        ("a", "b"), days(0), days(1)
    )
    assert detect_cluster({"a": [days(0)], "b": [days(1.5)]}, rules) is None


starts_by_case_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.lists(st.integers(0, 30 * 24).map(lambda h: T0 + h * HOUR), max_size=3),
    max_size=5,
)


@PROPERTY
@given(starts=starts_by_case_st, data=st.data())
def test_cluster_matches_a_brute_force_search(
    starts: dict[str, list[datetime]], data: st.DataObject
) -> None:
    rules = DEFAULT_RULES
    cluster = detect_cluster(starts)
    # brute force: some choice of one start per case, for min_cases cases, spans <= 7 days
    exists = any(
        max(choice) - min(choice) <= rules.cluster_span
        for group in combinations(starts, rules.cluster_min_cases)
        for choice in _choices([starts[c] for c in group])
    )
    assert (cluster is not None) == exists
    shuffled = {c: data.draw(st.permutations(s)) for c, s in reversed(starts.items())}
    assert detect_cluster(shuffled) == cluster
    if cluster is not None:
        assert len(cluster.case_ids) >= rules.cluster_min_cases
        assert list(cluster.case_ids) == sorted(set(cluster.case_ids))
        assert cluster.last_window_start - cluster.first_window_start <= rules.cluster_span
        for case in cluster.case_ids:
            assert any(
                cluster.first_window_start <= s <= cluster.last_window_start for s in starts[case]
            )


def _choices(lists: list[list[datetime]]) -> list[tuple[datetime, ...]]:
    out: list[tuple[datetime, ...]] = [()]
    for options in lists:
        out = [(*prefix, o) for prefix in out for o in options]
    return out


def test_cluster_window_starts_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        detect_cluster({"a": [datetime(2021, 7, 10)]})
