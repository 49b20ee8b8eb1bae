"""The faust-streaming worker: one agent per handler, Kafka in, Cassandra and Kafka out.

This module and ``streams/avro_codec.py`` are the only places that import Faust (besides
``covidtech.kafka_clients.faust_credentials``, which builds the app's SASL credentials).

Faust runs the group (membership, assignment, rebalances), the tables (changelogs, recovery),
the agents' lifecycle, timers and the web server. Records reach the agents in batches: the
consumer (``BatchConsumer``) hands each fetch's records of a topic to the inbox of every
agent reading it, as one list, instead of Faust's one event, one stream hop and one ack per
record (which cost more CPU than the processing itself). Each batch is committed in the
order ``streams.context`` gives (rows, derived events, state and its changelog flushed), and
the group's offsets are committed from the agents' commit records, never past an unapplied
event. While Cassandra or Kafka refuse a write, the batch is retried with a capped backoff:
the partition stops, nothing is skipped. A SIGKILL at any point redelivers the uncommitted
batch, which recomputes the same effects.

Each agent keeps its state in one Faust table (changelogged, recovered on start and
rebalance); the handler's logical tables are key prefixes in it (``name|key``). A batch may
hold events of several partitions: the staged keys of each partition, with the handler's
commit record for it (``streams.batch``), are appended to that changelog partition as one
Kafka record batch, which the broker writes whole or not at all. So the state recovered
after a crash is always the state after some whole batch, with the offsets it covers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from faust.worker import Worker
from prometheus_client import Counter, Gauge, Histogram, generate_latest

from covidtech import kafka_clients
from covidtech.heap import collect_less_often
from covidtech.settings import Settings
from covidtech.topics import partition_of
from projections.cassandra import CassandraStore
from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import Registry, default_registry
from streams.batch import (
    COMMITS,
    applied_offsets,
    dead_letter_record,
    expired_states,
    process_batch,
    wall_clock_ms,
)
from streams.context import BatchContext, Emit, Handler, Message
from streams.handlers import all_handlers

log = logging.getLogger(__name__)
T = TypeVar("T")

PROCESSED = Counter("covidtech_stream_events_total", "Source events processed", ["topic"])
DEAD = Counter("covidtech_stream_dead_letters_total", "Events sent to a DLQ", ["topic"])
RETRIES = Counter("covidtech_stream_retries_total", "Batches retried after a failure", ["agent"])
UNEXPECTED = Counter(
    "covidtech_stream_unexpected_errors_total",
    "Batches a handler failed with an error it does not declare (a bug)",
    ["agent"],
)
REFILLS = Counter(
    "covidtech_stream_refilled_events_total",
    "Events read directly because the consumer started past the committed state",
    ["topic"],
)
PRUNED = Counter(
    "covidtech_stream_pruned_keys_total",
    "State keys retention changed: trimmed (some data past retention) or deleted (all of it)",
    ["agent", "outcome"],
)
STATE_KEYS = Gauge(
    "covidtech_stream_state_keys",
    "Keys in an agent's state for the partitions this worker owns, per logical table, after "
    "the last retention pass",
    ["agent", "table"],
)
PRUNE = Histogram(
    "covidtech_stream_prune_seconds",
    "Time of one retention pass over an agent's state (all its lanes)",
    ["agent"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH = Histogram(
    "covidtech_stream_batch_seconds",
    "Time to process and commit a batch",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

LAG = Gauge(
    "covidtech_consumer_lag",
    "Events of the partitions this worker owns not yet applied (end offset minus the offset "
    "the agents' commit records allow committing), per topic; sum over workers",
    ["group", "topic"],
)
LAG_CHECK_S = 5.0


# The largest state commit of one partition in one batch, in bytes (the broker's
# message.max.bytes in infra/kafka/server.properties must allow it). A batch whose state is
# larger is split in halves, each committed on its own.
STATE_BATCH_BYTES = 8 * 1024 * 1024
# How often each agent compares quiet partitions with their end offsets, and how long a
# partition must have had no batch to count as quiet (``check_tails``).
TAIL_CHECK_S = 5.0
TAIL_IDLE_S = 10.0
# Configs of the state changelogs Faust creates (an existing topic keeps its own: alter it
# with kafka-configs). A compacted log drops a deleted key's records only once their segment
# is closed and cleaned; without a bound that can take weeks (a segment closes at 7 days or
# 128 MiB, and is cleaned once half the log is dirty). With ``max.compaction.lag.ms`` the
# broker rolls a partition's segment at its next append after that age and cleans it then,
# whatever the dirty ratio: data retention removed is off the changelog within about a day.
CHANGELOG_CONFIGS = {"max.compaction.lag.ms": str(24 * 3600 * 1000)}
# State keys one retention commit covers: decided and committed under the lane's lock, so a
# lane's batches wait at most for one such chunk (``_prune_lanes``).
PRUNE_CHUNK = 1000
# Fetched batches an agent's inbox holds before the consumer waits for the agent (the
# consumer stops fetching meanwhile, as Faust's full stream buffers made it).
INBOX_BATCHES = 8


class StateTooLarge(Exception):
    """The staged state of one partition does not fit in one record batch."""


class Inbox:
    """The batches fetched for one lane: (consumer generation, messages of one partition).

    Bounded: a full inbox holds the consumer back. Cleared when partitions are revoked; a
    batch of an earlier generation, or taken while a rebalance runs, is dropped by the agent
    (the new assignment seeks every partition to its committed offset, so it is fetched
    again)."""

    def __init__(self, maxsize: int = INBOX_BATCHES) -> None:
        self._items: deque[tuple[int, list[Message]]] = deque()
        self._maxsize = maxsize
        self._changed = asyncio.Condition()

    async def put(self, generation: int, messages: list[Message]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._items) < self._maxsize)
            self._items.append((generation, messages))
            self._changed.notify_all()

    async def take(self, limit: int) -> list[tuple[int, list[Message]]]:
        """The next batch, with those queued behind it while they hold under ``limit``
        messages together (no waiting for more: under load batches grow by themselves)."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            taken = [self._items.popleft()]
            count = len(taken[0][1])
            while self._items and count + len(self._items[0][1]) <= limit:
                item = self._items.popleft()
                taken.append(item)
                count += len(item[1])
            self._changed.notify_all()
            return taken

    async def clear(self) -> None:
        async with self._changed:
            self._items.clear()
            self._changed.notify_all()


