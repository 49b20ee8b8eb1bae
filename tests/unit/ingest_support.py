"""The in-memory event log of the ingest API's unit tests (``producers/memory.py``)."""

from __future__ import annotations

from producers.memory import MemoryEventLog as MemoryLog

__all__ = ["BOUND_SCOPES", "SCOPES", "MemoryLog"]

#: One scope of every kind the ingest API knows, all acting in province 79.
SCOPES = (
    "moh",
    "app",
    "province:79",
    "tracer:79",
    "venue-admin:79",
    "site:s1@79",
    "lab:l1@79",
    "institution:i1",
)
#: And the two bound to one subject, to be filled with the test's own person and venue.
BOUND_SCOPES = (*SCOPES, "person:{person}", "venue:{venue}@79")
