"""The revocation list both APIs consult: revoked grant ids and token ids, fed by Kafka.

MOH revokes a grant through the read API (``DELETE /v1/grants/{id}``), which appends a
GrantRevoked event to the compacted ``grants`` topic (keyed by grant id, so compaction keeps
the revocation, the last event of its key). Every API process runs one
:class:`RevocationList`: a group-less aiokafka consumer assigned to every partition of the
topic, reading from the beginning and then following it, so each process holds the whole set
in memory (one short id per revoked grant, plus its token id).

Guarantees:

- :meth:`RevocationList.start` returns only after the list has read the topic up to the end
  offsets it found at start: a fresh process never accepts a token revoked before it started.
  If that cannot be done within the timeout, start raises :class:`RevocationsUnavailable` and
  the process must not serve (fail closed).
- A revocation made by this process (:meth:`RevocationList.revoke`) takes effect immediately
  here; other processes see it as soon as their consumer fetches it (the broker answers a
  waiting fetch within ``fetch_max_wait_ms``, 500 ms here), i.e. within seconds.
- Revocations are never forgotten while the process runs (expiry makes old ones moot; the set
  stays small).

Usage with :mod:`covidtech.tokens`::

    revocations = RevocationList(settings)
    await revocations.start()
    claims = signer.verify(token, now, is_revoked=revocations.is_revoked)
    ...
    await revocations.stop()

This module is the Kafka adapter of ``covidtech/`` (the only one importing aiokafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from covidtech import kafka_clients, tasks
from covidtech.settings import Settings
from covidtech.tokens import Claims
from covidtech.topics import GRANTS
from schemas.codec import CodecError, decode

__all__ = ["GRANT_ISSUED", "GRANT_REVOKED", "RevocationList", "RevocationsUnavailable"]

log = logging.getLogger(__name__)

GRANT_ISSUED = "covidtech.access.GrantIssued"
GRANT_REVOKED = "covidtech.access.GrantRevoked"
#: The longest chain of grants followed up to a revocation (a grant issued under a grant
#: issued under ...); a token at the end of a deeper chain is refused (fail closed).
MAX_GRANT_DEPTH = 16


class RevocationsUnavailable(RuntimeError):
    """The revocation list could not be read from Kafka (the process must not serve)."""


class RevocationList:
    """Revoked grant ids and token ids, read from the ``grants`` topic and kept current."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "covidtech-revocations",
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self._settings = settings
        self._topic = settings.topic(GRANTS.name)
        self._client_id = client_id
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._revoked: set[str] = set()
        # grant id -> what it was issued under (its parent grant, or the issuing token's id)
        self._parent: dict[str, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()
        self._failure: BaseException | None = None
        self._last_fetch = 0.0
        self._ends: dict[TopicPartition, int] = {}
        self.events_read = 0

    # ------------------------------------------------------------------ queries

    def is_revoked(self, ident: str) -> bool:
        """Whether a grant id or token id was revoked, or anything it was issued under (the
        ``is_revoked`` hook of tokens): revoking a grant revokes every grant issued under it,
        however deep."""
        for _ in range(MAX_GRANT_DEPTH):
            if ident in self._revoked:
                return True
            parent = self._parent.get(ident)
            if parent is None:
                return False
            ident = parent
        return True  # deeper than any grant chain can be: refuse

    def claims_revoked(self, claims: Claims) -> bool:
        """Whether the token of ``claims`` or its grant (or an ancestor) was revoked."""
        return self.is_revoked(claims.token_id) or (
            claims.grant_id is not None and self.is_revoked(claims.grant_id)
        )

    def issued(self, grant_id: str, under: str | None) -> None:
        """Note that ``grant_id`` was issued under ``under`` (a grant id or a token id)."""
        if under:
            self._parent[grant_id] = under

    def __len__(self) -> int:
        return len(self._revoked)

    @property
    def healthy(self) -> bool:
        """Caught up once and still following the topic."""
        return (
            self._caught_up.is_set()
            and self._failure is None
            and self._task is not None
            and not self._task.done()
        )

    @property
    def seconds_since_fetch(self) -> float:
        """Seconds since the consumer last returned from a fetch (lag indicator)."""
        return time.monotonic() - self._last_fetch if self._last_fetch else float("inf")

    # ------------------------------------------------------------------ updates

    def revoke(self, ids: Iterable[str]) -> None:
        """Refuse these grant or token ids from now on, in this process (the event on the
        topic tells the other processes)."""
        self._revoked.update(i for i in ids if i)

    def apply(self, value: bytes | None) -> None:
        """Fold one record of the ``grants`` topic into the list (undecodable ones are
        logged and skipped: the list must keep following the topic)."""
        if value is None:
            return
        try:
            event = decode(value)
        except CodecError as e:
            log.warning("skipping an undecodable record of %s: %s", self._topic, e)
            return
        self.events_read += 1
        if event.name == GRANT_REVOKED:
            self.revoke((event.record["grant_id"], event.record["token_id"]))
        elif event.name == GRANT_ISSUED:
            record = event.record
            self.issued(
                record["grant_id"],
                record.get("granted_by_grant_id") or record.get("granted_by_token_id"),
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, timeout_s: float = 30.0) -> None:
        """Read the topic to its current end, then follow it in the background.

        Raises :class:`RevocationsUnavailable` if that takes longer than ``timeout_s``.
        """
        consumer = kafka_clients.consumer(
            self._settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=self._client_id,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        self._consumer = consumer
        try:
            await asyncio.wait_for(self._assign(consumer), timeout_s)
        except TimeoutError as e:
            await self.stop()
            raise RevocationsUnavailable(
                f"{self._topic} not found or not answering within {timeout_s}s"
            ) from e
        except (KafkaError, OSError) as e:
            await self.stop()
            raise RevocationsUnavailable(f"cannot read {self._topic}: {e!r}") from e
        self._task = asyncio.create_task(self._follow(consumer), name="revocations")
        try:
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        except TimeoutError as e:
            await self.stop()
            raise RevocationsUnavailable(
                f"{self._topic} not read to its end in {timeout_s}s"
            ) from e
        if self._failure is not None:
            failure = self._failure
            await self.stop()
            raise RevocationsUnavailable(f"cannot read {self._topic}: {failure!r}")

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.start()
        while True:  # a topic created a moment ago may not be in the metadata yet
            with contextlib.suppress(KafkaError):
                partitions = await kafka_clients.partitions_of(consumer, self._topic)
                break
            log.info("waiting for topic %s to appear", self._topic)
            await asyncio.sleep(0.2)
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        self._ends = {tp: int(off) for tp, off in ends.items()}

    async def _reached_ends(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self._ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        try:
            if await self._reached_ends(consumer):
                self._caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=self._fetch_max_wait_ms)
                self._last_fetch = time.monotonic()
                for records in batches.values():
                    for record in records:
                        self.apply(record.value)
                if not self._caught_up.is_set() and await self._reached_ends(consumer):
                    self._caught_up.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the list stops following: report unhealthy, never crash
            log.exception("revocation list stopped following %s", self._topic)
            self._failure = e
            self._caught_up.set()  # wake start(); it checks the failure

    async def stop(self) -> None:
        """Stop following the topic (idempotent)."""
        task, self._task = self._task, None
        await tasks.cancel(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()
