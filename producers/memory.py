"""The ingest API in memory: an event log that acknowledges at once, and a service over it.

The ingest side's twin of ``projections/memory.py``. Unit tests run the served app (routes,
middleware, error handlers) against it with no broker, and ``bench.ingest_leg`` traces a scan
through it. The app's lifespan, which would connect to Kafka, is not run: :func:`with_service`
hands the service to each request as the lifespan would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from covidtech.settings import Settings
from producers.caches import SampleBook, VenueDirectory
from producers.metrics import IngestMetrics
from producers.ports import Delivery
from producers.service import IngestConfig, IngestService
from producers.status import StatusLookup
from schemas.codec import default_registry

__all__ = ["MemoryEventLog", "memory_service", "with_service"]


class MemoryEventLog:
    """An ``EventLog`` that acknowledges at once and keeps what it was given."""

    retry_after = 2

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def submit(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Delivery]:
        self.records.append((topic, key, value))
        done: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        done.set_result(Delivery(topic, 0, len(self.records) - 1))
        return done

    def trip(self) -> None:
        pass

    async def ready(self) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass

    def events(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(topic, key, event name, record) of every record, decoded."""
        out = []
        for topic, key, value in self.records:
            event = default_registry().decode(value)
            out.append((topic, key.decode(), event.name, event.record))
        return out


def memory_service(
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    log: MemoryEventLog | None = None,
    status: StatusLookup | None = None,
) -> IngestService:
    """An ingest service over an in-memory log, no feeds and no revocation list."""
    registry = default_registry()
    return IngestService(
        settings=settings,
        config=IngestConfig(),
        log=log or MemoryEventLog(),
        registry=registry,
        venues=VenueDirectory(registry),
        samples=SampleBook(registry),
        venue_feed=None,
        sample_feed=None,
        metrics=IngestMetrics(),
        clock=clock,
        is_revoked=None,
        status=status,
    )


def with_service(app: ASGIApp, service: IngestService) -> ASGIApp:
    """``app`` with ``service`` in every request's state (where the lifespan puts it)."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": {"ingest": service}}, receive, send)

    return served
