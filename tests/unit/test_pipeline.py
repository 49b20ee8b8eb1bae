"""The stream handlers end to end, in process (no Kafka, no Cassandra)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import streams.local
from projections.memory import InMemoryStore
from streams.batch import process_batch
from streams.local import LocalPipeline
from tests.scenarios import dose, m, outbreak_at_venue, pooled_retests, scan, town
from tests.unit.pipeline_support import active_only, feed, rows, run, same_rows_in_any_order


def alerts(snapshot: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[str, str, int]]:
    return {
        r["contact_person_id"]: (r["risk"], r["status"], r["overlap_seconds"])
        for r in snapshot["alerts_by_person"]
    }


async def test_a_case_alerts_the_contacts_that_overlapped_its_window() -> None:
    _, store = await run(outbreak_at_venue())
    snap = await rows(store)
    assert alerts(snap) == {"a": ("HIGH", "ACTIVE", 1800), "b": ("LOW", "ACTIVE", 600)}
    (case,) = snap["cases_by_person"]
    assert case["person_id"] == "case"
    (window,) = snap["exposure_windows_by_venue"]
    assert (window["window_start"], window["window_end"]) == (m(0), m(90))
    assert {r["person_id"] for r in snap["visits_by_venue"]} == {"case", "a", "b", "d"}


async def test_order_and_duplicates_do_not_change_the_projections() -> None:
    await same_rows_in_any_order(outbreak_at_venue(), 5)


async def test_a_busy_town_converges_whatever_the_order() -> None:
    """Only ACTIVE alerts are a function of the set of events; WITHDRAWN rows record that an
    alert was published before a later event removed its overlap (history, kept for audit)."""
    await same_rows_in_any_order(town(3, people=80, venues=6), 3, active_only)


async def test_random_interleavings_of_derived_topics_converge() -> None:
    """Visits, windows and cases interleaved at random, in random batch sizes."""
    events = town(4, people=60, venues=5) + outbreak_at_venue("q")
    _, in_order = await run(events)
    expected = active_only(await rows(in_order))
    for seed in range(3):
        _, store = await run(events, seed=seed)
        assert active_only(await rows(store)) == expected, f"seed {seed}"


async def test_a_late_out_withdraws_an_alert() -> None:
    # B scans in at 11:25 without an OUT: the dwell makes the visit [11:25, 12:25], which
    # overlaps the case's window (to 11:30) by 5 min -> LOW.
    events = [e for e in outbreak_at_venue() if e.record.get("person_id") != "b"]
    events.append(scan("b", "venue", m(85), "IN"))
    p, store = await run(events)
    assert alerts(await rows(store))["b"] == ("LOW", "ACTIVE", 300)
    # B's offline scanner delivers the OUT late: B left at 11:25 -> zero overlap.
    await feed(p, [scan("b", "venue", m(85), "OUT")])
    snap = await rows(store)
    assert alerts(snap)["b"] == ("LOW", "WITHDRAWN", 0)
    (row,) = [r for r in snap["alerts_by_province"] if r["contact_person_id"] == "b"]
    assert row["status"] == "WITHDRAWN"
    (withdrawn,) = [
        e
        for e in p.logs["exposure-alerts"]
        if p.registry.decode(e.value).record["status"] == "WITHDRAWN"
    ]
    assert p.registry.decode(withdrawn.value).record["version"] == 2


async def test_pooled_positive_then_individual_retests() -> None:
    _, store = await run(pooled_retests())
    snap = await rows(store)
    states = {(r["person_id"], r["sample_id"]): r["state"] for r in snap["results_by_person"]}
    assert states[("p1", "pool")] == "POOL_POSITIVE_RETEST"
    assert states[("p3", "pool")] == "POOL_POSITIVE_RETEST"
    assert states[("p1", "r1")] == "NEGATIVE"
    assert [r["person_id"] for r in snap["cases_by_person"]] == ["p2"]


async def test_single_dose_product_with_booster_and_duplicate_dose() -> None:
    events = [
        dose("j", "d1", m(0), "JANSSEN"),
        dose("j", "d2", m(60 * 24 * 90), "PFIZER"),
        dose("j", "d2", m(60 * 24 * 90), "PFIZER"),
        dose("k", "k1", m(0), "AZ"),
        dose("k", "k2", m(60 * 24 * 60), "PFIZER"),
    ]
    _, store = await run(events, twice=True)
    snap = await rows(store)
    latest = max(
        (r for r in snap["coverage_daily"] if r["age_band"] == "18-49"), key=lambda r: r["day"]
    )
    assert (
        latest["people_vaccinated"],
        latest["people_fully_vaccinated"],
        latest["total_boosters"],
        latest["total_doses"],
    ) == (2, 2, 1, 4)
    assert len(snap["doses_by_person"]) == 4


async def test_custom_dwell_decides_the_visit_end() -> None:
    _, store = await run([scan("x", "gym", m(0), "IN", dwell=120)])
    (visit,) = (await rows(store))["visits_by_person"]
    assert visit["visit_end"] == m(120)


async def test_poison_bytes_are_dead_lettered_and_processing_continues() -> None:
    store = InMemoryStore()
    p = LocalPipeline(store)
    p.append("checkins", "x", b"\x00garbage")
    await feed(p, [scan("y", "v", m(0), "IN")])
    assert len(p.logs["checkins.dlq"]) == 1
    assert len(await store.scan("visits_by_person")) == 1


async def test_a_fold_in_chunks_with_trimming_gives_the_same_rows() -> None:
    """How ``covidtech replay`` folds the log: chunk by chunk, dropping what every handler
    has read, so memory holds only the state and the rows."""
    events = town(5, people=60, venues=5) + outbreak_at_venue("t")
    _, whole = await run(events)
    store = InMemoryStore()
    p = LocalPipeline(store)
    for start in range(0, len(events), 97):
        await feed(p, events[start : start + 97])
        p.trim()
        assert all(len(log) == 0 for log in p.logs.values())
    assert active_only(await rows(store)) == active_only(await rows(whole))
    # Every row, with its expiry and write timestamp, recreates the store elsewhere.
    copy = InMemoryStore()
    await copy.apply(list(store.upserts()))
    assert await rows(copy) == await rows(store)


async def test_handlers_never_change_committed_state_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler stages a changed copy of the state it read: a batch that fails is redone
    from the committed state, and a refused message undoes only what ``set_state``
    replaced, so a change made in place would outlive both."""
    checked = 0

    async def process_checked(handler: Any, batch: Any, store: Any, tables: Any, *a: Any) -> Any:
        nonlocal checked
        before = copy.deepcopy(tables)
        ctx = await process_batch(handler, batch, store, tables, *a)
        assert tables == before, f"{type(handler).__name__} changed committed state"
        checked += 1
        return ctx

    monkeypatch.setattr(streams.local, "process_batch", process_checked)
    store = InMemoryStore()
    p = LocalPipeline(store, batch_size=7)
    await feed(p, town(6, people=40, venues=4) + outbreak_at_venue("w"))
    assert checked > 20 and await store.scan("alerts_by_person")
