"""Vaccination-programme writes of the ingest API (DESIGN.md "Vaccination programme").

Routes (mount them with ``*vaccination.routes()`` in the app's route list):

- ``POST /v1/vaccination/registrations``: a person registers (scope ``app``, identified by
  their signed ``person_qr``), or an institution registers a list of up to 1,000 people
  (``institution:<id>``; ``{"registrations": [...]}``, answered per item like doses).
  Idempotent by ``registration_id``.
- ``POST /v1/vaccination/appointments`` and ``.../appointments/{appointment_id}/cancel``
  (``site:<id>``).
- ``POST /v1/vaccination/allocations`` (``moh``): doses of a product to a province.
- ``POST /v1/vaccination/discards`` (``site:<id>@<province>``): discarded doses with a reason.
- ``PUT /v1/vaccination/plans/{province}`` (``moh`` or ``province:<code>``): targets per
  priority group by a date; the latest plan wins (``set_at`` is the server's clock).

Every route answers 202 once Kafka acknowledged the event (200 ``duplicate`` for a repeat of
an id with the same content, 409 ``id-conflict`` for other content); bad input is a
problem+json naming each field, and nothing is written. The parsers are pure functions of the
body and an injected ``now``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from covidtech import topics
from covidtech.tokens import Claims, ScopeKind
from domain import reference
from domain.programme import (
    DEFAULT_PROGRAMME_RULES,
    DiscardReason,
    PriorityGroup,
    ProgrammeRules,
)
from domain.qr import ForgedQr, MalformedQr, QrKind, QrSigner
from domain.vaccines import UnknownVaccine, get_vaccine
from producers.events import Outgoing
from producers.ports import Delivery
from producers.problems import Problem, validation_problem
from producers.requests import CLIENT_ID, PERSON_ID, SCOPE_ID, batch_items
from producers.routes.common import BatchItem, batch_response, json_response, raw_id, service
from producers.routes.common import settle as settle_item
from producers.service import (
    IngestService,
    fingerprint,
    read_json,
    require_any,
    require_province,
    scope_problem,
)
from producers.service import scoped_id as scoped_value
from producers.validation import FieldError, Fields, field_path

__all__ = [
    "AllocationRequest",
    "AppointmentRequest",
    "CancellationRequest",
    "DiscardRequest",
    "PlanRequest",
    "RegistrationRequest",
    "VaccinationLimits",
    "openapi_paths",
    "parse_allocation",
    "parse_appointment",
    "parse_cancellation",
    "parse_discard",
    "parse_plan",
    "parse_registration",
    "routes",
]

_ID_HINT = "must be 8-64 letters, digits, '_' or '-' (a UUID is fine)"


@dataclass(frozen=True)
class VaccinationLimits:
    """What the programme routes accept (every number a setting with a default)."""

    rules: ProgrammeRules = DEFAULT_PROGRAMME_RULES
    #: Appointments may be recorded this long after their time (paper back-fill) ...
    appointment_lateness: timedelta = timedelta(days=30)
    #: ... and booked at most this far ahead.
    appointment_horizon: timedelta = timedelta(days=180)
    #: Discards may be reported this long after they happened.
    discard_lateness: timedelta = timedelta(days=30)
    #: Accepted clock drift into the future.
    future_tolerance: timedelta = timedelta(minutes=5)
    max_allocation_doses: int = 50_000_000
    max_discard_doses: int = 1_000_000
    #: A plan's target date at most this far ahead.
    plan_horizon: timedelta = timedelta(days=3 * 366)
    min_birth_year: int = 1900

    @property
    def max_bulk_registrations(self) -> int:
        return self.rules.max_bulk_registrations


LIMITS = VaccinationLimits()


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class RegistrationRequest:
    registration_id: str
    person_id: str
    province: str
    district: str
    priority_group: PriorityGroup
    birth_year: int | None


@dataclass(frozen=True)
class AppointmentRequest:
    appointment_id: str
    person_id: str
    appointment_at: datetime
    site_id: str | None


@dataclass(frozen=True)
class CancellationRequest:
    person_id: str
    reason: str | None
    site_id: str | None


@dataclass(frozen=True)
class AllocationRequest:
    allocation_id: str
    province: str
    vaccine: str
    doses: int


@dataclass(frozen=True)
class DiscardRequest:
    discard_id: str
    province: str
    vaccine: str
    doses: int
    reason: DiscardReason
    discarded_at: datetime
    site_id: str | None


@dataclass(frozen=True)
class PlanRequest:
    plan_id: str | None
    target_date: date
    #: (group, people with a dose, fully vaccinated), in priority order.
    targets: tuple[tuple[PriorityGroup, int, int], ...] = field(default=())


# --------------------------------------------------------------------------- field readers


def _client_id(f: Fields, name: str, *, required: bool = True) -> str | None:
    return f.string(
        name, required=required, max_length=64, pattern=CLIENT_ID, pattern_hint=_ID_HINT
    )


def _province(f: Fields, name: str) -> str | None:
    code = f.string(name, max_length=2)
    if code is not None and not reference.is_province(code):
        f.error(name, "unknown-province", "must be a GSO two-digit province code, e.g. 01")
        return None
    return code


def _vaccine(f: Fields) -> str | None:
    code = f.string("vaccine", max_length=32)
    if code is not None:
        try:
            get_vaccine(code)
        except UnknownVaccine as e:
            f.error("vaccine", "unknown-vaccine", str(e))
            return None
    return code


def _site(f: Fields) -> str | None:
    return f.string(
        "site_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a site id like the one of your site:<id> scope",
    )


def _person(f: Fields, qr: QrSigner, *, allow_id: bool) -> str | None:
    """``person_qr`` (scanned, signed) or, where staff may type it, ``person_id``."""
    if allow_id and f.has("person_id") and f.has("person_qr"):
        f.ignore("person_id")
        f.ignore("person_qr")
        f.error("person_id", "invalid-value", "give person_qr or person_id, not both")
        return None
    if allow_id and f.has("person_id"):
        return f.string(
            "person_id", pattern=PERSON_ID, pattern_hint="must be a person id issued by the API"
        )
    payload = f.string("person_qr", max_length=256)
    if payload is None:
        return None
    try:
        subject = qr.parse(payload)
    except ForgedQr:
        f.error("person_qr", "forged-qr", "the QR code's signature does not match")
        return None
    except MalformedQr as e:
        f.error("person_qr", "malformed-qr", f"not a covidtech QR code: {e}")
        return None
    if subject.kind is not QrKind.PERSON:
        f.error("person_qr", "wrong-qr-kind", "must be a personal QR code")
        return None
    return subject.id


def _bounded(
    f: Fields, name: str, value: datetime | None, earliest: datetime, latest: datetime
) -> datetime | None:
    if value is None:
        return None
    if value > latest:
        f.error(name, "time-in-future", f"must not be after {latest.isoformat()}")
        return None
    if value < earliest:
        f.error(name, "time-too-old", f"must not be before {earliest.isoformat()}")
        return None
    return value


def _ok(errors: list[FieldError], before: int) -> bool:
    return len(errors) == before


# --------------------------------------------------------------------------- parsers


def parse_registration(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    *,
    allow_person_id: bool,
    limits: VaccinationLimits = LIMITS,
) -> RegistrationRequest | None:
    """``{registration_id, person_qr | person_id, province, district, priority_group,
    birth_year?}``; a birth year must fit the age groups (65+, 12-17)."""
    before = len(errors)
    f = Fields.of(value, path, errors)
    if f is None:
        return None
    registration_id = _client_id(f, "registration_id")
    person_id = _person(f, qr, allow_id=allow_person_id)
    province = _province(f, "province")
    district = f.text("district", max_length=64)
    group = f.choice("priority_group", PriorityGroup)
    birth_year = f.integer(
        "birth_year", required=False, minimum=limits.min_birth_year, maximum=now.year
    )
    if birth_year is not None and group is not None:
        age = now.year - birth_year
        if group is PriorityGroup.AGE_65_PLUS and age < 65:
            f.error("birth_year", "invalid-value", "the 65+ group needs an age of 65 or more")
        elif group is PriorityGroup.AGE_12_17 and not 12 <= age <= 17:
            f.error("birth_year", "invalid-value", "the 12-17 group needs an age of 12 to 17")
    f.finish()
    if not _ok(errors, before):
        return None
    assert registration_id and person_id and province and district and group
    return RegistrationRequest(registration_id, person_id, province, district, group, birth_year)


def parse_appointment(
    value: object,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: VaccinationLimits = LIMITS,
) -> AppointmentRequest | None:
    """``{appointment_id, person_qr | person_id, appointment_at, site_id?}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    appointment_id = _client_id(f, "appointment_id")
    person_id = _person(f, qr, allow_id=True)
    at = _bounded(
        f,
        "appointment_at",
        f.timestamp("appointment_at"),
        now - limits.appointment_lateness,
        now + limits.appointment_horizon,
    )
    site_id = _site(f)
    f.finish()
    if not _ok(errors, before):
        return None
    assert appointment_id and person_id and at
    return AppointmentRequest(appointment_id, person_id, at, site_id)


