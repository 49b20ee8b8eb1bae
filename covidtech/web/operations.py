"""An HTTP operation declared once, and its OpenAPI 3.1 operation object: both APIs' edge.

A route's declaration says what both APIs need to know of it: method, path template,
operation id, summary, tag (its area) and the scope kinds of which its token must hold one
(``None``: public). Each API extends :class:`Declaration` with what it alone needs (the read
API's :class:`api.edge.Operation`: parameters, caching, audit; the ingest API's
:class:`producers.routes.edge.IngestOperation`: request body, answers), and builds from the
same objects its Starlette routes and its ``/openapi.json`` paths (:func:`paths_of`), so the
document cannot drift from what is served. The scope matrix tests are generated from the
``x-scopes`` each operation object carries.

An area of either API declares its operations through an :class:`Area`, which states once what
they share (tag, scopes, any other field of the API's declaration class), so that each
declaration states only its path, id, summary, handler and what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from covidtech.tokens import ScopeKind

__all__ = ["Area", "Declaration", "Schema", "operation_object", "paths_of", "x_scopes"]

Schema = dict[str, Any]

D = TypeVar("D", bound="Declaration")


@dataclass(frozen=True, kw_only=True)
class Declaration:
    """What every route declares: where it is, what it is called, who may call it."""

    method: str
    path: str
    op_id: str
    summary: str
    tag: str
    scopes: frozenset[ScopeKind] | None  # None: public (no token)
    description: str = ""


class Area(Generic[D]):
    """The declarations of one area: what its operations share (its tag, scope kinds and any
    other field of the declaration class ``make``) stated once, so that each operation states
    only its method, path, id, summary, handler and what it does not share (a keyword
    overrides the area's value). An API adds what it derives of a declaration in
    :meth:`complete`."""

    def __init__(
        self, make: Callable[..., D], tag: str, scopes: frozenset[ScopeKind] | None, **shared: Any
    ) -> None:
        self.make = make
        self.shared: dict[str, Any] = {"tag": tag, "scopes": scopes, **shared}

    def complete(self, path: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields of the declaration of ``path`` (the area's, overridden by its own);
        none derived here."""
        return fields

    def op(self, method: str, path: str, op_id: str, summary: str, handler: Any, **own: Any) -> D:
        fields = {"method": method, "path": path, "op_id": op_id, "summary": summary}
        return self.make(
            **self.complete(path, {**self.shared, **fields, "handler": handler, **own})
        )

    def get(self, path: str, op_id: str, summary: str, handler: Any, **own: Any) -> D:
        return self.op("GET", path, op_id, summary, handler, **own)

    def post(self, path: str, op_id: str, summary: str, handler: Any, **own: Any) -> D:
        return self.op("POST", path, op_id, summary, handler, **own)


def x_scopes(kinds: Iterable[ScopeKind]) -> list[str]:
    """An operation's ``x-scopes``: the scope kinds of which its token must hold one (the
    operation may then check the scope's value against what it reads or writes, 403 if it
    does not cover it). The scope matrices of both APIs are generated from these."""
    return sorted(k.value for k in kinds)


def operation_object(
    decl: Declaration,
    *,
    description: str,
    responses: dict[str, Any],
    parameters: Sequence[Schema] = (),
    body: Schema | None = None,
) -> dict[str, Any]:
    """The OpenAPI operation object of ``decl``: its id, summary, tag, security and
    ``x-scopes``, with the API's own ``description``, ``responses``, ``parameters`` and
    request ``body`` schema."""
    out: dict[str, Any] = {
        "operationId": decl.op_id,
        "summary": decl.summary,
        "description": description,
        "tags": [decl.tag],
        "parameters": list(parameters),
        "responses": responses,
        "security": [] if decl.scopes is None else [{"bearer": []}],
    }
    if decl.scopes is not None:
        out["x-scopes"] = x_scopes(decl.scopes)
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return out


def paths_of(decls: Iterable[D], render: Callable[[D], dict[str, Any]]) -> dict[str, Any]:
    """The ``paths`` of a document: each declaration's operation object (``render``) under its
    path and method. Two declarations of one path and method are a mistake."""
    paths: dict[str, dict[str, Any]] = {}
    for decl in decls:
        item = paths.setdefault(decl.path, {})
        method = decl.method.lower()
        if method in item:
            raise ValueError(f"{decl.method} {decl.path} is declared twice")
        item[method] = render(decl)
    return paths
