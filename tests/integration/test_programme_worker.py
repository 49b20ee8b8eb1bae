"""The vaccination programme through the real worker, Kafka and Cassandra.

Each phase publishes events, then polls the keyspace until it equals what the same handlers
compute in process (``expected_rows``), so processing order between phases is known: that is
how "a dose first, then the registration" and the reverse are both exercised for real.
"""

from __future__ import annotations

from typing import Any

import pytest

from covidtech.processes import free_port
from covidtech.settings import Settings
from schemas.codec import default_registry
from tests.integration.worker_harness import (
    comparable,
    expected_rows,
    publish_sync,
    read_all,
    resumes_after_a_kill,
    snapshot,
    worker,
)
from tests.programme_scenarios import (
    allocation,
    appointment,
    day_at,
    discard,
    dose,
    plan,
    programme_town,
    registration,
)
from tests.scenarios import Ev, shuffled
from tests.support import run_coroutine

pytestmark = pytest.mark.integration

Snapshot = dict[str, list[dict[str, Any]]]


def converge(s: Settings, want: Snapshot, proc: Any, timeout: float = 120) -> Snapshot:
    """``worker_harness.converge``, naming the differing rows when it gives up."""
    from tests.integration import worker_harness

    try:
        return worker_harness.converge(s, want, proc, timeout)
    except AssertionError as e:
        got, target = comparable(snapshot(s)), comparable(want)
        diff = {
            t: {
                "missing": [r for r in target[t] if r not in got[t]],
                "unexpected": [r for r in got[t] if r not in target[t]],
            }
            for t in target
            if got[t] != target[t]
        }
        raise AssertionError(f"{e}: {diff}") from None


def counts(snap: Snapshot, province: str = "79") -> dict[tuple[str, str], int]:
    return {
        (r["priority_group"], r["status"]): r["people"]
        for r in snap["registration_counts"]
        if r["province"] == province
    }


def status_of(snap: Snapshot, person: str) -> str:
    (row,) = [r for r in snap["registrations_by_status"] if r["person_id"] == person]
    return str(row["status"])


def the_row(snap: Snapshot, table: str, **key: Any) -> dict[str, Any]:
    (row,) = [r for r in snap[table] if all(r[k] == v for k, v in key.items())]
    return row


def bulk_registration(institution: str, people: list[str]) -> list[Ev]:
    """An institution's list as the ingest API publishes it: one event per accepted row."""
    return [
        registration(p, day_at(0, 9), group="HEALTH_WORKER", institution=institution)
        for p in people
    ]