def parse_cancellation(
    value: object, errors: list[FieldError], qr: QrSigner
) -> CancellationRequest | None:
    """``{person_qr | person_id, reason?, site_id?}`` (the appointment id is in the path)."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    person_id = _person(f, qr, allow_id=True)
    reason = f.text("reason", required=False, max_length=200)
    site_id = _site(f)
    f.finish()
    if not _ok(errors, before):
        return None
    assert person_id
    return CancellationRequest(person_id, reason, site_id)


def parse_allocation(
    value: object, errors: list[FieldError], limits: VaccinationLimits = LIMITS
) -> AllocationRequest | None:
    """``{allocation_id, province, vaccine, doses}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    allocation_id = _client_id(f, "allocation_id")
    province = _province(f, "province")
    vaccine = _vaccine(f)
    doses = f.integer("doses", minimum=1, maximum=limits.max_allocation_doses)
    f.finish()
    if not _ok(errors, before):
        return None
    assert allocation_id and province and vaccine and doses
    return AllocationRequest(allocation_id, province, vaccine, doses)


def parse_discard(
    value: object, errors: list[FieldError], now: datetime, limits: VaccinationLimits = LIMITS
) -> DiscardRequest | None:
    """``{discard_id, province, vaccine, doses, reason, discarded_at, site_id?}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    discard_id = _client_id(f, "discard_id")
    province = _province(f, "province")
    vaccine = _vaccine(f)
    doses = f.integer("doses", minimum=1, maximum=limits.max_discard_doses)
    reason = f.choice("reason", DiscardReason)
    at = _bounded(
        f,
        "discarded_at",
        f.timestamp("discarded_at"),
        now - limits.discard_lateness,
        now + limits.future_tolerance,
    )
    site_id = _site(f)
    f.finish()
    if not _ok(errors, before):
        return None
    assert discard_id and province and vaccine and doses and reason and at
    return DiscardRequest(discard_id, province, vaccine, doses, reason, at, site_id)


def parse_plan(
    value: object,
    province: str,
    errors: list[FieldError],
    today: date,
    limits: VaccinationLimits = LIMITS,
) -> PlanRequest | None:
    """``{plan_id?, target_date, targets: {<GROUP>: {people_vaccinated,
    people_fully_vaccinated}}}``: at least one group; a target at most the province's census
    population; fully vaccinated at most people with a dose."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    plan_id = _client_id(f, "plan_id", required=False)
    target_date = f.day("target_date")
    if target_date is not None:
        latest = today + limits.plan_horizon
        if target_date < today:
            f.error("target_date", "time-too-old", f"must not be before today ({today})")
        elif target_date > latest:
            f.error("target_date", "time-in-future", f"must not be after {latest}")
    targets: list[tuple[PriorityGroup, int, int]] = []
    raw = value.get("targets") if isinstance(value, dict) else None
    f.ignore("targets")  # read here: an object keyed by group, which Fields has no getter for
    if raw is None:
        f.error("targets", "missing", "must not be null" if f.has("targets") else "is required")
    elif not isinstance(raw, dict):
        f.error("targets", "wrong-type", "must be an object keyed by priority group")
    else:
        base = f.at("targets")
        if not raw:
            errors.append(FieldError(base, "too-few-items", "must name at least one group"))
        population = reference.population(province) if reference.is_province(province) else None
        for name in sorted(raw, key=lambda g: (g not in PriorityGroup.__members__, g)):
            path = field_path(base, name)
            try:
                group = PriorityGroup(name)
            except ValueError:
                symbols = ", ".join(g.value for g in PriorityGroup)
                errors.append(FieldError(path, "unknown-enum", f"must be one of {symbols}"))
                continue
            t = Fields.of(raw[name], path, errors)
            if t is None:
                continue
            bound = population if population is not None else 10**9
            first = t.integer("people_vaccinated", minimum=0, maximum=bound)
            full = t.integer("people_fully_vaccinated", minimum=0, maximum=bound)
            t.finish()
            if first is not None and full is not None:
                if full > first:
                    t.error(
                        "people_fully_vaccinated",
                        "invalid-value",
                        "must not exceed people_vaccinated",
                    )
                else:
                    targets.append((group, first, full))
    f.finish()
    if not _ok(errors, before):
        return None
    assert target_date is not None
    targets.sort(key=lambda t: t[0].rank)
    return PlanRequest(plan_id, target_date, tuple(targets))


