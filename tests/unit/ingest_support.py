"""An in-memory event log for the ingest API's unit tests (the ``EventLog`` port)."""

from __future__ import annotations

import asyncio
from typing import Any

from producers.ports import Delivery
from schemas.codec import default_registry


class MemoryLog:
    """An EventLog that acknowledges at once and keeps what it was given."""

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
