"""The aggregate cache: single flight, stale while revalidate, failures not cached."""

from __future__ import annotations

import asyncio

import pytest

from api.cache import AggregateCache


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_concurrent_callers_share_one_computation() -> None:
    cache = AggregateCache(10, clock=Clock())
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.ensure_future(cache.get("k", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [42] * 5
    assert calls == 1


async def test_an_expired_answer_is_served_while_it_is_recomputed() -> None:
    clock = Clock()
    cache = AggregateCache(10, clock=clock)
    values = iter([1, 2, 3])
    done = asyncio.Event()

    async def compute() -> int:
        value = next(values)
        if value == 2:
            done.set()
        return value

    assert await cache.get("k", compute) == 1
    clock.t += 15  # stale, within the grace period
    assert await cache.get("k", compute) == 1  # at once, the old answer
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)
    assert await cache.get("k", compute) == 2
    clock.t += 25  # too old to serve: recomputed before answering
    assert await cache.get("k", compute) == 3


async def test_failures_are_not_cached_and_zero_ttl_never_caches() -> None:
    cache = AggregateCache(10, clock=Clock())
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("store down")
        return "ok"

    with pytest.raises(RuntimeError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == "ok"
    counter = 0

    async def count() -> int:
        nonlocal counter
        counter += 1
        return counter

    uncached = AggregateCache(0)
    assert [await uncached.get("k", count) for _ in range(3)] == [1, 2, 3]
