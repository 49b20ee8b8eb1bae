"""The person's check-in status in the scan's answer: read the facts, bounded, never failing.

The stream worker keeps each person's health facts in one Cassandra partition
(``status_facts_by_person``, docs/streams.md); :class:`StatusLookup` reads the partitions of
the scanned people (``projections.status.health_facts``) while the scans are being written to
Kafka, and :func:`domain.status.check_in_status` decides each colour at the scan's time.

Never a reason to refuse a check-in: the scan is acknowledged by Kafka whatever happens here.
A person whose facts were not read by the later of the broker's acknowledgement and
``timeout_s`` after the lookup started (the store down, slow, or not connected yet) is
``UNKNOWN``. The store is connected in the background and reconnected after a failure, so an
ingest API started while Cassandra is down serves scans at once and gets colours once it is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from domain.status import DEFAULT_RULES, CheckInStatus, HealthFacts, StatusRules, check_in_status
from projections.model import ProjectionStore
from projections.status import health_facts

__all__ = ["PendingStatuses", "StatusLookup"]

log = logging.getLogger(__name__)

UNKNOWN = CheckInStatus.UNKNOWN


class PendingStatuses:
    """The lookups of one request, started before its writes; :meth:`result` after them."""

    def __init__(
        self,
        lookup: StatusLookup,
        people: Sequence[tuple[str, datetime]],
        task: asyncio.Future[None] | None,
        found: dict[str, HealthFacts],
    ) -> None:
        self._lookup = lookup
        self._people = people
        self._task = task
        self._found = found
        self._deadline = time.monotonic() + lookup.timeout_s

    async def result(self) -> list[CheckInStatus]:
        """One status per person given, ``UNKNOWN`` for facts not read by now or the
        deadline, whichever is later."""
        task = self._task
        if task is not None and not task.done():
            remaining = self._deadline - time.monotonic()
            if remaining > 0:
                await asyncio.wait({task}, timeout=remaining)
            if not task.done():
                task.cancel()
        out: list[CheckInStatus] = []
        for person, at in self._people:
            facts = self._found.get(person)
            out.append(UNKNOWN if facts is None else check_in_status(facts, at, self._lookup.rules))
        self._lookup.count(out)
        return out


class StatusLookup:
    """Reads the facts of scanned people from a store that may be missing or slow."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[ProjectionStore]] | None,
        *,
        rules: StatusRules = DEFAULT_RULES,
        timeout_s: float = 0.02,
        retry_s: float = 5.0,
        on_outcome: Callable[[CheckInStatus, int], None] | None = None,
    ) -> None:
        self._connect = connect
        self.rules = rules
        self.timeout_s = timeout_s
        self._retry_s = retry_s
        self._on_outcome = on_outcome
        self._store: ProjectionStore | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether a store is connected (``/readyz`` reports it; it is never required)."""
        return self._store is not None

    @property
    def store(self) -> ProjectionStore | None:
        return self._store

    def start(self) -> None:
        """Connect in the background (retrying every ``retry_s``); returns at once."""
        if self._connect is not None and self._connector is None:
            self._connector = asyncio.ensure_future(self._keep_connecting())

    async def _keep_connecting(self) -> None:
        assert self._connect is not None
        while not self._closing:
            try:
                self._store = await self._connect()
                log.info("check-in status: facts store connected")
                return
            except Exception as e:  # any failure: scans go on, UNKNOWN until connected
                log.warning("check-in status: facts store unavailable (%s); retrying", e)
            await asyncio.sleep(self._retry_s)

    async def stop(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        close = getattr(self._store, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
        self._store = None

    def begin(self, people: Sequence[tuple[str, datetime]]) -> PendingStatuses:
        """Start reading the facts of ``(person_id, scanned_at)`` pairs (each partition read
        once per request); await :meth:`PendingStatuses.result` once the scans are written."""
        found: dict[str, HealthFacts] = {}
        store = self._store
        if store is None or not people:
            return PendingStatuses(self, people, None, found)
        wanted = list(dict.fromkeys(person for person, _ in people))

        async def read(person: str) -> None:
            try:
                found[person] = await health_facts(store, person)
            except Exception:  # a failed read is an UNKNOWN, never a failed scan
                return

        if len(wanted) == 1:
            task: asyncio.Future[None] = asyncio.ensure_future(read(wanted[0]))
        else:
            task = asyncio.ensure_future(_all(read(p) for p in wanted))
        return PendingStatuses(self, people, task, found)

    def count(self, statuses: Sequence[CheckInStatus]) -> None:
        if self._on_outcome is None:
            return
        for status in set(statuses):
            self._on_outcome(status, statuses.count(status))


async def _all(reads: Iterable[Awaitable[None]]) -> None:
    await asyncio.gather(*reads)
