"""The staged rebuild's plan, routing and guards, folded in one process (no Kafka).

``covidtech replay`` runs each stage share in its own process and moves derived events
between them over queues (``streams.rebuild``); here the same pipelines, ``share_of`` and
``route`` run in a loop, so the data flow is checked against the single pipeline quickly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from projections.memory import InMemoryStore
from streams.context import BatchContext, Message
from streams.handlers import all_handlers
from streams.local import LocalPipeline
from streams.rebuild import STAGES, Stage, plan, route, share_of
from tests.scenarios import Ev, outbreak_at_venue, town
from tests.unit.pipeline_support import active_only, rows

PARTITIONS = 4


def test_every_handler_is_in_exactly_one_stage() -> None:
    planned = plan(STAGES, all_handlers())
    names = [sorted(type(h).__name__ for h in hs) for hs in planned]
    assert names[:2] == [["SampleHandler"], ["PersonHandler"]]
    assert sum(len(n) for n in names) == len(all_handlers())
    with pytest.raises(ValueError, match="in no stage"):
        plan((Stage("only", frozenset({"PersonHandler"})),), all_handlers())


def test_a_share_owns_the_keys_of_its_kafka_partitions() -> None:
    """A share reads partitions p with p % shares == share, so routing a derived event by
    key must agree with where Kafka's default partitioner put that key."""
    for i in range(500):
        key = f"person-{i}".encode()
        partition = DefaultPartitioner()(key, list(range(PARTITIONS)), [])
        assert share_of(key, 2, PARTITIONS) == partition % 2
    assert share_of(b"anything", 1, PARTITIONS) == 0


def owner(stage: Stage, share: int) -> Callable[[bytes | None], bool] | None:
    if stage.shares == 1:
        return None
    return lambda key: key is None or share_of(key, stage.shares, PARTITIONS) == share


async def staged_fold(events: list[Ev], stages: tuple[Stage, ...]) -> InMemoryStore:
    """The rebuild's data flow in one process: one pipeline per stage share, sources split
    by the partition of their key, derived events routed after every stage's step."""
    planned = plan(stages, all_handlers())
    read_by = [frozenset(t for h in hs for t in h.topics) for hs in planned]
    store = InMemoryStore()  # the stages' tables are disjoint, so they can share a store
    shares = {
        (i, k): LocalPipeline(
            store,
            handlers=planned[i],
            outbox=[],
            upstream=frozenset().union(*read_by[:i]),
            owns=owner(stage, k),
        )
        for i, stage in enumerate(stages)
        for k in range(stage.shares)
    }
    for (i, k), pipeline in shares.items():
        for e in events:
            if (
                e.topic in read_by[i]
                and share_of(e.key.encode(), stages[i].shares, PARTITIONS) == k
            ):
                pipeline.publish(e.topic, e.key, e.name, e.record)
    for (i, _k), pipeline in shares.items():  # stage order: earlier stages first
        await pipeline.run_until_idle()
        assert pipeline.outbox is not None
        later = [(j, stages[j], read_by[j]) for j in range(i + 1, len(stages))]
        for target, messages in route(pipeline.outbox, later, PARTITIONS).items():
            for topic, key, value in messages:
                shares[target].append(topic, key, value)
        pipeline.outbox.clear()
    return store


async def test_the_staged_fold_gives_the_rows_of_one_pipeline() -> None:
    events = town(11, people=150, venues=8) + outbreak_at_venue("s")  # cases, a pool, doses
    single = InMemoryStore()
    pipeline = LocalPipeline(single)
    for e in events:
        pipeline.publish(e.topic, e.key, e.name, e.record)
    await pipeline.run_until_idle()
    staged = await staged_fold(events, STAGES)
    assert active_only(await rows(staged)) == active_only(await rows(single))
    assert len(await staged.scan("alerts_by_person")) > 0  # the scenario does raise alerts


class _EmitsCases:
    """A handler of a later stage that emits to ``cases``, which an earlier stage reads."""

    topics = ("people",)
    tables: tuple[str, ...] = ()

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        t = datetime(2021, 8, 1, tzinfo=UTC)
        ctx.emit(
            "cases",
            "p1",
            "covidtech.testing.CaseConfirmed",
            {
                "event_id": "c1",
                "person_id": "p1",
                "sample_id": "s1",
                "province": "79",
                "collected_at": t,
                "symptom_onset": None,
                "infectious_from": t,
                "infectious_until": t,
            },
        )


async def test_a_derived_event_flowing_back_upstream_is_refused() -> None:
    pipeline = LocalPipeline(
        InMemoryStore(), handlers=[_EmitsCases()], outbox=[], upstream=frozenset({"cases"})
    )
    pipeline.append("cases", "p1", b"")  # routed from the earlier stage: an input, allowed
    pipeline.publish(
        "people",
        "p1",
        "covidtech.people.PersonRegistered",
        {
            "event_id": "r1",
            "occurred_at": datetime(2021, 8, 1, tzinfo=UTC),
            "person_id": "p1",
            "province": "79",
            "district": "760",
            "birth_year": None,
        },
    )
    with pytest.raises(RuntimeError, match="earlier stage"):
        await pipeline.run_until_idle()


def test_an_event_for_another_share_is_refused() -> None:
    person = plan((Stage("p", frozenset({"PersonHandler"})), Stage("rest", None)), all_handlers())[
        0
    ]
    pipeline = LocalPipeline(InMemoryStore(), handlers=person, outbox=[], owns=lambda key: False)
    with pytest.raises(RuntimeError, match="another share"):
        pipeline.append("checkins", "p1", b"")
