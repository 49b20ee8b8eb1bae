"""``POST /v1/people``: issue a pseudonymous person id, its personal QR code and, for the
person's own app, a token bound to that person; ``POST /v1/people/sessions``: sign the app in
again with the person's QR (docs/security.md, "Citizens")."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from covidtech.settings import parse_duration
from covidtech.tokens import Scope, ScopeKind
from domain.qr import QrKind
from producers.events import new_id, person_registered
from producers.openapi.parts import IDEMPOTENCY_KEY, json_content, ref, registered
from producers.posters import person_qr_png
from producers.requests.checkins import parse_person, parse_sign_in
from producers.routes.common import json_response, read_command, register_once, service
from producers.routes.edge import area, claims_of, kinds
from producers.service import IngestService, fingerprint


def person_token(svc: IngestService, person_id: str) -> dict[str, Any]:
    """A token for the person's own app: subject the person, scopes ``app`` and
    ``person:<id>``, valid ``COVIDTECH_PERSON_TOKEN_TTL`` (30 days by default)."""
    now = svc.now()
    ttl: timedelta = parse_duration(svc.settings.person_token_ttl)
    scopes = [Scope(ScopeKind.APP), Scope(ScopeKind.PERSON, person_id)]
    token = svc.tokens.issue(person_id, scopes, ttl, now=now)
    return {
        "token": token,
        "token_expires_at": (now.replace(microsecond=0) + ttl).isoformat().replace("+00:00", "Z"),
        "scopes": [str(s) for s in scopes],
    }


async def register_person(request: Request) -> Response:
    """201 with ``person_id``, the signed ``person_qr`` payload and its PNG (base64); with an
    ``app`` token (self-registration), also the person's own token (:func:`person_token`).

    Scopes: ``app`` (self-registration), ``site:<id>`` or ``institution:<id>`` (on someone's
    behalf: no token is returned, the staff must not hold the person's credential; the
    person's app signs in with the printed QR). No name, phone or national id is taken: the
    id is pseudonymous.
    """
    svc = service(request)
    claims = claims_of(request)
    key = svc.idempotency_key(request)
    person = await read_command(request, parse_person, svc.now())

    async def write() -> str:
        person_id = new_id("p")
        await svc.produce(person_registered(person_id, person, svc.now()))
        return person_id

    outcome = await register_once(
        svc, f"people/{claims.subject}", key, "person", fingerprint(person), write
    )
    person_id = outcome.value
    payload = svc.qr.payload(QrKind.PERSON, person_id)
    png = await asyncio.to_thread(person_qr_png, payload)
    answer: dict[str, Any] = {
        "person_id": person_id,
        "person_qr": payload,
        "person_qr_png": base64.b64encode(png).decode("ascii"),
    }
    if claims.has(ScopeKind.APP):
        answer.update(person_token(svc, person_id))
    return json_response(200 if outcome.duplicate else 201, answer)


async def sign_in(request: Request) -> Response:
    """201 with a fresh person token for the person whose signed ``person_qr`` is sent.

    Scope ``app``. The QR is the credential, as on PC-Covid's printed QR: whoever holds it
    may act as that person (docs/security.md, "Citizens"). Nothing is written.
    """
    svc = service(request)
    person_id = await read_command(request, parse_sign_in, svc.qr)
    return json_response(201, {"person_id": person_id, **person_token(svc, person_id)})


_AREA = area("people", kinds(ScopeKind.APP))

OPERATIONS = (
    _AREA.post(
        "/v1/people",
        "register_person",
        "Issue a person id and personal QR (and, to an app, the person's own token)",
        register_person,
        scopes=kinds(ScopeKind.APP, ScopeKind.SITE, ScopeKind.INSTITUTION),
        who="app, site:<id>@<code> or institution:<id>",
        body=ref("PersonRequest"),
        answers=registered("person issued", "PersonCreated"),
        errors=(409,),
        parameters=(IDEMPOTENCY_KEY,),
    ),
    _AREA.post(
        "/v1/people/sessions",
        "sign_in",
        "Sign a person's app in with the person's QR: a fresh person token",
        sign_in,
        who="app (the QR is the credential, as on a printed PC-Covid QR)",
        body=ref("SignIn"),
        answers={"201": json_content("Signed in.", ref("PersonSession"))},
    ),
)
