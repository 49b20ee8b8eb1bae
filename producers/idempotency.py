"""One write per idempotency key, even across retries that race or follow a 503.

Why this exists: the producer is idempotent, so aiokafka retries a batch that already left the
accumulator until the broker takes it, which can be long after the client was told 503. A client
that then retries with the same id (scan_id, dose_id, ...) must not cause a second copy in the
log. So the first request for a key starts the write as a task that outlives the request; every
later request with the same key and the same content awaits that same task instead of writing
again. Only when the write failed for sure (it never reached the producer) is the key forgotten,
so the next retry writes afresh.

The same content is judged by a fingerprint of the validated request; the same key with other
content is a conflict (the API answers 409). Completed keys are remembered in a bounded LRU, so a
late retry is answered without a new event; beyond that horizon, or on another instance, the
event id still lets consumers drop the duplicate (docs/events.md).

Pure asyncio; no Kafka import.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Claim", "IdConflict", "IdempotencyGuard", "Outcome"]

T = TypeVar("T")


class IdConflict(Exception):
    """The key is taken by a write with other content."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} was already written with different content")
        self.key = key


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """The write's result, and whether an earlier request already got it acknowledged."""

    value: T
    duplicate: bool


@dataclass(eq=False)
class _Entry(Generic[T]):
    fingerprint: bytes
    future: asyncio.Future[T]
    acknowledged: bool = field(default=False)


@dataclass(frozen=True, eq=False)
class Claim(Generic[T]):
    """A key's write: ``fresh`` when the caller must perform it and resolve ``future``."""

    entry: _Entry[T]
    fresh: bool

    @property
    def future(self) -> asyncio.Future[T]:
        return self.entry.future


class IdempotencyGuard(Generic[T]):
    """Keys of writes in flight, in doubt, or recently completed (bounded)."""

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def knows(self, key: str) -> bool:
        """Whether ``key`` has a write in flight, in doubt, or recently completed."""
        return key in self._entries

    @property
    def in_flight(self) -> int:
        """Writes not finished yet (including those whose requests already got 503)."""
        return sum(1 for e in self._entries.values() if not e.future.done())

    def _add(self, key: str, fingerprint: bytes, future: asyncio.Future[T]) -> _Entry[T]:
        entry = _Entry(fingerprint, future)
        self._entries[key] = entry
        future.add_done_callback(functools.partial(self._settled, key, entry))
        self._evict()
        return entry

    def claim(self, key: str, fingerprint: bytes) -> Claim[T]:
        """The write of ``key``: a fresh future to resolve, or the earlier write's.

        Raises :class:`IdConflict` when ``key`` belongs to a write with another fingerprint.
        A fresh claim's future must be resolved by the caller (a failure forgets the key).
        """
        entry = self._entries.get(key)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise IdConflict(key)
            self._entries.move_to_end(key)
            return Claim(entry, fresh=False)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        return Claim(self._add(key, fingerprint, future), fresh=True)

    @staticmethod
    def acknowledge(claim: Claim[T]) -> Outcome[T]:
        """The outcome of a claim whose future succeeded; later ones are duplicates."""
        duplicate = claim.entry.acknowledged
        claim.entry.acknowledged = True
        return Outcome(claim.future.result(), duplicate)

    async def run(
        self,
        key: str,
        fingerprint: bytes,
        write: Callable[[], Awaitable[T]],
        within: float,
    ) -> Outcome[T]:
        """The result of the one write for ``key``, started by this call or an earlier one.

        Waits at most ``within`` seconds; on expiry raises ``TimeoutError`` while the write
        goes on (a retry will pick it up). Raises :class:`IdConflict` when ``key`` belongs to a
        write with another fingerprint, and whatever ``write`` raised if it failed.
        """
        entry = self._entries.get(key)
        if entry is not None and entry.fingerprint != fingerprint:
            raise IdConflict(key)
        if entry is None:
            entry = self._add(key, fingerprint, asyncio.ensure_future(write()))
        else:
            self._entries.move_to_end(key)
        await asyncio.wait_for(asyncio.shield(entry.future), within)
        return self.acknowledge(Claim(entry, fresh=False))

    def _settled(self, key: str, entry: _Entry[T], task: asyncio.Future[T]) -> None:
        # A failed write is forgotten so the next retry writes again; the exception is
        # retrieved here so asyncio does not log it as never retrieved.
        failed = task.cancelled() or task.exception() is not None
        if failed and self._entries.get(key) is entry:
            del self._entries[key]

    def _evict(self) -> None:
        if len(self._entries) <= self._capacity:
            return
        for key in list(self._entries):
            if len(self._entries) <= self._capacity:
                break
            if self._entries[key].future.done():
                del self._entries[key]

    async def close(self) -> None:
        """Cancel writes still in flight (at shutdown, after the producer was stopped)."""
        pending = [e.future for e in self._entries.values() if not e.future.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._entries.clear()
