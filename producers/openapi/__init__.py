"""The ingest API's OpenAPI 3.1 document, written by hand next to the validation it describes.

Schemas use JSON Schema 2020-12 (OpenAPI 3.1's dialect). Field limits mirror
``producers/requests/``; ``tests/unit/test_ingest_validation.py`` checks the document's
structure and ``tests/unit/test_ingest_openapi_routes.py`` that every route of the app is
described. The parts: :mod:`~producers.openapi.parts` (building blocks),
:mod:`~producers.openapi.components` (named schemas), :mod:`~producers.openapi.paths` and
:mod:`~producers.openapi.vaccination` (the programme's paths).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from producers.openapi.components import schemas
from producers.openapi.paths import paths
from producers.openapi.vaccination import paths as vaccination_paths

__all__ = ["openapi_document"]


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once)."""
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
        "paths": {
            **paths(),
            **vaccination_paths(),
        },
    }
