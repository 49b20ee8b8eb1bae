"""An ingest route declared once: :class:`IngestOperation`, next to its handler.

Each area module of ``producers/routes/`` ends with its ``OPERATIONS``: method, path,
operation id, summary, the scope kinds its token must hold one of (its ``x-scopes``, from
which the scope matrix test is generated) and, in words, what the handler then checks of the
scope's value; the request body's schema, the success answers, the problems beyond a write's
and the parameters. :data:`producers.routes.OPERATIONS` assembles them; the app's Starlette
routes (:func:`producers.app.create_app`) and the paths of ``/openapi.json``
(:func:`producers.openapi.openapi_document`) are both built from them. The declaration is the
read API's too (:class:`covidtech.web.operations.Declaration`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from covidtech.tokens import ScopeKind
from covidtech.web.operations import Declaration, Schema

__all__ = ["Endpoint", "IngestOperation", "kinds"]

#: A Starlette endpoint: the handler reads its token, scopes and body itself.
Endpoint = Callable[[Request], Awaitable[Response]]


def kinds(*scope_kinds: ScopeKind) -> frozenset[ScopeKind]:
    return frozenset(scope_kinds)


@dataclass(frozen=True, kw_only=True)
class IngestOperation(Declaration):
    """A route of the ingest API: the shared declaration, its handler and its contract.

    ``who`` words the scopes the handler accepts (``venue-admin:<province of the venue>``);
    a route with a ``body`` is a write, answering the write problems
    (:data:`producers.openapi.parts.WRITE_ERRORS`) besides its ``errors``.
    """

    handler: Endpoint
    answers: dict[str, Any] = field(hash=False)
    who: str = ""
    body: Schema | None = field(default=None, hash=False)
    errors: tuple[int, ...] = ()
    parameters: tuple[Schema, ...] = field(default=(), hash=False)

    def route(self) -> Route:
        """The Starlette route (its endpoint is the handler itself: metrics name the route by
        it, ``producers.app``)."""
        return Route(self.path, self.handler, methods=[self.method])
