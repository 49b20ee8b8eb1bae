"""The ingest API's Kafka adapter: the only module of ``producers/`` that imports aiokafka.

:class:`KafkaEventLog` wraps one idempotent producer (``acks="all"``,
``enable_idempotence=True``) shared by every request. ``linger_ms`` is small so concurrent
requests share batches without adding noticeable latency.

Delivery guarantees, and what they mean for the API:

- A record is acknowledged only when all in-sync replicas have it; the API answers 2xx only
  after that.
- With idempotence on, aiokafka retries a batch that left the accumulator until the broker
  takes it, without duplicates (producer id + sequence numbers). Such a record can therefore
  land long after the request that wrote it gave up and answered 503. The API covers that with
  :mod:`producers.idempotency` (a retry with the same id awaits the same write).
- Records of one key go to one partition, in the order they were submitted.

Failure handling: a record that cannot be handed over in time (no metadata, broker unreachable)
fails at once; an acknowledgement that does not come in time ``trip`` s a breaker, so further
requests fail fast with :class:`~producers.ports.BrokerUnavailable` instead of queueing behind
a dead broker, until a background probe (a metadata request) succeeds again.

:class:`TopicFeed` follows one topic from its beginning with a group-less consumer (no offsets
committed, every instance reads everything) and hands each record to a callback; ``sync`` is a
read-your-writes barrier across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from covidtech import kafka_clients, tasks
from covidtech.settings import Settings
from covidtech.topics import partition_of
from producers.ports import BrokerUnavailable, Delivery

__all__ = ["KafkaEventLog", "TopicFeed"]

log = logging.getLogger(__name__)


class _CachingPartitioner:
    """aiokafka's default partitioner (``covidtech.topics.partition_of``, memoised)."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        return all_partitions[partition_of(key, len(all_partitions))]


class KafkaEventLog:
    """An idempotent acks=all producer with a fail-fast breaker (implements ``EventLog``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Sequence[str] = (),
        client_id: str = "covidtech-ingest",
        request_timeout_s: float = 5.0,
        linger_ms: int = 5,
        retry_after: int = 2,
        probe_interval_s: float = 0.5,
        ready_cache_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._topics = tuple(topics)
        self._client_id = client_id
        self._request_timeout_s = request_timeout_s
        self._linger_ms = linger_ms
        self.retry_after = retry_after
        self._probe_interval_s = probe_interval_s
        self._ready_cache_s = ready_cache_s
        self._producer: AIOKafkaProducer | None = None
        self._available = False
        self._probe: asyncio.Task[None] | None = None
        self._connect: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._ready_value = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def _new_producer(self) -> AIOKafkaProducer:
        timeout_ms = int(self._request_timeout_s * 1000)
        return kafka_clients.producer(
            self._settings,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
            partitioner=_CachingPartitioner(),
        )

    async def _try_start(self) -> bool:
        producer = self._new_producer()
        try:
            await asyncio.wait_for(producer.start(), self._request_timeout_s * 2)
            for topic in self._topics:
                await asyncio.wait_for(producer.partitions_for(topic), self._request_timeout_s)
        except (KafkaError, OSError, TimeoutError) as e:
            log.warning("Kafka producer not started (%s): %r", self._settings.kafka_bootstrap, e)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        self._available = True
        log.info("Kafka producer connected to %s", self._settings.kafka_bootstrap)
        return True

    async def start(self) -> None:
        """Connect now if the broker answers, else keep trying in the background."""
        if not await self._try_start():
            self._connect = asyncio.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._probe_interval_s)
            if await self._try_start():
                return

    async def stop(self, grace: float = 10.0) -> None:
        """Flush pending records for at most ``grace`` s, fail the rest, close."""
        self._stopping = True
        for task in (self._probe, self._connect):
            await tasks.cancel(task)
        producer, self._producer = self._producer, None
        self._available = False
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.flush(), grace)
        except TimeoutError:
            # The broker is gone: fail what is left so stop() does not wait forever. These
            # records were never acknowledged, so no client was told they were written.
            log.warning("Kafka unreachable at shutdown; dropping unacknowledged records")
            producer._message_accumulator.fail_all(
                BrokerUnavailable("the ingest API shut down before the broker acknowledged")
            )
        with contextlib.suppress(Exception):
            await producer.stop()

    # ------------------------------------------------------------------ writes

    async def submit(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Delivery]:
        """Hand one record to the producer; the future resolves with the broker's ack."""
        producer = self._producer
        if producer is None or not self._available:
            raise BrokerUnavailable("the event log is unavailable", retry_after=self.retry_after)
        try:
            ack = await producer.send(topic, value, key=key)
        except (KafkaError, TimeoutError) as e:
            self.trip()
            raise BrokerUnavailable(
                f"the event log did not take the record: {e!r}", retry_after=self.retry_after
            ) from e
        delivery: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()

        def resolve(done: asyncio.Future[object]) -> None:
            if delivery.done():
                return
            if done.cancelled():
                delivery.set_exception(
                    BrokerUnavailable("delivery cancelled", retry_after=self.retry_after)
                )
                return
            exc = done.exception()
            if exc is not None:
                self.trip()
                delivery.set_exception(
                    BrokerUnavailable(
                        f"the broker refused the record: {exc!r}", retry_after=self.retry_after
                    )
                )
                return
            meta = done.result()
            delivery.set_result(Delivery(topic, meta.partition, meta.offset))  # type: ignore[attr-defined]

        ack.add_done_callback(resolve)
        return delivery

    def trip(self) -> None:
        """Open the breaker: fail fast until a metadata request succeeds again."""
        if self._stopping or self._producer is None:
            return
        if self._available:
            log.warning("Kafka acknowledgements are not coming; failing fast until it answers")
        self._available = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_loop())

    async def _metadata_ok(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            return bool(
                await asyncio.wait_for(
                    producer.client.force_metadata_update(), self._request_timeout_s
                )
            )
        except (KafkaError, OSError, TimeoutError):
            return False

    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._probe_interval_s)
            if await self._metadata_ok():
                log.info("Kafka answers again")
                self._available = True
                return

    async def ready(self) -> bool:
        """Breaker closed and a metadata request succeeds (cached ``ready_cache_s``)."""
        if self._producer is None or not self._available:
            return False
        now = time.monotonic()
        if now - self._ready_at > self._ready_cache_s:
            self._ready_value = await self._metadata_ok()
            self._ready_at = time.monotonic()
        return self._ready_value


