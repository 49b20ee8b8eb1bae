"""The OpenAPI 3.1 document of the read API, built from :mod:`api.routes`' declarations.

Parameters, scopes, caching and answers come from the same :class:`~api.edge.Operation`
objects that build the routes; the bodies are described by :mod:`api.schemas`.
"""

from __future__ import annotations

from typing import Any

from api.edge import Operation
from api.problems import PROBLEM_MEDIA_TYPE
from api.schemas import INT, SCHEMAS, STR, ref
from covidtech.tokens import ScopeKind
from covidtech.web.operations import operation_object, paths_of

__all__ = ["SCHEMAS", "build_document"]


_HEADER_DOCS = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": INT},
    "WWW-Authenticate": {"description": "Bearer challenge.", "schema": STR},
    "Allow": {"description": "Methods of this path.", "schema": STR},
}


def _problem(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": ref("Problem")}},
    }
    if headers:
        out["headers"] = {h: _HEADER_DOCS[h] for h in headers}
    return out


_ERRORS = {
    400: _problem("Invalid parameter or page token."),
    401: _problem("Missing, invalid, expired or revoked token.", ("WWW-Authenticate",)),
    403: _problem("The token's scopes do not reach this route or province."),
    404: _problem("Not found (or not in your scope)."),
    413: _problem("Body too large."),
    415: _problem("Body must be application/json."),
    422: _problem("Body fields are invalid."),
    429: _problem("Rate limited.", ("Retry-After",)),
    503: _problem("Database or event log unavailable.", ("Retry-After",)),
}


def _scopes_text(op: Operation) -> str:
    if op.scopes is None:
        return "Public (no token)."
    kinds = sorted(k.value + (":<code>" if k.takes_value else "") for k in op.scopes)
    return "Scopes: " + ", ".join(kinds) + (". Audited." if op.audited else ".")


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "OK" if op.status == 200 else "Created"}
    if op.media_type == "application/json":
        schema = ref(op.response) if op.response else {"type": "object"}
        success["content"] = {"application/json": {"schema": schema}}
    else:
        success["content"] = {op.media_type: {"schema": STR}}
    if op.caching == "aggregate":
        success["headers"] = {
            "ETag": {"description": "Entity tag of the answer.", "schema": STR},
            "Cache-Control": {"description": "private, max-age=<seconds>", "schema": STR},
        }
    responses: dict[str, Any] = {str(op.status): success}
    for code in op.errors:
        if code == 304:
            responses["304"] = {"description": "Not modified (If-None-Match matched the ETag)."}
        else:
            responses[str(code)] = _ERRORS[code]
    responses["default"] = _problem("Any other error, as problem details.", ("Allow",))
    return operation_object(
        op,
        description=(op.description + "\n\n" if op.description else "") + _scopes_text(op),
        responses=responses,
        parameters=[p.openapi() for p in op.params],
        body=ref(op.body) if op.body else None,
    )


def build_document(operations: tuple[Operation, ...], version: str = "1.0.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    paths = paths_of(operations, _operation)
    scope_kinds = ", ".join(k.value for k in ScopeKind)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "covidtech read API",
            "version": version,
            "description": "Read models of the outbreak-response backend for MOH, provinces, "
            "tracers and citizens. Bearer tokens are grants (POST /v1/grants). Scope kinds: "
            f"{scope_kinds}. Errors are RFC 9457 problem details. See docs/read-api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A covidtech token: a JWT (HS256) with a key id (kid).",
                }
            },
        },
    }
