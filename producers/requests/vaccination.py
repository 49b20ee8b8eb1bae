"""Requests of the vaccination platform about people: doses, registrations, appointments.

The vaccine supply (allocations, discards, plans) is in :mod:`producers.requests.supply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, WithJsonSchema

from covidtech.web.models import (
    Context,
    RequestBody,
    batch_body,
    body_schema,
    choice,
    client_id,
    context_of,
    field_path,
    invalid,
    province,
    read,
    text,
    timestamp,
)
from covidtech.web.problems import FieldError
from domain.programme import PriorityGroup
from domain.qr import QrSigner
from producers.requests.common import (
    PROGRAMME_LIMITS,
    IngestLimits,
    NamesPerson,
    PersonId,
    VaccinationLimits,
    between,
    person_qr,
    read_naming_person,
    recent,
    site,
    vaccine,
)

__all__ = [
    "AppointmentBody",
    "AppointmentRequest",
    "CancellationBody",
    "CancellationRequest",
    "DoseBatchBody",
    "DoseBody",
    "DoseRequest",
    "RegistrationBody",
    "RegistrationListBody",
    "RegistrationRequest",
    "parse_appointment",
    "parse_cancellation",
    "parse_dose",
    "parse_registration",
    "parse_registration_list",
]


@dataclass(frozen=True, slots=True)
class DoseRequest:
    """One dose of ``POST /v1/doses``; ``site_id`` None means "the token's only site"."""

    dose_id: str
    person_id: str
    administered_at: datetime
    site_id: str | None
    vaccine: str
    birth_year: int
    residence_province: str


@dataclass(frozen=True)
class RegistrationRequest:
    """One registration of ``POST /v1/vaccination/registrations``."""

    registration_id: str
    person_id: str
    province: str
    district: str
    priority_group: PriorityGroup
    birth_year: int | None


@dataclass(frozen=True)
class AppointmentRequest:
    """``POST /v1/vaccination/appointments``; ``site_id`` None: the token's only site."""

    appointment_id: str
    person_id: str
    appointment_at: datetime
    site_id: str | None


@dataclass(frozen=True)
class CancellationRequest:
    """``POST /v1/vaccination/appointments/{appointment_id}/cancel``."""

    person_id: str
    reason: str | None
    site_id: str | None


#: The dose route words a QR code's errors as the check-in and testing routes do.
_DOSE_QR = person_qr()


def _born_by_now(year: int, info: ValidationInfo) -> int:
    now = context_of(info).now
    assert now is not None, "a dose is read at a time"
    if year > now.year:
        raise invalid("out-of-range", f"must be between 1900 and {now.year}")
    return year


class DoseBody(NamesPerson):
    """One dose given: the person, the vaccine, when and where."""

    dose_id: Annotated[
        str, client_id(), Field(description="Client-generated; idempotency key and event id.")
    ]
    person_qr: Annotated[str, _DOSE_QR] | None = None
    person_id: PersonId | None = None
    administered_at: Annotated[
        datetime,
        timestamp(),
        recent(lambda limits: limits.dose_lateness),
        Field(description="RFC 3339 with an offset (Z or +07:00); at most 30 days old."),
    ]
    site_id: Annotated[str, site()] | None = None
    vaccine: Annotated[str, vaccine()]
    birth_year: Annotated[
        int, Field(ge=1900, description="At most the current year."), AfterValidator(_born_by_now)
    ]
    residence_province: Annotated[str, province()]


#: ``POST /v1/doses`` with ``{"doses": [...]}``: up to 500 doses, each judged on its own.
DoseBatchBody = batch_body("doses", "Dose", IngestLimits().max_batch)


