"""An area's declarations (api.edge.Area): what the area shares, what an operation overrides,
and the ids of a path that no parameter declares."""

from __future__ import annotations

from starlette.responses import Response

from api import auth
from api.edge import AGGREGATE, AGGREGATE_ERRORS, PERSONAL_ERRORS, Area, Ctx
from api.params import province_path, text_param


async def handler(ctx: Ctx) -> Response:
    return Response()


def test_an_operation_has_the_areas_values_unless_it_states_its_own() -> None:
    area = Area("tracers", auth.MOH_TRACER, audited=True, **AGGREGATE)
    shared = area.get("/v1/things", "listThings", "Things", handler)
    assert (shared.method, shared.path, shared.op_id, shared.summary) == (
        "GET",
        "/v1/things",
        "listThings",
        "Things",
    )
    assert (shared.tag, shared.scopes, shared.audited) == ("tracers", auth.MOH_TRACER, True)
    assert (shared.caching, shared.errors) == ("aggregate", AGGREGATE_ERRORS)
    own = area.op("DELETE", "/v1/things", "dropThings", "Drop", handler, caching="none")
    assert (own.method, own.caching, own.errors, own.scopes) == (
        "DELETE",
        "none",
        AGGREGATE_ERRORS,
        auth.MOH_TRACER,
    )
    public = area.get("/v1/open", "open", "Open", handler, scopes=None, errors=PERSONAL_ERRORS)
    assert (public.scopes, public.errors) == (None, PERSONAL_ERRORS)


def test_a_path_parameter_nobody_declares_is_an_id_put_first() -> None:
    area = Area("MOH", auth.MOH)
    reason = text_param("reason", 500)
    op = area.get("/v1/grants/{grant_id}", "revokeGrant", "Revoke", handler, params=(reason,))
    assert [(p.name, p.where, p.required) for p in op.params] == [
        ("grant_id", "path", True),
        ("reason", "query", False),
    ]
    assert op.params[0].schema == {"type": "string", "minLength": 1, "maxLength": 128}
    declared = area.get("/v1/provinces/{province}/x", "x", "X", handler, params=(province_path(),))
    assert [p.name for p in declared.params] == ["province"]
    assert declared.params[0].schema["enum"][:2] == ["01", "02"]
    assert area.get("/v1/grants", "listGrants", "Grants", handler).params == ()
