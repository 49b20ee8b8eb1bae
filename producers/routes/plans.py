"""``PUT /v1/vaccination/plans/{province}``: a province's targets per priority group by a
date; the latest plan wins (``set_at`` is the server's clock)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.problems import FieldError, validation_problem
from domain import reference
from producers.events import plan_id_of, plan_set
from producers.openapi import vaccination as doc
from producers.requests.common import PROGRAMME_LIMITS
from producers.requests.supply import parse_plan
from producers.routes.common import service, write_accepted
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, read_json, scope_problem


async def set_plan(request: Request) -> Response:
    """Scope ``moh`` or ``province:<code>`` of the path's province; the latest plan wins."""
    svc = service(request)
    claims = claims_of(request)
    province = request.path_params["province"]
    if not reference.is_province(province):
        raise validation_problem(
            [FieldError("province", "unknown-province", "must be a GSO two-digit province code")]
        )
    if not (claims.has(ScopeKind.MOH) or claims.has(ScopeKind.PROVINCE, province)):
        raise scope_problem(f"province:{province}", "province")
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    errors: list[FieldError] = []
    today = now.astimezone(PROGRAMME_LIMITS.rules.zone).date()
    plan = parse_plan(body, province, errors, today)
    if plan is None:
        raise validation_problem(errors)
    plan_id = plan_id_of(province, plan)
    return await write_accepted(
        svc,
        f"plans/{province}/{plan_id}",
        fingerprint(province, plan),
        plan_set(province, plan, now),
        "plan_id",
        plan_id,
        {"province": province},
    )


OPERATIONS = (
    area("vaccination", kinds(ScopeKind.MOH, ScopeKind.PROVINCE)).op(
        "PUT",
        "/v1/vaccination/plans/{province}",
        "set_plan",
        "Set a province's plan (the latest wins)",
        set_plan,
        who="moh or province:<code>",
        body=doc.PLAN,
        answers=doc.answers("plan_id", doc.PLAN_ANSWERED),
        errors=(409,),
        parameters=(doc.PLAN_PROVINCE,),
    ),
)
