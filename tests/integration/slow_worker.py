"""The real worker with one event made slow: its dose row is never written.

``python -m tests.integration.slow_worker PERSON`` runs ``covidtech worker`` (settings from
the COVIDTECH_* environment) over the Cassandra store, except that a write of PERSON's
``doses_by_person`` row waits forever: the dose agent's batch holding it never commits, while
the other agents, including the registration agent reading the same ``doses`` partition, go on.
The faust-streaming #606 scenario (one slow event while later ones are acknowledged), made
with real Kafka and Cassandra; the test then SIGKILLs this process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from covidtech import settings as settings_mod
from projections.cassandra import CassandraStore
from projections.model import Delete, Upsert
from streams.worker import run_worker


class SlowStore:
    def __init__(self, inner: CassandraStore, person: str) -> None:
        self.inner = inner
        self.person = person

    async def apply(self, mutations: Sequence[Upsert | Delete]) -> None:
        for m in mutations:
            if (
                isinstance(m, Upsert)
                and m.table == "doses_by_person"
                and m.row.get("person_id") == self.person
            ):
                await asyncio.Event().wait()  # never set
        await self.inner.apply(mutations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


if __name__ == "__main__":
    s = settings_mod.load()
    store: Any = SlowStore(CassandraStore.from_settings(s), sys.argv[1])
    sys.argv[1:] = ["worker"]
    run_worker(s, store=store)
