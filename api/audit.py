"""The audit trail of personal-data reads (DESIGN.md "Read API": who, what, when, from where).

Every route that returns personal data (a staff read of a sample's result, alerts, a person's
exposures, visits or vaccination record, clusters with their cases, the alert stream) calls
:meth:`Auditor.record` after it read the data and *before* it answers. The record goes to the
``audit`` topic (acks=all) and to the ``audit_log`` table, concurrently; if either fails the
read is refused with 503 (fail closed: no personal data leaves without its audit record).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from api.problems import LogUnavailable, Problem
from covidtech.tokens import Claims
from projections.access import audit_row
from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import encode

__all__ = ["PERSONAL_DATA_READ", "Auditor", "EventLog"]

PERSONAL_DATA_READ = "covidtech.access.PersonalDataRead"


class EventLog(Protocol):
    """Where the read API appends events (see :class:`api.kafka.KafkaEventLog`)."""

    async def publish(self, topic: str, key: str, value: bytes) -> None: ...


class Auditor:
    """Writes PersonalDataRead events to the audit topic and table."""

    def __init__(
        self,
        log: EventLog,
        store: ProjectionStore,
        topic: str,
        clock: Callable[[], datetime],
        on_record: Callable[[], None] = lambda: None,
    ) -> None:
        self._log = log
        self._store = store
        self._topic = topic
        self._clock = clock
        self._on_record = on_record

    def event(
        self,
        claims: Claims,
        *,
        method: str,
        route: str,
        subject: str,
        person_ids: Iterable[str],
        client_address: str | None,
        status: int = 200,
    ) -> dict[str, Any]:
        """The PersonalDataRead record of one read."""
        return {
            "event_id": uuid.uuid4().hex,
            "read_at": self._clock(),
            "actor": claims.subject,
            "grant_id": claims.grant_id,
            "token_id": claims.token_id,
            "scopes": sorted(str(s) for s in claims.scopes),
            "method": method,
            "route": route,
            "subject": subject,
            "person_ids": sorted({p for p in person_ids if p}),
            "client_address": client_address,
            "status": status,
        }

    async def record(self, event: dict[str, Any]) -> None:
        """Append ``event`` to the topic and the table; 503 problem if either fails."""
        value = encode(PERSONAL_DATA_READ, event)
        results = await asyncio.gather(
            self._log.publish(self._topic, event["subject"], value),
            self._store.apply([audit_row(event)]),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, (LogUnavailable, StoreUnavailable)):
                raise Problem(
                    "audit-unavailable",
                    "the read could not be audited, so it was refused; retry later",
                    headers={"Retry-After": "2"},
                ) from r
            if isinstance(r, BaseException):
                raise r
        self._on_record()
