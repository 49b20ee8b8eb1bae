"""The faust-streaming worker: one agent per handler, Kafka in, Cassandra and Kafka out.

This module and ``streams/avro_codec.py`` are the only places that import Faust.

Per agent: ``stream.noack_take(n, within)`` yields batches whose events are *not* acked;
after the batch is committed (``streams.context`` gives the order: rows, derived events,
state and its changelog flushed) every event is acked, and Faust commits an offset only when
all events before it were acked. While Cassandra or Kafka refuse a write, the batch is
retried with a capped backoff: the partition stops, nothing is acked, nothing is skipped.
A SIGKILL at any point redelivers the unacked batch, which recomputes the same effects.

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
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram, generate_latest

from covidtech.settings import Settings
from projections.cassandra import CassandraStore
from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import Registry, default_registry
from streams.batch import COMMITS, applied_offsets, dead_letter_record, process_batch
from streams.context import BatchContext, Handler, Message
from streams.handlers import all_handlers

log = logging.getLogger(__name__)

PROCESSED = Counter("covidtech_stream_events_total", "Source events processed", ["topic"])
DEAD = Counter("covidtech_stream_dead_letters_total", "Events sent to a DLQ", ["topic"])
RETRIES = Counter("covidtech_stream_retries_total", "Batches retried after a failure", ["agent"])
REFILLS = Counter(
    "covidtech_stream_refilled_events_total",
    "Events read directly because the consumer started past the committed state",
    ["topic"],
)
BATCH = Histogram(
    "covidtech_stream_batch_seconds",
    "Time to process and commit a batch",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# The largest state commit of one partition in one batch, in bytes (the broker's
# message.max.bytes in infra/kafka/server.properties must allow it). A batch whose state is
# larger is split in halves, each committed on its own.
STATE_BATCH_BYTES = 8 * 1024 * 1024


class StateTooLarge(Exception):
    """The staged state of one partition does not fit in one record batch."""


class Runtime:
    """What the agents share: settings, codec registry, the projection store and the state
    producer (lazy: they need the worker's event loop)."""

    def __init__(self, settings: Settings, store: ProjectionStore | None = None) -> None:
        self.settings = settings
        self.registry: Registry = default_registry()
        self._store = store
        self._by_full_name: dict[str, str] = {}
        self._state_producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    @property
    def store(self) -> ProjectionStore:
        if self._store is None:
            self._store = CassandraStore.from_settings(self.settings)
        return self._store

    async def state_producer(self) -> AIOKafkaProducer:
        """The producer of state commits: explicit record batches, acks from all replicas."""
        async with self._starting:
            if self._state_producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    client_id=f"{self.settings.app_id}-state",
                    acks="all",
                    max_batch_size=STATE_BATCH_BYTES,
                    max_request_size=STATE_BATCH_BYTES + 1024 * 1024,
                )
                await producer.start()
                self._state_producer = producer
            return self._state_producer

    async def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The records of ``topic[partition]`` from offset ``start`` up to ``end`` (excluded)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a start below the log's start (retention)
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            records: list[Any] = []
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(r for r in fetched.get(tp, ()) if r.offset < end)
            return records
        finally:
            await consumer.stop()

    async def close(self) -> None:
        producer, self._state_producer = self._state_producer, None
        if producer is not None:
            await producer.stop()

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
    batch_size: int = 500,
    batch_within: float = 0.2,
    store: ProjectionStore | None = None,
) -> faust.App:
    """The worker's Faust app with every agent and table registered."""
    datadir = settings.home / "worker" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")),
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
    for handler in all_handlers():
        _register(app, runtime, handler, batch_size, batch_within)

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def close_runtime(app: Any, **kwargs: Any) -> None:
        await runtime.close()

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    return app


