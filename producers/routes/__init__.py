"""HTTP routes of the ingest API, one module per area, each ending with the ``OPERATIONS`` it
declares (:class:`~producers.routes.edge.IngestOperation`); ``producers/app.py`` builds its
routes, and :mod:`producers.openapi` the document's paths, from :data:`OPERATIONS`."""

from __future__ import annotations

from producers.routes import (
    appointments,
    declarations,
    doses,
    ops,
    people,
    plans,
    registrations,
    samples,
    scans,
    stock,
    venues,
)
from producers.routes.edge import IngestOperation

__all__ = ["OPERATIONS"]

#: Every operation of the ingest API, by area.
OPERATIONS: tuple[IngestOperation, ...] = (
    *venues.OPERATIONS,
    *people.OPERATIONS,
    *scans.OPERATIONS,
    *declarations.OPERATIONS,
    *samples.OPERATIONS,
    *doses.OPERATIONS,
    *registrations.OPERATIONS,
    *appointments.OPERATIONS,
    *stock.OPERATIONS,
    *plans.OPERATIONS,
    *ops.OPERATIONS,
)
