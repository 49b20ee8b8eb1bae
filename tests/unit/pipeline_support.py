"""Reading the in-memory projections back in the unit tests of the stream handlers."""

from __future__ import annotations

from typing import Any

from projections.memory import InMemoryStore
from projections.model import TABLES


async def rows(store: InMemoryStore) -> dict[str, list[dict[str, Any]]]:
    return {t: sorted((await store.scan(t)), key=repr) for t in TABLES}


def active_only(snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    for t in ("alerts_by_person", "alerts_by_province"):
        assert all(r["overlap_seconds"] == 0 for r in snap[t] if r["status"] == "WITHDRAWN")
        snap[t] = [r for r in snap[t] if r["status"] == "ACTIVE"]
    return snap
