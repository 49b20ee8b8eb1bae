"""The read of one person's check-in status facts (``status_facts_by_person``, V007).

One single-partition query per person, over the :class:`ProjectionStore` protocol (Cassandra
or the in-memory twin); the ingest API bounds it with a timeout (``producers/status.py``) and
the colour is decided by :func:`domain.status.check_in_status`.
"""

from __future__ import annotations

from datetime import datetime

from domain.status import HealthFacts
from projections.model import ProjectionStore, Query

__all__ = ["health_facts"]

TABLE = "status_facts_by_person"


async def health_facts(store: ProjectionStore, person_id: str) -> HealthFacts:
    """The facts the stream worker holds for ``person_id`` (none: empty facts)."""
    positives: list[datetime] = []
    exposures: list[datetime] = []
    vaccinated: datetime | None = None
    for row in await store.select(Query(TABLE, {"person_id": person_id})):
        kind, at = row["kind"], row["at"]
        if kind == "positive":
            positives.append(at)
        elif kind == "exposure":
            exposures.append(at)
        elif kind == "vaccinated":
            vaccinated = at
    return HealthFacts(tuple(positives), tuple(exposures), vaccinated)
