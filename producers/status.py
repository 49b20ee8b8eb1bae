"""The person's check-in status in the scan's answer: read the facts, bounded, never failing.

The stream worker keeps each person's health facts in one Cassandra partition
(``status_facts_by_person``, docs/streams.md); :class:`StatusLookup` reads the partitions of
the scanned people (``projections.status.health_facts``) while the scans are being written to
Kafka (several people in one request, see :class:`StatusLookup`), and
:func:`domain.status.check_in_status` decides each colour at the scan's time.

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
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from domain.status import DEFAULT_RULES, CheckInStatus, HealthFacts, StatusRules, check_in_status
from projections.model import ProjectionStore
from projections.status import health_facts_of

__all__ = ["PendingStatuses", "StatusLookup"]

log = logging.getLogger(__name__)

UNKNOWN = CheckInStatus.UNKNOWN


class PendingStatuses:
    """The lookups of one request, started before its writes; :meth:`result` after them."""

    def __init__(
        self,
        lookup: StatusLookup,
        people: Sequence[tuple[str, datetime]],
        reads: dict[str, asyncio.Future[HealthFacts]],
    ) -> None:
        self._lookup = lookup
        self._people = people
        self._reads = reads
        self._deadline = time.monotonic() + lookup.timeout_s

    async def result(self) -> list[CheckInStatus]:
        """One status per person given, ``UNKNOWN`` for facts not read by now or the
        deadline, whichever is later."""
        pending = [f for f in self._reads.values() if not f.done()]
        remaining = self._deadline - time.monotonic()
        if pending and remaining > 0:
            await asyncio.wait(pending, timeout=remaining)
        out: list[CheckInStatus] = []
        for person, at in self._people:
            read = self._reads.get(person)
            if read is None or not read.done() or read.cancelled() or read.exception():
                out.append(UNKNOWN)
            else:
                out.append(check_in_status(read.result(), at, self._lookup.rules))
        self._lookup.count(out)
        return out


class StatusLookup:
    """Reads the facts of scanned people from a store that may be missing or slow.

    Reads asked for within ``linger_s`` of the first one (the scans of the requests being
    handled, a batch's people) go out together, in requests of at most ``chunk`` people
    (``projections.status.health_facts_of``; a full chunk goes at once): one request a
    person cost 0.4-0.5 ms of the API's CPU per scan, mostly in the driver. Lingering adds
    nothing to the answer's latency while it is shorter than the producer's own linger
    (``IngestConfig.linger_ms``, 5 ms): the answer waits for the broker's acknowledgement.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[ProjectionStore]] | None,
        *,
        rules: StatusRules = DEFAULT_RULES,
        timeout_s: float = 0.02,
        retry_s: float = 5.0,
        chunk: int = 50,
        linger_s: float = 0.003,
        on_outcome: Callable[[CheckInStatus, int], None] | None = None,
        on_connected: Callable[[], object] | None = None,
    ) -> None:
        self._connect = connect
        self.rules = rules
        self.timeout_s = timeout_s
        self._retry_s = retry_s
        self._chunk = chunk
        self._linger_s = linger_s
        self._timer: asyncio.TimerHandle | None = None
        self._on_outcome = on_outcome
        self._on_connected = on_connected
        self._store: ProjectionStore | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        self._queued: dict[str, asyncio.Future[HealthFacts]] = {}
        self._running: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """Whether a store is connected (``/readyz`` reports it; it is never required)."""
        return self._store is not None

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
                if self._on_connected is not None:
                    self._on_connected()
                return
            except Exception as e:  # any failure: scans go on, UNKNOWN until connected
                log.warning("check-in status: facts store unavailable (%s); retrying", e)
            await asyncio.sleep(self._retry_s)

    async def stop(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        close = getattr(self._store, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
        self._store = None

    def begin(self, people: Sequence[tuple[str, datetime]]) -> PendingStatuses:
        """Start reading the facts of ``(person_id, scanned_at)`` pairs; await
        :meth:`PendingStatuses.result` once the scans are written."""
        reads: dict[str, asyncio.Future[HealthFacts]] = {}
        if self._store is not None:
            for person, _ in people:
                if person not in reads:
                    reads[person] = self._read(person)
        return PendingStatuses(self, people, reads)

    def _read(self, person: str) -> asyncio.Future[HealthFacts]:
        read = self._queued.get(person)
        if read is None:
            loop = asyncio.get_running_loop()
            read = self._queued[person] = loop.create_future()
            if len(self._queued) >= self._chunk:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self._linger_s, self._flush)
        return read

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queued, self._queued = self._queued, {}
        store = self._store
        people = list(queued)
        for i in range(0, len(people), self._chunk):
            part = {p: queued[p] for p in people[i : i + self._chunk]}
            if store is None:
                for read in part.values():
                    read.cancel()
                continue
            task = asyncio.ensure_future(self._fetch(store, part))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    @staticmethod
    async def _fetch(store: ProjectionStore, part: dict[str, asyncio.Future[HealthFacts]]) -> None:
        try:
            found = await health_facts_of(store, list(part))
        except BaseException as e:  # a failed read is an UNKNOWN, never a failed scan
            for read in part.values():
                if not read.done():
                    read.cancel()
            if not isinstance(e, Exception):
                raise
            return
        for person, read in part.items():
            if not read.done():
                read.set_result(found[person])

    def count(self, statuses: Sequence[CheckInStatus]) -> None:
        if self._on_outcome is None:
            return
        for status in set(statuses):
            self._on_outcome(status, statuses.count(status))
