"""The read API's Kafka adapter: the only module of ``api/`` that imports aiokafka.

- :class:`KafkaEventLog`: one idempotent ``acks="all"`` producer for the events the read API
  writes (grants, revocations, audit records). :meth:`KafkaEventLog.publish` returns only
  after the broker acknowledged, or raises :class:`~api.problems.LogUnavailable`. A record
  whose acknowledgement timed out may still land later (the producer retries it); for the
  audit log that errs on the safe side (a read that was refused may appear as audited).
- :class:`KafkaAlertSource`: what the alert stream needs from the ``exposure-alerts`` topic: a
  group-less consumer assigned to every partition from the current end (live), and a one-off
  read of offset ranges (resuming a client from its Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from api.problems import LogUnavailable
from covidtech import kafka_clients
from covidtech.settings import Settings

__all__ = ["FeedRecord", "KafkaAlertSource", "KafkaEventLog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One record of a topic: where it is and its raw value."""

    partition: int
    offset: int
    value: bytes | None


@dataclass(eq=False)
class KafkaEventLog:
    """An idempotent acks=all producer; ``publish`` waits for the acknowledgement."""

    settings: Settings
    _: KW_ONLY
    client_id: str = "covidtech-read-api"
    timeout_s: float = 5.0
    linger_ms: int = 2
    _producer: AIOKafkaProducer | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        """Connect; raises LogUnavailable if the broker does not answer in time."""
        producer = kafka_clients.producer(
            self.settings,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            request_timeout_ms=int(self.timeout_s * 1000),
            retry_backoff_ms=100,
        )
        try:
            await asyncio.wait_for(producer.start(), self.timeout_s * 2)
        except (KafkaError, OSError, TimeoutError) as e:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise LogUnavailable(
                f"cannot connect to Kafka at {self.settings.kafka_bootstrap}: {e!r}"
            ) from e
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.timeout_s * 2)

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Append one record and wait for the broker's acknowledgement (all in-sync replicas)."""
        producer = self._producer
        if producer is None:
            raise LogUnavailable("the event log is not connected")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value, key=key.encode("utf-8")), self.timeout_s
            )
        except (KafkaError, OSError, TimeoutError) as e:
            raise LogUnavailable(f"{topic} did not acknowledge: {e!r}") from e

    async def ping(self) -> bool:
        """Whether the broker answers a metadata request now."""
        producer = self._producer
        if producer is None:
            return False
        try:
            return bool(
                await asyncio.wait_for(producer.client.force_metadata_update(), self.timeout_s)
            )
        except (KafkaError, OSError, TimeoutError):
            return False


@dataclass(eq=False)
class KafkaAlertSource:
    """The ``exposure-alerts`` topic as the alert stream reads it."""

    settings: Settings
    topic: str
    _: KW_ONLY
    client_id: str = "covidtech-read-api-alerts"
    fetch_max_wait_ms: int = 200
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)
    _tps: dict[int, TopicPartition] = field(default_factory=dict, init=False, repr=False)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return kafka_clients.consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=self.client_id,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )

    async def _partitions(
        self, consumer: AIOKafkaConsumer, within_s: float = 30.0
    ) -> dict[int, TopicPartition]:
        deadline = time.monotonic() + within_s
        while True:  # a topic created a moment ago may not be in the metadata yet
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                # Asking for an end offset makes the client track the topic's metadata.
                with contextlib.suppress(KafkaError):
                    await consumer.end_offsets([TopicPartition(self.topic, 0)])
                partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                return {p: TopicPartition(self.topic, p) for p in sorted(partitions)}
            if time.monotonic() > deadline:
                raise LogUnavailable(f"topic {self.topic} does not exist")
            await asyncio.sleep(0.2)

    async def open(self) -> dict[int, int]:
        """Assign every partition at its current end; the positions (next offsets) by partition."""
        consumer = self._new_consumer()
        try:
            await consumer.start()
            self._tps = await self._partitions(consumer)
            consumer.assign(list(self._tps.values()))
            ends = await consumer.end_offsets(list(self._tps.values()))
            for tp, end in ends.items():
                consumer.seek(tp, end)
        except (KafkaError, OSError) as e:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise LogUnavailable(f"cannot follow {self.topic}: {e!r}") from e
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
        return {p: int(ends[tp]) for p, tp in self._tps.items()}

    async def fetch(self, timeout_ms: int) -> list[FeedRecord]:
        """The next records (in offset order per partition), waiting at most ``timeout_ms``."""
        consumer = self._consumer
        if consumer is None:
            raise LogUnavailable("the alert source is not open")
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        return [
            FeedRecord(tp.partition, r.offset, r.value)
            for tp, records in batches.items()
            for r in records
        ]

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def read_range(
        self, ranges: Mapping[int, tuple[int, int]], timeout_s: float
    ) -> list[FeedRecord]:
        """Records with ``start <= offset < end`` of each partition (``{p: (start, end)}``),
        read by a temporary consumer. Offsets already deleted by retention are skipped.
        Raises LogUnavailable if the ranges were not read within ``timeout_s``."""
        wanted = {p: r for p, r in ranges.items() if r[0] < r[1]}
        if not wanted:
            return []
        consumer = self._new_consumer()
        out: list[FeedRecord] = []
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(consumer.start(), timeout_s)
            tps = {p: TopicPartition(self.topic, p) for p in wanted}
            consumer.assign(list(tps.values()))
            for p, (start, _) in wanted.items():
                consumer.seek(tps[p], start)
            pending = dict(wanted)
            while pending:
                if time.monotonic() > deadline:
                    raise LogUnavailable(f"{self.topic} ranges not read in {timeout_s}s")
                batches = await consumer.getmany(
                    *[tps[p] for p in pending], timeout_ms=self.fetch_max_wait_ms
                )
                for tp, records in batches.items():
                    end = wanted[tp.partition][1]
                    out.extend(
                        FeedRecord(tp.partition, r.offset, r.value)
                        for r in records
                        if r.offset < end
                    )
                for p in list(pending):
                    if await consumer.position(tps[p]) >= pending[p][1]:
                        del pending[p]
                        consumer.pause(tps[p])
        except (KafkaError, OSError, TimeoutError) as e:
            raise LogUnavailable(f"cannot read {self.topic}: {e!r}") from e
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return out
