"""The commit record of a batch: offsets applied per partition, and the logical write clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from projections.memory import InMemoryStore
from projections.model import Upsert
from schemas.codec import default_registry
from streams.batch import COMMITS, commit_key, process_batch
from streams.context import BatchContext, Message

REGISTRY = default_registry()


class Counting:
    """Counts events per key in two tables at once, as an aggregator with a per-person
    record and a total does; writes the total as a row."""

    topics = ("people",)
    tables = ("seen", "totals")

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        key = (msg.key or b"").decode()
        ctx.set_state("seen", key, (ctx.state("seen", key) or 0) + 1, msg)
        total = (ctx.state("totals", "all") or 0) + 1
        ctx.set_state("totals", "all", total, msg)
        ctx.write([Upsert("people", {"person_id": key, "province": str(total)})])
        if key == "flush":
            await ctx.read_your_writes()


def person(offset: int, key: str, partition: int = 0) -> Message:
    value = REGISTRY.encode(
        "covidtech.people.PersonRegistered",
        {
            "event_id": f"e{offset}",
            "occurred_at": datetime(2021, 8, 1, tzinfo=UTC),
            "person_id": key,
            "province": "01",
            "district": "001",
            "birth_year": 1980,
        },
    )
    return Message("people", partition, offset, key.encode(), value)


def commit(ctx: BatchContext, tables: dict[str, dict[str, Any]]) -> None:
    for (table, key), (value, _partition) in ctx.staged.items():
        tables[table][key] = value


async def test_a_redelivered_batch_changes_nothing() -> None:
    handler = Counting()
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    store = InMemoryStore()
    batch = [person(0, "a"), person(1, "b"), person(2, "a")]
    ctx = await process_batch(handler, batch, store, tables, REGISTRY, clock=lambda: 1_000)
    commit(ctx, tables)
    assert tables["seen"] == {"a": 2, "b": 1} and tables["totals"] == {"all": 3}
    assert tables[COMMITS][commit_key(handler, 0)] == {"o": {"people": 2}, "t": 1_000}

    # The same batch again (the consumer resumed behind the committed state), then one more.
    again = await process_batch(
        handler, [*batch, person(3, "c")], store, tables, REGISTRY, clock=lambda: 1_000
    )
    commit(again, tables)
    assert tables["seen"] == {"a": 2, "b": 1, "c": 1} and tables["totals"] == {"all": 4}
    assert len(again.mutations) == 1
    # The clock moves on even when the wall clock does not.
    assert tables[COMMITS][commit_key(handler, 0)] == {"o": {"people": 3}, "t": 1_001}


async def test_partitions_keep_their_own_offsets_and_clocks() -> None:
    handler = Counting()
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    batch = [person(5, "a", partition=0), person(5, "b", partition=1)]
    ctx = await process_batch(handler, batch, InMemoryStore(), tables, REGISTRY, clock=lambda: 7)
    commit(ctx, tables)
    assert tables[COMMITS][commit_key(handler, 0)] == {"o": {"people": 5}, "t": 7}
    assert tables[COMMITS][commit_key(handler, 1)] == {"o": {"people": 5}, "t": 7}
    # Offset 5 of partition 1 is applied; offset 6 of partition 0 is new.
    later = [person(5, "b", partition=1), person(6, "c", partition=0)]
    ctx = await process_batch(handler, later, InMemoryStore(), tables, REGISTRY, clock=lambda: 7)
    assert [m.row["person_id"] for m in ctx.mutations if isinstance(m, Upsert)] == ["c"]


async def test_writes_are_stamped_with_the_clock_and_flush_number() -> None:
    handler = Counting()
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    store = InMemoryStore()
    batch = [person(0, "flush"), person(1, "b")]
    ctx = await process_batch(handler, batch, store, tables, REGISTRY, clock=lambda: 42)
    await ctx.read_your_writes()
    # "flush" was written by the handler's own flush (number 0), "b" by the final one (1).
    stamps = {u.row["person_id"]: u.timestamp for u in store.upserts() if u.table == "people"}
    assert stamps == {"flush": 42_000, "b": 42_001}
    rows = {r["person_id"]: r["province"] for r in await store.scan("people")}
    assert rows == {"flush": "1", "b": "2"}
    # The next batch's writes win over a late write of this one.
    commit(ctx, tables)
    ctx2 = await process_batch(handler, [person(2, "flush")], store, tables, REGISTRY)
    await ctx2.read_your_writes()
    late = Upsert("people", {"person_id": "flush", "province": "late"}, timestamp=42_001)
    await store.apply([late])
    rows = {r["person_id"]: r["province"] for r in await store.scan("people")}
    assert rows["flush"] == "3"


class FailingOn(Counting):
    """Counts like ``Counting``, then fails with ``error`` on the person ``key`` (after
    staging its state)."""

    def __init__(self, key: str, error: Exception) -> None:
        self.key, self.error = key.encode(), error

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        await super().handle(ctx, msg)
        if msg.key == self.key:
            raise self.error


async def test_a_refused_message_leaves_no_staged_state_behind() -> None:
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    batch = [person(0, "a"), person(1, "bad"), person(2, "a")]
    handler = FailingOn("bad", ValueError("refused after staging"))
    ctx = await process_batch(
        handler, batch, InMemoryStore(), tables, REGISTRY, clock=lambda: 1_000
    )
    staged = {k: v for (k, v) in ctx.staged.items() if k[0] != COMMITS}
    # "bad" added a key and changed a shared one; both changes are gone, the others stay
    assert staged == {("seen", "a"): (2, 0), ("totals", "all"): (2, 0)}
    assert [(m.offset, e) for m, e in ctx.dead_letters] == [
        (1, "ValueError: refused after staging")
    ]
    assert len(ctx.mutations) == 2


async def test_an_unexpected_error_is_raised_then_dead_letters_only_its_message() -> None:
    """The worker retries a batch whose handler fails unexpectedly (it may be passing); its
    last attempt dead-letters the message instead, so a bug never stops the partition."""
    import pytest

    handler = FailingOn("bug", ZeroDivisionError("a bug"))  # an error no handler declares
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    batch = [person(0, "a"), person(1, "bug"), person(2, "b")]
    with pytest.raises(ZeroDivisionError):
        await process_batch(handler, batch, InMemoryStore(), tables, REGISTRY)
    ctx = await process_batch(
        handler, batch, InMemoryStore(), tables, REGISTRY, dead_letter_unexpected=True
    )
    assert [(m.offset, e) for m, e in ctx.dead_letters] == [(1, "ZeroDivisionError: a bug")]
    # The failing message's effects were undone; the others stand.
    assert ctx.state("seen", "a") == 1 and ctx.state("seen", "b") == 1
    assert ctx.state("seen", "bug") is None and ctx.state("totals", "all") == 2
    assert ctx.state(COMMITS, commit_key(handler, 0))["o"] == {"people": 2}


class RecordingSink:
    """A :class:`streams.context.CommitSink` that notes the order of the commit's steps."""

    def __init__(self, store: InMemoryStore, fail_produce: bool = False) -> None:
        self.store = store
        self.fail_produce = fail_produce
        self.steps: list[str] = []
        self.state: dict[int, list[tuple[str, str, Any]]] = {}

    async def produce(self, emits: Any, dead_letters: Any) -> None:
        rows = len(await self.store.scan("people"))
        self.steps.append(f"produce after {rows} rows")
        if self.fail_produce:
            raise OSError("broker gone")

    async def save_state(self, by_partition: Any) -> None:
        self.steps.append("state")
        self.state = dict(by_partition)