def parse_dose(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> DoseRequest | None:
    """A :class:`DoseBody`: ``administered_at`` at most ``dose_lateness`` old (paper
    records are back-filled), born at the latest this year."""
    d = read_naming_person(DoseBody, value, errors, path, Context(qr, now, limits))
    if d is None:
        return None
    person_id = d.person_qr or d.person_id
    assert person_id is not None
    return DoseRequest(
        d.dose_id,
        person_id,
        d.administered_at,
        d.site_id,
        d.vaccine,
        d.birth_year,
        d.residence_province,
    )


#: The programme's routes word a QR code's errors more briefly than the dose route.
_QR = person_qr(
    forged="the QR code's signature does not match", wrong_kind="must be a personal QR code"
)


def _limits(info: ValidationInfo) -> VaccinationLimits:
    limits = context_of(info).limits
    return limits if isinstance(limits, VaccinationLimits) else PROGRAMME_LIMITS


def _born(year: int, info: ValidationInfo) -> int:
    """A birth year up to this year, that fits the age groups (65+, 12-17)."""
    now = context_of(info).now
    assert now is not None, "a registration is read at a time"
    least = _limits(info).min_birth_year
    if not least <= year <= now.year:
        raise invalid("out-of-range", f"must be between {least} and {now.year}")
    group, age = info.data.get("priority_group"), now.year - year
    if group is PriorityGroup.AGE_65_PLUS and age < 65:
        raise invalid("invalid-value", "the 65+ group needs an age of 65 or more")
    if group is PriorityGroup.AGE_12_17 and not 12 <= age <= 17:
        raise invalid("invalid-value", "the 12-17 group needs an age of 12 to 17")
    return year


def _booked(at: datetime, info: ValidationInfo) -> datetime:
    now, limits = context_of(info).now, _limits(info)
    assert now is not None, "an appointment is read at a time"
    return between(at, now - limits.appointment_lateness, now + limits.appointment_horizon)


class RegistrationBody(NamesPerson):
    """A person registering for vaccination, in a priority group."""

    registration_id: Annotated[str, client_id()]
    person_qr: Annotated[str, _QR] | None = None
    person_id: PersonId | None = None
    province: Annotated[str, province()]
    district: Annotated[str, text(64)]
    priority_group: Annotated[PriorityGroup, choice(PriorityGroup)]
    birth_year: Annotated[int, AfterValidator(_born)] | None = Field(
        None,
        json_schema_extra={"minimum": PROGRAMME_LIMITS.min_birth_year},
        description="At most the current year; fits the group's ages (422).",
    )


class RegistrationListBody(RequestBody):
    """An institution's list of registrations, each judged on its own."""

    # The items are read one by one (parse_registration_list, then parse_registration), so
    # a bad item does not sink the others.

    institution_id: str | None = Field(
        None, description="Needed only if the token has several institution:<id> scopes."
    )
    registrations: list[Annotated[Any, WithJsonSchema(body_schema(RegistrationBody))]] = Field(
        min_length=1,
        max_length=PROGRAMME_LIMITS.max_bulk_registrations,
        description="Items are validated one by one: an invalid item is rejected in the "
        "results and the others are written; all rejected: 422.",
    )


class AppointmentBody(NamesPerson):
    """An appointment booked at a site."""

    appointment_id: Annotated[str, client_id()]
    person_qr: Annotated[str, _QR] | None = None
    person_id: PersonId | None = None
    appointment_at: Annotated[
        datetime,
        timestamp(),
        AfterValidator(_booked),
        Field(description="At most 30 days old and 180 days ahead."),
    ]
    site_id: Annotated[str, site()] | None = None


class CancellationBody(NamesPerson):
    """An appointment's cancellation (the appointment is named by the path)."""

    person_qr: Annotated[str, _QR] | None = None
    person_id: PersonId | None = None
    reason: Annotated[str, text(200)] | None = None
    site_id: Annotated[str, site()] | None = None


def parse_registration(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    *,
    allow_person_id: bool,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> RegistrationRequest | None:
    """A :class:`RegistrationBody`, by ``person_qr`` only unless ``allow_person_id``."""
    context = Context(qr, now, limits)
    reg = read_naming_person(
        RegistrationBody, value, errors, path, context, allow_id=allow_person_id
    )
    if reg is None:
        return None
    person_id = reg.person_qr or reg.person_id
    assert person_id is not None
    return RegistrationRequest(
        reg.registration_id,
        person_id,
        reg.province,
        reg.district,
        reg.priority_group,
        reg.birth_year,
    )


def parse_registration_list(body: object, errors: list[FieldError]) -> list[tuple[str, Any]] | None:
    """The items of a :class:`RegistrationListBody` with their paths (each to be read by
    :func:`parse_registration`)."""
    envelope = read(RegistrationListBody, body, errors)
    if envelope is None:
        return None
    return [(field_path("registrations", i), item) for i, item in enumerate(envelope.registrations)]


def parse_appointment(
    value: object,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> AppointmentRequest | None:
    """An :class:`AppointmentBody`, its time within the lateness and the horizon."""
    appt = read_naming_person(AppointmentBody, value, errors, context=Context(qr, now, limits))
    if appt is None:
        return None
    person_id = appt.person_qr or appt.person_id
    assert person_id is not None
    return AppointmentRequest(appt.appointment_id, person_id, appt.appointment_at, appt.site_id)


def parse_cancellation(
    value: object, errors: list[FieldError], qr: QrSigner
) -> CancellationRequest | None:
    """A :class:`CancellationBody`."""
    cancellation = read_naming_person(CancellationBody, value, errors, context=Context(qr))
    if cancellation is None:
        return None
    person_id = cancellation.person_qr or cancellation.person_id
    assert person_id is not None
    return CancellationRequest(person_id, cancellation.reason, cancellation.site_id)