@dataclass
class Lane:
    """A share of an agent's partitions (``partition % lanes``), processed one batch at a
    time: the lane's, or the tail check's. A revocation waits for the batch in flight."""

    inbox: Inbox = field(default_factory=Inbox)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Reader:
    """One agent as the consumer and the offsets see it.

    Its lanes run side by side: while one lane's batch waits for Cassandra and Kafka, another
    folds its own. Partitions are independent (state, commit records and logical clocks are
    per partition), and one partition's batches stay in order in its lane."""

    handler: Handler
    tables: dict[str, TableView]
    lanes: list[Lane]

    def lane(self, partition: int) -> Lane:
        return self.lanes[partition % len(self.lanes)]


class Runtime:
    """What the agents share: settings, codec registry, the projection store and the state
    producer (lazy: they need the worker's event loop)."""

    def __init__(self, settings: Settings, store: ProjectionStore | None = None) -> None:
        self.settings = settings
        self.registry: Registry = default_registry()
        self._store = store
        self._by_full_name: dict[str, str] = {}
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._starting = asyncio.Lock()
        self._reader: AIOKafkaConsumer | None = None
        self._reading = asyncio.Lock()
        # full topic name -> every agent reading it
        self.readers: dict[str, list[Reader]] = {}

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The offset the consumer group may commit for ``topic[partition]``: one past the
        last offset every agent reading it has applied (its committed state's commit
        record), or None for a topic no agent reads."""
        readers = self.readers.get(topic)
        if not readers:
            return None
        short = self.short_name(topic)
        return 1 + min(
            applied_offsets(r.handler, r.tables, partition).get(short, -1) for r in readers
        )

    async def quiesce(self) -> None:
        """Drop the batches waiting in every inbox, then wait for the batches in flight
        (partitions are being revoked: nothing may be written for them afterwards)."""
        lanes = {id(lane): lane for rs in self.readers.values() for r in rs for lane in r.lanes}
        for lane in lanes.values():
            await lane.inbox.clear()
        for lane in lanes.values():
            async with lane.busy:
                pass

    @property
    def store(self) -> ProjectionStore:
        if self._store is None:
            self._store = CassandraStore.from_settings(self.settings)
        return self._store

    async def producer(self) -> AIOKafkaProducer:
        """The producer of derived events and state commits: explicit record batches, acks
        from all replicas."""
        async with self._starting:
            if self._producer is None:
                producer = kafka_clients.producer(
                    self.settings,
                    client_id=f"{self.settings.app_id}-batches",
                    acks="all",
                    max_batch_size=STATE_BATCH_BYTES,
                    max_request_size=STATE_BATCH_BYTES + 1024 * 1024,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (asked once per topic)."""
        count = self._partitions.get(topic)
        if count is None:
            count = len(await (await self.producer()).partitions_for(topic))
            self._partitions[topic] = count
        return count

    async def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The records of ``topic[partition]`` from ``start`` up to ``end`` (excluded), read
        by one consumer the agents share (assigned to the partition for the read)."""
        async with self._reading:
            reader = await self._started_reader()
            tp = TopicPartition(topic, partition)
            reader.assign([tp])
            reader.seek(tp, start)
            records: list[Any] = []
            while await reader.position(tp) < end:
                fetched = await reader.getmany(tp, timeout_ms=1000)
                records += [r for r in fetched.get(tp, ()) if r.offset < end]
            return records

    async def end_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The end offset of each (full topic name, partition)."""
        async with self._reading:
            reader = await self._started_reader()
            ends = await reader.end_offsets([TopicPartition(t, p) for t, p in partitions])
            return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def _started_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = kafka_clients.consumer(
                self.settings,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a start below the log's start (retention)
            )
            await reader.start()
            self._reader = reader
        return self._reader

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    def short_name(self, full: str) -> str:
        name = self._by_full_name.get(full)
        if name is None:
            name = full
            for prefix in (self.settings.derived_topic_prefix, self.settings.topic_prefix):
                if prefix and full.startswith(prefix):
                    name = full[len(prefix) :]
                    break
            self._by_full_name[full] = name
        return name


