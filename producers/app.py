"""The ingest API application: routes, error handling, metrics, and its composition root.

Its routes are built from the operations each area declares (:data:`producers.routes.OPERATIONS`),
which also give ``/openapi.json`` its paths.

``create_app(settings)`` builds a Starlette app whose typed lifespan connects the Kafka
producer, starts following the ``venues`` and ``samples`` topics, builds the
:class:`~producers.service.IngestService` and hands it to requests through the lifespan state;
at shutdown it flushes the producer (bounded) and stops the feeds. Run it with
``covidtech ingest-api`` (uvicorn), or ``uvicorn --factory producers.app:app_from_env``.

Errors are mapped to problem details in one place (:func:`_handlers`): our own
:class:`~producers.problems.Problem`, Starlette's 404/405, the event log's
:class:`~producers.ports.BrokerUnavailable` (503 with Retry-After) and, last, anything
unexpected (500 without details).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from covidtech import settings as settings_mod
from covidtech import topics
from covidtech.heap import freeze_startup_heap
from covidtech.settings import Settings
from covidtech.web.allow import allowed_methods, options_response
from covidtech.web.problems import Problem, problem_response
from infra.kafka_topics import TopicCheck, require_production_ready
from producers.caches import SampleBook, VenueDirectory
from producers.metrics import IngestMetrics, MetricsMiddleware
from producers.ports import BrokerUnavailable, EventLog, Feed
from producers.requests.common import limits_of
from producers.routes import OPERATIONS
from producers.service import IngestConfig, IngestService
from producers.status import StatusLookup
from projections.model import ProjectionStore
from schemas.codec import Registry, default_registry

__all__ = ["IngestConfig", "State", "app_from_env", "create_app"]

log = logging.getLogger(__name__)


class State(TypedDict):
    """What the lifespan hands to every request (``request.state.ingest``)."""

    ingest: IngestService


#: The topics this API writes (their metadata is fetched at start-up).
WRITTEN_TOPICS = (
    topics.VENUES,
    topics.PEOPLE,
    topics.CHECKINS,
    topics.DECLARATIONS,
    topics.SAMPLES,
    topics.DOSES,
    topics.VACCINATION_REGISTRATIONS,
    topics.VACCINE_SUPPLY,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


#: The app's routes, one per declared operation (``producers/routes/<area>.py``).
ROUTES = [op.route() for op in OPERATIONS]


def _templates() -> Callable[[Scope], str]:
    by_endpoint = {route.endpoint: route.path for route in ROUTES}

    def template(scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        return by_endpoint.get(endpoint, "unmatched") if endpoint is not None else "unmatched"

    return template


def _handlers(metrics: IngestMetrics) -> dict[Any, Callable[..., Any]]:
    def count_unavailable(status: int) -> None:
        if status == 503:
            metrics.broker_unavailable.inc()

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        count_unavailable(exc.status)
        return problem_response(exc, request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        slug = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
            exc.status_code, "internal-error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            if request.method == "OPTIONS":
                return options_response(request)
            headers["Allow"] = allowed_methods(request)
        problem = Problem(slug, str(exc.detail), headers=headers)
        return problem_response(problem, request.url.path)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BrokerUnavailable)
        count_unavailable(503)
        problem = Problem(
            "broker-unavailable",
            "the event log is unavailable; retry with the same ids after Retry-After seconds",
            headers={"Retry-After": str(exc.retry_after)},
        )
        return problem_response(problem, request.url.path)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            Problem("internal-error", "an unexpected error occurred"), request.url.path
        )

    return {
        Problem: on_problem,
        HTTPException: on_http,
        BrokerUnavailable: on_unavailable,
        Exception: on_error,
    }


def create_app(
    settings: Settings,
    *,
    producer: EventLog | None = None,
    config: IngestConfig | None = None,
    clock: Callable[[], datetime] = _utc_now,
    is_revoked: Callable[[str], bool] | None = None,
    facts_store: Callable[[], Awaitable[ProjectionStore]] | None = None,
) -> Starlette:
    """The ingest API for ``settings``.

    ``producer`` replaces the Kafka producer (the app starts and stops it); ``clock`` and
    ``is_revoked`` are injected for tests and for the revocation set of the read API.
    ``facts_store`` connects the store of the check-in status facts (default: Cassandra with a
    real broker, none with an injected producer: every status is then UNKNOWN).
    """
    cfg = config or IngestConfig(limits=limits_of(settings))
    metrics = IngestMetrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        from producers.kafka import KafkaEventLog, TopicFeed

        if producer is None:  # a real broker: the production profile checks it first
            await require_production_ready(settings)
            app.state.topics = TopicCheck(
                settings, [settings.topic(t.name) for t in WRITTEN_TOPICS]
            )
        registry = default_registry()
        venue_view = VenueDirectory(registry)
        sample_view = SampleBook(registry)
        # Events are built from validated requests by producers/events.py, whose records are
        # checked against the schemas by the unit tests; re-validating every record on the hot
        # path would cost a fifth of a scan's CPU. fastavro still refuses a wrong type.
        encoder = Registry(validate=False)
        written = [settings.topic(t.name) for t in WRITTEN_TOPICS]
        event_log: EventLog = producer or KafkaEventLog(
            settings,
            topics=written,
            request_timeout_s=cfg.delivery_timeout_s,
            linger_ms=cfg.linger_ms,
            retry_after=cfg.retry_after_s,
        )
        venue_feed: Feed = TopicFeed(settings, settings.topic(topics.VENUES.name), venue_view.apply)
        sample_feed: Feed = TopicFeed(
            settings, settings.topic(topics.SAMPLES.name), sample_view.apply
        )
        revocations = None
        check_revoked = is_revoked
        if check_revoked is None:
            # Revoked grants are refused here too, within seconds of DELETE /v1/grants/{id}
            # on the read API; start() fails closed if the list cannot be read.
            from covidtech.revocations import RevocationList

            revocations = RevocationList(settings)
            await revocations.start()
            check_revoked = revocations.is_revoked
        connect_facts = facts_store
        if connect_facts is None and producer is None:
            connect_facts = _cassandra_facts(settings)
        status = StatusLookup(
            connect_facts,
            rules=settings.status_rules(),
            timeout_s=cfg.status_timeout_s,
            linger_s=min(0.003, cfg.linger_ms / 1000),
            on_outcome=lambda s, n: metrics.scan_statuses.labels(status=s.value).inc(n),
            # The driver connects after start-up froze its heap: freeze again, or every full
            # collection walks the driver's objects (40-70 ms pauses, covidtech/heap.py).
            on_connected=freeze_startup_heap,
        )
        status.start()  # in the background: Cassandra down never delays or fails start-up
        await event_log.start()
        venue_feed.start()
        sample_feed.start()
        await asyncio.gather(
            venue_feed.wait_caught_up(cfg.startup_wait_s),
            sample_feed.wait_caught_up(cfg.startup_wait_s),
        )
        service = IngestService(
            settings=settings,
            config=cfg,
            log=event_log,
            registry=encoder,
            venues=venue_view,
            samples=sample_view,
            venue_feed=venue_feed,
            sample_feed=sample_feed,
            metrics=metrics,
            clock=clock,
            is_revoked=check_revoked,
            status=status,
        )
        freeze_startup_heap()  # start-up's objects stay: keep them out of collections
        try:
            yield {"ingest": service}
        finally:
            await event_log.stop(cfg.shutdown_grace_s)
            await service.guard.close()
            await venue_feed.stop()
            await sample_feed.stop()
            await status.stop()
            if revocations is not None:
                await revocations.stop()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(MetricsMiddleware, metrics=metrics, templates=_templates())],
        exception_handlers=_handlers(metrics),
        lifespan=lifespan,
    )


def _cassandra_facts(settings: Settings) -> Callable[[], Awaitable[ProjectionStore]]:
    """Connects the facts store: Cassandra at LOCAL_ONE (a colour is best effort; a replica
    that is behind shows a fact a moment later), the driver's own timeout a second (the
    answer never waits that long: ``IngestConfig.status_timeout_s``)."""

    async def connect() -> ProjectionStore:
        from cassandra import ConsistencyLevel

        from projections.cassandra import CassandraStore, build_cluster

        def build() -> CassandraStore:
            cluster = build_cluster(
                settings, request_timeout=1.0, consistency=ConsistencyLevel.LOCAL_ONE
            )
            # No schema or token metadata: the reads name their keyspace and span several
            # partitions (no routing), and a refresh of every keyspace's schema after each
            # schema change elsewhere would run in the driver's thread, against the loop.
            cluster.schema_metadata_enabled = False
            cluster.token_metadata_enabled = False
            try:
                return CassandraStore(cluster.connect(), settings.keyspace)
            except BaseException:
                cluster.shutdown()
                raise

        return await asyncio.to_thread(build)

    return connect


def app_from_env() -> Starlette:
    """The app for the process's settings (``uvicorn --factory producers.app:app_from_env``)."""
    return create_app(settings_mod.get())