# --------------------------------------------------------------------------- events


def registration_event(
    r: RegistrationRequest, institution_id: str | None, now: datetime
) -> Outgoing:
    """VaccinationRegistered on ``vaccination-registrations``, keyed by person."""
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        r.person_id,
        "covidtech.vaccination.VaccinationRegistered",
        {
            "event_id": r.registration_id,
            "registration_id": r.registration_id,
            "person_id": r.person_id,
            "province": r.province,
            "district": r.district,
            "priority_group": r.priority_group.value,
            "registered_at": now,
            "institution_id": institution_id,
            "birth_year": r.birth_year,
        },
    )


def appointment_event(a: AppointmentRequest, site_id: str, now: datetime) -> Outgoing:
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        a.person_id,
        "covidtech.vaccination.AppointmentScheduled",
        {
            "event_id": a.appointment_id,
            "appointment_id": a.appointment_id,
            "person_id": a.person_id,
            "site_id": site_id,
            "appointment_at": a.appointment_at,
            "scheduled_at": now,
        },
    )


def cancellation_event(
    appointment_id: str, c: CancellationRequest, site_id: str, now: datetime
) -> Outgoing:
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        c.person_id,
        "covidtech.vaccination.AppointmentCancelled",
        {
            "event_id": f"{appointment_id}.cancelled",
            "appointment_id": appointment_id,
            "person_id": c.person_id,
            "site_id": site_id,
            "cancelled_at": now,
            "reason": c.reason,
        },
    )


