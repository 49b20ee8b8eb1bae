"""What the ingest API needs from the log, as protocols (``producers/kafka.py`` implements them).

Keeping these apart lets the routes and the service layer be read, typed and tested without
aiokafka, and keeps ``producers/kafka.py`` the only module that imports it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

__all__ = ["BrokerUnavailable", "Delivery", "EventLog", "Feed"]


class BrokerUnavailable(Exception):
    """The log cannot take or confirm a write now (the API answers 503 with Retry-After).

    ``in_doubt`` is true when the write was handed to the producer but not acknowledged in
    time: it may still land later, which is why retries must reuse their ids.
    """

    def __init__(self, message: str, *, retry_after: int = 2, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.in_doubt = in_doubt


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker put an acknowledged record."""

    topic: str
    partition: int
    offset: int


class EventLog(Protocol):
    """An idempotent, acks=all producer."""

    retry_after: int

    async def submit(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Delivery]:
        """Hand a record over; the future resolves with its ack (or BrokerUnavailable).

        Raises :class:`BrokerUnavailable` at once when the record cannot be handed over.
        """
        ...

    def trip(self) -> None:
        """Report that an acknowledgement did not come in time (the log is unhealthy)."""
        ...

    async def ready(self) -> bool:
        """Whether the broker answers now (a cheap, cached metadata request)."""
        ...

    async def start(self) -> None:
        """Connect (or keep trying in the background)."""
        ...

    async def stop(self, grace: float) -> None:
        """Flush for at most ``grace`` seconds, then close."""
        ...


class Feed(Protocol):
    """A topic followed from its beginning into an in-memory view."""

    @property
    def caught_up(self) -> bool:
        """Whether the view has reached the end the topic had when following began."""
        ...

    async def sync(self, within: float) -> None:
        """Return once the view holds everything the topic holds now.

        Raises :class:`BrokerUnavailable` if that cannot be established within ``within`` seconds.
        """
        ...

    def start(self) -> None:
        """Start following in the background."""
        ...

    async def wait_caught_up(self, within: float) -> bool:
        """Wait for the initial catch-up; False if it did not happen within ``within`` seconds."""
        ...

    async def stop(self) -> None:
        """Stop following."""
        ...
