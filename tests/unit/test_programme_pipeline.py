"""The vaccination-programme handlers end to end, in process (no Kafka, no Cassandra)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain.coverage import local_date
from tests.programme_scenarios import (
    allocation,
    appointment,
    cancellation,
    day_at,
    dose,
    plan,
    programme_scenario,
    registration,
)
from tests.scenarios import shuffled
from tests.unit.pipeline_support import Snapshot, feed, rows, run, same_rows_in_any_order

PROGRAMME_TABLES = (
    "registrations_by_person",
    "registration_counts",
    "registrations_by_status",
    "waiting_list_by_district",
    "vaccine_stock",
    "plan_progress",
    "vaccination_totals",
)


def counts(snap: Snapshot, province: str = "79") -> dict[tuple[str, str], int]:
    return {
        (r["priority_group"], r["status"]): r["people"]
        for r in snap["registration_counts"]
        if r["province"] == province
    }


def statuses(snap: Snapshot) -> dict[str, str]:
    return {r["person_id"]: r["status"] for r in snap["registrations_by_status"]}


def waiting(snap: Snapshot, district: str = "760") -> list[str]:
    listed = [r for r in snap["waiting_list_by_district"] if r["district"] == district]
    listed.sort(key=lambda r: (r["priority_rank"], r["registered_at"], r["person_id"]))
    return [r["person_id"] for r in listed]


def stock(snap: Snapshot, vaccine: str = "AZ", province: str = "79") -> dict[str, Any]:
    (row,) = [
        r for r in snap["vaccine_stock"] if (r["province"], r["vaccine"]) == (province, vaccine)
    ]
    return row


async def test_registrations_by_group_and_status_with_a_no_show_and_a_waiting_list() -> None:
    _, store = await run(programme_scenario())
    snap = await rows(store)
    assert counts(snap) == {
        ("HEALTH_WORKER", "VACCINATED"): 2,
        ("HEALTH_WORKER", "NO_SHOW"): 1,
        ("GENERAL", "REGISTERED"): 2,
        ("AGE_65_PLUS", "REGISTERED"): 1,
    }
    assert statuses(snap)["hw2"] == "NO_SHOW"
    # Priority first (the no-show health worker), then registration time.
    assert waiting(snap) == ["hw2", "old", "g1"]
    assert waiting(snap, "761") == ["g2"]
    (hw3,) = [r for r in snap["registrations_by_person"] if r["person_id"] == "hw3"]
    assert (hw3["registration_id"], hw3["priority_group"], hw3["doses"]) == (
        "reg-hw3",
        "HEALTH_WORKER",
        1,
    )
    assert hw3["completed_date"] == local_date(day_at(2, 9))  # a single-dose product
    (totals,) = snap["vaccination_totals"]
    assert (totals["allocated"], totals["administered"], totals["discarded"]) == (1500, 3, 5)
    assert totals["registered"] == 6
    assert totals["as_of"] == day_at(3, 17)


async def test_stock_goes_down_with_doses_and_discards() -> None:
    _, store = await run(programme_scenario())
    az = stock(await rows(store))
    assert (az["allocated"], az["administered"], az["discarded"], az["in_stock"]) == (
        1000,
        2,
        5,
        993,
    )
    # Two AZ doses in the 7 local days up to day 3: 2/7 a day, 993 doses last 3475.5 days.
    assert az["administered_in_window"] == 2
    assert az["daily_rate"] == pytest.approx(2 / 7)
    assert az["days_of_stock_left"] == pytest.approx(993 * 7 / 2)
    assert az["as_of"] == local_date(day_at(3, 17))


async def test_the_rate_window_follows_the_provinces_clock() -> None:
    events = [*programme_scenario(), allocation("alloc-late", 10, day_at(12))]
    _, store = await run(events)
    az = stock(await rows(store))
    # Day 12: the doses of days 1-3 left the 7-day window; no rate, no days-left figure.
    assert (az["administered_in_window"], az["daily_rate"], az["days_of_stock_left"]) == (
        0,
        0,
        None,
    )
    assert az["in_stock"] == 1003


async def test_order_and_duplicates_do_not_change_the_projections() -> None:
    await same_rows_in_any_order(programme_scenario(), 8)


@pytest.mark.parametrize("dose_first", [True, False])
async def test_a_dose_moves_a_registration_to_vaccinated_whichever_comes_first(
    dose_first: bool,
) -> None:
    reg = registration("p", day_at(0, 9))
    d = dose("p", "d-p", day_at(1, 9), "PFIZER", province="79")
    _, store = await run([d, reg] if dose_first else [reg, d])
    snap = await rows(store)
    assert statuses(snap) == {"p": "VACCINATED"}
    assert waiting(snap) == []
    (row,) = snap["registrations_by_person"]
    assert (row["doses"], row["first_dose_date"]) == (1, local_date(day_at(1, 9)))


async def test_an_appointment_becomes_a_no_show_only_when_the_provinces_clock_passes_its_day() -> (
    None
):
    events = [
        registration("p", day_at(0, 9)),
        appointment("p", "a-p", day_at(1, 23)),
        allocation("alloc", 10, day_at(1, 22)),  # the province's clock: day 1, 22:00
    ]
    p, store = await run(events)
    assert statuses(await rows(store)) == {"p": "SCHEDULED"}
    # Anything later in the province moves the clock past midnight.
    await feed(p, [dose("q", "d-q", day_at(2, 0) + timedelta(minutes=1), "AZ", province="79")])
    snap = await rows(store)
    assert statuses(snap) == {"p": "NO_SHOW"}
    assert counts(snap) == {("GENERAL", "NO_SHOW"): 1}
    # A late dose for the no-show: vaccinated after all.
    await feed(p, [dose("p", "d-p", day_at(3), "AZ", province="79")])
    snap = await rows(store)
    assert statuses(snap) == {"p": "VACCINATED"}
    assert counts(snap) == {("GENERAL", "VACCINATED"): 1}


async def test_a_rescheduled_appointment_replaces_a_missed_one() -> None:
    events = [
        registration("p", day_at(0, 9)),
        appointment("p", "a1", day_at(1)),
        appointment("p", "a2", day_at(5), scheduled_at=day_at(3)),
        allocation("alloc", 10, day_at(3)),
    ]
    _, store = await run(events)
    snap = await rows(store)
    assert statuses(snap) == {"p": "SCHEDULED"}
    (row,) = snap["waiting_list_by_district"]
    assert row["appointment_at"] == day_at(5)


async def test_a_cancellation_delivered_before_its_appointment_still_cancels_it() -> None:
    events = [
        cancellation("p", "a1", day_at(0, 12)),
        registration("p", day_at(0, 9)),
        appointment("p", "a1", day_at(1)),
        allocation("alloc", 10, day_at(4)),
    ]
    _, store = await run(events)
    assert statuses(await rows(store)) == {"p": "REGISTERED"}


async def test_a_registration_moved_to_another_province_leaves_nothing_behind() -> None:
    events = [
        registration("p", day_at(0, 9), province="79"),
        registration(
            "p",
            day_at(0, 10),
            group="HEALTH_WORKER",
            province="01",
            district="001",
            registration_id="reg-p-hospital",
        ),
    ]
    for order in (events, events[::-1]):
        _, store = await run(order)
        snap = await rows(store)
        assert counts(snap, "79") == {}
        assert counts(snap, "01") == {("HEALTH_WORKER", "REGISTERED"): 1}
        assert [(r["province"], r["registered"]) for r in snap["vaccination_totals"]] == [("01", 1)]
        assert [r["province"] for r in snap["waiting_list_by_district"]] == ["01"]


async def test_plan_progress_and_projected_completion_from_a_known_sequence_of_doses() -> None:
    # 10 registered health workers; target 8 with a dose, 4 fully, by day 30.
    # First doses: 2 on day 1, 2 on day 2 -> 4 people in the 7 days up to day 2, 4/7 a day.
    # Remaining 4 -> ceil(4 * 7 / 4) = 7 days after day 2: day 9.
    events = [plan("plan-1", day_at(0), day_at(30).date(), {"HEALTH_WORKER": (8, 4)})]
    events += [registration(f"hw{i}", day_at(0, 9), group="HEALTH_WORKER") for i in range(10)]
    events += [dose(f"hw{i}", f"d{i}", day_at(1 + i // 2), "AZ", province="79") for i in range(4)]
    # A superseded plan set earlier (delivered later) changes nothing: the latest plan wins.
    events.append(plan("plan-0", day_at(0, 8), day_at(60).date(), {"GENERAL": (1, 1)}))
    _, store = await run(events)
    (row,) = (await rows(store))["plan_progress"]
    assert (row["plan_id"], row["priority_group"]) == ("plan-1", "HEALTH_WORKER")
    assert (row["people_vaccinated"], row["people_fully_vaccinated"]) == (4, 0)
    assert row["vaccinated_daily_rate"] == pytest.approx(4 / 7)
    assert row["projected_vaccinated_date"] == day_at(9).date()
    assert row["projected_fully_vaccinated_date"] is None  # nobody completed: no rate yet
    assert row["as_of"] == day_at(2).date()
    # Second doses for two of them (day 3): the fully-vaccinated target of 4 is projected at
    # 2/7 a day -> ceil(2 * 7 / 2) = 7 days after day 3.
    more = [dose(f"hw{i}", f"d{i}-2", day_at(3), "AZ", province="79") for i in range(2)]
    _, store = await run(events + more)
    (row,) = (await rows(store))["plan_progress"]
    assert (row["people_vaccinated"], row["people_fully_vaccinated"]) == (4, 2)
    assert row["projected_fully_vaccinated_date"] == day_at(10).date()
    assert row["projected_vaccinated_date"] == day_at(3 + 7).date()  # 4/7 a day, as of day 3


async def test_a_reached_target_reports_the_day_it_was_reached() -> None:
    events = [plan("plan-1", day_at(0), day_at(30).date(), {"GENERAL": (2, 0)})]
    events += [registration(f"g{i}", day_at(0, 9)) for i in range(3)]
    events += [dose(f"g{i}", f"d{i}", day_at(1 + i), "AZ", province="79") for i in range(3)]
    _, store = await run(events)
    (row,) = (await rows(store))["plan_progress"]
    assert row["people_vaccinated"] == 3
    assert row["projected_vaccinated_date"] == day_at(2).date()


async def test_a_stock_movement_delivered_again_at_a_new_offset_counts_once() -> None:
    p, store = await run(
        [allocation("alloc", 10, day_at(0)), dose("p", "d1", day_at(1), "AZ", province="79")]
    )
    (drawn,) = p.logs["stock-movements"]
    p.append("stock-movements", "79", drawn.value)  # a redelivery after a producer retry
    await feed(p, [allocation("alloc", 10, day_at(0))])  # the allocation posted twice
    az = stock(await rows(store))
    assert (az["allocated"], az["administered"], az["in_stock"]) == (10, 1, 9)


async def test_bad_programme_events_are_dead_lettered() -> None:
    events = [
        registration("p", day_at(0), province="99"),  # no such province
        allocation("bad", 0, day_at(0)),  # no doses
        allocation("bad-product", 5, day_at(0), vaccine="NOPE"),
        plan("bad-plan", day_at(0), day_at(9).date(), {"GENERAL": (1, 2)}),  # full > first
        registration("q", day_at(0)),
    ]
    p, store = await run(events)
    assert len(p.logs["vaccination-registrations.dlq"]) == 1
    assert len(p.logs["vaccine-supply.dlq"]) == 3
    snap = await rows(store)
    assert statuses(snap) == {"q": "REGISTERED"}
    assert snap["vaccine_stock"] == [] and snap["plan_progress"] == []


async def test_a_busy_programme_converges_whatever_the_order() -> None:
    from tests.programme_scenarios import programme_town

    for town_seed in (1, 2):
        events = programme_town(town_seed)
        _, in_order = await run(events)
        expected = await rows(in_order)
        snap = await rows(in_order, PROGRAMME_TABLES)
        seen = {r["status"] for r in snap["registrations_by_status"]}
        assert seen == {"REGISTERED", "SCHEDULED", "VACCINATED", "NO_SHOW"}
        # The later plan of each province (two groups) replaced the first one (two groups).
        assert sorted(r["priority_group"] for r in snap["plan_progress"]) == [
            "AGE_65_PLUS",
            "AGE_65_PLUS",
            "GENERAL",
            "GENERAL",
        ]
        for seed in range(4):
            _, store = await run(shuffled(events, seed), twice=seed % 2 == 0)
            assert await rows(store) == expected, f"town {town_seed}, seed {seed}"