def allocation_event(a: AllocationRequest, now: datetime) -> Outgoing:
    return Outgoing(
        topics.VACCINE_SUPPLY,
        a.province,
        "covidtech.vaccination.VaccineAllocated",
        {
            "event_id": a.allocation_id,
            "allocation_id": a.allocation_id,
            "province": a.province,
            "vaccine": a.vaccine,
            "doses": a.doses,
            "allocated_at": now,
        },
    )


def discard_event(d: DiscardRequest, site_id: str) -> Outgoing:
    return Outgoing(
        topics.VACCINE_SUPPLY,
        d.province,
        "covidtech.vaccination.DosesDiscarded",
        {
            "event_id": d.discard_id,
            "discard_id": d.discard_id,
            "province": d.province,
            "site_id": site_id,
            "vaccine": d.vaccine,
            "doses": d.doses,
            "reason": d.reason.value,
            "discarded_at": d.discarded_at,
        },
    )


def plan_id_of(province: str, p: PlanRequest) -> str:
    """The client's plan id, else one derived from the plan's content (a retry repeats it)."""
    if p.plan_id:
        return p.plan_id
    content = repr(
        (province, p.target_date.isoformat(), [(g.value, a, b) for g, a, b in p.targets])
    )
    return f"plan-{province}-{hashlib.sha256(content.encode()).hexdigest()[:20]}"


