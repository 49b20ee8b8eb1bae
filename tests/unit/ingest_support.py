"""The in-memory event log of the ingest API's unit tests (``producers/memory.py``)."""

from __future__ import annotations

from producers.memory import MemoryEventLog as MemoryLog

__all__ = ["MemoryLog"]
