"""An HTTP operation declared once, and its OpenAPI 3.1 operation object: both APIs' edge.

A route's declaration says what both APIs need to know of it: method, path template,
operation id, summary, tag (its area) and the scope kinds of which its token must hold one
(``None``: public). Each API extends :class:`Declaration` with what it alone needs (the read
API's :class:`api.edge.Operation`: parameters, caching, audit; the ingest API's
:class:`producers.routes.edge.IngestOperation`: request body, answers), and builds from the
same objects its Starlette routes and its ``/openapi.json`` paths (:func:`paths_of`), so the
document cannot drift from what is served. The scope matrix tests are generated from the
``x-scopes`` each operation object carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from covidtech.tokens import ScopeKind

__all__ = ["Declaration", "Schema", "operation_object", "paths_of", "x_scopes"]

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
