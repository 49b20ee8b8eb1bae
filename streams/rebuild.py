"""``covidtech replay``: rebuild every projection from the start of the log, folded in memory.

The live worker writes every intermediate state of a row (a visit opened by its IN, then
closed by its OUT; an alert raised, then recomputed). A rebuild only needs the final rows, so
it folds the log in memory first and writes each row once:

1. read every source topic from offset 0 up to the end offsets of the moment it starts
   (aiokafka, large fetches), in chunks;
2. fold each chunk through the same handlers, batch processing and commit order as the
   worker (``streams.local``: derived topics are kept in memory and read by the same
   handlers), into an in-memory store; messages every handler has read are dropped;
3. write the store's rows, with their expiry and write timestamps, into a fresh keyspace,
   in replica-set batches, several requests in flight.

**Stages.** The agents are cut into stages where the data flow only goes one way
(``STAGES``): results (samples -> cases), presence (check-ins and cases -> visits and
windows), and everything downstream (venues and alerts, coverage, programme, directory,
declarations). Each stage runs in its own process and streams the derived events it emits to
the later stages that read them, after every fold step; a stage may run as several *shares*,
each owning the keys that hash to it (``share_of``), as Kafka partitions split an agent's
work between workers. When a stage has folded everything (its sources, and every earlier
share has said it is done), it writes its own rows, so early stages write while later ones
still fold. Guards keep the cut honest as handlers change: a derived event for a topic an
earlier stage reads, or for a key another share of the same stage owns, stops the rebuild
(``LocalPipeline.upstream`` and ``owns``).

Projections are a function of the set of events (DESIGN "Order independence"), so the rows
equal those the live worker converges to; the integration tests compare digests. Memory:
each stage holds its agents' state (what the workers hold in their tables) plus its final
rows. When that outgrows one machine, ``--via-worker`` replays through worker processes
(``streams.replay``), which scale out like the live workers but write every intermediate
row.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from aiokafka import TopicPartition

from covidtech import kafka_clients
from covidtech.heap import collect_less_often
from covidtech.progress import bar
from covidtech.settings import Settings
from covidtech.topics import SOURCE_TOPICS, partition_of
from projections.cassandra import CassandraStore
from projections.memory import InMemoryStore
from projections.model import Upsert
from schemas.codec import Registry
from streams.context import Handler
from streams.handlers import all_handlers
from streams.local import LocalPipeline

FETCH_RECORDS = 5_000  # source events read per fold step (a stage's output flows per step)
WRITE_CHUNK = 2_000  # rows per store.apply call
WRITES_IN_FLIGHT = 4  # apply calls in parallel (each sends its batches concurrently)

Forwarded = list[tuple[str, bytes | None, bytes]]


@dataclass(frozen=True)
class Stage:
    """Some agents folded together: in ``shares`` processes (by key), written by ``writers``
    processes each (the driver's encoding is a writer's main cost)."""

    name: str
    handlers: frozenset[str] | None  # handler class names; None: every one not taken before
    shares: int = 1
    writers: int = 1


STAGES: tuple[Stage, ...] = (
    Stage("results", frozenset({"SampleHandler"})),
    Stage("presence", frozenset({"PersonHandler"}), shares=2),
    Stage("downstream", None, writers=2),  # venues and alerts, coverage, programme, ...
)
ONE_STAGE: tuple[Stage, ...] = (Stage("all", None),)


@dataclass(frozen=True)
class RebuildReport:
    keyspace: str
    source_events: int
    rows: int
    fold_seconds: float  # until every stage had folded the whole log
    seconds: float  # until every row was acknowledged (not counting the processes exiting)

    @property
    def write_seconds(self) -> float:
        """Writing after the last stage folded (earlier stages write before that)."""
        return self.seconds - self.fold_seconds

    @property
    def events_per_second(self) -> float:
        return self.source_events / self.seconds if self.seconds else 0.0


@functools.cache
def fold_registry() -> Registry:
    """The codec of the fold's derived events. It skips the full schema check the worker
    makes before each encode: the fold runs the same handlers over events the worker has
    validated, and fastavro's writer still refuses a record that does not fit."""
    return Registry(validate=False)


def share_of(key: bytes | None, shares: int, partitions: int) -> int:
    """Which share of a stage owns ``key``: share ``i`` owns the Kafka partitions ``p`` with
    ``p % shares == i`` of every topic its agents read (co-partitioned, as the workers
    need), and a derived event goes to the share owning the partition Kafka's default
    partitioner gives its key."""
    if shares == 1 or key is None:
        return 0
    return partition_of(key, partitions) % shares


