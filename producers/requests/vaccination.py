"""Requests of the vaccination platform about people: doses, registrations, appointments.

The vaccine supply (allocations, discards, plans) is in :mod:`producers.requests.supply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.programme import PriorityGroup
from domain.qr import QrSigner
from producers.requests.common import (
    PROGRAMME_LIMITS,
    IngestLimits,
    VaccinationLimits,
    bounded_time,
    client_id_field,
    ok,
    person_field,
    province_field,
    site_field,
    time_between,
    vaccine_field,
)
from producers.validation import FieldError, Fields

__all__ = [
    "AppointmentRequest",
    "CancellationRequest",
    "DoseRequest",
    "RegistrationRequest",
    "parse_appointment",
    "parse_cancellation",
    "parse_dose",
    "parse_registration",
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


def parse_dose(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> DoseRequest | None:
    """One dose.

    ``{dose_id, person_qr | person_id, administered_at, site_id?, vaccine, birth_year,
    residence_province}``
    """
    before = len(errors)
    f = Fields.of(value, path, errors)
    if f is None:
        return None
    dose_id = client_id_field(f, "dose_id")
    person_id = person_field(f, qr)
    administered_at = bounded_time(
        f, "administered_at", now, limits.dose_lateness, limits.future_tolerance
    )
    site_id = site_field(f)
    vaccine = vaccine_field(f)
    birth_year = f.integer("birth_year", minimum=limits.min_birth_year, maximum=now.year)
    residence = province_field(f, "residence_province")
    f.finish()
    if not ok(errors, before):
        return None
    assert dose_id and person_id and administered_at and vaccine and birth_year and residence
    return DoseRequest(dose_id, person_id, administered_at, site_id, vaccine, birth_year, residence)


def _person(f: Fields, qr: QrSigner, *, allow_id: bool) -> str | None:
    """``person_qr`` (scanned, signed) or, where staff may type it, ``person_id``; the
    programme's routes word the QR errors more briefly than the dose route."""
    return person_field(
        f,
        qr,
        allow_id=allow_id,
        forged="the QR code's signature does not match",
        wrong_kind="must be a personal QR code",
    )


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
    """``{registration_id, person_qr | person_id, province, district, priority_group,
    birth_year?}``; a birth year must fit the age groups (65+, 12-17)."""
    before = len(errors)
    f = Fields.of(value, path, errors)
    if f is None:
        return None
    registration_id = client_id_field(f, "registration_id")
    person_id = _person(f, qr, allow_id=allow_person_id)
    province = province_field(f, "province")
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
    if not ok(errors, before):
        return None
    assert registration_id and person_id and province and district and group
    return RegistrationRequest(registration_id, person_id, province, district, group, birth_year)


def parse_appointment(
    value: object,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> AppointmentRequest | None:
    """``{appointment_id, person_qr | person_id, appointment_at, site_id?}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    appointment_id = client_id_field(f, "appointment_id")
    person_id = _person(f, qr, allow_id=True)
    at = time_between(
        f, "appointment_at", now - limits.appointment_lateness, now + limits.appointment_horizon
    )
    site_id = site_field(f)
    f.finish()
    if not ok(errors, before):
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
    site_id = site_field(f)
    f.finish()
    if not ok(errors, before):
        return None
    assert person_id
    return CancellationRequest(person_id, reason, site_id)
