"""Ingest and processing rates of the dashboard: sampling on demand and the rate arithmetic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from api.rates import OffsetSample, RateSampler, rates_between

T0 = datetime(2021, 9, 1, 3, 0, tzinfo=UTC)


def sample(seconds: float, appended: int, processed: int) -> OffsetSample:
    return OffsetSample(T0 + timedelta(seconds=seconds), seconds, appended, processed)


def test_rates_are_offset_deltas_per_second() -> None:
    assert rates_between(sample(0, 100, 40), sample(4, 300, 240)) == (50.0, 50.0)


def test_rates_never_go_negative_or_divide_by_zero() -> None:
    # A group whose offsets were reset, or a recreated topic, reads lower than before.
    assert rates_between(sample(0, 500, 500), sample(2, 100, 0)) == (0.0, 0.0)
    assert rates_between(sample(3, 1, 1), sample(3, 9, 9)) == (0.0, 0.0)


class Offsets:
    """A reader whose totals the test sets, counting how often it is read."""

    def __init__(self) -> None:
        self.appended = 0
        self.processed = 0
        self.reads = 0

    async def read(self) -> tuple[int, int, dict[str, int]]:
        self.reads += 1
        await asyncio.sleep(0)  # let concurrent askers pile up on the lock
        return self.appended, self.processed, {"checkins": self.appended - self.processed}


async def test_sampler_reads_at_most_once_per_interval_and_reports_history() -> None:
    now = [0.0]
    offsets = Offsets()
    sampler = RateSampler(
        offsets,
        interval_s=2.0,
        clock=lambda: now[0],
        wall=lambda: T0 + timedelta(seconds=now[0]),
    )
    first = await sampler.samples()
    report = sampler.report(first)
    assert report["ingest_per_second"] is None and report["samples"] == []

    await asyncio.gather(*(sampler.samples() for _ in range(5)))  # within the interval
    assert offsets.reads == 1

    now[0] = 2.5
    offsets.appended, offsets.processed = 500, 250
    report = sampler.report(await sampler.samples())
    assert offsets.reads == 2
    assert report["ingest_per_second"] == 200.0
    assert report["processing_per_second"] == 100.0
    assert report["lag"] == 250
    assert report["samples"] == [
        {
            "at": "2021-09-01T03:00:02.500Z",
            "ingest_per_second": 200.0,
            "processing_per_second": 100.0,
            "lag": 250,
        }
    ]


async def test_sampler_keeps_a_bounded_history() -> None:
    now = [0.0]
    sampler = RateSampler(Offsets(), interval_s=1.0, keep=3, clock=lambda: now[0])
    for i in range(10):
        now[0] = float(i)
        samples = await sampler.samples()
    assert len(samples) == 3
