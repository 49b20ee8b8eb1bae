"""Operational routes: health, readiness, metrics, the OpenAPI document, the vaccine list."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from domain.vaccines import VACCINES
from producers.metrics import CONTENT_TYPE_LATEST
from producers.openapi import openapi_document
from producers.openapi.parts import json_content, ref
from producers.routes.common import json_response, service
from producers.routes.edge import Endpoint, IngestOperation, area, kinds


async def healthz(request: Request) -> Response:
    """The process is up and serving (no dependency checked)."""
    return json_response(200, {"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the broker answers a metadata request, lists every topic this API writes,
    and both topic views have caught up. ``status_store`` (whether the check-in status facts
    store is connected) is reported beside them but never makes the API unready: without it
    scans are still written, their status is UNKNOWN."""
    svc = service(request)
    topics = getattr(request.app.state, "topics", None)  # None: an injected log (tests)
    checks = {
        "broker": await svc.log.ready(),
        "topics": topics is None or not await topics.missing(),
        "venues": svc.venue_feed.caught_up if svc.venue_feed is not None else True,
        "samples": svc.sample_feed.caught_up if svc.sample_feed is not None else True,
    }
    ready = all(checks.values())
    return json_response(
        200 if ready else 503,
        {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "optional": {"status_store": svc.status.connected},
        },
        headers=None if ready else {"Retry-After": str(svc.config.retry_after_s)},
    )


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    svc = service(request)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of this API."""
    return json_response(200, openapi_document())


async def vaccines(request: Request) -> Response:
    """The vaccine products a dose may name, with their single-dose flag (any valid token:
    the edge checked it)."""
    return json_response(
        200,
        {
            "vaccines": [
                {"code": v.code, "name": v.name, "single_dose": v.single_dose}
                for v in VACCINES.values()
            ]
        },
    )


_PUBLIC = area("ops", None)


def _public(path: str, summary: str, handler: Endpoint, media: str) -> IngestOperation:
    return _PUBLIC.get(
        path,
        handler.__name__,
        summary,
        handler,
        answers={"200": {"description": "OK", "content": {media: {}}}},
    )


OPERATIONS = (
    area("ops", kinds(*ScopeKind)).get(
        "/v1/vaccines",
        "list_vaccines",
        "Vaccine products (single-dose products marked)",
        vaccines,
        who="any valid token",
        answers={"200": json_content("The fixed product list.", ref("Vaccines"))},
        errors=(401,),
    ),
    _public("/healthz", "Liveness", healthz, "application/json"),
    _public(
        "/readyz",
        "Readiness: broker answers, its topics exist, topic views caught up "
        "(the check-in status store is reported under optional, never required)",
        readyz,
        "application/json",
    ),
    _public("/metrics", "Prometheus metrics", metrics, "text/plain"),
    _public("/openapi.json", "This document", openapi, "application/json"),
)
