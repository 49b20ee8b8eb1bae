"""``covidtech replay --via-worker``: rebuild every projection through a worker process.

(The default ``covidtech replay`` folds the log in process: ``streams.rebuild``.) This
replay is a second worker with its own consumer group, its own keyspace (migrated
fresh) and its own derived topics (``derived_topic_prefix``), reading the same source topics
from offset 0. Derived events are deterministic, so the rebuilt tables equal the live ones
(the integration tests compare digests). It stops when its group has committed the end
offset of every partition it reads, and reports events/s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition

from covidtech import kafka_clients, processes
from covidtech.settings import Settings
from covidtech.topics import ALL_TOPICS, SOURCE_TOPICS


@dataclass(frozen=True)
class ReplayReport:
    keyspace: str
    source_events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.source_events / self.seconds if self.seconds else 0.0


async def end_offsets(s: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    client = kafka_clients.consumer(s)
    await client.start()
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in await kafka_clients.partitions_of(client, t, missing_ok=True)
        ]
        return dict(await client.end_offsets(parts)) if parts else {}
    finally:
        await client.stop()


async def committed(s: Settings, group: str) -> dict[TopicPartition, int]:
    admin = kafka_clients.admin(s)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


@dataclass(frozen=True)
class PartitionLag:
    """One partition an agent reads: its end offset and the group's committed offset."""

    end: int
    committed: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


async def group_lag(s: Settings, group: str | None = None) -> dict[TopicPartition, PartitionLag]:
    """Every partition the agents read (source and derived topics), with the end offset and
    the committed offset of the worker group (``group``, default the settings' app id). The
    one place `covidtech status`, the benchmarks and the tests read lag from."""
    from streams.handlers import all_handlers

    topics = sorted({s.topic(t) for h in all_handlers() for t in h.topics})
    ends = await end_offsets(s, topics)
    done = await committed(s, group or s.app_id)
    return {tp: PartitionLag(end, done.get(tp, 0)) for tp, end in ends.items()}


async def caught_up(s: Settings) -> bool:
    """Whether the worker group of ``s`` has committed the end offset of every partition
    its agents read."""
    return not any(p.lag for p in (await group_lag(s)).values())


def replay(
    base: Settings, keyspace: str, *, log: Callable[[str], None] = print, timeout: float = 3600
) -> ReplayReport:
    """Rebuild the projections of ``base`` into ``keyspace``; return the throughput."""
    from dataclasses import replace

    from infra.cassandra_schema import migrate
    from infra.kafka_topics import create_topics
    from infra.lifecycle import cassandra_session

    stamp = time.strftime("%Y%m%d%H%M%S")
    s = replace(
        base,
        keyspace=keyspace,
        app_id=f"{base.app_id}-replay-{stamp}",
        derived_topic_prefix=f"{base.topic_prefix}replay-{stamp}.",
        worker_web_port=base.worker_web_port + 100,
    )
    asyncio.run(create_topics(s, [t for t in ALL_TOPICS if t.derived or t.dlq]))
    session = cassandra_session(s)
    try:
        migrate(session, s.keyspace, s.replication_factor, log)
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]
    sources = [s.topic(t.name) for t in SOURCE_TOPICS]
    total = sum(asyncio.run(end_offsets(s, sources)).values())
    log(f"replaying {total} source events into keyspace {keyspace} ...")
    started = time.monotonic()
    proc = processes.spawn(["cli", "worker"], None, processes.child_env(s))
    try:
        while not asyncio.run(caught_up(s)):
            if proc.poll() is not None:
                raise RuntimeError(f"replay worker exited with {proc.returncode}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"replay not done after {timeout:.0f}s")
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        processes.stop(proc, grace=60)
    report = ReplayReport(keyspace, total, elapsed)
    log(f"replayed {total} events in {elapsed:.1f}s ({report.events_per_second:.0f} events/s)")
    return report