def build_app(
    settings: Settings,
    *,
    batch_size: int | None = None,
    store: ProjectionStore | None = None,
) -> faust.App:
    """The worker's Faust app with every agent and table registered."""
    datadir = settings.home / "worker" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=kafka_clients.faust_broker(settings),
        broker_credentials=kafka_clients.faust_credentials(settings),
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        table_standby_replicas=0,
        topic_allow_declare=True,
    )
    runtime = Runtime(settings, store)
    # Records reach the agents in batches; offsets are committed from their commit records.
    app.transport.Consumer = type("BatchConsumer", (BatchConsumer,), {"runtime": runtime})
    for handler in all_handlers(*settings.domain_rules(), settings.status_rules()):
        _register(app, runtime, handler, batch_size or settings.worker_batch)

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def close_runtime(app: Any, **kwargs: Any) -> None:
        await runtime.close()

    @app.timer(LAG_CHECK_S, name=f"{settings.app_id}.lag")  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        """``covidtech_consumer_lag`` of the partitions assigned to this worker."""
        mine = [
            (tp.topic, tp.partition)
            for tp in app.consumer.assignment()
            if tp.topic in runtime.readers
        ]
        try:
            ends = await runtime.end_offsets(mine) if mine else {}
        except RETRIABLE as e:
            log.warning("lag not measured (%r)", e)
            return
        per_topic: dict[str, int] = dict.fromkeys(
            (runtime.short_name(t) for t in runtime.readers), 0
        )
        for (topic, partition), end in ends.items():
            applied = runtime.next_offset(topic, partition) or 0
            per_topic[runtime.short_name(topic)] += max(0, end - applied)
        for topic, lag in per_topic.items():
            LAG.labels(settings.app_id, topic).set(lag)

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    return app


