"""An ingest route declared once: :class:`IngestOperation`, next to its handler.

Each area module of ``producers/routes/`` ends with its ``OPERATIONS``: method, path,
operation id, summary, the scope kinds its token must hold one of (its ``x-scopes``, from
which the scope matrix test is generated, and the check the edge makes before the handler
runs) and, in words, what the handler then checks of the
scope's value; the request body's schema, the success answers, the problems beyond a write's
and the parameters. :data:`producers.routes.OPERATIONS` assembles them; the app's Starlette
routes (:func:`producers.app.create_app`) and the paths of ``/openapi.json``
(:func:`producers.openapi.openapi_document`) are both built from them. The declaration is the
read API's too (:class:`covidtech.web.operations.Declaration`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from covidtech.tokens import Claims, ScopeKind
from covidtech.web.operations import Area, Declaration, Schema
from producers.service import require_any

__all__ = ["Endpoint", "IngestOperation", "area", "claims_of", "kinds"]

#: A Starlette endpoint. The handler of a route with ``scopes`` runs after the edge has
#: authenticated its token and found one of them (:meth:`IngestOperation.route`); it takes the
#: claims with :func:`claims_of` and checks the scope's value against what it writes.
Endpoint = Callable[[Request], Awaitable[Response]]


def claims_of(request: Request) -> Claims:
    """The claims the edge verified for this request (a route with ``scopes``)."""
    claims = request.state.claims
    assert isinstance(claims, Claims)
    return claims


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
        """The Starlette route. A route with ``scopes`` first authenticates the token (401)
        and requires a scope of one of its kinds (403), so the declaration is the check; the
        metrics name the route by its endpoint (``producers.app``)."""
        if self.scopes is None:
            return Route(self.path, self.handler, methods=[self.method])
        handler = self.handler
        wanted = tuple(k for k in ScopeKind if k in self.scopes)  # the catalogue's order

        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            claims = request.state.ingest.authenticate(request)
            require_any(claims, *wanted)
            request.state.claims = claims
            return await handler(request)

        return Route(self.path, guarded, methods=[self.method])


def area(tag: str, scopes: frozenset[ScopeKind] | None, **shared: Any) -> Area[IngestOperation]:
    """The declarations of one area of ``producers/routes/``
    (:class:`covidtech.web.operations.Area`): its tag, scopes and e.g. ``who`` or ``errors``
    stated once, each :class:`IngestOperation` stating what differs."""
    return Area(IngestOperation, tag, scopes, **shared)
