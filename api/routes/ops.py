"""Operations' routes, public: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from api.edge import Area, Ctx, Operation
from api.metrics import CONTENT_TYPE
from api.problems import Problem
from api.render import json_response
from projections import queries
from projections.model import StoreUnavailable

__all__ = ["healthz", "metrics_text", "openapi_json", "operations", "readyz"]


async def healthz(ctx: Ctx) -> Response:
    return json_response({"status": "ok"}, cache_control="no-store")


async def readyz(ctx: Ctx) -> Response:
    services = ctx.services

    async def store_ok() -> bool:
        try:
            await asyncio.wait_for(queries.grant(services.store, "readyz-probe"), 2.0)
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    store, kafka = await asyncio.gather(store_ok(), services.event_log.ping())
    checks = {
        "cassandra": store,
        "kafka": kafka,
        "topics": services.topics is None or not await services.topics.missing(),
        "revocations": services.revocations.healthy,
        "alert_stream": services.broadcaster.healthy,
    }
    if not all(checks.values()):
        failing = ", ".join(k for k, ok in checks.items() if not ok)
        raise Problem(
            "not-ready",
            f"not ready: {failing}",
            headers={"Retry-After": "2"},
            extra={"checks": checks},
        )
    return json_response({"status": "ready", "checks": checks}, cache_control="no-store")


async def metrics_text(ctx: Ctx) -> Response:
    return Response(
        ctx.services.metrics.render(),
        media_type=CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )


async def openapi_json(ctx: Ctx) -> Response:
    return json_response(ctx.services.openapi, cache_control="public, max-age=300")


def operations() -> tuple[Operation, ...]:
    """Health, metrics and the document."""
    area = Area("operations", None, caching="none", errors=())
    return (
        area.get("/healthz", "healthz", "Liveness", healthz, response="Health"),
        area.get(
            "/readyz",
            "readyz",
            "Readiness (Cassandra, Kafka, revocations)",
            readyz,
            response="Ready",
            errors=(503,),
        ),
        area.get(
            "/metrics", "metrics", "Prometheus metrics", metrics_text, media_type="text/plain"
        ),
        area.get("/openapi.json", "openapi", "This document", openapi_json),
    )
