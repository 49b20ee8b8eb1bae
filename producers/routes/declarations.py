"""``POST /v1/declarations``: a health declaration from a person's app."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from producers.events import declaration_submitted, new_id
from producers.openapi.parts import ref, written
from producers.requests.checkins import parse_declaration
from producers.routes.common import accepted, id_conflict, read_command, service, write_one
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, require_own_person


async def submit_declaration(request: Request) -> Response:
    """202 once HealthDeclarationSubmitted is acknowledged (scope ``app``).

    The person is identified by their signed ``person_qr``; a person's own token
    (``person:<id>``) declares for that person only (403 otherwise). A client
    ``declaration_id`` makes retries idempotent (200 ``duplicate``); without one, every
    request is a new declaration.
    """
    svc = service(request)
    claims = claims_of(request)
    declaration = await read_command(request, parse_declaration, svc.qr)
    require_own_person(claims, declaration.person_id, "person_qr")
    event_id = declaration.declaration_id or new_id("d")
    duplicate = await write_one(
        svc,
        f"declarations/{declaration.declaration_id}" if declaration.declaration_id else None,
        fingerprint(declaration),
        declaration_submitted(declaration, event_id, svc.now()),
        id_conflict(
            "declaration_id",
            "",
            "declaration_id was already used for a different declaration",
            "already used",
        ),
    )
    return accepted(duplicate, {"declaration_id": event_id})


OPERATIONS = (
    area("declarations", kinds(ScopeKind.APP)).post(
        "/v1/declarations",
        "submit_declaration",
        "Submit a health declaration",
        submit_declaration,
        who="app (a person's own token: that person only)",
        body=ref("Declaration"),
        answers=written(),
        errors=(409,),
    ),
)
