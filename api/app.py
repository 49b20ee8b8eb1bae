"""The read API application and its composition root.

:func:`create_app` declares the routes (from :func:`api.routes.all_operations`) and a lifespan that
builds every client once, in order, and tears them down in reverse:

1. the projection store (Cassandra, unless one is passed in: tests and benchmarks share theirs);
2. the Kafka event log (acks=all producer for grants, revocations and audit records);
3. the revocation list (reads the ``grants`` topic to its end before the app serves: a fresh
   process never accepts a revoked token);
4. the alert broadcaster (follows ``exposure-alerts`` for the SSE stream).

They live on ``app.state.services`` (:class:`api.services.Services`) so handlers, the CLI's
shutdown hook and tests reach the same objects. On shutdown the alert streams are ended first,
then the clients are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware

from api import config as config_mod
from api.audit import Auditor
from api.cache import AggregateCache
from api.config import ReadApiConfig
from api.edge import route
from api.kafka import KafkaAlertSource, KafkaEventLog
from api.metrics import ApiMetrics
from api.openapi import build_document
from api.paging import PageTokens
from api.problems import CatchAllMiddleware, exception_handlers
from api.ratelimit import TokenBuckets
from api.routes import all_operations
from api.routes.dashboard import page_routes as dashboard_page_routes
from api.services import EventLogPort, Revocations, Services
from api.stream import AlertBroadcaster, AlertSource
from covidtech.heap import freeze_startup_heap
from covidtech.revocations import RevocationList
from covidtech.settings import Settings
from covidtech.topics import AUDIT, EXPOSURE_ALERTS, GRANTS
from infra.kafka_topics import TopicCheck, require_production_ready
from projections.model import ProjectionStore

__all__ = ["app_from_env", "create_app"]


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    config: ReadApiConfig | None = None,
    store: ProjectionStore | None = None,
    event_log: EventLogPort | None = None,
    revocations: Revocations | None = None,
    alert_source: AlertSource | None = None,
    clock: Callable[[], datetime] = _now,
) -> Starlette:
    """The read API. Clients not passed in are built (and closed) by the lifespan."""
    cfg = config or config_mod.load()
    # Every operation, the dashboard's and the programme's included, is routed and documented
    # from the same declarations (a test compares the routes with /openapi.json).
    operations = all_operations(cfg.page_size, cfg.max_page_size)
    document = build_document(operations)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if event_log is None:  # a real broker: the production profile checks it first
                await require_production_ready(settings)
            the_store = store
            if the_store is None:
                from projections.cassandra import CassandraStore

                cassandra = await asyncio.to_thread(CassandraStore.from_settings, settings)
                stack.callback(cassandra.close)
                the_store = cassandra
            the_log = event_log
            if the_log is None:
                kafka_log = KafkaEventLog(settings)
                await kafka_log.start()
                stack.push_async_callback(kafka_log.stop)
                the_log = kafka_log
            the_revocations = revocations
            if the_revocations is None:
                revocation_list = RevocationList(settings, client_id="covidtech-read-api")
                await revocation_list.start(timeout_s=cfg.catchup_timeout_seconds)
                stack.push_async_callback(revocation_list.stop)
                the_revocations = revocation_list
            source = alert_source or KafkaAlertSource(
                settings, settings.topic(EXPOSURE_ALERTS.name)
            )
            broadcaster = AlertBroadcaster(source, queue_size=cfg.sse_queue_size)
            await broadcaster.start()
            stack.push_async_callback(broadcaster.stop)

            metrics = ApiMetrics()
            metrics.track_revocations(the_revocations.__len__)
            metrics.track_stream_clients(lambda: broadcaster.clients)
            app.state.services = Services(
                settings=settings,
                config=cfg,
                store=the_store,
                signer=settings.token_signer(),
                pages=PageTokens(settings.secret),
                revocations=the_revocations,
                event_log=the_log,
                broadcaster=broadcaster,
                limiter=TokenBuckets(
                    cfg.lookup_rate_per_second,
                    cfg.lookup_burst,
                    max_clients=cfg.rate_limit_clients,
                ),
                code_limiter=TokenBuckets(
                    cfg.lookup_code_rate_per_second,
                    cfg.lookup_code_burst,
                    max_clients=cfg.rate_limit_clients,
                ),
                certificates=settings.certificate_keys(),
                certificate_limiter=TokenBuckets(
                    cfg.certificate_rate_per_second,
                    cfg.certificate_burst,
                    max_clients=cfg.rate_limit_clients,
                ),
                cache=AggregateCache(cfg.aggregate_cache_seconds),
                metrics=metrics,
                auditor=Auditor(
                    the_log,
                    the_store,
                    settings.topic(AUDIT.name),
                    clock,
                    on_record=metrics.audit_records.inc,
                ),
                clock=clock,
                openapi=document,
                topics=None
                if event_log is not None
                else TopicCheck(
                    settings, [settings.topic(t.name) for t in (GRANTS, EXPOSURE_ALERTS, AUDIT)]
                ),
            )
            freeze_startup_heap()  # start-up's objects stay: keep them out of collections
            try:
                yield
            finally:
                broadcaster.close_clients()

    routes = [route(op) for op in operations]
    routes += dashboard_page_routes()  # the MOH dashboard's page and assets (not the API)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(CatchAllMiddleware)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.openapi = document  # what /openapi.json serves
    app.state.operations = operations  # what is routed and documented (tests read it)
    return app


def app_from_env() -> Starlette:
    """The read API configured from ``COVIDTECH_*`` (``uvicorn --factory api.app:app_from_env``)."""
    from covidtech import settings as settings_mod

    return create_app(settings_mod.load(), config=config_mod.load())
