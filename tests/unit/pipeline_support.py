"""Running events through the stream handlers in process (the local pipeline over the in-memory
store), and reading the in-memory projections back, in the unit tests of the stream handlers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from projections.memory import InMemoryStore
from projections.model import TABLES
from streams.local import LocalPipeline
from tests.scenarios import Ev, shuffled

Snapshot = dict[str, list[dict[str, Any]]]


async def feed(p: LocalPipeline, events: Iterable[Ev], *, seed: int | None = None) -> None:
    """Publishes the events, then feeds the handlers until none has anything left to read;
    with a seed, in random batch sizes and interleavings of the topics."""
    for e in events:
        p.publish(e.topic, e.key, e.name, e.record)
    await p.run_until_idle(rng=None if seed is None else random.Random(seed))


async def run(
    events: Sequence[Ev],
    *,
    twice: bool = False,
    seed: int | None = None,
    store: InMemoryStore | None = None,
) -> tuple[LocalPipeline, InMemoryStore]:
    """A fresh pipeline (over a fresh store unless one is given) fed the events (twice over
    with ``twice``: a redelivery of everything)."""
    store = InMemoryStore() if store is None else store
    p = LocalPipeline(store)
    await feed(p, [*events, *events] if twice else events, seed=seed)
    return p, store


async def rows(store: InMemoryStore, tables: Iterable[str] = TABLES) -> Snapshot:
    return {t: sorted((await store.scan(t)), key=repr) for t in tables}


async def same_rows_in_any_order(
    events: list[Ev], seeds: int, view: Callable[[Snapshot], Snapshot] = lambda snap: snap
) -> Snapshot:
    """Asserts that the events in ``seeds`` shuffled orders, each delivered twice, give the
    rows (seen through ``view``) they give in order; returns those."""
    _, in_order = await run(events)
    expected = view(await rows(in_order))
    for seed in range(seeds):
        _, store = await run(shuffled(events, seed), twice=True)
        assert view(await rows(store)) == expected, f"seed {seed}"
    return expected


def active_only(snap: Snapshot) -> Snapshot:
    for t in ("alerts_by_person", "alerts_by_province"):
        assert all(r["overlap_seconds"] == 0 for r in snap[t] if r["status"] == "WITHDRAWN")
        snap[t] = [r for r in snap[t] if r["status"] == "ACTIVE"]
    return snap