def plan_event(province: str, p: PlanRequest, now: datetime) -> Outgoing:
    return Outgoing(
        topics.VACCINE_SUPPLY,
        province,
        "covidtech.vaccination.VaccinationPlanSet",
        {
            "event_id": plan_id_of(province, p),
            "plan_id": plan_id_of(province, p),
            "province": province,
            "target_date": p.target_date,
            "targets": [
                {
                    "priority_group": g.value,
                    "people_vaccinated": first,
                    "people_fully_vaccinated": full,
                }
                for g, first, full in p.targets
            ],
            "set_at": now,
        },
    )


# --------------------------------------------------------------------------- routes


def _conflict(id_name: str, value: str, path: str = "") -> Callable[[], Problem]:
    def conflict() -> Problem:
        message = f"{id_name} {value} was already used for different content"
        return Problem(
            "id-conflict",
            message,
            errors=[
                FieldError(field_path(path, id_name) if path else id_name, "id-conflict", message)
            ],
        )

    return conflict


async def _write_one(
    svc: IngestService, key: str, content: bytes, out: Outgoing, conflict: Callable[[], Problem]
) -> bool:
    """Write one event once per key; True when it was a duplicate."""

    async def write() -> Delivery:
        return await svc.produce(out)

    outcome = await svc.write_once(key, content, write, conflict=conflict)
    return outcome.duplicate


def _answer(duplicate: bool, body: dict[str, Any]) -> Response:
    return json_response(
        200 if duplicate else 202, {**body, "status": "duplicate" if duplicate else "accepted"}
    )


async def register(request: Request) -> Response:
    """Scope ``app`` (one person, by ``person_qr``) or ``institution:<id>`` (one, or a list
    ``{"registrations": [...]}`` of up to 1,000, answered per item)."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.APP, ScopeKind.INSTITUTION)
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
    duplicate = await _write_one(
        svc,
        f"vaccination-registrations/{reg.registration_id}",
        fingerprint(reg, institution),
        registration_event(reg, institution, now),
        _conflict("registration_id", reg.registration_id),
    )
    return _answer(duplicate, {"registration_id": reg.registration_id})


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
    raw_items = batch_items(body, "registrations", LIMITS.max_bulk_registrations, envelope)
    if raw_items is None:
        raise validation_problem(envelope)
    items: list[BatchItem] = []
    writes: list[tuple[str, bytes, Outgoing, Callable[[], Problem]]] = []
    written: list[BatchItem] = []
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
        writes.append(
            (
                f"vaccination-registrations/{reg.registration_id}",
                fingerprint(reg, institution),
                registration_event(reg, institution, now),
                _conflict("registration_id", reg.registration_id, path),
            )
        )
        written.append(item)
    for item, result in zip(written, await svc.write_many(writes), strict=True):
        settle_item(item, result)
    return batch_response(svc, "/v1/vaccination/registrations", items, "registration_id")


async def schedule_appointment(request: Request) -> Response:
    """Scope ``site:<id>``; idempotent by ``appointment_id``."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.SITE)
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    errors: list[FieldError] = []
    appt = parse_appointment(body, errors, svc.qr, now)
    if appt is None:
        raise validation_problem(errors)
    site_id = scoped_value(claims, ScopeKind.SITE, appt.site_id, "site_id")
    duplicate = await _write_one(
        svc,
        f"appointments/{appt.appointment_id}",
        fingerprint(appt, site_id),
        appointment_event(appt, site_id, now),
        _conflict("appointment_id", appt.appointment_id),
    )
    return _answer(duplicate, {"appointment_id": appt.appointment_id})