def plan(stages: Sequence[Stage], handlers: Sequence[Handler]) -> list[list[Handler]]:
    """The handlers of each stage, in order; every handler lands in exactly one stage."""
    left = list(handlers)
    out: list[list[Handler]] = []
    for stage in stages:
        mine = [h for h in left if stage.handlers is None or type(h).__name__ in stage.handlers]
        left = [h for h in left if h not in mine]
        out.append(mine)
    if left:
        raise ValueError(f"handlers in no stage: {[type(h).__name__ for h in left]}")
    return out


def route(
    messages: Forwarded, later: Sequence[tuple[int, Stage, frozenset[str]]], partitions: int
) -> dict[tuple[int, int], Forwarded]:
    """Where a stage's derived events go: to every later stage (index, stage, topics it
    reads) that reads the event's topic, at the share owning its key. Events no later stage
    reads (alerts, dead letters) end here: the rebuild writes rows, not topics."""
    routed: dict[tuple[int, int], Forwarded] = {}
    for message in messages:
        topic, key, _ = message
        for j, stage, reads in later:
            if topic in reads:
                target = (j, share_of(key, stage.shares, partitions))
                routed.setdefault(target, []).append(message)
    return routed


# ---------------------------------------------------------------- folding one stage


class Inbox:
    """Derived events from earlier stages, over a multiprocessing queue; finished once every
    earlier share has sent its end marker."""

    def __init__(self, channel: Any, senders: int) -> None:
        self._channel = channel
        self._senders = senders
        self.finished = senders == 0

    def receive(self, block: bool) -> Forwarded:
        events: Forwarded = []
        while not self.finished:
            try:
                if block and not events:
                    item = self._channel.get(timeout=1.0)
                else:
                    item = self._channel.get_nowait()
            except queue.Empty:
                if block and not events:
                    if os.getppid() == 1:
                        raise RuntimeError("the rebuild's parent process is gone") from None
                    continue
                return events
            if item is None:  # an earlier share is done
                self._senders -= 1
                self.finished = self._senders == 0
            else:
                events.extend(item)
        return events


async def fold_stage(
    s: Settings,
    pipeline: LocalPipeline,
    *,
    inbox: Inbox | None = None,
    share: int = 0,
    shares: int = 1,
    after_step: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, int]:
    """Fold the source topics ``pipeline``'s handlers read (the partitions ``p`` with
    ``p % shares == share``), and what ``inbox`` brings, into its store; return the source
    events folded per topic."""
    wanted = {t.name for h in pipeline.handlers for t in SOURCE_TOPICS if t.name in h.topics}
    short = {s.topic(name): name for name in sorted(wanted)}
    counts = dict.fromkeys(wanted, 0)

    async def step() -> None:
        if inbox is not None:
            for topic, key, value in inbox.receive(block=False):
                pipeline.append(topic, key, value)
        await pipeline.run_until_idle()
        pipeline.trim()

    done = total = 0
    if short:  # a stage fed only by earlier stages reads no source topic
        owned = (share, shares)
        done, total = await _fold_sources(s, pipeline, short, owned, counts, step, after_step)
    while inbox is not None and not inbox.finished:
        for topic, key, value in await asyncio.to_thread(inbox.receive, True):
            pipeline.append(topic, key, value)
        await step()
        after_step(done, total)
    return counts


async def _fold_sources(
    s: Settings,
    pipeline: LocalPipeline,
    short: dict[str, str],
    owned: tuple[int, int],
    counts: dict[str, int],
    step: Callable[[], Awaitable[None]],
    after_step: Callable[[int, int], None],
) -> tuple[int, int]:
    """Read the ``owned`` (share, shares) partitions of ``short``'s topics (full name ->
    catalogue name) to their end offsets of now, folding after every fetch; return
    (records read, records at most)."""
    share, shares = owned
    partitions = s.topic_partitions
    done = total = 0
    consumer = kafka_clients.consumer(
        s,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        found = await asyncio.gather(
            *(kafka_clients.partitions_of(consumer, topic) for topic in short)
        )
        if shares > 1 and any(len(f) != partitions for f in found):
            raise RuntimeError(
                f"a source topic of {sorted(short)} does not have the {partitions} partitions "
                "of the settings, so a stage's shares cannot split its keys as Kafka does"
            )
        tps = [
            TopicPartition(topic, p)
            for topic in short
            for p in sorted(await kafka_clients.partitions_of(consumer, topic))
            if p % shares == share
        ]
        remaining: list[TopicPartition] = []
        if tps:
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            total = sum(ends.values())  # an upper bound: compaction leaves gaps
            remaining = [tp for tp in tps if ends[tp] > 0]
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=FETCH_RECORDS)
            for tp, records in fetched.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        break
                    pipeline.append(short[tp.topic], r.key, r.value)
                    counts[short[tp.topic]] += 1
                    done += 1
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
            await step()
            after_step(done, total)
    finally:
        await consumer.stop()
    return done, total


