"""The faust-streaming worker: one agent per handler, Kafka in, Cassandra and Kafka out.

This module and ``streams/avro_codec.py`` are the only places that import Faust.

Per agent: ``stream.noack_take(n, within)`` yields batches whose events are *not* acked;
after the batch is committed (``streams.context`` gives the order: rows, derived events,
state and its changelog flushed) every event is acked, and Faust commits an offset only when
all events before it were acked. While Cassandra or Kafka refuse a write, the batch is
retried with a capped backoff: the partition stops, nothing is acked, nothing is skipped.
A SIGKILL at any point redelivers the unacked batch, which recomputes the same effects.

State tables are Faust tables (changelogged, recovered on start and rebalance). A batch may
hold events of several partitions, so each staged key is written with the partition of the
message that last changed it (a direct, acknowledged producer send to the table's changelog
topic), not the partition of whatever event happens to be current.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram, generate_latest

from covidtech.settings import Settings
from projections.cassandra import CassandraStore
from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import Registry, default_registry
from streams.batch import dead_letter_record, process_batch
from streams.context import BatchContext, Handler, Message
from streams.handlers import all_handlers

log = logging.getLogger(__name__)

PROCESSED = Counter("covidtech_stream_events_total", "Source events processed", ["topic"])
DEAD = Counter("covidtech_stream_dead_letters_total", "Events sent to a DLQ", ["topic"])
RETRIES = Counter("covidtech_stream_retries_total", "Batches retried after a failure", ["agent"])
BATCH = Histogram(
    "covidtech_stream_batch_seconds",
    "Time to process and commit a batch",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Runtime:
    """What the agents share: settings, codec registry, the projection store (lazy: it
    needs the worker's event loop)."""

    def __init__(self, settings: Settings, store: ProjectionStore | None = None) -> None:
        self.settings = settings
        self.registry: Registry = default_registry()
        self._store = store
        self._by_full_name: dict[str, str] = {}

    @property
    def store(self) -> ProjectionStore:
        if self._store is None:
            self._store = CassandraStore.from_settings(self.settings)
        return self._store

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

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    return app


def _register(
    app: faust.App, rt: Runtime, handler: Handler, batch_size: int, within: float
) -> None:
    s = rt.settings
    tables = {
        # JSON keys and values: str keys must come back as str after changelog recovery.
        name: app.Table(
            name,
            default=None,
            partitions=s.topic_partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
        )
        for name in handler.tables
    }
    topic = app.topic(
        *(s.topic(t) for t in handler.topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=s.topic_partitions,
    )
    agent_name = type(handler).__name__

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
            await _process_until_committed(app, rt, handler, tables, messages, agent_name)
            BATCH.labels(agent_name).observe(time.perf_counter() - started)
            for e in events:
                await stream.ack(e)
            for m in messages:
                PROCESSED.labels(m.topic).inc()

    agent.__name__ = agent.__qualname__ = f"{agent_name}_agent"
    app.agent(topic, name=f"{s.app_id}.{agent_name}")(agent)


async def _process_until_committed(
    app: faust.App,
    rt: Runtime,
    handler: Handler,
    tables: dict[str, Any],
    messages: Sequence[Message],
    agent_name: str,
) -> None:
    delay = 0.2
    while True:
        try:
            ctx = await process_batch(handler, messages, rt.store, tables, rt.registry)
            await _commit(app, rt, ctx, tables)
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


async def _commit(app: faust.App, rt: Runtime, ctx: BatchContext, tables: dict[str, Any]) -> None:
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
    # State: each key's changelog record goes, acknowledged, to the partition of the message
    # that changed it (JSON, as Faust's table codec reads it back on recovery); the local
    # copy changes only after Kafka has it. Sent directly rather than through the table's
    # buffered send_soon, whose background flusher may pause during a rebalance.
    changelog = []
    for (name, key), (value, partition) in ctx.staged.items():
        topic = tables[name].changelog_topic.get_topic_name()
        body = None if value is None else json.dumps(value).encode()
        changelog.append(
            await producer.send(topic, json.dumps(key).encode(), body, partition, None, None)
        )
    if changelog:
        await asyncio.gather(*changelog)
    for (name, key), (value, _partition) in ctx.staged.items():
        if value is None:
            tables[name].data.pop(key, None)
        else:
            tables[name].data[key] = value


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run a worker until SIGTERM/SIGINT (``covidtech worker``)."""
    from faust.worker import Worker

    app = build_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