async def cancel_appointment(request: Request) -> Response:
    """Scope ``site:<id>``; one cancellation per appointment (a repeat is a duplicate)."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.SITE)
    appointment_id = request.path_params["appointment_id"]
    errors: list[FieldError] = []
    if not CLIENT_ID.fullmatch(appointment_id):
        errors.append(FieldError("appointment_id", "invalid-value", _ID_HINT))
    body = await read_json(request, svc.config.max_body_bytes)
    cancellation = parse_cancellation(body, errors, svc.qr)
    if cancellation is None or errors:
        raise validation_problem(errors)
    site_id = scoped_value(claims, ScopeKind.SITE, cancellation.site_id, "site_id")
    duplicate = await _write_one(
        svc,
        f"appointments/{appointment_id}/cancel",
        fingerprint(appointment_id, cancellation, site_id),
        cancellation_event(appointment_id, cancellation, site_id, svc.now()),
        _conflict("appointment_id", appointment_id),
    )
    return _answer(duplicate, {"appointment_id": appointment_id})


async def allocate(request: Request) -> Response:
    """Scope ``moh``; idempotent by ``allocation_id``."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.MOH)
    body = await read_json(request, svc.config.max_body_bytes)
    errors: list[FieldError] = []
    allocation = parse_allocation(body, errors)
    if allocation is None:
        raise validation_problem(errors)
    duplicate = await _write_one(
        svc,
        f"allocations/{allocation.allocation_id}",
        fingerprint(allocation),
        allocation_event(allocation, svc.now()),
        _conflict("allocation_id", allocation.allocation_id),
    )
    return _answer(duplicate, {"allocation_id": allocation.allocation_id})


async def report_discard(request: Request) -> Response:
    """Scope ``site:<id>@<province>`` of the discard's province; idempotent by
    ``discard_id``."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.SITE)
    body = await read_json(request, svc.config.max_body_bytes)
    errors: list[FieldError] = []
    discard = parse_discard(body, errors, svc.now())
    if discard is None:
        raise validation_problem(errors)
    site_id = scoped_value(claims, ScopeKind.SITE, discard.site_id, "site_id")
    require_province(claims, ScopeKind.SITE, site_id, discard.province, "province")
    duplicate = await _write_one(
        svc,
        f"discards/{discard.discard_id}",
        fingerprint(discard, site_id),
        discard_event(discard, site_id),
        _conflict("discard_id", discard.discard_id),
    )
    return _answer(duplicate, {"discard_id": discard.discard_id})


async def set_plan(request: Request) -> Response:
    """Scope ``moh`` or ``province:<code>`` of the path's province; the latest plan wins."""
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.MOH, ScopeKind.PROVINCE)
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
    today = now.astimezone(LIMITS.rules.zone).date()
    plan = parse_plan(body, province, errors, today)
    if plan is None:
        raise validation_problem(errors)
    plan_id = plan_id_of(province, plan)
    duplicate = await _write_one(
        svc,
        f"plans/{province}/{plan_id}",
        fingerprint(province, plan),
        plan_event(province, plan, now),
        _conflict("plan_id", plan_id),
    )
    return _answer(duplicate, {"plan_id": plan_id, "province": province})


