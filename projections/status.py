"""The read of people's check-in status facts (``status_facts_by_person``, V007).

Over the :class:`ProjectionStore` protocol (Cassandra or the in-memory twin): the partitions of
several people in one request when the store offers it (``select_partitions``, Cassandra's
``IN``), else one single-partition query each. The ingest API bounds the read with a timeout
(``producers/status.py``) and the colour is decided by :func:`domain.status.check_in_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from domain.status import HealthFacts
from projections.model import ProjectionStore, Query, Row

__all__ = ["health_facts", "health_facts_of"]

TABLE = "status_facts_by_person"


async def health_facts(store: ProjectionStore, person_id: str) -> HealthFacts:
    """The facts the stream worker holds for ``person_id`` (none: empty facts)."""
    return _facts(await store.select(Query(TABLE, {"person_id": person_id})))


async def health_facts_of(
    store: ProjectionStore, person_ids: Sequence[str]
) -> dict[str, HealthFacts]:
    """The facts of each of ``person_ids`` (empty facts for a person without any)."""
    many: Any = getattr(store, "select_partitions", None)
    rows: list[Row]
    if many is not None:
        rows = await many(TABLE, "person_id", person_ids)
    else:
        rows = [r for p in person_ids for r in await store.select(Query(TABLE, {"person_id": p}))]
    by_person: dict[str, list[Row]] = {p: [] for p in person_ids}
    for row in rows:
        by_person.setdefault(row["person_id"], []).append(row)
    return {p: _facts(r) for p, r in by_person.items()}


def _facts(rows: Iterable[Row]) -> HealthFacts:
    positives: list[datetime] = []
    exposures: list[datetime] = []
    vaccinated: datetime | None = None
    for row in rows:
        kind, at = row["kind"], row["at"]
        if kind == "positive":
            positives.append(at)
        elif kind == "exposure":
            exposures.append(at)
        elif kind == "vaccinated":
            vaccinated = at
    return HealthFacts(tuple(positives), tuple(exposures), vaccinated)
