"""What a request handler may use: the clients and helpers the lifespan built, in one object.

Built once per process by the composition root (:func:`api.app.create_app`'s lifespan) and
kept on ``app.state.services``; nothing below is created per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from api.audit import Auditor
from api.cache import AggregateCache
from api.config import ReadApiConfig
from api.metrics import ApiMetrics
from api.paging import PageTokens
from api.ratelimit import TokenBuckets
from api.stream import AlertBroadcaster
from covidtech.settings import Settings
from covidtech.tokens import Claims, TokenSigner
from domain.certificate import CertificateKeys
from infra.kafka_topics import TopicCheck
from projections.model import ProjectionStore

__all__ = ["EventLogPort", "Revocations", "Services"]


class Revocations(Protocol):
    """What the API needs of :class:`covidtech.revocations.RevocationList`."""

    def is_revoked(self, ident: str) -> bool: ...

    def claims_revoked(self, claims: Claims) -> bool: ...

    def revoke(self, ids: Iterable[str]) -> None: ...

    def issued(self, grant_id: str, under: str | None) -> None: ...

    @property
    def healthy(self) -> bool: ...

    def __len__(self) -> int: ...


class EventLogPort(Protocol):
    """What the API needs of :class:`api.kafka.KafkaEventLog`."""

    async def publish(self, topic: str, key: str, value: bytes) -> None: ...

    async def ping(self) -> bool: ...


@dataclass
class Services:
    """The read API's clients and helpers (one per process)."""

    settings: Settings
    config: ReadApiConfig
    store: ProjectionStore
    signer: TokenSigner
    pages: PageTokens
    revocations: Revocations
    event_log: EventLogPort
    broadcaster: AlertBroadcaster
    limiter: TokenBuckets  # citizen lookups per client address
    code_limiter: TokenBuckets  # citizen lookups per lookup code
    certificates: CertificateKeys  # signs certificates; its public keys verify them
    certificate_limiter: TokenBuckets  # certificate verifications and key reads per address
    cache: AggregateCache
    metrics: ApiMetrics
    auditor: Auditor
    clock: Callable[[], datetime]
    openapi: dict[str, Any]
    #: The topics this API reads and writes that the broker does not list (readiness);
    #: ``None`` with an injected event log (tests without a broker).
    topics: TopicCheck | None = None