def routes() -> list[Route]:
    """The programme's write routes, for the ingest app's route list."""
    return [
        Route("/v1/vaccination/registrations", register, methods=["POST"]),
        Route("/v1/vaccination/appointments", schedule_appointment, methods=["POST"]),
        Route(
            "/v1/vaccination/appointments/{appointment_id}/cancel",
            cancel_appointment,
            methods=["POST"],
        ),
        Route("/v1/vaccination/allocations", allocate, methods=["POST"]),
        Route("/v1/vaccination/discards", report_discard, methods=["POST"]),
        Route("/v1/vaccination/plans/{province}", set_plan, methods=["PUT"]),
    ]


# --------------------------------------------------------------------------- OpenAPI

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_STR_ID = {"type": "string", "pattern": f"^{CLIENT_ID.pattern}$"}
_PROVINCE = {"type": "string", "pattern": "^[0-9]{2}$", "description": "GSO province code."}
_TIME = {"type": "string", "format": "date-time"}
_PERSON = {
    "person_qr": {"type": "string", "description": "The person's signed QR payload."},
    "person_id": {"type": "string", "pattern": f"^{PERSON_ID.pattern}$"},
}


_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "Human text: stripped; must not be blank nor contain control characters.",
}


def _object(
    required: list[str],
    properties: dict[str, Any],
    *,
    one_person: bool = False,
    request: bool = True,
) -> dict[str, Any]:
    """An object; in a ``request``, an optional field sent as ``null`` is taken as absent
    (``Fields``), so each is documented as nullable, but for ``person_qr`` and ``person_id``
    (exactly one of them is named, even as ``null``)."""

    def or_null(name: str, schema: dict[str, Any]) -> dict[str, Any]:
        if not request or name in required or name in _PERSON:
            return schema
        return {"anyOf": [schema, {"type": "null"}]}

    out: dict[str, Any] = {
        "type": "object",
        "required": required,
        "properties": {name: or_null(name, schema) for name, schema in properties.items()},
        "additionalProperties": False,
    }
    if one_person:  # exactly one of person_qr and person_id (both: 422)
        out["oneOf"] = [{"required": ["person_qr"]}, {"required": ["person_id"]}]
    return out


