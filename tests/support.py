"""Helpers shared by the integration and e2e tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def unique(prefix: str = "t") -> str:
    """A short random name, valid as a topic prefix, keyspace or consumer group."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def drop_isolated(s: Any) -> None:
    """Drop what an isolated test or module created: its keyspace, its topics and Faust's
    internal ones (leftover partitions pile up across runs: hundreds slow the broker's
    start, thousands exhaust its open files)."""
    from infra.kafka_topics import delete_topics
    from infra.lifecycle import cassandra_session

    run_coroutine(delete_topics(s, [s.topic_prefix, f"{s.app_id}-", f"{s.app_id}-replay-"]))
    session: Any = cassandra_session(s)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=60)
    finally:
        session.cluster.shutdown()


def isolated_env(base: Any, tag: str = "t", drop: bool = True) -> Iterator[Any]:
    """Settings of ``base`` with a test's own topic prefix, keyspace and consumer group, all
    created (the keyspace in the settings' data centre); dropped afterwards unless ``drop``
    is false (services wiped whole at the end). For fixtures:
    ``yield from isolated_env(platform)``."""
    from covidtech.settings import with_overrides
    from infra.cassandra_schema import migrate
    from infra.kafka_topics import create_topics
    from infra.lifecycle import cassandra_session

    name = unique(tag)
    s = with_overrides(base, topic_prefix=f"{name}.", keyspace=name, app_id=f"app-{name}")
    run_coroutine(create_topics(s))
    session: Any = cassandra_session(s)
    try:
        migrate(session, s.keyspace, s.replication_factor, lambda m: None, s.cassandra_local_dc)
    finally:
        session.cluster.shutdown()
    yield s
    if drop:
        drop_isolated(s)


def kill_service(s: Any, svc: Any) -> None:
    """SIGKILL a service started by ``infra.services`` and wait until it is gone (the JVM's
    thread group leader turns zombie before its other threads have closed their sockets, so
    the port is waited for too)."""
    import os
    import signal

    from infra import services

    pid = services.running_pid(svc, s)
    assert pid is not None, f"{svc.label} is not running"
    os.kill(pid, signal.SIGKILL)
    eventually(
        lambda: not services._alive(pid) and not services.port_open(svc.port, svc.host),
        timeout=30,
        what=f"{svc.label} gone",
    )
    services._reap(pid)
    services.running_pid(svc, s)  # drops the stale pid file


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even while an event loop is running
    (sync fixtures requested by async fixtures run inside the test loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def eventually(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    Tests never sleep for eventual consistency; they poll with a deadline (a slow machine
    makes a test slower, never flaky)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    within: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Async twin of :func:`eventually`."""
    deadline = time.monotonic() + within
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s (last: {last!r})")
        await asyncio.sleep(interval)


def served_in_thread(app: Any, name: str) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread of its own (its own event loop) on a free port of
    127.0.0.1; yield its base URL, then shut it down. For fixtures: ``yield from``."""
    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), timeout=60, what="uvicorn")
        assert server.started, f"{name} did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), f"{name} did not shut down"
