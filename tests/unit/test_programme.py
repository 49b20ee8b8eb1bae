"""Vaccination-programme rules (DESIGN.md "Vaccination programme"): pure functions."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.coverage import Dose
from domain.programme import (
    Appointment,
    InvalidProgrammeEvent,
    PersonProgramme,
    PlanTarget,
    PriorityGroup,
    ProgrammeRules,
    Registration,
    RegistrationStatus,
    StockLevel,
    VaccinationPlan,
    current_appointment,
    effective_registration,
    latest_plan,
    no_show_deadline,
    person_programme,
    project_completion,
    rate_window,
    registration_status,
    stock_outlook,
    waiting_list,
)

RULES = ProgrammeRules()
T0 = datetime(2021, 7, 1, 3, 0, tzinfo=UTC)  # 10:00 in Ho Chi Minh City
D0 = date(2021, 7, 1)


def reg(
    rid: str = "r1",
    *,
    person: str = "p",
    group: PriorityGroup = PriorityGroup.GENERAL,
    hours: float = 0,
    province: str = "79",
) -> Registration:
    return Registration(rid, person, province, "760", group, T0 + timedelta(hours=hours))


def appt(aid: str, days: float, person: str = "p") -> Appointment:
    at = T0 + timedelta(days=days)
    return Appointment(aid, person, "site-1", at, at - timedelta(days=3))


def dose(did: str, days: float, vaccine: str = "AZ") -> Dose:
    return Dose(did, T0 + timedelta(days=days), vaccine, 1980, "79")


# --------------------------------------------------------------------------- groups, rules


def test_priority_groups_are_ordered_health_workers_first() -> None:
    assert [g.value for g in sorted(PriorityGroup, key=lambda g: g.rank)] == [
        "HEALTH_WORKER",
        "FRONTLINE",
        "AGE_65_PLUS",
        "CHRONIC_CONDITION",
        "ESSENTIAL_SERVICE",
        "GENERAL",
        "AGE_12_17",
    ]
    assert PriorityGroup.HEALTH_WORKER.rank == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"no_show_grace": timedelta(hours=-1)}, "no_show_grace"),
        ({"stock_rate_days": 0}, "stock_rate_days"),
        ({"plan_rate_days": 0}, "plan_rate_days"),
        ({"max_bulk_registrations": 0}, "max_bulk_registrations"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_rules_fail_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProgrammeRules(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"province": "99"}, "province"),
        ({"group": "VIP"}, "priority group"),
    ],
)
def test_invalid_registrations(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidProgrammeEvent, match=message):
        reg(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidProgrammeEvent, match="aware"):
        Registration("r", "p", "79", "760", PriorityGroup.GENERAL, datetime(2021, 7, 1))


# --------------------------------------------------------------------------- registrations


def test_the_registration_that_counts_is_the_highest_priority_then_the_earliest() -> None:
    self_ = reg("self", hours=-5)
    employer = reg("employer", group=PriorityGroup.FRONTLINE, hours=2)
    employer_later = reg("employer-2", group=PriorityGroup.FRONTLINE, hours=3)
    assert effective_registration([self_, employer, employer_later]) == employer
    assert effective_registration([]) is None


@given(st.permutations(range(6)), st.integers(0, 5))
def test_the_registration_that_counts_does_not_depend_on_the_order(
    order: list[int], repeat: int
) -> None:
    regs = [reg(f"r{i}", group=list(PriorityGroup)[i % 3], hours=(i * 7) % 5) for i in range(6)]
    shuffled = [regs[i] for i in order] + [regs[repeat]]
    assert effective_registration(shuffled) == effective_registration(regs)


def test_the_current_appointment_is_the_latest_active_one() -> None:
    missed, rebooked, cancelled = appt("a1", 1), appt("a2", 5), appt("a3", 9)
    assert current_appointment([missed, rebooked, cancelled], {"a3"}) == rebooked
    assert current_appointment([missed], {"a1"}) is None
    # A cancellation known before its appointment still cancels it.
    assert current_appointment([cancelled], {"a3", "never-booked"}) is None


# --------------------------------------------------------------------------- status


def test_no_show_deadline_is_the_end_of_the_appointments_local_day() -> None:
    # 23:30 local on 1 July is 16:30 UTC; the day ends at 17:00 UTC.
    late = datetime(2021, 7, 1, 16, 30, tzinfo=UTC)
    assert no_show_deadline(late, RULES) == datetime(2021, 7, 1, 17, 0, tzinfo=UTC)
    # 00:30 local on 2 July is still 1 July in UTC, but its local day is 2 July.
    early = datetime(2021, 7, 1, 17, 30, tzinfo=UTC)
    assert no_show_deadline(early, RULES) == datetime(2021, 7, 2, 17, 0, tzinfo=UTC)
    graced = ProgrammeRules(no_show_grace=timedelta(hours=12))
    assert no_show_deadline(late, graced) == datetime(2021, 7, 2, 5, 0, tzinfo=UTC)


def test_statuses() -> None:
    p = PersonProgramme(reg())
    assert registration_status(p, T0, RULES) == RegistrationStatus.REGISTERED
    booked = PersonProgramme(reg(), appt("a", 1))
    deadline = no_show_deadline(booked.appointment.appointment_at, RULES)  # type: ignore[union-attr]
    assert registration_status(booked, None, RULES) == RegistrationStatus.SCHEDULED
    assert registration_status(booked, deadline - timedelta(milliseconds=1), RULES) == "SCHEDULED"
    assert registration_status(booked, deadline, RULES) == RegistrationStatus.NO_SHOW
    dosed = PersonProgramme(reg(), appt("a", 1), 1, D0)
    assert registration_status(dosed, deadline + timedelta(days=9), RULES) == "VACCINATED"


@given(st.floats(-3, 10), st.floats(-3, 10), st.booleans())
def test_a_later_clock_never_turns_a_no_show_back(a: float, b: float, dosed: bool) -> None:
    p = PersonProgramme(reg(), appt("a", 2), int(dosed), D0 if dosed else None)
    early, late = sorted((T0 + timedelta(days=a), T0 + timedelta(days=b)))
    order = list(RegistrationStatus)
    before, after = registration_status(p, early, RULES), registration_status(p, late, RULES)
    assert (before, after) in {(s, s) for s in order} | {("SCHEDULED", "NO_SHOW")}


def test_a_person_joins_registration_appointments_and_doses_in_any_order() -> None:
    regs = [reg("self", hours=-1), reg("hospital", group=PriorityGroup.HEALTH_WORKER)]
    appts = [appt("a1", 1), appt("a2", 2)]
    doses = [dose("d1", 2), dose("d2", 30, "PFIZER"), dose("d1", 2)]
    want = person_programme(regs, appts, {"a2"}, doses)
    assert want is not None
    assert want.registration.registration_id == "hospital"
    assert want.appointment == appts[0]
    assert (want.doses, want.first_dose_date, want.completed_date) == (
        2,
        D0 + timedelta(days=2),
        D0 + timedelta(days=30),
    )
    for r, a, d in itertools.product(
        itertools.permutations(regs), itertools.permutations(appts), itertools.permutations(doses)
    ):
        assert person_programme(r, a, {"a2"}, d) == want
    assert person_programme([], appts, (), doses) is None


def test_a_single_dose_product_completes_at_once() -> None:
    p = person_programme([reg()], doses=[dose("d", 1, "JANSSEN")])
    assert p is not None and p.completed_date == p.first_dose_date == D0 + timedelta(days=1)


def test_the_waiting_list_is_by_priority_then_registration_time_without_the_vaccinated() -> None:
    general_early = PersonProgramme(reg("g1", person="g1", hours=-9))
    general_late = PersonProgramme(reg("g2", person="g2", hours=3))
    elder = PersonProgramme(reg("e", person="e", group=PriorityGroup.AGE_65_PLUS, hours=5))
    vaccinated = PersonProgramme(
        reg("v", person="v", group=PriorityGroup.HEALTH_WORKER), None, 1, D0
    )
    no_show = PersonProgramme(reg("n", person="n", group=PriorityGroup.FRONTLINE), appt("a", -5))
    listed = waiting_list([general_late, vaccinated, elder, general_early, no_show])
    assert [p.registration.person_id for p in listed] == ["n", "e", "g1", "g2"]


# --------------------------------------------------------------------------- stock


@given(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**5))
def test_stock_is_allocated_minus_administered_minus_discarded(a: int, b: int, c: int) -> None:
    level = StockLevel(a, b, c)
    assert level.in_stock == a - b - c
    assert (level + StockLevel(1, 0, 0)).in_stock == level.in_stock + 1
    assert (level + StockLevel(0, 1, 1)).in_stock == level.in_stock - 2


def test_days_of_stock_use_the_last_seven_days_only() -> None:
    daily = {D0 - timedelta(days=k): 10 for k in range(30)}  # 10 doses every day
    outlook = stock_outlook(StockLevel(1000, 100, 60), daily, D0, RULES)
    assert outlook.administered_in_window == 70
    assert outlook.daily_rate == 10
    assert outlook.days_left == 84
    assert stock_outlook(StockLevel(5), {}, D0, RULES).days_left is None
    assert stock_outlook(StockLevel(5), daily, None, RULES).days_left is None
    assert stock_outlook(StockLevel(5, 9), daily, D0, RULES).days_left == 0


@given(
    st.integers(0, 10**6),
    st.lists(st.integers(0, 500), min_size=1, max_size=20),
    st.integers(1, 14),
)
def test_days_left_times_the_rate_is_the_stock(stock: int, per_day: list[int], window: int) -> None:
    rules = ProgrammeRules(stock_rate_days=window)
    daily = {D0 - timedelta(days=k): n for k, n in enumerate(per_day)}
    outlook = stock_outlook(StockLevel(stock), daily, D0, rules)
    used = sum(per_day[:window])
    assert outlook.administered_in_window == used
    if used:
        assert outlook.days_left is not None
        assert outlook.days_left * outlook.daily_rate == pytest.approx(stock)
    else:
        assert outlook.days_left is None


def test_rate_window() -> None:
    assert rate_window(D0, 7) == (D0 - timedelta(days=6), D0)
    with pytest.raises(ValueError):
        rate_window(D0, 0)


# --------------------------------------------------------------------------- plans


def plan(pid: str, hours: float, target: int = 10) -> VaccinationPlan:
    return VaccinationPlan(
        pid,
        "79",
        D0 + timedelta(days=60),
        {PriorityGroup.GENERAL: PlanTarget(target, target // 2)},
        T0 + timedelta(hours=hours),
    )


def test_the_latest_plan_wins_whatever_the_order() -> None:
    plans = [plan("a", 1), plan("b", 5), plan("c", 5), plan("d", 3)]
    for order in itertools.permutations(plans):
        held = None
        for p in order:
            held = latest_plan(held, p)
        assert held == plans[2]  # latest set_at, then the larger plan id


def test_plan_targets_are_checked() -> None:
    with pytest.raises(InvalidProgrammeEvent, match="negative"):
        PlanTarget(-1, 0)
    with pytest.raises(InvalidProgrammeEvent, match="exceed"):
        PlanTarget(1, 2)
    with pytest.raises(InvalidProgrammeEvent, match="at least one"):
        VaccinationPlan("p", "79", D0, {}, T0)


def test_projected_completion_from_a_known_sequence() -> None:
    # 3 people a day for the last 7 days (21), 100 before: 121 of 200; 79 left at 3/day.
    daily = {D0 - timedelta(days=k): 3 for k in range(7)} | {D0 - timedelta(days=30): 100}
    p = project_completion(200, daily, D0, 7)
    assert (p.achieved, p.daily_rate, p.reached) == (121, 3, False)
    assert p.completion_date == D0 + timedelta(days=27)  # ceil(79 / 3)
    reached = project_completion(110, daily, D0, 7)
    # 100, then 103, 106, 109, 112 >= 110 on the fourth day of the window.
    assert reached.reached and reached.completion_date == D0 - timedelta(days=3)
    stalled = project_completion(200, {D0 - timedelta(days=30): 100}, D0, 7)
    assert (stalled.daily_rate, stalled.completion_date) == (0, None)
    assert project_completion(0, daily, D0, 7).completion_date is None


@given(
    st.integers(1, 10**5),
    st.lists(st.integers(0, 300), min_size=1, max_size=30),
    st.integers(1, 14),
)
def test_the_projection_is_the_first_day_the_current_rate_reaches_the_target(
    target: int, per_day: list[int], window: int
) -> None:
    daily = {D0 - timedelta(days=k): n for k, n in enumerate(per_day)}
    p = project_completion(target, daily, D0, window)
    assert p.achieved == sum(per_day)
    if p.reached:
        assert p.completion_date is not None and p.completion_date <= D0
        running_before = sum(n for d, n in daily.items() if d < p.completion_date)
        assert running_before < target <= running_before + daily[p.completion_date]
    elif p.daily_rate == 0:
        assert p.completion_date is None
    else:
        assert p.completion_date is not None
        days = (p.completion_date - D0).days
        # Exact in integers: the window's doses over `days` days cover what is left ...
        used = sum(per_day[:window])
        assert used * days >= (target - p.achieved) * window
        # ... and one day fewer would not.
        assert used * (days - 1) < (target - p.achieved) * window
