"""The ingest API's /openapi.json documents every route it serves, and nothing else.

Both come from the declarations of ``producers/routes/<area>.py``; this checks the app built
by ``create_app`` against the document, and that no path and method is declared twice.
"""

from __future__ import annotations

from starlette.routing import Route

from covidtech.settings import Settings
from producers.app import create_app
from producers.openapi import openapi_document
from producers.routes import OPERATIONS
from tests.unit.ingest_support import MemoryLog


def test_every_route_of_the_ingest_api_is_documented() -> None:
    app = create_app(Settings(secret="unit-test-secret-0123456789"), producer=MemoryLog())
    routed = {(r.path, m) for r in app.routes if isinstance(r, Route) for m in (r.methods or ())}
    routed = {(p, m) for p, m in routed if m != "HEAD"}
    documented = {(p, m.upper()) for p, item in openapi_document()["paths"].items() for m in item}
    assert routed == documented
    assert ("/v1/vaccination/registrations", "POST") in documented


def test_each_operation_is_declared_once_with_its_own_id() -> None:
    assert len({(op.path, op.method) for op in OPERATIONS}) == len(OPERATIONS)
    assert len({op.op_id for op in OPERATIONS}) == len(OPERATIONS)
