"""Presence: pairing scans into visits (DESIGN.md "Presence", "Order independence")."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.presence import (
    Direction,
    Scan,
    ScanInFuture,
    ScanTimeError,
    ScanTooLate,
    Visit,
    VisitDiff,
    check_scan_time,
    diff_visits,
    pair_visits,
)
from domain.rules import DEFAULT_RULES, PresenceRules
from tests.unit.presence_support import HOUR, MIN, T0, at, visit

DWELL = timedelta(minutes=60)
IN, OUT = Direction.IN, Direction.OUT


def scan(scan_id: str, minutes: float, direction: Direction) -> Scan:
    return Scan(scan_id, at(minutes), direction)


# --- rules --------------------------------------------------------------------------------------


def test_default_rules_are_the_design_numbers() -> None:
    r = DEFAULT_RULES
    assert r.default_dwell == timedelta(minutes=60)
    assert r.max_dwell == timedelta(hours=12)
    assert r.out_pairing_limit == timedelta(hours=12)
    assert r.lateness == timedelta(hours=72)
    assert r.future_tolerance == timedelta(minutes=5)
    assert r.presence_retention == timedelta(days=21)
    assert r.aerosol_tail_cap == timedelta(minutes=30)
    assert r.high_risk_threshold == timedelta(minutes=15)
    assert (r.onset_window_start_days, r.onset_window_end_days) == (-2, 11)
    assert (r.no_onset_window_start, r.no_onset_window_end) == (-48 * HOUR, 240 * HOUR)
    assert r.cluster_min_cases == 3
    assert r.cluster_span == timedelta(days=7)
    assert r.timezone == "Asia/Ho_Chi_Minh"
    assert r.zone == ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default_dwell": timedelta(0)}, "default_dwell"),
        ({"max_dwell": -HOUR}, "max_dwell"),
        ({"default_dwell": 13 * HOUR}, "exceeds max_dwell"),
        ({"lateness": -HOUR}, "lateness"),
        ({"high_risk_threshold": timedelta(0)}, "high_risk_threshold"),
        ({"onset_window_start_days": 11}, "onset window"),
        ({"no_onset_window_end": -48 * HOUR}, "no-onset window"),
        ({"cluster_min_cases": 0}, "cluster_min_cases"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ],
)
def test_bad_rules_fail_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PresenceRules(**changes)  # type: ignore[arg-type]


def test_rules_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        DEFAULT_RULES.default_dwell = HOUR  # type: ignore[misc]


def test_effective_dwell_defaults_and_clamps() -> None:
    assert DEFAULT_RULES.effective_dwell(None) == DWELL
    assert DEFAULT_RULES.effective_dwell(30 * MIN) == 30 * MIN
    assert DEFAULT_RULES.effective_dwell(24 * HOUR) == 12 * HOUR
    with pytest.raises(ValueError, match="positive"):
        DEFAULT_RULES.effective_dwell(timedelta(0))


# --- values -------------------------------------------------------------------------------------


def test_visit_length_and_validation() -> None:
    assert visit(0, 45).length == 45 * MIN
    assert visit(10, 10).length == timedelta(0)
    with pytest.raises(ValueError, match="before it starts"):
        visit(10, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        Visit(datetime(2021, 7, 10), datetime(2021, 7, 10, 1))


def test_scan_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Scan("s", datetime(2021, 7, 10, 8), IN)


def test_visits_are_ordered_by_start_then_end() -> None:
    assert sorted([visit(30, 40), visit(0, 60), visit(0, 10)]) == [
        visit(0, 10),
        visit(0, 60),
        visit(30, 40),
    ]


def test_same_instant_in_another_zone_is_the_same_visit() -> None:
    ict = timezone(timedelta(hours=7))
    assert Visit(at(0).astimezone(ict), at(60).astimezone(ict)) == visit(0, 60)


# --- pairing: one example per branch of DESIGN "Presence" -------------------------------------


def test_no_scans_no_visits() -> None:
    assert pair_visits([], DWELL) == ()


def test_trailing_open_visit_ends_after_dwell() -> None:
    assert pair_visits([scan("a", 0, IN)], DWELL) == (visit(0, 60),)


def test_out_within_12h_closes_the_visit() -> None:
    assert pair_visits([scan("a", 0, IN), scan("b", 25, OUT)], DWELL) == (visit(0, 25),)
    # an OUT may close a visit long after the dwell, up to 12 h inclusive
    assert pair_visits([scan("a", 0, IN), scan("b", 12 * 60, OUT)], DWELL) == (visit(0, 720),)


def test_double_in_within_dwell_changes_nothing() -> None:
    scans = [scan("a", 0, IN), scan("b", 10, IN)]
    assert pair_visits(scans, DWELL) == (visit(0, 60),)
    assert pair_visits([*scans, scan("c", 40, OUT)], DWELL) == (visit(0, 40),)


def test_in_after_dwell_closes_the_open_visit_and_opens_another() -> None:
    scans = [scan("a", 0, IN), scan("b", 90, IN)]
    assert pair_visits(scans, DWELL) == (visit(0, 60), visit(90, 150))


def test_in_exactly_at_dwell_is_not_a_double_scan() -> None:
    # "t - s < dwell" is a double scan; t - s == dwell is a new visit touching the old one.
    scans = [scan("a", 0, IN), scan("b", 60, IN)]
    assert pair_visits(scans, DWELL) == (visit(0, 60), visit(60, 120))


def test_out_to_a_visit_older_than_12h_becomes_a_zero_length_visit() -> None:
    scans = [scan("a", 0, IN), scan("b", 12 * 60 + 1, OUT)]
    assert pair_visits(scans, DWELL) == (visit(0, 60), visit(721, 721))


def test_out_without_in_is_a_zero_length_visit() -> None:
    assert pair_visits([scan("a", 30, OUT)], DWELL) == (visit(30, 30),)
    # two OUTs: the second finds no open visit either
    scans = [scan("a", 0, IN), scan("b", 30, OUT), scan("c", 31, OUT)]
    assert pair_visits(scans, DWELL) == (visit(0, 30), visit(31, 31))


def test_custom_dwell() -> None:
    dwell = 30 * MIN
    assert pair_visits([scan("a", 0, IN)], dwell) == (visit(0, 30),)
    assert pair_visits([scan("a", 0, IN), scan("b", 29, IN)], dwell) == (visit(0, 30),)
    assert pair_visits([scan("a", 0, IN), scan("b", 45, IN)], dwell) == (
        visit(0, 30),
        visit(45, 75),
    )


def test_dwell_above_12h_is_clamped() -> None:
    dwell = 24 * HOUR
    assert pair_visits([scan("a", 0, IN)], dwell) == (visit(0, 720),)
    # with the clamp, an IN 13 h later is a new visit, not a double scan
    assert pair_visits([scan("a", 0, IN), scan("b", 13 * 60, IN)], dwell) == (
        visit(0, 720),
        visit(780, 1500),
    )


def test_dwell_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        pair_visits([scan("a", 0, IN)], timedelta(0))


def test_custom_rules_move_the_out_pairing_limit() -> None:
    rules = PresenceRules(out_pairing_limit=2 * HOUR)
    scans = [scan("a", 0, IN), scan("b", 150, OUT)]
    assert pair_visits(scans, DWELL, rules) == (visit(0, 60), visit(150, 150))


def test_ties_are_broken_by_scan_id() -> None:
    # IN "a" then OUT "b" at the same instant: a zero-length visit
    assert pair_visits([scan("b", 0, OUT), scan("a", 0, IN)], DWELL) == (visit(0, 0),)
    # OUT "a" then IN "b": a bare OUT at t and a visit opening at t share a start; the
    # zero-length one lies inside the other and is dropped, so starts stay unique
    assert pair_visits([scan("b", 0, IN), scan("a", 0, OUT)], DWELL) == (visit(0, 60),)


def test_duplicate_scan_ids_count_once() -> None:
    scans = [scan("a", 0, IN), scan("b", 30, OUT), scan("b", 30, OUT), scan("a", 0, IN)]
    assert pair_visits(scans, DWELL) == (visit(0, 30),)


def test_conflicting_duplicates_resolve_the_same_whatever_the_order() -> None:
    first, second = scan("x", 10, IN), scan("x", 5, OUT)
    assert pair_visits([first, second], DWELL) == pair_visits([second, first], DWELL)
    assert pair_visits([first, second], DWELL) == (visit(5, 5),)


def test_late_out_shortens_the_visit() -> None:
    before = pair_visits([scan("a", 0, IN)], DWELL)
    after = pair_visits([scan("a", 0, IN), scan("b", 20, OUT)], DWELL)
    assert before == (visit(0, 60),)
    assert after == (visit(0, 20),)


def test_a_day_of_scans() -> None:
    scans = [
        scan("1", 0, IN),
        scan("2", 2, IN),  # double scan
        scan("3", 50, OUT),
        scan("4", 300, IN),  # never checked out: the next IN closes it at +dwell
        scan("5", 500, IN),
        scan("6", 520, OUT),
        scan("7", 530, OUT),  # stray OUT
        scan("8", 900, IN),  # open at the end
    ]
    assert pair_visits(reversed(scans), DWELL) == (
        visit(0, 50),
        visit(300, 360),
        visit(500, 520),
        visit(530, 530),
        visit(900, 960),
    )


# --- diff ---------------------------------------------------------------------------------------


def test_diff_of_equal_sets_is_empty() -> None:
    visits = (visit(0, 60), visit(90, 150))
    diff = diff_visits(visits, reversed(visits))
    assert diff == VisitDiff(upserted=(), removed=())
    assert diff.is_empty


def test_diff_upserts_a_moved_end_and_a_new_visit_and_removes_a_vanished_start() -> None:
    old = [visit(0, 60), visit(90, 150), visit(200, 260)]
    new = [visit(0, 60), visit(90, 120), visit(300, 360)]
    assert diff_visits(old, new) == VisitDiff(
        upserted=(visit(90, 120), visit(300, 360)),
        removed=(visit(200, 260),),
    )


def test_diff_refuses_two_visits_with_one_start() -> None:
    with pytest.raises(ValueError, match="a start identifies a visit"):
        diff_visits([visit(0, 10), visit(0, 20)], [])


def test_late_in_repairs_visits_and_the_diff_says_how() -> None:
    # An IN that arrives late re-pairs: a visit is split and an OUT moves to the new visit.
    old_scans = [scan("a", 0, IN), scan("c", 200, OUT)]
    new_scans = [*old_scans, scan("b", 150, IN)]
    old, new = pair_visits(old_scans, DWELL), pair_visits(new_scans, DWELL)
    assert old == (visit(0, 200),)
    assert new == (visit(0, 60), visit(150, 200))
    assert diff_visits(old, new) == VisitDiff(upserted=new, removed=())


# --- check_scan_time ----------------------------------------------------------------------------


def test_scan_time_bounds_are_inclusive() -> None:
    received = at(0)
    check_scan_time(received - 72 * HOUR, received)
    check_scan_time(received + 5 * MIN, received)
    check_scan_time(received, received)


def test_scan_too_late() -> None:
    received = at(0)
    with pytest.raises(ScanTooLate, match="accepted up to 3 days") as err:
        check_scan_time(received - 72 * HOUR - timedelta(milliseconds=1), received)
    assert isinstance(err.value, ScanTimeError)
    assert isinstance(err.value, ValueError)
    assert err.value.received_at == received


def test_scan_in_future() -> None:
    received = at(0)
    with pytest.raises(ScanInFuture, match="ahead of the server clock") as err:
        check_scan_time(received + 5 * MIN + timedelta(seconds=1), received)
    assert isinstance(err.value, ScanTimeError)
    assert err.value.scanned_at == received + 5 * MIN + timedelta(seconds=1)


def test_scan_time_rules_are_settings() -> None:
    rules = PresenceRules(lateness=HOUR, future_tolerance=timedelta(0))
    with pytest.raises(ScanTooLate):
        check_scan_time(at(0), at(61), rules)
    with pytest.raises(ScanInFuture):
        check_scan_time(at(0) + timedelta(seconds=1), at(0), rules)


def test_scan_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_scan_time(datetime(2021, 7, 10), at(0))


# --- properties ---------------------------------------------------------------------------------

# Scan times on a minute grid over two days: dense enough for double scans, dwell boundaries,
# 12 h boundaries and ties; ids from a small pool so some ids repeat.
# Conflicting duplicates (one id, two contents) should not exist but may: `scans_st` allows
# them, `distinct_scans_st` is what a well-behaved client sends.
scan_st = st.builds(
    Scan,
    scan_id=st.sampled_from([f"s{i}" for i in range(30)]),
    scanned_at=st.integers(0, 48 * 60).map(lambda m: T0 + m * MIN),
    direction=st.sampled_from(Direction),
)
scans_st = st.lists(scan_st, max_size=25)
distinct_scans_st = st.lists(scan_st, max_size=25, unique_by=lambda s: s.scan_id)
dwell_st = st.integers(1, 16 * 60).map(lambda m: m * MIN)
PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(scans=scans_st, dwell=dwell_st, data=st.data())
def test_pairing_depends_only_on_the_set_of_scans(
    scans: list[Scan], dwell: timedelta, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(scans))
    repeated = data.draw(st.lists(st.sampled_from(scans), max_size=10)) if scans else []
    expected = pair_visits(scans, dwell)
    assert pair_visits(shuffled, dwell) == expected
    assert pair_visits([*shuffled, *repeated], dwell) == expected


@PROPERTY
@given(scans=distinct_scans_st, dwell=dwell_st)
def test_visits_are_sorted_disjoint_bounded_and_cover_every_scan(
    scans: list[Scan], dwell: timedelta
) -> None:
    visits = pair_visits(scans, dwell)
    rules = DEFAULT_RULES
    longest = max(rules.out_pairing_limit, rules.max_dwell)
    for v in visits:
        assert v.start <= v.end
        assert v.length <= longest
    for before, after in pairwise(visits):
        # sorted, unique starts, and no shared interior (visits may touch)
        assert before.start < after.start
        assert before.end <= after.start
    scan_times = {s.scanned_at for s in scans}
    assert {v.start for v in visits} <= scan_times
    for t in scan_times:
        assert any(v.start <= t <= v.end for v in visits)
    assert len(visits) <= len(scan_times)


@PROPERTY
@given(old_scans=scans_st, new_scans=scans_st, dwell=dwell_st)
def test_applying_the_diff_to_the_old_visits_gives_the_new_ones(
    old_scans: list[Scan], new_scans: list[Scan], dwell: timedelta
) -> None:
    old, new = pair_visits(old_scans, dwell), pair_visits(new_scans, dwell)
    diff = diff_visits(old, new)
    state = {v.start: v for v in old}
    for v in diff.removed:
        del state[v.start]
    for v in diff.upserted:
        state[v.start] = v
    assert tuple(sorted(state.values())) == new
    assert diff_visits(new, new).is_empty
    assert set(diff.upserted).isdisjoint(old)
