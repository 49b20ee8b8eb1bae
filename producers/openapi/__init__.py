"""The ingest API's OpenAPI 3.1 document, generated from the route declarations.

Each path's operation comes from its :class:`~producers.routes.edge.IngestOperation` in
``producers/routes/<area>.py`` (the same objects build the app's routes, so the document
lists exactly what is served: ``tests/unit/test_ingest_openapi_routes.py``); the operation
object's common part (id, summary, tag, security, ``x-scopes``) is the read API's too
(:func:`covidtech.web.operations.operation_object`). Schemas use JSON Schema 2020-12
(OpenAPI 3.1's dialect); the named request and answer schemas are
:mod:`~producers.openapi.components`, whose field limits mirror ``producers/requests/``
(``tests/unit/test_ingest_validation.py`` checks the document's structure). The parts:
:mod:`~producers.openapi.parts` (building blocks), :mod:`~producers.openapi.vaccination` (the
programme's inline bodies and answers).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from covidtech.web.operations import operation_object, paths_of, x_scopes
from producers.openapi.components import schemas
from producers.openapi.parts import WRITE_ERRORS, problem_responses

if TYPE_CHECKING:
    from producers.routes.edge import IngestOperation

__all__ = ["openapi_document", "operation"]


def _description(op: IngestOperation) -> str:
    if op.scopes is None:
        scopes = "Public (no token)."
    else:
        scopes = f"Scopes: {op.who or ', '.join(x_scopes(op.scopes))}."
    return (op.description + "\n\n" if op.description else "") + scopes


def operation(op: IngestOperation) -> dict[str, Any]:
    """The OpenAPI operation object of ``op``: a write (a route with a body) answers the
    write problems besides its own."""
    errors = sorted({*op.errors, *(WRITE_ERRORS if op.body is not None else ())})
    return operation_object(
        op,
        description=_description(op),
        responses={**op.answers, **problem_responses(*errors)},
        parameters=op.parameters,
        body=op.body,
    )


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once)."""
    from producers.routes import OPERATIONS  # the routes serve this document: import late

    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "covidtech ingest API",
            "version": "1.0.0",
            "description": (
                "Writes of the outbreak-response backend. Every 2xx answer means the event was "
                "acknowledged by Kafka (acks=all). Errors are RFC 9457 problem details. "
                "An integer field takes a JSON integer: 2.0 is refused (422)."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": schemas(),
        },
        "paths": paths_of(OPERATIONS, operation),
    }
