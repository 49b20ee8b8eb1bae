"""The check-in status: the rule's boundaries, its settings, and the facts the worker keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from covidtech.settings import load
from domain.status import (
    DEFAULT_RULES,
    CheckInStatus,
    HealthFacts,
    StatusRules,
    check_in_status,
)
from projections.memory import InMemoryStore
from projections.status import health_facts
from tests.scenarios import dose, m, outbreak_at_venue, scan
from tests.unit.pipeline_support import feed, run

AT = datetime(2021, 9, 15, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
GREEN, YELLOW, RED = CheckInStatus.GREEN, CheckInStatus.YELLOW, CheckInStatus.RED
VACCINATED = AT - 60 * DAY


def status(**facts: object) -> CheckInStatus:
    return check_in_status(HealthFacts(**facts), AT)  # type: ignore[arg-type]


def test_nobody_known_is_yellow_and_fully_vaccinated_is_green() -> None:
    assert status() is YELLOW
    assert status(fully_vaccinated_at=VACCINATED) is GREEN
    assert status(fully_vaccinated_at=AT) is GREEN  # from the completing dose on
    assert status(fully_vaccinated_at=AT + timedelta(seconds=1)) is YELLOW


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), RED),
        (14 * DAY - timedelta(seconds=1), RED),
        (14 * DAY, GREEN),  # recovered: older than the red window, within 180 days
        (180 * DAY - timedelta(seconds=1), GREEN),
        (180 * DAY, YELLOW),  # neither recovered nor vaccinated any more
    ],
)
def test_a_positive_is_red_for_14_days_then_recovery_for_180(
    age: timedelta, expected: CheckInStatus
) -> None:
    assert status(positives=(AT - age,)) is expected


def test_the_latest_positive_counts_and_future_facts_do_not() -> None:
    assert status(positives=(AT - 200 * DAY, AT - 3 * DAY)) is RED
    # a positive sampled after the scan (an offline batch uploaded late) does not count
    assert status(positives=(AT + DAY,), fully_vaccinated_at=VACCINATED) is GREEN
    assert status(positives=(AT - 20 * DAY, AT + DAY)) is GREEN


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), YELLOW),
        (14 * DAY - timedelta(seconds=1), YELLOW),
        (14 * DAY, GREEN),
        (-DAY, GREEN),  # an exposure after the scan
    ],
)
def test_a_high_exposure_is_yellow_for_14_days(age: timedelta, expected: CheckInStatus) -> None:
    assert status(high_exposures=(AT - age,), fully_vaccinated_at=VACCINATED) is expected


def test_red_wins_over_yellow_and_yellow_over_green() -> None:
    assert status(positives=(AT - DAY,), high_exposures=(AT,), fully_vaccinated_at=VACCINATED) is (
        RED
    )
    assert status(high_exposures=(AT - DAY,), positives=(AT - 30 * DAY,)) is YELLOW


def test_the_windows_are_settings() -> None:
    rules = load({"COVIDTECH_RULES": "red_window=10d,exposure_window=7d,recovery_window=90d"})
    status_rules = rules.status_rules()
    assert status_rules == StatusRules(10 * DAY, 7 * DAY, 90 * DAY)
    assert rules.domain_rules() == load({}).domain_rules()  # the other rules keep theirs
    facts = HealthFacts(positives=(AT - 11 * DAY,))
    assert check_in_status(facts, AT) is RED
    assert check_in_status(facts, AT, status_rules) is GREEN
    exposed = HealthFacts(high_exposures=(AT - 8 * DAY,), fully_vaccinated_at=VACCINATED)
    assert check_in_status(exposed, AT, status_rules) is GREEN
    delayed = load({"COVIDTECH_RULES": "vaccination_delay=14d"}).status_rules()
    young = HealthFacts(fully_vaccinated_at=AT - 13 * DAY)
    assert check_in_status(young, AT, delayed) is YELLOW
    assert load({}).status_rules() == DEFAULT_RULES


# --------------------------------------------------------------------------- the facts


async def _status_of(store: InMemoryStore, person: str, at: datetime) -> CheckInStatus:
    return check_in_status(await health_facts(store, person), at)


async def test_the_worker_keeps_the_facts_that_colour_each_person() -> None:
    events = [
        *outbreak_at_venue(),
        dose("d", "d1", m(-60 * 24 * 60), "AZ"),
        dose("d", "d2", m(-60 * 24 * 30), "PFIZER"),
        dose("b", "b1", m(-60 * 24 * 30), "AZ"),  # one dose of two
    ]
    p, store = await run(events)
    now = m(31 * 60)
    assert await _status_of(store, "case", now) is RED  # positive sample collected at m(1440)
    assert await _status_of(store, "a", now) is YELLOW  # HIGH exposure
    assert await _status_of(store, "b", now) is YELLOW  # LOW exposure, not fully vaccinated
    assert await _status_of(store, "d", now) is GREEN  # fully vaccinated, not exposed
    facts = await health_facts(store, "a")
    assert facts.high_exposures == (m(30),)  # the end of A's contact visit
    assert (await health_facts(store, "d")).fully_vaccinated_at == m(-60 * 24 * 30)
    # E scans in at 10:50 without an OUT: the dwell makes [10:50, 11:50], 40 min inside the
    # case's window (HIGH). E's offline scanner then delivers the OUT at 10:50: the alert is
    # withdrawn and stops counting.
    await feed(p, [scan("e", "venue", m(50), "IN")])
    assert await _status_of(store, "e", now) is YELLOW
    assert (await health_facts(store, "e")).high_exposures == (m(110),)
    await feed(p, [scan("e", "venue", m(50), "OUT"), dose("e", "e1", m(-60 * 24 * 20), "JANSSEN")])
    assert (await health_facts(store, "e")).high_exposures == ()
    assert await _status_of(store, "e", now) is GREEN
