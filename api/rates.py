"""Ingest and processing rates of the source topics, sampled from Kafka offsets on demand.

What the dashboard's ``GET /v1/ops/rates`` reports (docs/dashboard.md): the sum of the source
partitions' end offsets (appended) and of the worker group's committed offsets on them
(processed), sampled at most every few seconds while a dashboard asks, and the group's lag per
topic. :class:`KafkaOffsets` reads them; tests pass a fake :class:`OffsetReader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from api.problems import LogUnavailable
from api.render import iso
from covidtech import kafka_clients
from covidtech.settings import Settings

__all__ = ["KafkaOffsets", "OffsetReader", "OffsetSample", "RateSampler", "rates_between"]


class OffsetReader(Protocol):
    """Where the rates come from: total offsets appended to and committed on the sources."""

    async def read(self) -> tuple[int, int, dict[str, int]]:
        """``(appended, processed, lags)``: the sum of the source partitions' end offsets,
        the sum of the worker group's committed offsets on those partitions, and the group's
        lag per topic it reads (source and derived; full topic names)."""
        ...


class KafkaOffsets:
    """:class:`OffsetReader` on Kafka: end offsets and the group's committed offsets.

    Short-lived clients per reading (one every few seconds at most, shared by every open
    dashboard), so nothing is left open when the app stops. Only topics that exist are asked
    about: a metadata request naming a missing topic would make a broker with automatic topic
    creation create it.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        group: str,
        *,
        derived: Sequence[str] = (),
        timeout_s: float = 5.0,
        client_id: str = "covidtech-read-api-rates",
    ) -> None:
        self._settings = settings
        self._topics = tuple(topics)
        self._derived = tuple(derived)  # counted in the lags only
        self._group = group
        self._timeout_s = timeout_s
        self._client_id = client_id

    async def read(self) -> tuple[int, int, dict[str, int]]:
        try:
            return await asyncio.wait_for(self._read(), self._timeout_s)
        except (KafkaError, OSError, TimeoutError) as e:
            raise LogUnavailable(f"cannot read offsets: {e!r}") from e

    async def _read(self) -> tuple[int, int, dict[str, int]]:
        admin = kafka_clients.admin(self._settings, client_id=self._client_id)
        consumer = kafka_clients.consumer(
            self._settings,
            group_id=None,
            enable_auto_commit=False,
            client_id=self._client_id,
        )
        try:
            await asyncio.gather(admin.start(), consumer.start())
            existing = set(await admin.list_topics())
            topics = [t for t in (*self._topics, *self._derived) if t in existing]
            if not topics:
                return 0, 0, {}
            described = await admin.describe_topics(topics)
            tps = [
                TopicPartition(t["topic"], p["partition"])
                for t in described
                if t.get("error_code", 0) == 0
                for p in t["partitions"]
            ]
            # Assigned (and paused: nothing is fetched), the client asks for the metadata of
            # all these topics at once; unassigned, it would wait for them one by one.
            consumer.assign(tps)
            consumer.pause(*tps)
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self._group)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
        done = {tp: max(0, int(meta.offset)) for tp, meta in committed.items() if tp in ends}
        sources = set(self._topics)
        appended = sum(int(v) for tp, v in ends.items() if tp.topic in sources)
        processed = sum(v for tp, v in done.items() if tp.topic in sources)
        lags: dict[str, int] = dict.fromkeys(topics, 0)
        for tp, end in ends.items():
            lags[tp.topic] += max(0, int(end) - done.get(tp, 0))
        return appended, processed, lags


@dataclass(frozen=True, slots=True)
class OffsetSample:
    """Totals of the source topics at one moment."""

    at: datetime
    monotonic: float
    appended: int
    processed: int
    lags: dict[str, int] = field(default_factory=dict)  # per topic the worker group reads


def rates_between(older: OffsetSample, newer: OffsetSample) -> tuple[float, float]:
    """Events/s appended and processed between two samples (never negative: a group whose
    offsets were reset, or a topic deleted, shows 0 rather than a negative rate)."""
    seconds = newer.monotonic - older.monotonic
    if seconds <= 0:
        return 0.0, 0.0
    return (
        max(0, newer.appended - older.appended) / seconds,
        max(0, newer.processed - older.processed) / seconds,
    )


class RateSampler:
    """Samples an :class:`OffsetReader` on demand, at most once per ``interval_s``.

    There is no background task: a sample is taken when a dashboard asks and the last one is
    older than the interval (concurrent askers share it), so the history covers the time a
    dashboard was open, up to ``keep`` samples.
    """

    def __init__(
        self,
        reader: OffsetReader,
        *,
        interval_s: float = 2.0,
        keep: int = 360,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reader = reader
        self._interval_s = interval_s
        self._clock = clock
        self._wall = wall
        self._samples: deque[OffsetSample] = deque(maxlen=keep)
        self._lock = asyncio.Lock()

    async def samples(self) -> list[OffsetSample]:
        async with self._lock:
            last = self._samples[-1] if self._samples else None
            if last is None or self._clock() - last.monotonic >= self._interval_s:
                appended, processed, lags = await self._reader.read()
                self._samples.append(
                    OffsetSample(self._wall(), self._clock(), appended, processed, lags)
                )
            return list(self._samples)

    def report(self, samples: Sequence[OffsetSample]) -> dict[str, Any]:
        """The answer of ``/v1/ops/rates``: the latest rates and lag, and the history."""
        history = []
        for older, newer in itertools.pairwise(samples):
            ingest, processing = rates_between(older, newer)
            history.append(
                {
                    "at": iso(newer.at),
                    "ingest_per_second": round(ingest, 2),
                    "processing_per_second": round(processing, 2),
                    "lag": max(0, newer.appended - newer.processed),
                }
            )
        last = samples[-1]
        return {
            "at": iso(last.at),
            "interval_seconds": self._interval_s,
            "appended": last.appended,
            "processed": last.processed,
            "lag": max(0, last.appended - last.processed),
            "ingest_per_second": history[-1]["ingest_per_second"] if history else None,
            "processing_per_second": history[-1]["processing_per_second"] if history else None,
            "topics": [{"topic": name, "lag": lag} for name, lag in last.lags.items()],
            "samples": history,
        }
