"""Requests of the check-in platform: venues, people, scans and health declarations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from covidtech.web.models import (
    Context,
    RequestBody,
    batch_body,
    choice,
    client_id,
    context_of,
    invalid,
    matching,
    province,
    read,
    signed_qr,
    text,
    timestamp,
)
from covidtech.web.problems import FieldError
from domain.presence import Direction, ScanInFuture, ScanTooLate, check_scan_time
from domain.qr import QrKind, QrSigner
from producers.requests.common import SCOPE_ID, IngestLimits, ingest_limits

_SCAN_ID = "Client-generated; idempotency key and event id."
_METHOD = (
    "Default: PERSON_SCANNED_VENUE for the person's own token (person:<id>), else staff "
    "(venue:<id>@<code>, venue-admin:<code>)."
)
_DEVICE_HINT = "must be 1-64 letters, digits, '_' or '-'"

__all__ = [
    "DeclarationBody",
    "DeclarationRequest",
    "PersonBody",
    "PersonRequest",
    "ScanBatchBody",
    "ScanBody",
    "ScanMethod",
    "ScanRequest",
    "SignInBody",
    "Symptom",
    "VenueBody",
    "VenueRequest",
    "parse_declaration",
    "parse_person",
    "parse_scan",
    "parse_sign_in",
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


def _dwell(minutes: int, info: ValidationInfo) -> int:
    most = int(ingest_limits(info).presence.max_dwell.total_seconds() // 60)
    if minutes > most:
        raise invalid("out-of-range", f"must be between 1 and {most}")
    return minutes


def _born(year: int, info: ValidationInfo) -> int:
    now = context_of(info).now
    if now is not None and year > now.year:
        raise invalid("out-of-range", f"must be between 1900 and {now.year}")
    return year


def _scan_time(at: datetime, info: ValidationInfo) -> datetime:
    context = context_of(info)
    assert context.now is not None, "a scan is read at a time"
    try:
        check_scan_time(at, context.now, ingest_limits(info).presence)
    except ScanTooLate as e:
        raise invalid("scan-too-late", str(e)) from None
    except ScanInFuture as e:
        raise invalid("scan-in-future", str(e)) from None
    return at


class VenueBody(RequestBody):
    """A venue to register: its poster's QR code names it."""

    name: Annotated[str, text(200)]
    address: Annotated[str, text(500)]
    province: Annotated[str, province()]
    district: Annotated[str, text(64)]
    category: Annotated[str, text(64)]
    default_dwell_minutes: Annotated[int, Field(ge=1), AfterValidator(_dwell)] | None = Field(
        None,
        json_schema_extra={"maximum": 720, "default": 60},
        description="At most the rules' max_dwell (720 by default); default default_dwell.",
    )


class PersonBody(RequestBody):
    """A person to register: the answer carries the person's QR code."""

    province: Annotated[str, province()]
    district: Annotated[str, text(64)]
    birth_year: Annotated[int, Field(ge=1900), AfterValidator(_born)] | None = Field(
        None, description="At most the current year."
    )


class ScanBody(RequestBody):
    """One check-in scan: a person's QR and a venue's, at a time, in or out."""

    scan_id: Annotated[str, client_id(), Field(description=_SCAN_ID)]
    venue_qr: Annotated[str, signed_qr(QrKind.VENUE)]
    person_qr: Annotated[str, signed_qr(QrKind.PERSON)]
    scanned_at: Annotated[
        datetime,
        timestamp(),
        AfterValidator(_scan_time),
        Field(description="Device time; at most 72 h old and 5 min ahead."),
    ]
    direction: Annotated[Direction, choice(Direction)]
    method: Annotated[ScanMethod, choice(ScanMethod)] | None = Field(None, description=_METHOD)
    device_id: Annotated[str, matching(SCOPE_ID, _DEVICE_HINT)] | None = Field(
        None, description="Scanning device."
    )


def _distinct(symptoms: list[Symptom]) -> list[Symptom]:
    if len(set(symptoms)) != len(symptoms):
        raise invalid("duplicate", "each symptom at most once")
    return symptoms


class DeclarationBody(RequestBody):
    """A health declaration: symptoms, contact with a case, travel."""

    declaration_id: Annotated[str, client_id()] | None = Field(
        None, description="Optional; makes retries idempotent."
    )
    person_qr: Annotated[str, signed_qr(QrKind.PERSON)]
    province: Annotated[str, province()]
    symptoms: Annotated[
        list[Annotated[Symptom, choice(Symptom)]],
        Field(max_length=len(Symptom), json_schema_extra={"uniqueItems": True}),
        AfterValidator(_distinct),
    ] = Field(default_factory=list)
    contact_with_case: bool
    travelled_from_province: Annotated[str, province()] | None = None


class SignInBody(RequestBody):
    """A person's app signing in again: the person's signed QR is the credential."""

    person_qr: Annotated[str, signed_qr(QrKind.PERSON)]


#: ``POST /v1/scans`` with ``{"scans": [...]}``: up to 500 scans, each judged on its own.
ScanBatchBody = batch_body("scans", "Scan", IngestLimits().max_batch)


def parse_sign_in(body: object, errors: list[FieldError], qr: QrSigner) -> str | None:
    """The person a :class:`SignInBody` names."""
    sign_in = read(SignInBody, body, errors, context=Context(qr))
    return None if sign_in is None else sign_in.person_qr


def parse_venue(
    body: object, errors: list[FieldError], limits: IngestLimits | None = None
) -> VenueRequest | None:
    """A :class:`VenueBody`, its dwell within the rules' ``max_dwell``."""
    venue = read(VenueBody, body, errors, context=Context(limits=limits))
    if venue is None:
        return None
    rules = (limits or IngestLimits()).presence
    dwell = venue.default_dwell_minutes or int(rules.default_dwell.total_seconds() // 60)
    return VenueRequest(
        venue.name, venue.address, venue.province, venue.district, venue.category, dwell
    )


def parse_person(body: object, errors: list[FieldError], now: datetime) -> PersonRequest | None:
    """A :class:`PersonBody`, born at the latest this year."""
    person = read(PersonBody, body, errors, context=Context(now=now))
    if person is None:
        return None
    return PersonRequest(person.province, person.district, person.birth_year)


def parse_scan(
    value: object,
    path: str,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> ScanRequest | None:
    """A :class:`ScanBody`: both QR signatures checked, ``scanned_at`` within DESIGN's
    bounds (72 h late, 5 min ahead: :func:`domain.presence.check_scan_time`)."""
    scan = read(ScanBody, value, errors, path, Context(qr, now, limits))
    if scan is None:
        return None
    return ScanRequest(
        scan.scan_id,
        scan.venue_qr,
        scan.person_qr,
        scan.scanned_at,
        scan.direction,
        scan.method,
        scan.device_id,
    )


def parse_declaration(
    body: object, errors: list[FieldError], qr: QrSigner
) -> DeclarationRequest | None:
    """A :class:`DeclarationBody`."""
    d = read(DeclarationBody, body, errors, context=Context(qr))
    if d is None:
        return None
    return DeclarationRequest(
        d.declaration_id,
        d.person_qr,
        d.province,
        tuple(d.symptoms),
        d.contact_with_case,
        d.travelled_from_province,
    )
