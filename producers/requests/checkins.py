"""Requests of the check-in platform: venues, people, scans and health declarations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.presence import Direction, ScanInFuture, ScanTooLate, check_scan_time
from domain.qr import QrKind, QrSigner
from producers.requests.common import (
    SCOPE_ID,
    IngestLimits,
    client_id_field,
    ok,
    province_field,
    qr_subject,
)
from producers.validation import FieldError, Fields

__all__ = [
    "DeclarationRequest",
    "PersonRequest",
    "ScanMethod",
    "ScanRequest",
    "Symptom",
    "VenueRequest",
    "parse_declaration",
    "parse_person",
    "parse_scan",
    "parse_venue",
]


class ScanMethod(StrEnum):
    """Who scanned whom (the Avro enum ``ScanMethod`` of CheckInScanned)."""

    PERSON_SCANNED_VENUE = "PERSON_SCANNED_VENUE"
    STAFF_SCANNED_PERSON = "STAFF_SCANNED_PERSON"


class Symptom(StrEnum):
    """A declared symptom (the Avro enum ``Symptom`` of HealthDeclarationSubmitted)."""

    FEVER = "FEVER"
    COUGH = "COUGH"
    SORE_THROAT = "SORE_THROAT"
    SHORTNESS_OF_BREATH = "SHORTNESS_OF_BREATH"
    LOSS_OF_TASTE_OR_SMELL = "LOSS_OF_TASTE_OR_SMELL"
    FATIGUE = "FATIGUE"
    MUSCLE_ACHE = "MUSCLE_ACHE"
    DIARRHOEA = "DIARRHOEA"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class VenueRequest:
    """``POST /v1/venues``."""

    name: str
    address: str
    province: str
    district: str
    category: str
    default_dwell_minutes: int


@dataclass(frozen=True, slots=True)
class PersonRequest:
    """``POST /v1/people``."""

    province: str
    district: str
    birth_year: int | None


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """One scan of ``POST /v1/scans``; ``method`` None means "decide from the token"."""

    scan_id: str
    venue_id: str
    person_id: str
    scanned_at: datetime
    direction: Direction
    method: ScanMethod | None
    device_id: str | None


@dataclass(frozen=True, slots=True)
class DeclarationRequest:
    """``POST /v1/declarations``."""

    declaration_id: str | None
    person_id: str
    province: str
    symptoms: tuple[Symptom, ...]
    contact_with_case: bool
    travelled_from_province: str | None


def parse_venue(
    body: object, errors: list[FieldError], limits: IngestLimits | None = None
) -> VenueRequest | None:
    """``{name, address, province, district, category, default_dwell_minutes?}``."""
    rules = (limits or IngestLimits()).presence
    before = len(errors)
    f = Fields.of(body, "", errors)
    if f is None:
        return None
    name = f.text("name", max_length=200)
    address = f.text("address", max_length=500)
    province = province_field(f, "province")
    district = f.text("district", max_length=64)
    category = f.text("category", max_length=64)
    dwell = f.integer(
        "default_dwell_minutes",
        required=False,
        minimum=1,
        maximum=int(rules.max_dwell.total_seconds() // 60),
    )
    f.finish()
    if not ok(errors, before):
        return None
    assert name and address and province and district and category
    default_dwell = int(rules.default_dwell.total_seconds() // 60)
    return VenueRequest(name, address, province, district, category, dwell or default_dwell)


def parse_person(body: object, errors: list[FieldError], now: datetime) -> PersonRequest | None:
    """``{province, district, birth_year?}``."""
    before = len(errors)
    f = Fields.of(body, "", errors)
    if f is None:
        return None
    province = province_field(f, "province")
    district = f.text("district", max_length=64)
    birth_year = f.integer("birth_year", required=False, minimum=1900, maximum=now.year)
    f.finish()
    if not ok(errors, before):
        return None
    assert province and district
    return PersonRequest(province, district, birth_year)


def parse_scan(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> ScanRequest | None:
    """``{scan_id, venue_qr, person_qr, scanned_at, direction, method?, device_id?}``.

    Both QR signatures are checked, and ``scanned_at`` against DESIGN's bounds (72 h late,
    5 min ahead) with :func:`domain.presence.check_scan_time`.
    """
    before = len(errors)
    f = Fields.of(value, path, errors)
    if f is None:
        return None
    scan_id = client_id_field(f, "scan_id")
    venue_id = qr_subject(f, "venue_qr", qr, QrKind.VENUE)
    person_id = qr_subject(f, "person_qr", qr, QrKind.PERSON)
    scanned_at = f.timestamp("scanned_at")
    direction = f.choice("direction", Direction)
    method = f.choice("method", ScanMethod, required=False)
    device_id = f.string(
        "device_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be 1-64 letters, digits, '_' or '-'",
    )
    f.finish()
    if scanned_at is not None:
        try:
            check_scan_time(scanned_at, now, limits.presence)
        except ScanTooLate as e:
            f.error("scanned_at", "scan-too-late", str(e))
        except ScanInFuture as e:
            f.error("scanned_at", "scan-in-future", str(e))
    if not ok(errors, before):
        return None
    assert scan_id and venue_id and person_id and scanned_at and direction
    return ScanRequest(scan_id, venue_id, person_id, scanned_at, direction, method, device_id)


def _symptoms(fields: Fields) -> tuple[Symptom, ...] | None:
    before = len(fields.errors)
    items = fields.array("symptoms", required=False, max_items=len(Symptom))
    if items is None:
        return () if len(fields.errors) == before else None
    out: list[Symptom] = []
    for path, item in items:
        if not isinstance(item, str):
            fields.errors.append(FieldError(path, "wrong-type", "must be a string"))
            continue
        try:
            symptom = Symptom(item)
        except ValueError:
            symbols = ", ".join(s.value for s in Symptom)
            fields.errors.append(FieldError(path, "unknown-enum", f"must be one of {symbols}"))
            continue
        if symptom in out:
            fields.errors.append(FieldError(path, "duplicate", "each symptom at most once"))
            continue
        out.append(symptom)
    return tuple(out)


def parse_declaration(
    body: object, errors: list[FieldError], qr: QrSigner
) -> DeclarationRequest | None:
    """A health declaration.

    ``{declaration_id?, person_qr, province, symptoms?, contact_with_case,
    travelled_from_province?}``
    """
    before = len(errors)
    f = Fields.of(body, "", errors)
    if f is None:
        return None
    declaration_id = client_id_field(f, "declaration_id", required=False)
    person_id = qr_subject(f, "person_qr", qr, QrKind.PERSON)
    province = province_field(f, "province")
    symptoms = _symptoms(f)
    contact = f.boolean("contact_with_case")
    travelled = province_field(f, "travelled_from_province", required=False)
    f.finish()
    if not ok(errors, before):
        return None
    assert person_id and province and symptoms is not None and contact is not None
    return DeclarationRequest(declaration_id, person_id, province, symptoms, contact, travelled)
