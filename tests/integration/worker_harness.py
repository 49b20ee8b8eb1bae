"""Running stream workers in tests: start one as a subprocess, publish events, read the
projections and topics back, and compare them with the in-process pipeline's.

Shared by the integration tests of the worker, the programme, the store crash and retention.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from covidtech import kafka_clients, processes
from covidtech.processes import child_env, free_port
from covidtech.settings import Settings, with_overrides
from projections.cassandra import CassandraStore
from projections.model import TABLES
from schemas.codec import default_registry
from tests.scenarios import Ev
from tests.support import run_coroutine


@contextmanager
def worker(
    s: Settings, web_port: int, command: tuple[str, ...] = ("cli", "worker")
) -> Iterator[subprocess.Popen[bytes]]:
    s = with_overrides(s, worker_web_port=web_port)
    log = s.home / f"worker-{s.app_id}-{web_port}.log"
    with processes.child(command, log, child_env(s), grace=60) as proc:
        yield proc


@contextmanager
def slow_worker(s: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in small batches in one lane, so that the stream takes long enough to be seen
    midway."""
    with worker(with_overrides(s, worker_batch=10, worker_lanes=1), free_port()) as proc:
        yield proc


def midway(
    s: Settings,
    want: dict[str, list[dict[str, Any]]],
    table: str,
    timeout: float,
    what: str = "worker mid-stream",
) -> None:
    """Waits until some rows of ``table`` are written, but not all that ``want`` has."""
    from tests.support import eventually

    total = len(want[table])
    eventually(
        lambda: 0 < len(snapshot(s)[table]) < total or None,
        timeout=timeout,
        interval=0.1,
        what=what,
    )


def resumes_after_a_kill(
    s: Settings, events: list[Ev], table: str, midway_within: float, converge_within: float
) -> None:
    """The events published; a slow worker killed (SIGKILL) in the middle of the stream, some
    rows of ``table`` written, not all; then a new worker converges to the rows the in-process
    pipeline gives: nothing lost, nothing counted twice."""
    want = expected_rows(events)
    publish_sync(s, events)
    with slow_worker(s) as proc:
        midway(s, want, table, midway_within)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with worker(s, free_port()) as proc:
        converge(s, want, proc, timeout=converge_within)


async def publish(s: Settings, events: list[Ev]) -> None:
    registry = default_registry()
    producer = kafka_clients.producer(s, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                s.topic(e.topic), registry.encode(e.name, e.record), key=e.key.encode()
            )
    finally:
        await producer.stop()


def publish_sync(s: Settings, events: list[Ev]) -> None:
    run_coroutine(publish(s, events))


def snapshot(s: Settings) -> dict[str, list[dict[str, Any]]]:
    store = CassandraStore.from_settings(s)
    try:
        return {t: sorted(run_coroutine(store.scan(t)), key=repr) for t in TABLES}
    finally:
        store.close()


def digest(snap: dict[str, list[dict[str, Any]]]) -> str:
    return hashlib.sha256(repr(sorted(snap.items())).encode()).hexdigest()


def expected_rows(events: list[Ev]) -> dict[str, list[dict[str, Any]]]:
    """What the projections must hold: the same handlers, in process, in memory."""
    from projections.memory import InMemoryStore
    from streams.local import LocalPipeline

    async def go() -> dict[str, list[dict[str, Any]]]:
        store = InMemoryStore()
        p = LocalPipeline(store)
        for e in events:
            p.publish(e.topic, e.key, e.name, e.record)
        await p.run_until_idle()
        return {t: sorted(await store.scan(t), key=repr) for t in TABLES}

    return run_coroutine(go())


ALERT_TABLES = ("alerts_by_province", "alerts_by_person")


def comparable(snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The part of a snapshot that is a function of the set of events: everything but the
    WITHDRAWN alerts, which record history (an alert published, then withdrawn when a later
    event removed its overlap) and so depend on the order events arrived in."""
    out = dict(snap)
    for t in ALERT_TABLES:
        withdrawn = [r for r in snap[t] if r["status"] == "WITHDRAWN"]
        active_ids = {r["alert_id"] for r in snap[t] if r["status"] == "ACTIVE"}
        assert all(r["overlap_seconds"] == 0 for r in withdrawn), t
        assert not active_ids & {r["alert_id"] for r in withdrawn}, t
        out[t] = [r for r in snap[t] if r["status"] == "ACTIVE"]
    return out


def converge(
    s: Settings, want: dict[str, list[dict[str, Any]]], proc: Any = None, timeout: float = 120
) -> dict[str, list[dict[str, Any]]]:
    """Poll the keyspace until it equals ``want``."""
    from tests.support import eventually

    target = comparable(want)
    last: list[dict[str, list[dict[str, Any]]]] = []

    def check() -> dict[str, list[dict[str, Any]]] | None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}")
        snap = snapshot(s)
        last[:] = [snap]
        return snap if comparable(snap) == target else None

    try:
        return eventually(check, timeout=timeout, interval=1.0, what="projections converge")
    except AssertionError:
        if last:
            got = comparable(last[0])
            diff = {t: (len(got[t]), len(target[t])) for t in target if got[t] != target[t]}
            raise AssertionError(f"tables differing (got, want rows): {diff}") from None
        raise


async def commit_end_offsets(s: Settings) -> int:
    """Move the worker group's offsets to the end of every source topic (as after a crash
    that committed offsets of events whose state was not committed); return the events."""
    from aiokafka import TopicPartition

    from covidtech.topics import SOURCE_TOPICS

    consumer = kafka_clients.consumer(s, group_id=s.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(s.topic(t.name), p)
            for t in SOURCE_TOPICS
            for p in range(s.topic_partitions)
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: end for tp, end in ends.items() if end})
        return sum(ends.values())
    finally:
        await consumer.stop()


async def read_all(s: Settings, topic: str, expect: int, within: float = 60) -> list[bytes]:
    import asyncio

    consumer = kafka_clients.consumer(
        s, topic, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        async with asyncio.timeout(within):
            while len(out) < expect:
                batch = await consumer.getmany(timeout_ms=500)
                out += [msg.value for msgs in batch.values() for msg in msgs]
    finally:
        await consumer.stop()
    return out


async def stable_members(s: Settings) -> int:
    """Members of the worker group once it is stable (0 while it rebalances)."""
    admin = kafka_clients.admin(s)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([s.app_id])
        group = response.groups[0]
        state, members = group[2], group[5]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


async def uncommitted(s: Settings) -> dict[str, int]:
    """Per ``topic[partition]`` the agents read: end offset minus the worker group's
    committed offset, where positive."""
    from streams.replay import group_lag

    return {f"{tp.topic}[{tp.partition}]": p.lag for tp, p in (await group_lag(s)).items() if p.lag}
