"""RFC 9457 problem details: every error the read API answers, mapped in one place.

A problem body is ``application/problem+json``::

    {"type": "urn:covidtech:problem:insufficient-scope", "title": "Token lacks the scope",
     "status": 403, "detail": "...", "instance": "/v1/alerts"}

``type`` is stable per error class (a URN, the same prefix and, for shared classes such as
``token-expired``, the same slug as the ingest API). Handlers here turn :class:`Problem`,
Starlette's ``HTTPException`` (unknown route, wrong method), :class:`StoreUnavailable` and
:class:`LogUnavailable` into problems; :class:`CatchAllMiddleware` answers anything else with a
bare ``internal-error`` (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from covidtech.allow import allowed_methods, options_response
from covidtech.problems import PROBLEM_MEDIA_TYPE, ProblemType, type_uri
from projections.model import StoreUnavailable

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPES",
    "CatchAllMiddleware",
    "LogUnavailable",
    "Problem",
    "ProblemType",
    "exception_handlers",
    "loggable",
    "problem_response",
    "type_uri",
]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


_TYPES = (
    # request shape
    ProblemType("invalid-parameter", "Query or path parameter is invalid", 400),
    ProblemType("invalid-page-token", "Page token is invalid or belongs to another query", 400),
    ProblemType("invalid-last-event-id", "Last-Event-ID is not one this stream sent", 400),
    ProblemType("filter-not-supported", "This filter is not available yet", 400),
    ProblemType("malformed-json", "Body is not valid JSON", 400),
    ProblemType("validation-failed", "Request body has invalid fields", 422),
    ProblemType("unsupported-media-type", "Body must be application/json", 415),
    ProblemType("body-too-large", "Body too large", 413),
    ProblemType("not-found", "No such resource", 404),
    ProblemType("method-not-allowed", "Method not allowed", 405),
    ProblemType("not-modified", "Not modified", 304),
    ProblemType("rate-limited", "Too many requests, retry later", 429),
    # authentication and authorisation (same slugs as the ingest API)
    ProblemType("token-missing", "Bearer token required", 401),
    ProblemType("token-invalid", "Bearer token invalid", 401),
    ProblemType("token-expired", "Bearer token expired", 401),
    ProblemType("token-revoked", "Bearer token revoked", 401),
    ProblemType("insufficient-scope", "Token lacks the scope for this read", 403),
    # faults
    ProblemType("store-unavailable", "Database unavailable, retry later", 503),
    ProblemType("broker-unavailable", "Event log unavailable, retry later", 503),
    ProblemType("audit-unavailable", "Audit log unavailable, retry later", 503),
    ProblemType("not-ready", "Not ready", 503),
    ProblemType("internal-error", "Internal error", 500),
)

#: Every problem class by slug.
PROBLEM_TYPES: Mapping[str, ProblemType] = {t.slug: t for t in _TYPES}


class LogUnavailable(RuntimeError):
    """Kafka did not acknowledge a write in time (answered 503)."""


class Problem(Exception):
    """An error answered as problem details; raise it anywhere in a route."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        kind = PROBLEM_TYPES[slug]
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def status(self) -> int:
        return self.kind.status

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": type_uri(self.kind.slug),
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if instance is not None:
            out["instance"] = instance
        out.update(self.extra)
        return out


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """The HTTP response of a problem (never cached)."""
    body = json.dumps(problem.body(instance), ensure_ascii=False, separators=(",", ":"))
    headers = {"Cache-Control": "no-store", **problem.headers}
    return Response(
        body.encode("utf-8"),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def loggable(path: str) -> str:
    """``path`` fit for a log line: a citizen's lookup code is a secret and is left out."""
    if path.startswith("/v1/results/"):
        return "/v1/results/{lookup_code}"
    return path


def _unauthorized_headers(problem: Problem) -> None:
    if problem.status == 401:
        error = "" if problem.kind.slug == "token-missing" else ', error="invalid_token"'
        problem.headers.setdefault("WWW-Authenticate", f'Bearer realm="covidtech"{error}')


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    _unauthorized_headers(exc)
    return problem_response(exc, request.url.path)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        if request.method == "OPTIONS":
            return options_response(request)
        problem = Problem("method-not-allowed", f"{request.method} is not allowed here")
        problem.headers["Allow"] = allowed_methods(request)
    elif exc.status_code == 404:
        problem = Problem("not-found", "no such resource")
    else:  # Starlette raises only 404/405 itself; anything else is a bug worth hiding
        log.error("unexpected HTTPException %s on %s", exc.status_code, loggable(request.url.path))
        problem = Problem("internal-error", "internal error")
    return problem_response(problem, request.url.path)


def _on_unavailable(
    what: str, slug: str, detail: str
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler of a dependency that did not answer: logged, 503 ``slug`` + Retry-After."""

    async def handler(request: Request, exc: Exception) -> Response:
        log.warning("%s unavailable on %s: %s", what, loggable(request.url.path), exc)
        problem = Problem(slug, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return problem_response(problem, request.url.path)

    return handler


_on_store_unavailable = _on_unavailable(
    "store", "store-unavailable", "the database did not answer in time; retry later"
)
_on_log_unavailable = _on_unavailable(
    "event log", "broker-unavailable", "the event log did not acknowledge in time; retry later"
)


def exception_handlers() -> dict[Any, Any]:
    """Starlette ``exception_handlers`` of the read API."""
    return {
        Problem: _on_problem,
        HTTPException: _on_http_exception,
        StoreUnavailable: _on_store_unavailable,
        LogUnavailable: _on_log_unavailable,
    }


class CatchAllMiddleware:
    """Answers an unhandled exception with a bare 500 problem and logs the traceback.

    Starlette's own server-error middleware re-raises after answering (so servers log it);
    this one does not, so a test client or fuzzer sees exactly what a real client sees. If
    the response had already started (an event stream), the connection is just closed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unhandled error on %s %s", scope.get("method"), loggable(str(scope.get("path")))
            )
            if started:
                return
            response = problem_response(
                Problem("internal-error", "internal error"), str(scope.get("path", ""))
            )
            await response(scope, receive, send)