def _register(
    app: faust.App, rt: Runtime, handler: Handler, batch_size: int, within: float
) -> None:
    s = rt.settings
    agent_name = type(handler).__name__
    # JSON keys and values: str keys must come back as str after changelog recovery.
    state = app.Table(
        f"{agent_name}-state",
        default=None,
        partitions=s.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    tables = {name: TableView(state, name) for name in (*handler.tables, COMMITS)}
    topic = app.topic(
        *(s.topic(t) for t in handler.topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=s.topic_partitions,
    )

    async def agent(stream: Any) -> None:
        async for events in stream.noack_take(batch_size, within=within):
            messages = [
                Message(
                    rt.short_name(e.message.topic),
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            started = time.perf_counter()
            await _process_until_committed(app, rt, handler, state, tables, messages)
            BATCH.labels(agent_name).observe(time.perf_counter() - started)
            for e in events:
                await stream.ack(e)
            for m in messages:
                PROCESSED.labels(m.topic).inc()

    agent.__name__ = agent.__qualname__ = f"{agent_name}_agent"
    app.agent(topic, name=f"{s.app_id}.{agent_name}")(agent)


async def _refill(
    rt: Runtime, handler: Handler, tables: dict[str, TableView], messages: Sequence[Message]
) -> list[Message]:
    """The batch, preceded by any events between the committed state and the consumer.

    The state's commit record, not the consumer group's offset, says what was applied. After
    a SIGKILL the consumer was seen to resume past it (an offset committed for events whose
    batch had not committed its state); the events in between are then read directly, so
    none is lost. Events at or below the state's offsets are skipped by ``process_batch``.
    """
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        first.setdefault((m.topic, m.partition), m.offset)
    missing: list[Message] = []
    for (topic, partition), offset in first.items():
        start = applied_offsets(handler, tables, partition).get(topic, -1) + 1
        if offset <= start:
            continue
        records = await rt.read_range(rt.settings.topic(topic), partition, start, offset)
        if records:
            log.warning(
                "%s: %s[%d] resumed at %d, past the committed state (%d): read %d events",
                type(handler).__name__,
                topic,
                partition,
                offset,
                start,
                len(records),
            )
            REFILLS.labels(topic).inc(len(records))
        missing += [Message(topic, partition, r.offset, r.key, r.value) for r in records]
    return [*missing, *messages]


class TableView:
    """One logical table of a handler: the keys under ``name|`` in the agent's Faust table."""

    def __init__(self, table: Any, name: str) -> None:
        self.table = table
        self.name = name

    def get(self, key: str) -> Any:
        return self.table.data.get(f"{self.name}|{key}")


async def _process_until_committed(
    app: faust.App,
    rt: Runtime,
    handler: Handler,
    state: Any,
    tables: dict[str, TableView],
    messages: Sequence[Message],
) -> None:
    agent_name = type(handler).__name__
    delay = 0.2
    while True:
        try:
            batch = await _refill(rt, handler, tables, messages)
            ctx = await process_batch(handler, batch, rt.store, tables, rt.registry)
            await _commit(app, rt, ctx, state)
            return
        except StateTooLarge:
            if len(messages) == 1:
                raise
            half = len(messages) // 2
            log.info("%s: state of %d events too large, committing halves", agent_name, half * 2)
            for part in (messages[:half], messages[half:]):
                await _process_until_committed(app, rt, handler, state, tables, part)
            return
        except (
            StoreUnavailable,
            faust.exceptions.ProducerSendError,
            KafkaError,
            OSError,
            TimeoutError,
        ) as e:
            RETRIES.labels(agent_name).inc()
            log.warning(
                "%s: batch of %d not committed (%s); retrying in %.1fs",
                agent_name,
                len(messages),
                e,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _commit(app: faust.App, rt: Runtime, ctx: BatchContext, state: Any) -> None:
    await ctx.read_your_writes()
    producer = app.producer
    futures = []
    for e in ctx.emits:
        futures.append(
            await producer.send(
                rt.settings.topic(e.topic),
                e.key.encode(),
                rt.registry.encode(e.name, e.record),
                None,
                None,
                None,
            )
        )
    for msg, error in ctx.dead_letters:
        DEAD.labels(msg.topic).inc()
        log.warning("dead letter %s: %s", msg.position, error)
        futures.append(
            await producer.send(
                rt.settings.topic(f"{msg.topic}.dlq"),
                msg.key,
                rt.registry.encode("covidtech.ops.DeadLetter", dead_letter_record(msg, error)),
                None,
                None,
                None,
            )
        )
    if futures:
        await asyncio.gather(*futures)
    # State: per partition, every staged key and the commit record in one record batch,
    # JSON as Faust's table codec reads it back on recovery. The local copy changes only
    # after Kafka has it.
    records: dict[int, list[tuple[str, Any]]] = {}
    for (name, key), (value, partition) in ctx.staged.items():
        records.setdefault(partition, []).append((f"{name}|{key}", value))
    topic = state.changelog_topic.get_topic_name()
    state_producer = await rt.state_producer()
    sent = []
    for partition, items in records.items():
        batch = state_producer.create_batch()
        for key, value in items:
            body = None if value is None else json.dumps(value).encode()
            added = batch.append(key=json.dumps(key).encode(), value=body, timestamp=None)
            if added is None or batch.size() > STATE_BATCH_BYTES:
                raise StateTooLarge(f"{len(items)} keys of partition {partition}")
        batch.close()
        sent.append(await state_producer.send_batch(batch, topic, partition=partition))
    if sent:
        await asyncio.gather(*sent)
    for items in records.values():
        for key, value in items:
            if value is None:
                state.data.pop(key, None)
            else:
                state.data[key] = value


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run a worker until SIGTERM/SIGINT (``covidtech worker``)."""
    from faust.worker import Worker

    app = build_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
