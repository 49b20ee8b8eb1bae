"""RFC 9457 problem details of the read API: its exceptions mapped to the shared catalogue.

A problem body is ``application/problem+json``::

    {"type": "urn:covidtech:problem:insufficient-scope", "title": "Token lacks the scope",
     "status": 403, "detail": "...", "instance": "/v1/alerts"}

The classes, :class:`Problem` and the response are the ones both APIs share
(``covidtech.web.problems``). Handlers here turn :class:`Problem`,
Starlette's ``HTTPException`` (unknown route, wrong method), :class:`StoreUnavailable` and
:class:`LogUnavailable` into problems; :class:`CatchAllMiddleware` answers anything else with a
bare ``internal-error`` (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from covidtech.web.allow import allowed_methods, options_response
from covidtech.web.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_TYPES,
    Problem,
    ProblemType,
    problem_response,
    type_uri,
)
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


class LogUnavailable(RuntimeError):
    """Kafka did not acknowledge a write in time (answered 503)."""


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
