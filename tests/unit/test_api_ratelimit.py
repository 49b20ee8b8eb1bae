"""The per-client token bucket of citizen lookups."""

from __future__ import annotations

from api.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_the_refill_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5
    assert TokenBuckets.retry_after(0.5) == 1
    clock.t += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # clients do not share buckets


def test_refused_lookups_do_not_dig_a_deeper_hole() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    buckets.take("a")
    for _ in range(10):
        assert buckets.take("a") == 1.0
    clock.t += 1.0
    assert buckets.take("a") == 0.0


def test_memory_is_bounded_by_evicting_the_least_recent_client() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=2, clock=clock)
    buckets.take("a")
    buckets.take("b")
    buckets.take("a")  # a is recent again
    buckets.take("c")  # evicts b
    assert len(buckets) == 2
    assert buckets.take("b") == 0.0  # b starts over with a full bucket