def _register(app: faust.App, rt: Runtime, handler: Handler, batch_size: int) -> None:
    s = rt.settings
    agent_name = type(handler).__name__
    # JSON keys and values: str keys must come back as str after changelog recovery.
    state = app.Table(
        f"{agent_name}-state",
        default=None,
        partitions=s.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        extra_topic_configs=CHANGELOG_CONFIGS,
    )
    tables = {name: TableView(state, name) for name in (*handler.tables, COMMITS)}
    reader = Reader(handler, tables, [Lane() for _ in range(s.worker_lanes)])
    for t in handler.topics:
        rt.readers.setdefault(s.topic(t), []).append(reader)
    topic = app.topic(
        *(s.topic(t) for t in handler.topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=s.topic_partitions,
    )

    seen_at: dict[tuple[str, int], float] = {}  # (topic, partition) -> last batch with it

    async def process(messages: list[Message]) -> None:
        complete = await _until_done(agent_name, partial(_complete, rt, handler, tables, messages))
        # A long gap (a state rebuilt from nothing) is processed in batches of the usual
        # size, each committed on its own.
        for i in range(0, len(complete), batch_size):
            part = complete[i : i + batch_size]
            await _process_until_committed(rt, handler, state, tables, part)
        now = time.monotonic()
        for m in messages:
            seen_at[(m.topic, m.partition)] = now

    async def agent(stream: Any) -> None:
        # Iterating the topic subscribes the consumer to it; its records come through the
        # lanes' inboxes (``BatchConsumer``), never through this stream.
        aiter(stream.channel)
        async with asyncio.TaskGroup() as lanes:
            for lane in reader.lanes:
                lanes.create_task(run(lane))

    async def run(lane: Lane) -> None:
        consumer = app.consumer
        while True:
            taken = await lane.inbox.take(batch_size)
            started = time.perf_counter()
            async with lane.busy:
                generation = app.consumer_generation_id
                current = consumer.flow_active
                messages = [m for g, ms in taken if current and g == generation for m in ms]
                if not messages:
                    continue
                await process(messages)
            BATCH.labels(agent_name).observe(time.perf_counter() - started)
            for topic, n in Tally(m.topic for m in messages).items():
                PROCESSED.labels(topic).inc(n)

    async def check_tails() -> None:
        """Read events past the last one delivered, on partitions quiet for a while.

        ``_complete`` repairs gaps below an event the agent receives; an event lost after
        the last delivered one (an offset committed past it, as seen after a crash) would
        wait for the partition's next event. Once recovery is over and no rebalance runs,
        each assigned partition quiet for ``TAIL_IDLE_S`` is compared with its end offset."""
        if not _steady(app):
            return
        mine = [
            (rt.short_name(tp.topic), tp.partition)
            for tp in app.consumer.assignment()
            if rt.short_name(tp.topic) in handler.topics
        ]
        if not mine:
            return
        try:
            ends = await rt.end_offsets([(s.topic(t), p) for t, p in mine])
            for lane in reader.lanes:
                async with lane.busy:
                    now = time.monotonic()
                    behind = []
                    for topic, partition in mine:
                        if reader.lane(partition) is not lane:
                            continue
                        if now - seen_at.setdefault((topic, partition), now) < TAIL_IDLE_S:
                            continue
                        applied = applied_offsets(handler, tables, partition).get(topic, -1)
                        end = ends[(s.topic(topic), partition)]
                        if applied + 1 < end:
                            behind.append(Message(topic, partition, end - 1, None, b""))
                    if behind:
                        log.warning(
                            "%s: reading %d quiet partitions to their end", agent_name, len(behind)
                        )
                        # The last offset stands for its partition: _complete reads up to it;
                        # the placeholder is replaced by the record read at that offset.
                        await process(await _tails(rt, behind))
        except RETRIABLE as e:
            log.warning("%s: tail check failed (%r); next time", agent_name, e)

    app.timer(TAIL_CHECK_S, name=f"{s.app_id}.{agent_name}.tails")(check_tails)

    if s.worker_prune_seconds and getattr(handler, "prune", None) is not None:

        async def apply_retention() -> None:
            """Prune what is past retention from the state of this worker's partitions."""
            if not _steady(app):
                return
            try:
                await _prune_lanes(app, rt, reader, state, wall_clock_ms())
            except Exception:  # a bug must not stop the timer for good
                log.exception("%s: retention pass failed; next time", agent_name)

        app.timer(s.worker_prune_seconds, name=f"{s.app_id}.{agent_name}.retention")(
            apply_retention
        )
    agent.__name__ = agent.__qualname__ = f"{agent_name}_agent"
    app.agent(topic, name=f"{s.app_id}.{agent_name}")(agent)


def _steady(app: faust.App) -> bool:
    """Recovery is over, no rebalance runs and the flow is on: the partitions assigned are
    this worker's, and their state is whole."""
    recovered = app.tables.recovery.completed.is_set()
    return bool(
        recovered
        and not app.rebalancing
        and not getattr(app, "in_recovery", True)
        and app.consumer.flow_active
    )


def _key_partitions(state: Any) -> dict[str, int]:
    """The partition of every key in an agent's table (Faust's in-memory store records it
    for the keys it recovers; the changelog sink for the keys it writes). Keys of partitions no
    longer assigned are dropped by the store once a rebalance's recovery completes."""
    index: dict[str, int] = state.data._key_partition
    return index


async def _prune_lanes(
    app: faust.App, rt: Runtime, reader: Reader, state: Any, now_ms: int
) -> tuple[int, int]:
    """One retention pass over an agent's state: what the handler's ``prune`` says is past
    retention at ``now_ms`` is trimmed or deleted, for the keys of the partitions assigned
    to this worker; returns (keys trimmed, keys deleted).

    Each lane's keys are decided and committed in chunks of ``PRUNE_CHUNK`` under the lane's
    lock, through the batch commit (``BatchContext.commit``: the changed keys of a partition
    as one record batch on its changelog, a deleted key as a tombstone, then the local
    table): a pass never races a batch of the same partition, a revocation waits for the
    chunk in flight, and a crash leaves each partition's state before or after a chunk,
    never half of one (the next pass does what is left). A rebalance ends the pass; the next
    timer tick starts anew."""
    handler = reader.handler
    agent_name = type(handler).__name__
    started = time.perf_counter()
    generation = app.consumer_generation_id
    topics = {rt.settings.topic(t) for t in handler.topics}
    mine = {tp.partition for tp in app.consumer.assignment() if tp.topic in topics}
    index = _key_partitions(state)
    lanes: dict[int, list[tuple[str, str]]] = {}
    for full, partition in list(index.items()):
        name, _, key = full.partition("|")
        if partition in mine and name in handler.tables:
            lanes.setdefault(partition % len(reader.lanes), []).append((name, key))
    trimmed = deleted = 0
    for number, keys in sorted(lanes.items()):
        lane = reader.lanes[number]
        for i in range(0, len(keys), PRUNE_CHUNK):
            async with lane.busy:
                if app.consumer_generation_id != generation or not _steady(app):
                    break  # a rebalance: the next pass starts from the new assignment
                chunk = keys[i : i + PRUNE_CHUNK]
                changes = [
                    (name, key, new, index[f"{name}|{key}"])
                    for (name, key), (_, new) in expired_states(
                        handler, reader.tables, chunk, now_ms
                    ).items()
                ]
                if changes:
                    await _commit_pruned(rt, handler, state, changes)
            gone = sum(1 for change in changes if change[2] is None)
            trimmed += len(changes) - gone
            deleted += gone
            await asyncio.sleep(0)  # a large state is pruned without holding up the loop
    held = Tally(
        full.partition("|")[0] for full, partition in list(index.items()) if partition in mine
    )
    for table in handler.tables:
        STATE_KEYS.labels(agent_name, table).set(held[table])
    PRUNED.labels(agent_name, "trimmed").inc(trimmed)
    PRUNED.labels(agent_name, "deleted").inc(deleted)
    elapsed = time.perf_counter() - started
    PRUNE.labels(agent_name).observe(elapsed)
    if trimmed or deleted:
        log.info(
            "%s: retention trimmed %d keys and deleted %d in %.3fs",
            agent_name,
            trimmed,
            deleted,
            elapsed,
        )
    return trimmed, deleted


async def _commit_pruned(
    rt: Runtime, handler: Handler, state: Any, changes: list[tuple[str, str, Any, int]]
) -> None:
    """Commit pruned state (table, key, new value or None, partition) like a batch's state;
    halves that do not fit in one record batch per partition are committed on their own."""
    ctx = BatchContext(store=rt.store, tables={})
    for name, key, value, partition in changes:
        ctx.restate(name, key, value, partition)
    try:
        await _until_done(type(handler).__name__, partial(ctx.commit, _ChangelogSink(rt, state)))
    except StateTooLarge:
        if len(changes) == 1:
            raise
        half = len(changes) // 2
        for part in (changes[:half], changes[half:]):
            await _commit_pruned(rt, handler, state, part)


async def _complete(
    rt: Runtime, handler: Handler, tables: dict[str, TableView], messages: Sequence[Message]
) -> list[Message]:
    """The batch as a gapless run of offsets per partition, from the committed state on.

    The state's commit record, not the consumer, says what was applied: a message at or
    below it is dropped here (and would be skipped by ``process_batch``). Faust was seen to
    hand an agent a partition's events out of order or with some missing (after a restart,
    and in the middle of a stream), and to commit offsets past events that were never
    processed. So each partition's events are sorted, and any offsets missing between the
    committed state and the last event are read directly (a side consumer) and put in their
    place; a compacted topic's legitimate gaps cost a read that returns nothing. Partitions
    keep the order in which they first appear in the batch.
    """
    runs: dict[tuple[str, int], dict[int, Message]] = {}
    for m in messages:
        runs.setdefault((m.topic, m.partition), {})[m.offset] = m
    batch: list[Message] = []
    for (topic, partition), by_offset in runs.items():
        expected = applied_offsets(handler, tables, partition).get(topic, -1) + 1
        for offset in sorted(by_offset):
            if offset < expected:
                continue
            if offset > expected:
                records = await rt.read_range(rt.settings.topic(topic), partition, expected, offset)
                if records:
                    log.warning(
                        "%s: %s[%d] got %d before %d: read %d missing events",
                        type(handler).__name__,
                        topic,
                        partition,
                        offset,
                        expected,
                        len(records),
                    )
                    REFILLS.labels(topic).inc(len(records))
                batch += [Message(topic, partition, r.offset, r.key, r.value) for r in records]
            batch.append(by_offset[offset])
            expected = offset + 1
    return batch


async def _tails(rt: Runtime, last: list[Message]) -> list[Message]:
    """The real records at the offsets of ``last`` (one per partition)."""
    out = []
    for m in last:
        for r in await rt.read_range(
            rt.settings.topic(m.topic), m.partition, m.offset, m.offset + 1
        ):
            out.append(Message(m.topic, m.partition, r.offset, r.key, r.value))
    return out


class AppliedOffsetsConsumer(FaustConsumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, committing what the state says was applied.

    Faust commits the end of the first unbroken run of offsets it saw acknowledged per
    partition (``Consumer._new_offset``). That ties the group's offsets to its bookkeeping
    of acks, which the worker cannot keep whole: events read by the worker itself (gap
    refills, tail checks) are never acknowledged through Faust, and one offset missing from
    the run (a message fetched before a rebalance and dropped from the stream's buffer, a
    compacted offset) holds every later offset back for good: the stall seen with two
    workers, thousands of applied offsets uncommitted for minutes. Its head check
    (``min(acked) - committed > 1``) also lets one unacknowledged offset be committed over
    (faust-streaming #606, #707).

    Here the offset committed for a partition is one past the last offset that every agent
    reading the topic has applied, from the commit records in their committed state
    (``Runtime.next_offset``). A commit record moves only after the batch's rows, derived
    events and state are written, so no offset is ever committed past an unapplied event,
    and every assigned partition is committed up to what was applied, acknowledged through
    Faust or not. Faust's timers, its commit on rebalance and its acks (which the stream
    buffers and ``wait_empty`` still use) are unchanged."""

    runtime: Runtime

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Any:
        return (
            tp
            for tp in self.assignment()
            if tp.topic in self.runtime.readers
            and (topics is None or tp in topics or tp.topic in topics)
        )

    def _new_offset(self, tp: TP) -> int | None:
        offset = self.runtime.next_offset(tp.topic, tp.partition)
        acked = self._acked.get(tp)
        if acked and offset is not None:
            # Forget the acks the offset covers (Faust's own bookkeeping would have).
            done = [o for o in acked if o < offset]
            if done:
                self._acked_index[tp].difference_update(done)
                acked[:] = [o for o in acked if o >= offset]
        return offset


class BatchConsumer(AppliedOffsetsConsumer):
    """Faust's aiokafka consumer, handing each fetch to the agents in batches, committing
    what the state says was applied (``AppliedOffsetsConsumer``).

    Faust's fetch loop (``Consumer._drain_messages``) turns every record into a message, an
    event per stream and an ack, and races each delivery against a flow-control event: a
    busy worker spent more CPU there than in its handlers. Here each fetch's records of a
    topic an agent reads become one list of ``Message`` tuples, put in the inbox of the
    partition's lane in every agent reading the topic; records of other topics (table
    changelogs during recovery) go through Faust's own path. What Faust's loop did that
    matters is kept: only active partitions, the read offsets it seeks by, a fetch of a
    stale generation dropped, and the timestamps its liveness check reads. On revocation
    (``wait_empty``) the inboxes are cleared and the batches in flight awaited before
    offsets are committed."""

    runtime: Runtime

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - worker loop
        rt = self.runtime
        callback = self.callback
        read_offset = self._read_offset
        inbound = self.app.monitor.stream_inbound_time
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                records, active = await self._wait_next_records(timeout=1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                now = time.monotonic()
                for tp, fetched in records.items():
                    if (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    start = read_offset[tp]
                    if start is not None and fetched[0].offset < start:
                        fetched = [r for r in fetched if r.offset >= start]
                        if not fetched:
                            continue
                    readers = rt.readers.get(tp.topic)
                    if readers:
                        topic = rt.short_name(tp.topic)
                        p = tp.partition
                        messages = [Message(topic, p, r.offset, r.key, r.value) for r in fetched]
                        inbound[tp] = now
                        for reader in readers:
                            await reader.lane(p).inbox.put(generation, messages)
                    else:
                        for r in fetched:
                            await self.wait_first(
                                callback(self._to_message(tp, r)), self.suspend_flow.wait()
                            )
                    if generation != self.app.consumer_generation_id or not self.flow_active:
                        break  # a rebalance began: the new assignment seeks anew
                    read_offset[tp] = fetched[-1].offset
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def wait_empty(self) -> None:
        await self.runtime.quiesce()
        await super().wait_empty()


class TableView:
    """One logical table of a handler: the keys under ``name|`` in the agent's Faust table."""

    def __init__(self, table: Any, name: str) -> None:
        self.table = table
        self.name = name

    def get(self, key: str) -> Any:
        return self.table.data.get(f"{self.name}|{key}")


RETRIABLE = (
    StoreUnavailable,
    ProducerSendError,
    KafkaError,
    OSError,
    TimeoutError,
)


class HandlerFailed(Exception):
    """A handler raised an error it does not declare (retried ``UNEXPECTED_RETRIES`` times,
    then the message it happens on is dead-lettered)."""


# Attempts of a batch whose handler fails unexpectedly before its failing message goes to
# the dead-letter topic: a bug would otherwise stop the partition for good.
UNEXPECTED_RETRIES = 3


async def _until_done(agent_name: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` until it succeeds, retrying infrastructure errors with a backoff capped
    at 5 s (the partition stops; no offset moves meanwhile)."""
    delay = 0.2
    while True:
        try:
            return await work()
        except (*RETRIABLE, HandlerFailed) as e:
            RETRIES.labels(agent_name).inc()
            log.warning("%s: not committed (%r); retrying in %.1fs", agent_name, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _process_until_committed(
    rt: Runtime,
    handler: Handler,
    state: Any,
    tables: dict[str, TableView],
    messages: Sequence[Message],
) -> None:
    failures = 0

    async def attempt() -> None:
        nonlocal failures
        try:
            ctx = await process_batch(
                handler,
                messages,
                rt.store,
                tables,
                rt.registry,
                dead_letter_unexpected=failures >= UNEXPECTED_RETRIES,
            )
        except RETRIABLE:
            raise
        except Exception as e:
            # A bug, or something no handler expects: retried like an outage a few times
            # (it may be passing), then the message it happens on is dead-lettered.
            failures += 1
            UNEXPECTED.labels(type(handler).__name__).inc()
            log.exception("%s: unexpected error (attempt %d)", type(handler).__name__, failures)
            raise HandlerFailed(repr(e)) from e
        await ctx.commit(_ChangelogSink(rt, state))

    try:
        await _until_done(type(handler).__name__, attempt)
    except StateTooLarge:
        if len(messages) == 1:
            raise
        half = len(messages) // 2
        log.info(
            "%s: state of %d events too large, committing halves",
            type(handler).__name__,
            len(messages),
        )
        for part in (messages[:half], messages[half:]):
            await _process_until_committed(rt, handler, state, tables, part)


class _ChangelogSink:
    """A batch's commit under Faust (:class:`streams.context.CommitSink`): derived events and
    dead letters produced as record batches, then each partition's state and commit record
    as one record batch of the changelog, then Faust's local copy of the table."""

    def __init__(self, rt: Runtime, state: Any) -> None:
        self.rt = rt
        self.state = state

    async def produce(
        self, emits: Sequence[Emit], dead_letters: Sequence[tuple[Message, str]]
    ) -> None:
        rt = self.rt
        producer = await rt.producer()
        # Derived events: one record batch per partition (the partition Kafka's default
        # partitioner gives the key, as the ingest API's), not one send and one future each.
        events: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        for e in emits:
            topic = rt.settings.topic(e.topic)
            key_bytes = e.key.encode()
            partition = partition_of(key_bytes, await rt.partitions(topic))
            events.setdefault((topic, partition), []).append(
                (key_bytes, rt.registry.encode(e.name, e.record))
            )
        sent = [
            future
            for (topic, partition), records in events.items()
            for future in await _send(producer, topic, partition, records)
        ]
        for msg, error in dead_letters:
            DEAD.labels(msg.topic).inc()
            log.warning("dead letter %s: %s", msg.position, error)
            sent.append(
                await producer.send(
                    rt.settings.topic(f"{msg.topic}.dlq"),
                    rt.registry.encode("covidtech.ops.DeadLetter", dead_letter_record(msg, error)),
                    key=msg.key,
                )
            )
        if sent:
            await asyncio.gather(*sent)

    async def save_state(self, by_partition: Mapping[int, list[tuple[str, str, Any]]]) -> None:
        # Per partition, every staged key and the commit record in one record batch, JSON as
        # Faust's table codec reads it back on recovery. The local copy changes only after
        # Kafka has it.
        state = self.state
        producer = await self.rt.producer()
        topic = state.changelog_topic.get_topic_name()
        sent = []
        for partition, items in by_partition.items():
            records = [
                (
                    json.dumps(f"{table}|{key}").encode(),
                    None if value is None else json.dumps(value).encode(),
                )
                for table, key, value in items
            ]
            sent += await _send(producer, topic, partition, records, whole=True)
        if sent:
            await asyncio.gather(*sent)
        index = _key_partitions(state)
        for partition, items in by_partition.items():
            for table, key, value in items:
                name = f"{table}|{key}"
                if value is None:
                    state.data.pop(name, None)
                    index.pop(name, None)
                else:
                    state.data[name] = value
                    index[name] = partition


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: list[tuple[bytes, bytes | None]],
    *,
    whole: bool = False,
) -> list[asyncio.Future[Any]]:
    """Send ``records`` to ``topic[partition]`` as record batches of at most
    ``STATE_BATCH_BYTES``; the futures of their acknowledgements. ``whole``: in one batch,
    which the broker writes whole or not at all, else ``StateTooLarge``."""
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None or (
            batch.size() > STATE_BATCH_BYTES
        ):
            if whole:
                raise StateTooLarge(f"{len(records)} keys of {topic}[{partition}]")
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise StateTooLarge(f"one record of {topic}[{partition}]")
    batch.close()
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def wait_for_topics(settings: Settings, within: float = 60.0) -> None:
    """Return once the broker's metadata lists every topic the agents read.

    Faust subscribes to what the metadata lists when it starts and ignores the rest until a
    metadata refresh (minutes): a worker started right after the topics were created (a
    cold broker, ``covidtech demo``) could otherwise sit idle on some of them."""
    wanted = {settings.topic(t) for h in all_handlers() for t in h.topics}
    deadline = time.monotonic() + within
    consumer = kafka_clients.consumer(settings)
    await consumer.start()
    try:
        while missing := wanted - await consumer.topics():
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"topics missing after {within:.0f}s: {', '.join(sorted(missing))}; "
                    "run `covidtech infra up` first"
                )
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


class QuietWorker(Worker):  # type: ignore[misc]
    """Faust's worker without its start-up spinner. The spinner's log handler sets the
    root logger to DEBUG for good, so every library's debug call (aiokafka logs each send)
    built a log record: 4.2% of a busy worker's samples (py-spy)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)


def run_worker(
    settings: Settings, loglevel: str = "warning", store: ProjectionStore | None = None
) -> None:
    """Run a worker until SIGTERM/SIGINT (``covidtech worker``)."""
    collect_less_often()
    # The loop stays the current one for Faust (asyncio.run would leave none set).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from infra.kafka_topics import require_production_ready

    loop.run_until_complete(require_production_ready(settings))
    loop.run_until_complete(wait_for_topics(settings))
    app = build_app(settings, store=store)
    QuietWorker(app, loglevel=loglevel).execute_from_commandline()