def _operation(
    summary: str,
    scope: str,
    schema: dict[str, Any],
    id_name: str,
    answered: dict[str, Any] | None = None,
    *,
    kinds: tuple[ScopeKind, ...],
) -> dict[str, Any]:
    accepted = _object(
        ["status"],
        {id_name: {"type": "string"}, **(answered or {}), "status": {"type": "string"}},
        request=False,
    )
    problem = {"content": {"application/problem+json": {"schema": _PROBLEM}}}
    return {
        "summary": summary,
        "description": f"Scope: {scope}.",
        "security": [{"bearer": []}],
        # The scope kinds of which the token must hold one (see producers/openapi.x_scopes).
        "x-scopes": [k.value for k in kinds],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "202": {
                "description": "Written.",
                "content": {"application/json": {"schema": accepted}},
            },
            "200": {
                "description": "Already written (duplicate); a list: one result per item.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{
                str(status): {"description": text, **problem}
                for status, text in (
                    (400, "Malformed JSON."),
                    (401, "Missing or invalid token."),
                    (403, "The token's scopes do not cover this write."),
                    (409, "The id was already used for other content."),
                    (422, "Invalid fields (each one named)."),
                    (503, "Kafka unavailable: retry with the same ids after Retry-After."),
                )
            },
        },
    }


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3.1 path items of :func:`routes` (merged into the ingest document)."""
    group = {"type": "string", "enum": [g.value for g in PriorityGroup]}
    registration = _object(
        ["registration_id", "province", "district", "priority_group"],
        {
            "registration_id": _STR_ID,
            **_PERSON,
            "province": _PROVINCE,
            "district": _TEXT,
            "priority_group": group,
            "birth_year": {"type": "integer", "description": "Fits the group's ages (422)."},
        },
        one_person=True,
    )
    registrations = _object(
        ["registrations"],
        {
            "institution_id": {"type": "string"},
            "registrations": {
                "type": "array",
                "minItems": 1,
                "maxItems": LIMITS.max_bulk_registrations,
                "items": registration,
                "description": "Items are validated one by one: an invalid item is rejected "
                "in the results and the others are written; all rejected: 422.",
            },
        },
    )
    target = _object(
        ["people_vaccinated", "people_fully_vaccinated"],
        {
            "people_vaccinated": {"type": "integer", "minimum": 0},
            "people_fully_vaccinated": {"type": "integer", "minimum": 0},
        },
    )
    return {
        "/v1/vaccination/registrations": {
            "post": _operation(
                "Register a person, or an institution's list of up to 1,000",
                "app (one person, by person_qr) or institution:<id>",
                {"oneOf": [registration, registrations]},
                "registration_id",
                kinds=(ScopeKind.APP, ScopeKind.INSTITUTION),
            )
        },
        "/v1/vaccination/appointments": {
            "post": _operation(
                "Schedule an appointment",
                "site:<id>",
                _object(
                    ["appointment_id", "appointment_at"],
                    {
                        "appointment_id": _STR_ID,
                        **_PERSON,
                        "appointment_at": _TIME,
                        "site_id": {"type": "string"},
                    },
                    one_person=True,
                ),
                "appointment_id",
                kinds=(ScopeKind.SITE,),
            )
        },
        "/v1/vaccination/appointments/{appointment_id}/cancel": {
            "post": {
                **_operation(
                    "Cancel an appointment",
                    "site:<id>",
                    _object(
                        [],
                        {
                            **_PERSON,
                            "reason": {**_TEXT, "maxLength": 200},
                            "site_id": {"type": "string"},
                        },
                        one_person=True,
                    ),
                    "appointment_id",
                    kinds=(ScopeKind.SITE,),
                ),
                "parameters": [
                    {"name": "appointment_id", "in": "path", "required": True, "schema": _STR_ID}
                ],
            }
        },
        "/v1/vaccination/allocations": {
            "post": _operation(
                "Allocate doses of a product to a province",
                "moh",
                _object(
                    ["allocation_id", "province", "vaccine", "doses"],
                    {
                        "allocation_id": _STR_ID,
                        "province": _PROVINCE,
                        "vaccine": {"type": "string"},
                        "doses": {"type": "integer", "minimum": 1},
                    },
                ),
                "allocation_id",
                kinds=(ScopeKind.MOH,),
            )
        },
        "/v1/vaccination/discards": {
            "post": _operation(
                "Report discarded doses",
                "site:<id>@<province>",
                _object(
                    ["discard_id", "province", "vaccine", "doses", "reason", "discarded_at"],
                    {
                        "discard_id": _STR_ID,
                        "province": _PROVINCE,
                        "vaccine": {"type": "string"},
                        "doses": {"type": "integer", "minimum": 1},
                        "reason": {"type": "string", "enum": [r.value for r in DiscardReason]},
                        "discarded_at": _TIME,
                        "site_id": {"type": "string"},
                    },
                ),
                "discard_id",
                kinds=(ScopeKind.SITE,),
            )
        },
        "/v1/vaccination/plans/{province}": {
            "put": {
                **_operation(
                    "Set a province's plan (the latest wins)",
                    "moh or province:<code>",
                    _object(
                        ["target_date", "targets"],
                        {
                            "plan_id": _STR_ID,
                            "target_date": {"type": "string", "format": "date"},
                            "targets": {
                                "type": "object",
                                "propertyNames": group,
                                "additionalProperties": target,
                                "minProperties": 1,
                            },
                        },
                    ),
                    "plan_id",
                    kinds=(ScopeKind.MOH, ScopeKind.PROVINCE),
                    answered={"province": _PROVINCE},
                ),
                "parameters": [
                    {"name": "province", "in": "path", "required": True, "schema": _PROVINCE}
                ],
            }
        },
    }
