"""A small time-to-live cache with single flight, for aggregates (coverage, doses, turnaround).

A national aggregate reads hundreds of partitions (63 provinces x 5 bands); answers carry
``Cache-Control: max-age``, so recomputing one more often than every few seconds buys nothing.

- Concurrent requests for the same key share one computation (single flight).
- Stale while revalidate: for one more ``ttl`` after an answer expires, callers get the previous
  answer at once while one background task recomputes it, so a popular aggregate never makes
  its callers wait for the recomputation. Older answers are recomputed before answering.
- A failed computation is not cached (waiters get its error; a failed refresh keeps the old
  answer until it is too old).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["AggregateCache"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Entry:
    fresh_until: float
    value: asyncio.Future[Any]
    refreshing: asyncio.Task[None] | None = None


class AggregateCache:
    """Answers by key for ``ttl`` seconds, stale for ``ttl`` more (``ttl == 0``: no caching)."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        if self._ttl <= 0:
            return await compute()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            if entry.fresh_until > now or not entry.value.done():
                result: T = await asyncio.shield(entry.value)
                return result
            usable = entry.value.exception() is None
            if usable and now < entry.fresh_until + self._ttl:
                if entry.refreshing is None:
                    entry.refreshing = asyncio.create_task(self._refresh(key, entry, compute))
                stale: T = entry.value.result()
                return stale
        return await self._compute(key, compute, now)

    async def _compute(self, key: Hashable, compute: Callable[[], Awaitable[T]], now: float) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = _Entry(now + self._ttl, future)
        self._entries[key] = entry
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        try:
            value = await compute()
        except BaseException as e:
            if self._entries.get(key) is entry:
                del self._entries[key]
            if isinstance(e, Exception):
                future.set_exception(e)
                future.exception()  # retrieved: waiters get it, nobody logs it as lost
            else:
                future.cancel()
            raise
        future.set_result(value)
        return value

    async def _refresh(
        self, key: Hashable, entry: _Entry, compute: Callable[[], Awaitable[Any]]
    ) -> None:
        try:
            value = await compute()
        except Exception:
            log.warning("refreshing the aggregate %r failed; serving the previous one", key)
            entry.refreshing = None
            return
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(value)
        if self._entries.get(key) is entry:
            self._entries[key] = _Entry(self._clock() + self._ttl, future)
