"""Fakes of the read API's ports for in-process unit tests (no broker): an event log that
keeps what it was given, no revocations, an idle alert source."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from covidtech.tokens import Claims

__all__ = ["IdleAlerts", "MemoryLog", "NoRevocations"]


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


class IdleAlerts:
    async def open(self) -> dict[int, int]:
        return {}

    async def fetch(self, timeout_ms: int) -> list[Any]:
        await asyncio.sleep(timeout_ms / 1000)
        return []

    async def close(self) -> None:
        pass

    async def read_range(
        self, ranges: Mapping[int, tuple[int, int]], timeout_s: float
    ) -> list[Any]:
        return []