def test_registration_appointments_doses_stock_and_plan_step_by_step(
    isolated: Settings,
) -> None:
    # Phase 1: supply, a plan, an institution's list (one row twice, one row with a province
    # that does not exist), a self-registration, and a dose for someone not yet registered.
    phase1 = [
        allocation("alloc-az", 100, day_at(0, 8)),
        allocation("alloc-pf", 60, day_at(0, 8), vaccine="PFIZER"),
        plan("plan-79", day_at(0, 8), day_at(30).date(), {"HEALTH_WORKER": (6, 4)}),
        *bulk_registration("hospital-7", ["hw1", "hw2", "hw3", "hw4", "hw5"]),
        registration("hw2", day_at(0, 9), group="HEALTH_WORKER", institution="hospital-7"),
        registration("bad", day_at(0, 9), province="99"),
        registration("self", day_at(0, 10)),
        dose("walkin", "d-walkin", day_at(1, 9), "AZ", province="79"),
    ]
    events = list(phase1)
    publish_sync(isolated, phase1)
    with worker(isolated, free_port()) as proc:
        snap = converge(isolated, expected_rows(events), proc)
        assert counts(snap) == {("HEALTH_WORKER", "REGISTERED"): 5, ("GENERAL", "REGISTERED"): 1}
        (letter,) = run_coroutine(
            read_all(isolated, isolated.topic("vaccination-registrations.dlq"), 1)
        )
        dead = default_registry().decode(letter).record
        assert dead["key"] == b"bad" and "province" in dead["error"]

        # Phase 2: "walkin" registers after their dose was processed; "self" gets a dose
        # after registering; hw1..hw3 get appointments on day 2.
        phase2 = [
            registration("walkin", day_at(1, 12)),
            dose("self", "d-self", day_at(1, 15), "PFIZER", province="79"),
            *(appointment(p, f"a-{p}", day_at(2, 9)) for p in ("hw1", "hw2", "hw3")),
        ]
        events += phase2
        publish_sync(isolated, phase2)
        snap = converge(isolated, expected_rows(events), proc)
        assert status_of(snap, "walkin") == "VACCINATED"
        assert status_of(snap, "self") == "VACCINATED"
        assert status_of(snap, "hw3") == "SCHEDULED"

        # Phase 3: hw1 and hw2 come on day 2, hw3 does not; on day 3 the province records
        # more doses and a discard, which moves its clock past day 2: hw3 is a no-show.
        phase3 = [
            dose("hw1", "d-hw1", day_at(2, 9), "AZ", province="79"),
            dose("hw2", "d-hw2", day_at(2, 10), "JANSSEN", province="79"),
            dose("hw4", "d-hw4", day_at(3, 9), "AZ", province="79"),
            dose("hw5", "d-hw5", day_at(3, 9), "AZ", province="79"),
            discard("disc-1", 10, day_at(3, 17)),
        ]
        events += phase3
        publish_sync(isolated, phase3)
        snap = converge(isolated, expected_rows(events), proc)
    assert status_of(snap, "hw3") == "NO_SHOW"
    assert counts(snap) == {
        ("HEALTH_WORKER", "VACCINATED"): 4,
        ("HEALTH_WORKER", "NO_SHOW"): 1,
        ("GENERAL", "VACCINATED"): 2,
    }
    (waiting,) = snap["waiting_list_by_district"]
    assert (waiting["person_id"], waiting["status"]) == ("hw3", "NO_SHOW")

    # Stock: AZ 100 allocated - 4 administered (walkin, hw1, hw4, hw5) - 10 discarded.
    az = the_row(snap, "vaccine_stock", province="79", vaccine="AZ")
    assert (az["allocated"], az["administered"], az["discarded"], az["in_stock"]) == (
        100,
        4,
        10,
        86,
    )
    assert az["days_of_stock_left"] == pytest.approx(86 * 7 / 4)

    # Plan: health workers with a dose on day 2 (hw1, hw2) and day 3 (hw4, hw5): 4 of 6,
    # 4 in the last 7 days, 2 left -> ceil(2 * 7 / 4) = 4 days after day 3.
    progress = the_row(snap, "plan_progress", province="79", priority_group="HEALTH_WORKER")
    assert (progress["people_vaccinated"], progress["people_fully_vaccinated"]) == (4, 1)
    assert progress["projected_vaccinated_date"] == day_at(7).date()
    assert progress["as_of"] == day_at(3).date()

    totals = the_row(snap, "vaccination_totals", area="VN", province="79")
    assert (totals["allocated"], totals["administered"], totals["registered"]) == (160, 6, 7)


def test_a_shuffled_busy_programme_delivered_twice_gives_the_same_rows(
    isolated: Settings,
) -> None:
    events = programme_town(5, people=150)
    want = expected_rows(events)
    statuses = {r["status"] for r in want["registrations_by_status"]}
    assert statuses == {"REGISTERED", "SCHEDULED", "VACCINATED", "NO_SHOW"}
    publish_sync(isolated, shuffled(events, seed=11) + shuffled(events, seed=12))
    with worker(isolated, free_port()) as proc:
        converge(isolated, want, proc, timeout=180)


def test_a_killed_worker_resumes_the_programme_without_double_counts(isolated: Settings) -> None:
    resumes_after_a_kill(
        isolated,
        programme_town(9, people=400),
        "registrations_by_person",
        midway_within=120,
        converge_within=240,
    )
