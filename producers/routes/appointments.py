"""``POST /v1/vaccination/appointments`` and ``.../appointments/{appointment_id}/cancel``:
a vaccination site books and cancels appointments."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.problems import FieldError, validation_problem
from producers.events import appointment_cancelled, appointment_scheduled
from producers.openapi import vaccination as doc
from producers.requests.common import CLIENT_ID, CLIENT_ID_HINT
from producers.requests.vaccination import parse_appointment, parse_cancellation
from producers.routes.common import service, write_accepted
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, read_json, scoped_id


async def schedule_appointment(request: Request) -> Response:
    """Scope ``site:<id>``; idempotent by ``appointment_id``."""
    svc = service(request)
    claims = claims_of(request)
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    errors: list[FieldError] = []
    appt = parse_appointment(body, errors, svc.qr, now)
    if appt is None:
        raise validation_problem(errors)
    site_id = scoped_id(claims, ScopeKind.SITE, appt.site_id, "site_id")
    return await write_accepted(
        svc,
        f"appointments/{appt.appointment_id}",
        fingerprint(appt, site_id),
        appointment_scheduled(appt, site_id, now),
        "appointment_id",
        appt.appointment_id,
    )


async def cancel_appointment(request: Request) -> Response:
    """Scope ``site:<id>``; one cancellation per appointment (a repeat is a duplicate)."""
    svc = service(request)
    claims = claims_of(request)
    appointment_id = request.path_params["appointment_id"]
    errors: list[FieldError] = []
    if not CLIENT_ID.fullmatch(appointment_id):
        errors.append(FieldError("appointment_id", "invalid-value", CLIENT_ID_HINT))
    body = await read_json(request, svc.config.max_body_bytes)
    cancellation = parse_cancellation(body, errors, svc.qr)
    if cancellation is None or errors:
        raise validation_problem(errors)
    site_id = scoped_id(claims, ScopeKind.SITE, cancellation.site_id, "site_id")
    return await write_accepted(
        svc,
        f"appointments/{appointment_id}/cancel",
        fingerprint(appointment_id, cancellation, site_id),
        appointment_cancelled(appointment_id, cancellation, site_id, svc.now()),
        "appointment_id",
        appointment_id,
    )


_AREA = area("vaccination", kinds(ScopeKind.SITE), who="site:<id>", errors=(409,))

OPERATIONS = (
    _AREA.post(
        "/v1/vaccination/appointments",
        "schedule_appointment",
        "Schedule an appointment",
        schedule_appointment,
        body=doc.APPOINTMENT,
        answers=doc.answers("appointment_id"),
    ),
    _AREA.post(
        "/v1/vaccination/appointments/{appointment_id}/cancel",
        "cancel_appointment",
        "Cancel an appointment",
        cancel_appointment,
        body=doc.CANCELLATION,
        answers=doc.answers("appointment_id"),
        parameters=(doc.APPOINTMENT_ID,),
    ),
)
