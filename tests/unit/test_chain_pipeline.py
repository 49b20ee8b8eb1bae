"""Chains of transmission through the stream handlers, in process (streams/chains.py)."""

from __future__ import annotations

from typing import Any

from domain.rules import DEFAULT_RULES
from projections.memory import InMemoryStore
from streams.local import LocalPipeline
from tests.chain_scenarios import at, chain_at_venue, positive
from tests.scenarios import Ev, outbreak_at_venue, scan, shuffled, town
from tests.unit.pipeline_support import active_only, feed, rows, run


async def links(store: InMemoryStore) -> set[tuple[str, str, str]]:
    return {
        (r["source_person_id"], r["case_person_id"], r["venue_id"])
        for r in await store.scan("transmission_links_by_province")
    }


async def test_a_chain_links_cases_through_venues() -> None:
    _, store = await run(chain_at_venue())
    assert await links(store) == {("src", "p", "venue"), ("p", "q", "cafe")}
    by_case = {r["case_person_id"]: r for r in await store.scan("transmission_links_by_province")}
    first = by_case["p"]
    assert first["province"] == "79"
    assert first["case_collected_at"] == at(0, 4)
    assert first["source_collected_at"] == at(0, 1)
    assert first["exposure_at"] == at(10)
    assert first["day"] == at(0, 4).astimezone(DEFAULT_RULES.zone).date()
    assert (first["case_sample_id"], first["source_sample_id"]) == ("tube-p", "tube-src")


async def test_order_duplicates_and_interleavings_do_not_change_the_links() -> None:
    events = chain_at_venue() + outbreak_at_venue("o")
    _, in_order = await run(events)
    expected = active_only(await rows(in_order))
    assert len(expected["transmission_links_by_province"]) == 2
    for seed in range(4):
        _, store = await run(shuffled(events, seed), twice=True)
        assert active_only(await rows(store)) == expected, f"shuffled {seed}"
        _, store = await run(events, seed=seed)
        assert active_only(await rows(store)) == expected, f"interleaved {seed}"


async def test_a_busy_town_with_a_chain_converges() -> None:
    events = town(5, people=60, venues=5) + chain_at_venue("c")
    _, in_order = await run(events)
    expected = active_only(await rows(in_order))
    assert ("csrc", "cp", "cvenue") in await links(in_order)
    for seed in range(2):
        _, store = await run(shuffled(events, seed), seed=seed)
        assert active_only(await rows(store)) == expected, f"seed {seed}"


def _without(events: list[Ev], person: str, venue: str) -> list[Ev]:
    return [
        e
        for e in events
        if not (e.record.get("person_id") == person and e.record.get("venue_id") == venue)
    ]


async def test_a_withdrawn_alert_takes_its_link_away() -> None:
    # p scans in at 10:10 and never out: the dwell makes the visit 10:10-11:10, HIGH.
    events = [*_without(chain_at_venue(), "p", "venue"), scan("p", "venue", at(10), "IN")]
    pipeline, store = await run(events)
    assert ("src", "p", "venue") in await links(store)
    # p's offline scanner delivers an OUT at 10:10: a zero-length visit, the alert withdrawn.
    e = scan("p", "venue", at(10), "OUT")
    await feed(pipeline, [e])
    assert ("src", "p", "venue") not in await links(store)
    statuses = {
        r["status"]
        for r in await store.scan("alerts_by_person")
        if r["contact_person_id"] == "p" and r["case_person_id"] == "src"
    }
    assert statuses == {"WITHDRAWN"}
    # The same events in any order give the same links (here: none through the venue).
    final = [*events, e]
    for seed in range(3):
        _, again = await run(shuffled(final, seed), seed=seed)
        assert await links(again) == await links(store)


async def test_a_lowered_alert_takes_its_link_away() -> None:
    events = [*_without(chain_at_venue(), "p", "venue"), scan("p", "venue", at(10), "IN")]
    pipeline, store = await run(events)
    await feed(pipeline, [scan("p", "venue", at(20), "OUT")])  # 10 minutes: LOW
    assert await links(store) == {("p", "q", "cafe")}


async def test_an_alert_raised_after_the_contacts_case_still_links() -> None:
    """The source's result comes last: p and q are cases before any alert exists."""
    events = chain_at_venue()
    late = [e for e in events if e.key in {"tube-src"}]
    early = [e for e in events if e not in late]
    pipeline, store = await run(early)
    assert await links(store) == {("p", "q", "cafe")}
    await feed(pipeline, late)
    assert await links(store) == {("src", "p", "venue"), ("p", "q", "cafe")}


async def test_a_late_earlier_positive_moves_the_link_or_turns_it_round() -> None:
    pipeline, store = await run(chain_at_venue())
    # An earlier positive of p, two days after the visit: p's case moves to that day.
    await feed(pipeline, positive("p", at(0, 2), tube="tube-p-early"))
    by_case = {r["case_person_id"]: r for r in await store.scan("transmission_links_by_province")}
    assert by_case["p"]["case_collected_at"] == at(0, 2)
    assert by_case["p"]["case_sample_id"] == "tube-p-early"
    assert len(await store.scan("transmission_links_by_province")) == 2
    # An even earlier one, before src's: p was sampled first, so p is src's source.
    await feed(pipeline, positive("p", at(12 * 60), tube="tube-p-first"))
    assert await links(store) == {("p", "src", "venue"), ("p", "q", "cafe")}
    # The same set of events in another order gives the same rows.
    everything = (
        chain_at_venue()
        + positive("p", at(0, 2), tube="tube-p-early")
        + positive("p", at(12 * 60), tube="tube-p-first")
    )
    expected = await store.scan("transmission_links_by_province")
    for seed in range(3):
        _, again = await run(shuffled(everything, seed), seed=seed)
        assert sorted(await again.scan("transmission_links_by_province"), key=repr) == sorted(
            expected, key=repr
        )


def _state(pipeline: LocalPipeline, person: str) -> dict[str, Any]:
    value: dict[str, Any] = pipeline.tables["chains"][person]
    return value


async def test_retention_empties_the_state() -> None:
    from streams.ids import to_ms

    pipeline, _ = await run(chain_at_venue())
    assert _state(pipeline, "p")["claimed"] and _state(pipeline, "src")["links"]
    # 21 days after the exposures the alerts, claims and links go; the positives stay.
    pipeline.prune(to_ms(at(0, 28)))
    assert not _state(pipeline, "src")["links"] and not _state(pipeline, "p")["claimed"]
    assert _state(pipeline, "p")["positives"]
    pipeline.prune(to_ms(at(0, 200)))
    assert "p" not in pipeline.tables["chains"]
