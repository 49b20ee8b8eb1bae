"""``covidtech replay``: rebuild every projection from the start of the log, in one process.

The live worker writes every intermediate state of a row (a visit opened by its IN, then
closed by its OUT; an alert raised, then recomputed). A rebuild only needs the final rows, so
it folds the log in memory first and writes each row once:

1. read every source topic from offset 0 up to the end offsets of the moment it starts
   (aiokafka, large fetches), in chunks;
2. fold each chunk through the same handlers, batch processing and commit order as the
   worker (``streams.local``: derived topics are kept in memory and read by the same
   handlers), into an in-memory store; messages every handler has read are dropped;
3. write the store's rows, with their expiry and write timestamps, into a fresh keyspace,
   batched per partition, several requests in flight.

Projections are a function of the set of events (DESIGN "Order independence"), so the rows
equal those the live worker converges to; the integration tests compare digests. Memory:
the fold holds the handlers' state (what the workers hold in their tables) plus the final
rows. When that outgrows one machine, ``--via-worker`` replays through worker processes
(``streams.replay``), which scale out like the live workers but write every intermediate
row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from covidtech.progress import bar
from covidtech.settings import Settings
from covidtech.topics import SOURCE_TOPICS
from projections.cassandra import CassandraStore
from projections.memory import InMemoryStore
from projections.model import Upsert
from streams.local import LocalPipeline

FETCH_RECORDS = 50_000  # source events read before each fold step
WRITE_CHUNK = 2_000  # rows per store.apply call
WRITES_IN_FLIGHT = 4  # apply calls in parallel (each sends its partitions concurrently)


@dataclass(frozen=True)
class RebuildReport:
    keyspace: str
    source_events: int
    rows: int
    fold_seconds: float
    write_seconds: float

    @property
    def seconds(self) -> float:
        return self.fold_seconds + self.write_seconds

    @property
    def events_per_second(self) -> float:
        return self.source_events / self.seconds if self.seconds else 0.0


async def fold_log(
    s: Settings,
    *,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[InMemoryStore, int]:
    """Fold every source event of ``s`` into an in-memory store; return it and the count."""
    store = InMemoryStore()
    pipeline = LocalPipeline(store, batch_size=2_000)
    short = {s.topic(t.name): t.name for t in SOURCE_TOPICS}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in short
            for p in sorted(await _partitions(consumer, topic))
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        total = sum(ends.values())  # an upper bound: compaction leaves gaps
        remaining = [tp for tp in tps if ends[tp] > 0]
        count = 0
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=FETCH_RECORDS)
            for tp, records in fetched.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        break
                    pipeline.append(short[tp.topic], r.key, r.value)
                    count += 1
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
            await pipeline.run_until_idle()
            pipeline.trim()
            progress(count, total)
        return store, count
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.end_offsets([TopicPartition(topic, 0)])  # fetches the topic's metadata
        partitions = consumer.partitions_for_topic(topic)
    return set(partitions or ())


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


def rebuild(base: Settings, keyspace: str, *, log: Callable[[str], None] = print) -> RebuildReport:
    """Rebuild the projections of ``base`` into a fresh ``keyspace`` (migrated here)."""
    from dataclasses import replace

    from infra.cassandra_schema import migrate
    from infra.lifecycle import cassandra_session

    s = replace(base, keyspace=keyspace)
    session = cassandra_session(s)
    try:
        migrate(session, s.keyspace, s.replication_factor, log)
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]

    last = [0.0]

    def folding(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 2 or done >= total:
            last[0] = time.monotonic()
            log(f"{bar(done, total)} folded {done:,} of at most {total:,} source events")

    started = time.monotonic()
    store, events = asyncio.run(fold_log(s, progress=folding))
    folded = time.monotonic()
    rows = len(store)
    log(f"folded {events:,} events into {rows:,} rows in {folded - started:.1f}s; writing ...")

    def writing(done: int) -> None:
        if time.monotonic() - last[0] >= 2 or done >= rows:
            last[0] = time.monotonic()
            log(f"{bar(done, rows)} wrote {done:,} of {rows:,} rows")

    async def write() -> int:
        target = CassandraStore.from_settings(s)
        try:
            return await write_rows(store.upserts(), target, progress=writing)
        finally:
            target.close()

    asyncio.run(write())
    report = RebuildReport(keyspace, events, rows, folded - started, time.monotonic() - folded)
    log(
        f"replayed {events:,} events into {rows:,} rows of keyspace {keyspace} in "
        f"{report.seconds:.1f}s ({report.events_per_second:,.0f} events/s: fold "
        f"{report.fold_seconds:.1f}s, write {report.write_seconds:.1f}s)"
    )
    return report