# ---------------------------------------------------------------- writing


async def write_rows(
    rows: Iterator[Upsert],
    target: Any,
    *,
    progress: Callable[[int], None] = lambda done: None,
) -> int:
    """Write ``rows`` to ``target`` (a ProjectionStore) in chunks, some in flight."""
    written = 0
    pending: set[asyncio.Task[None]] = set()
    while chunk := list(islice(rows, WRITE_CHUNK)):
        if len(pending) >= WRITES_IN_FLIGHT:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.ensure_future(target.apply(chunk)))
        written += len(chunk)
        progress(written)
    if pending:
        await asyncio.gather(*pending)
    return written


async def _write_share(
    s: Settings, store: InMemoryStore, share: int, shares: int, written: Callable[[int], None]
) -> None:
    rows = store.upserts(share, shares)
    if len(store) == 0:
        written(share)  # nothing to write: no connection
        return
    target = CassandraStore.from_settings(s)
    try:
        await write_rows(rows, target)
        written(share)  # acknowledged: readable from now on (closing the session follows)
    finally:
        target.close()


def write_store(
    s: Settings,
    store: InMemoryStore,
    processes: int = 1,
    written: Callable[[int], None] = lambda share: None,
) -> None:
    """Write ``store``'s rows from this process and ``processes - 1`` forked ones, each a
    share of the partitions; each calls ``written(share)`` once its rows are acknowledged.
    Call it with no event loop running (forking copies the store without pickling it)."""
    context = multiprocessing.get_context("fork")
    helpers = [
        context.Process(
            target=lambda i=i: asyncio.run(_write_share(s, store, i, processes, written)),
            name=f"rebuild-writer-{i}",
            daemon=True,
        )
        for i in range(1, processes)
    ]
    for helper in helpers:
        helper.start()
    try:
        asyncio.run(_write_share(s, store, 0, processes, written))
    finally:
        for helper in helpers:
            helper.join()
    failed = [h.name for h in helpers if h.exitcode != 0]
    if failed:
        raise RuntimeError(f"rebuild writers failed: {', '.join(failed)} (see their output)")


# ---------------------------------------------------------------- one stage's process


@dataclass(frozen=True)
class _Wiring:
    """What every stage process is given: the plan and every share's inbox channel."""

    stages: tuple[Stage, ...]
    inboxes: dict[tuple[int, int], Any]  # (stage, share) -> multiprocessing queue
    control: Any  # multiprocessing queue to the parent: progress, reports, errors


def _stage_main(s: Settings, wiring: _Wiring, index: int, share: int) -> None:
    collect_less_often()
    try:
        _run_stage(s, wiring, index, share)
    except BaseException:  # the parent raises it
        wiring.control.put(("error", (index, share), traceback.format_exc()))


def _run_stage(s: Settings, wiring: _Wiring, index: int, share: int) -> None:
    stages = wiring.stages
    stage = stages[index]
    partitions = s.topic_partitions
    planned = plan(stages, all_handlers(*s.domain_rules(), s.status_rules()))
    read_by = [frozenset(t for h in hs for t in h.topics) for hs in planned]
    later = [(j, stages[j], read_by[j]) for j in range(index + 1, len(stages))]
    store = InMemoryStore()
    pipeline = LocalPipeline(
        store,
        handlers=planned[index],
        partitions=partitions,
        registry=fold_registry(),
        batch_size=2_000,
        outbox=[],
        upstream=frozenset().union(*read_by[:index]),
        owns=(lambda key: key is None or share_of(key, stage.shares, partitions) == share)
        if stage.shares > 1
        else None,  # a record without a key stays with the share that read or got it
    )
    inbox = Inbox(wiring.inboxes[(index, share)], sum(st.shares for st in stages[:index]))

    def forward(done: int, total: int) -> None:
        assert pipeline.outbox is not None
        for target, messages in route(pipeline.outbox, later, partitions).items():
            wiring.inboxes[target].put(messages)
        pipeline.outbox.clear()
        wiring.control.put(("progress", (index, share), (done, total)))

    counts = asyncio.run(
        fold_stage(s, pipeline, inbox=inbox, share=share, shares=stage.shares, after_step=forward)
    )
    for j in range(index + 1, len(stages)):
        for k in range(stages[j].shares):
            wiring.inboxes[(j, k)].put(None)
    wiring.control.put(("folded", (index, share), (sum(counts.values()), len(store))))
    write_store(
        s,
        store,
        stage.writers,
        lambda writer: wiring.control.put(("written", (index, share), writer)),
    )