class TopicFeed:
    """Follows one topic from its beginning, handing ``(key, value)`` to ``apply``.

    ``apply`` runs on the event loop and must not block. Records of one partition are applied
    in offset order; partitions interleave. After a lost connection the feed resumes where it
    was (aiokafka reconnects by itself; a consumer that fails to start is retried).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        apply: Callable[[bytes | None, bytes | None], None],
        *,
        client_id: str = "covidtech-ingest-feed",
        request_timeout_s: float = 5.0,
        retry_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._apply = apply
        self._client_id = client_id
        self._request_timeout_s = request_timeout_s
        self._retry_s = retry_s
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._initial_end: dict[TopicPartition, int] | None = None
        self._caught_up = False
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"feed:{self.topic}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await tasks.cancel(task)

    async def wait_caught_up(self, within: float) -> bool:
        """Wait until the initial catch-up is done; False on timeout."""
        deadline = time.monotonic() + within
        while not self._caught_up:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event = self._progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return True

    async def sync(self, within: float) -> None:
        """Return once everything the topic holds now has been applied."""
        consumer = self._consumer
        if consumer is None or not self._partitions:
            raise BrokerUnavailable(f"not following {self.topic} yet")
        deadline = time.monotonic() + within
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(self._partitions), within)
        except (KafkaError, OSError, TimeoutError) as e:
            raise BrokerUnavailable(f"cannot read the end of {self.topic}: {e!r}") from e
        while not await self._reached(consumer, ends):
            remaining = deadline - time.monotonic()
            event = self._progress
            if remaining <= 0:
                raise BrokerUnavailable(f"{self.topic} view is lagging")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _reached(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if self._positions.get(tp, -1) >= end:
                continue
            # Compaction leaves gaps: the consumer's position, not the last offset seen, says
            # how far the partition has been read.
            if await consumer.position(tp) < end:
                return False
        return True

    def _notify(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    async def _run(self) -> None:
        while True:
            consumer = kafka_clients.consumer(
                self._settings,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=int(self._request_timeout_s * 1000),
                fetch_max_wait_ms=100,
            )
            try:
                await asyncio.wait_for(consumer.start(), self._request_timeout_s * 2)
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as e:
                log.warning("following %s failed, retrying: %r", self.topic, e)
            finally:
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(self._retry_s)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        partitions = await kafka_clients.partitions_of(consumer, self.topic)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
        fresh = [tp for tp in tps if tp not in self._positions]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        if self._initial_end is None:
            self._initial_end = await consumer.end_offsets(tps)
        self._partitions = tps
        self._consumer = consumer
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    self._apply(record.key, record.value)
                self.applied += len(records)
                if records:
                    self._positions[tp] = records[-1].offset + 1
            if not self._caught_up and await self._reached(consumer, self._initial_end):
                self._caught_up = True
                log.info("%s view caught up (%d records)", self.topic, self.applied)
            self._notify()
