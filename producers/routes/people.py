"""``POST /v1/people``: issue a pseudonymous person id and its personal QR code."""

from __future__ import annotations

import asyncio
import base64

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.problems import Problem, validation_problem
from domain.qr import QrKind
from producers.events import new_id, person_registered
from producers.posters import person_qr_png
from producers.requests.checkins import parse_person
from producers.routes.common import json_response, service
from producers.service import fingerprint, read_json, require_any
from producers.validation import FieldError


async def register_person(request: Request) -> Response:
    """201 with ``person_id``, the signed ``person_qr`` payload and its PNG (base64).

    Scopes: ``app`` (self-registration), ``site:<id>`` or ``institution:<id>`` (on someone's
    behalf). No name, phone or national id is taken: the id is pseudonymous.
    """
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.APP, ScopeKind.SITE, ScopeKind.INSTITUTION)
    key = svc.idempotency_key(request)
    body = await read_json(request, svc.config.max_body_bytes)
    errors: list[FieldError] = []
    person = parse_person(body, errors, svc.now())
    if person is None:
        raise validation_problem(errors)

    async def write() -> str:
        person_id = new_id("p")
        await svc.produce(person_registered(person_id, person, svc.now()))
        return person_id

    outcome = await svc.write_once(
        f"people/{claims.subject}/{key}" if key else None,
        fingerprint(person),
        write,
        conflict=lambda: Problem("id-conflict", "this Idempotency-Key was used for another person"),
    )
    person_id = outcome.value
    payload = svc.qr.payload(QrKind.PERSON, person_id)
    png = await asyncio.to_thread(person_qr_png, payload)
    return json_response(
        200 if outcome.duplicate else 201,
        {
            "person_id": person_id,
            "person_qr": payload,
            "person_qr_png": base64.b64encode(png).decode("ascii"),
        },
    )