# ---------------------------------------------------------------- the rebuild


def rebuild(
    base: Settings,
    keyspace: str,
    *,
    stages: Sequence[Stage] = STAGES,
    log: Callable[[str], None] = print,
) -> RebuildReport:
    """Rebuild the projections of ``base`` into a fresh ``keyspace`` (migrated here)."""
    from infra.cassandra_schema import migrate
    from infra.lifecycle import cassandra_session

    s = replace(base, keyspace=keyspace)
    session = cassandra_session(s)
    try:
        migrate(session, s.keyspace, s.replication_factor, log)
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]
    plan(stages, all_handlers())  # fails here, not in a child, if a handler has no stage
    fold_registry()  # loaded once, before the stages fork
    if any(stage.shares > s.topic_partitions for stage in stages):
        raise ValueError(f"a stage has more shares than the {s.topic_partitions} partitions")

    context = multiprocessing.get_context("fork")  # the children inherit the settings as is
    shares = [(i, k) for i, stage in enumerate(stages) for k in range(stage.shares)]
    wiring = _Wiring(tuple(stages), {sh: context.Queue() for sh in shares}, context.Queue())
    started = time.monotonic()
    children = {
        sh: context.Process(
            target=_stage_main,
            args=(s, wiring, *sh),
            name=f"rebuild-{stages[sh[0]].name}-{sh[1]}",
            daemon=False,  # a stage forks its writers; the finally below stops the stages
        )
        for sh in shares
    }
    for child in children.values():
        child.start()
    progress: dict[tuple[int, int], tuple[int, int]] = {}
    folded: dict[tuple[int, int], tuple[int, int]] = {}
    written: set[tuple[int, int, int]] = set()  # stage, share, writer
    writers = sum(stage.shares * stage.writers for stage in stages)
    fold_seconds = seconds = 0.0
    last = 0.0
    try:
        while len(written) < writers:
            try:
                kind, sh, detail = wiring.control.get(timeout=1.0)
            except queue.Empty:
                gone = [c for c in children.values() if not c.is_alive()]
                if failed := [c.name for c in gone if c.exitcode != 0]:
                    raise RuntimeError(f"rebuild processes died: {', '.join(failed)}") from None
                if len(gone) == len(children):
                    raise RuntimeError("rebuild processes exited before every write") from None
                continue
            if kind == "error":
                raise RuntimeError(f"rebuild stage {children[sh].name} failed:\n{detail}")
            if kind == "progress":
                progress[sh] = detail
            elif kind == "folded":
                folded[sh] = detail
                log(
                    f"{children[sh].name}: folded {detail[0]:,} source events into "
                    f"{detail[1]:,} rows after {time.monotonic() - started:.1f}s"
                )
                if len(folded) == len(shares):
                    fold_seconds = time.monotonic() - started
                    events, rows = (sum(f[i] for f in folded.values()) for i in (0, 1))
                    log(f"folded {events:,} events into {rows:,} rows in {fold_seconds:.1f}s")
            else:
                written.add((*sh, detail))
                if len([w for w in written if w[:2] == sh]) == stages[sh[0]].writers:
                    log(
                        f"{children[sh].name}: rows written after {time.monotonic() - started:.1f}s"
                    )
            if kind == "progress" and time.monotonic() - last >= 2:
                last = time.monotonic()
                done, total = (sum(p[i] for p in progress.values()) for i in (0, 1))
                log(f"{bar(done, total)} folded {done:,} of at most {total:,} source events")
        seconds = time.monotonic() - started  # every row acknowledged: the rebuild is done
    finally:
        complete = len(written) == writers
        for child in children.values():
            if not complete:
                child.terminate()  # a failed rebuild stops every stage
            child.join(timeout=30)  # closing sessions and exiting: not part of the rebuild
    events, rows = (sum(f[i] for f in folded.values()) for i in (0, 1))
    result = RebuildReport(keyspace, events, rows, fold_seconds, seconds)
    log(
        f"replayed {events:,} events into {rows:,} rows of keyspace {keyspace} in "
        f"{seconds:.1f}s ({result.events_per_second:,.0f} events/s; the last stage folded "
        f"after {fold_seconds:.1f}s)"
    )
    return result