async def test_the_commit_writes_rows_then_events_then_state_and_stops_at_a_failure() -> None:
    tables: dict[str, dict[str, Any]] = {"seen": {}, "totals": {}, COMMITS: {}}
    batch = [person(0, "a", partition=0), person(0, "b", partition=1)]
    store = InMemoryStore()
    ctx = await process_batch(Counting(), batch, store, tables, REGISTRY, clock=lambda: 5)
    sink = RecordingSink(store)
    await ctx.commit(sink)
    assert sink.steps == ["produce after 2 rows", "state"]
    # State comes per source partition, each with its own commit record.
    assert sorted(sink.state) == [0, 1]
    assert ("seen", "a", 1) in sink.state[0] and ("seen", "b", 1) in sink.state[1]

    failing = RecordingSink(InMemoryStore(), fail_produce=True)
    again = await process_batch(Counting(), batch, failing.store, tables, REGISTRY)
    with pytest.raises(OSError):
        await again.commit(failing)
    assert failing.steps == ["produce after 2 rows"]  # no state: the batch is not done


async def test_a_rollback_keeps_what_earlier_messages_staged() -> None:
    ctx = BatchContext(store=InMemoryStore(), tables={"seen": {}})
    first, second = person(0, "a"), person(1, "b")
    ctx.begin(first)
    ctx.set_state("seen", "a", 1, first)
    ctx.write([Upsert("people", {"person_id": "a", "province": "1"})])
    ctx.begin(second)
    ctx.set_state("seen", "a", 2, second)
    ctx.set_state("seen", "b", 1, second)
    ctx.write([Upsert("people", {"person_id": "b", "province": "1"})])
    ctx.emit("visits", "b", "x", {})
    ctx.rollback()
    ctx.end()
    assert ctx.staged == {("seen", "a"): (1, 0)}
    assert [m.row["person_id"] for m in ctx.mutations if isinstance(m, Upsert)] == ["a"]
    assert ctx.emits == []
