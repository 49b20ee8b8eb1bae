"""The ingest API's /openapi.json documents every route it serves, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

from producers.app import ROUTES
from producers.openapi import openapi_document


def test_every_route_of_the_ingest_api_is_documented() -> None:
    routed = {(r.path, m) for r in ROUTES if isinstance(r, Route) for m in (r.methods or ())}
    routed = {(p, m) for p, m in routed if m != "HEAD"}
    documented = {(p, m.upper()) for p, item in openapi_document()["paths"].items() for m in item}
    assert routed == documented
    assert ("/v1/vaccination/registrations", "POST") in documented
