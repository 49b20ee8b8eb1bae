"""The ingest API's status lookup: reads coalesced per event-loop turn, bounded, never failing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.status import CheckInStatus
from producers.status import StatusLookup
from projections.memory import InMemoryStore
from projections.model import Row, Upsert

AT = datetime.now(UTC)


class CountingStore(InMemoryStore):
    """The in-memory twin with Cassandra's multi-partition read, counted, optionally slow."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        super().__init__()
        self.requests: list[list[str]] = []
        self.delay = delay
        self.fail = fail

    async def select_partitions(self, table: str, column: str, values: Sequence[Any]) -> list[Row]:
        self.requests.append(list(values))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("store down")
        return [r for r in await self.scan(table) if r[column] in values]


async def _lookup(store: InMemoryStore | None, **kw: Any) -> StatusLookup:
    async def connect() -> InMemoryStore:
        assert store is not None
        return store

    lookup = StatusLookup(connect if store is not None else None, **kw)
    lookup.start()
    for _ in range(10):
        await asyncio.sleep(0)
    return lookup


async def test_reads_of_one_loop_turn_go_out_together_in_chunks() -> None:
    store = CountingStore()
    await store.apply(
        [
            Upsert(
                "status_facts_by_person",
                {"person_id": "red", "kind": "positive", "ref": "s1", "at": AT - timedelta(days=1)},
            )
        ]
    )
    lookup = await _lookup(store, chunk=2)
    one = lookup.begin([("red", AT), ("p1", AT), ("red", AT)])
    two = lookup.begin([("p2", AT)])
    assert await one.result() == [CheckInStatus.RED, CheckInStatus.YELLOW, CheckInStatus.RED]
    assert await two.result() == [CheckInStatus.YELLOW]
    assert store.requests == [["red", "p1"], ["p2"]]  # three people, chunks of two
    await lookup.stop()


async def test_slow_failing_or_missing_store_answers_unknown() -> None:
    unknown = [CheckInStatus.UNKNOWN]
    slow = await _lookup(CountingStore(delay=1.0), timeout_s=0.01)
    started = asyncio.get_running_loop().time()
    assert await slow.begin([("p", AT)]).result() == unknown
    assert asyncio.get_running_loop().time() - started < 0.5
    await slow.stop()
    failing = await _lookup(CountingStore(fail=True))
    assert await failing.begin([("p", AT)]).result() == unknown
    await failing.stop()
    missing = await _lookup(None)
    assert not missing.connected
    assert await missing.begin([("p", AT)]).result() == unknown
