"""``POST /v1/declarations``: a health declaration from a person's app."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from producers.events import declaration_submitted, new_id
from producers.ports import Delivery
from producers.problems import Problem, validation_problem
from producers.requests import parse_declaration
from producers.routes.common import json_response, service
from producers.service import fingerprint, read_json, require_any
from producers.validation import FieldError


async def submit_declaration(request: Request) -> Response:
    """202 once HealthDeclarationSubmitted is acknowledged (scope ``app``).

    The person is identified by their signed ``person_qr``. A client ``declaration_id`` makes
    retries idempotent (200 ``duplicate``); without one, every request is a new declaration.
    """
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.APP)
    body = await read_json(request, svc.config.max_body_bytes)
    errors: list[FieldError] = []
    declaration = parse_declaration(body, errors, svc.qr)
    if declaration is None:
        raise validation_problem(errors)
    event_id = declaration.declaration_id or new_id("d")
    out = declaration_submitted(declaration, event_id, svc.now())

    async def write() -> Delivery:
        return await svc.produce(out)

    outcome = await svc.write_once(
        f"declarations/{declaration.declaration_id}" if declaration.declaration_id else None,
        fingerprint(declaration),
        write,
        conflict=lambda: Problem(
            "id-conflict",
            "declaration_id was already used for a different declaration",
            errors=[FieldError("declaration_id", "id-conflict", "already used")],
        ),
    )
    return json_response(
        200 if outcome.duplicate else 202,
        {"declaration_id": event_id, "status": "duplicate" if outcome.duplicate else "accepted"},
    )
