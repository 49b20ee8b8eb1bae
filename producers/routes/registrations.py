"""``POST /v1/vaccination/registrations``: a person registers for vaccination, or an
institution registers a list of up to 1,000 people."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import Claims, ScopeKind
from covidtech.web.models import field_path
from covidtech.web.problems import FieldError, validation_problem
from producers.events import vaccination_registered
from producers.openapi import vaccination as doc
from producers.requests.vaccination import parse_registration, parse_registration_list
from producers.routes.common import (
    BatchItem,
    Write,
    raw_id,
    reused_id,
    service,
    write_accepted,
    write_batch,
)
from producers.routes.edge import area, claims_of, kinds
from producers.service import (
    IngestService,
    fingerprint,
    read_json,
    require_own_person,
    scope_problem,
)
from producers.service import scoped_id as scoped_value

ROUTE = "/v1/vaccination/registrations"


async def register(request: Request) -> Response:
    """Scope ``app`` (one person, by ``person_qr``) or ``institution:<id>`` (one, or a list
    ``{"registrations": [...]}`` of up to 1,000, answered per item). Idempotent by
    ``registration_id``."""
    svc = service(request)
    claims = claims_of(request)
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    institution = _institution(claims, body)
    if isinstance(body, dict) and "registrations" in body:
        if institution is None:
            raise scope_problem(
                "institution:<id>", "registrations", "a list needs an institution:<id> scope"
            )
        return await _register_list(svc, body, institution, now)
    errors: list[FieldError] = []
    allow_id = institution is not None
    reg = parse_registration(body, "", errors, svc.qr, now, allow_person_id=allow_id)
    if reg is None:
        raise validation_problem(errors)
    if institution is None:  # a person's own token registers that person only
        require_own_person(claims, reg.person_id, "person_qr")
    return await write_accepted(
        svc,
        f"vaccination-registrations/{reg.registration_id}",
        fingerprint(reg, institution),
        vaccination_registered(reg, institution, now),
        "registration_id",
        reg.registration_id,
    )


def _institution(claims: Claims, body: object) -> str | None:
    """The institution a registration is made for: the token's (or the one the body names
    among several); None for a person registering themselves with an app token."""
    held = claims.values(ScopeKind.INSTITUTION)
    if not held:
        return None
    named = body.pop("institution_id", None) if isinstance(body, dict) else None
    if named is not None and not isinstance(named, str):
        message = "must be a string"
        raise validation_problem([FieldError("institution_id", "wrong-type", message)])
    return scoped_value(claims, ScopeKind.INSTITUTION, named, "institution_id")


async def _register_list(
    svc: IngestService, body: dict[str, Any], institution: str, now: datetime
) -> Response:
    envelope: list[FieldError] = []
    raw_items = parse_registration_list(body, envelope)
    if raw_items is None:
        raise validation_problem(envelope)
    items: list[BatchItem] = []
    writes: list[tuple[BatchItem, Write]] = []
    people: dict[str, tuple[int, str]] = {}  # person -> (first item, its registration id)
    for index, (path, raw) in enumerate(raw_items):
        item = BatchItem(index, raw_id(raw, "registration_id"))
        items.append(item)
        errors: list[FieldError] = []
        reg = parse_registration(raw, path, errors, svc.qr, now, allow_person_id=True)
        if reg is None:
            item.reject(errors)
            continue
        first, first_id = people.setdefault(reg.person_id, (index, reg.registration_id))
        if first_id != reg.registration_id:  # the same row again is a duplicate, not an error
            name = "person_id" if isinstance(raw, dict) and "person_id" in raw else "person_qr"
            item.reject(
                [
                    FieldError(
                        field_path(path, name),
                        "duplicate",
                        f"the same person is already item {first} of this list",
                    )
                ]
            )
            continue
        write: Write = (
            f"vaccination-registrations/{reg.registration_id}",
            fingerprint(reg, institution),
            vaccination_registered(reg, institution, now),
            reused_id("registration_id", reg.registration_id, path),
        )
        writes.append((item, write))
    return await write_batch(svc, ROUTE, "registration_id", items, writes)


OPERATIONS = (
    area("vaccination", kinds(ScopeKind.APP, ScopeKind.INSTITUTION)).post(
        ROUTE,
        "register_for_vaccination",
        "Register a person, or an institution's list of up to 1,000",
        register,
        who="app (one person, by person_qr) or institution:<id>",
        body=doc.REGISTRATIONS,
        answers=doc.answers("registration_id"),
        errors=(409,),
    ),
)
