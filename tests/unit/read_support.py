"""Fakes of the read API's ports for in-process unit tests (no broker): an event log that
keeps what it was given, no revocations, a scripted alert source and an idle one; and the read
API over a store with them (``read_app``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from starlette.applications import Starlette

from api.app import create_app
from api.config import ReadApiConfig
from api.kafka import FeedRecord
from api.stream import AlertSource
from covidtech.settings import Settings
from covidtech.tokens import Claims
from projections.model import ProjectionStore

__all__ = ["IdleAlerts", "MemoryLog", "NoRevocations", "Source", "read_app"]


class MemoryLog:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes]] = []

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        self.published.append((topic, key, value))

    async def ping(self) -> bool:
        return True


class NoRevocations:
    healthy = True

    def is_revoked(self, ident: str) -> bool:
        return False

    def claims_revoked(self, claims: Claims) -> bool:
        return False

    def revoke(self, ids: Iterable[str]) -> None:
        pass

    def issued(self, grant_id: str, under: str | None) -> None:
        pass

    def __len__(self) -> int:
        return 0


class Source:
    """An alert source of ``partitions`` partitions (two unless told); ``log`` holds every
    record; ``push`` makes records live."""

    def __init__(self, partitions: int = 2) -> None:
        self.log: dict[int, list[bytes | None]] = {p: [] for p in range(partitions)}
        self.live: asyncio.Queue[list[FeedRecord]] = asyncio.Queue()

    def append(self, partition: int, value: bytes | None) -> FeedRecord:
        self.log[partition].append(value)
        return FeedRecord(partition, len(self.log[partition]) - 1, value)

    def push(self, *records: FeedRecord) -> None:
        self.live.put_nowait(list(records))

    async def open(self) -> dict[int, int]:
        return {p: len(v) for p, v in self.log.items()}

    async def fetch(self, timeout_ms: int) -> list[FeedRecord]:
        try:
            return await asyncio.wait_for(self.live.get(), timeout_ms / 1000)
        except TimeoutError:
            return []

    async def close(self) -> None:
        pass

    async def read_range(
        self, ranges: Mapping[int, tuple[int, int]], timeout_s: float
    ) -> list[FeedRecord]:
        return [
            FeedRecord(p, o, self.log[p][o]) for p, (a, b) in ranges.items() for o in range(a, b)
        ]


class IdleAlerts(Source):
    """An alert source without partitions: nothing ever comes."""

    def __init__(self) -> None:
        super().__init__(partitions=0)


def read_app(
    settings: Settings,
    config: ReadApiConfig,
    store: ProjectionStore,
    *,
    event_log: MemoryLog | None = None,
    alert_source: AlertSource | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The read API over ``store``, without a broker: the event log keeps what it is given
    (a fresh ``MemoryLog`` unless one is passed), nothing is revoked, and no alert comes
    unless an alert source is passed; the wall clock unless ``clock`` is."""
    return create_app(
        settings,
        config=config,
        store=store,
        event_log=MemoryLog() if event_log is None else event_log,
        revocations=NoRevocations(),
        alert_source=IdleAlerts() if alert_source is None else alert_source,
        **({} if clock is None else {"clock": clock}),
    )
