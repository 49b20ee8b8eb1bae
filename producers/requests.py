"""The ingest API's request bodies, read into typed commands (pure: no I/O, no framework).

Each ``parse_*`` function reads one JSON value with :class:`~producers.validation.Fields`,
checks everything that needs no lookup (types, enums, lengths, province codes, QR signatures,
time bounds against the injected ``now``, pool sizes, vaccine products) and returns a frozen
command, or ``None`` after appending :class:`~producers.validation.FieldError` s. What needs
state (does the venue exist, may this token write for that province, was this sample resulted)
is checked by the routes against the caches.

Field paths are relative to the request body, so a batch item's errors read ``scans[3].venue_qr``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from covidtech.settings import Settings
from domain.presence import Direction, ScanInFuture, ScanTooLate, check_scan_time
from domain.qr import ForgedQr, MalformedQr, QrKind, QrSigner, QrSubject
from domain.reference import is_province
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import (
    InvalidSample,
    ResultRules,
    TestResult,
    TestType,
    validate_pool_size,
)
from domain.rules import DEFAULT_RULES as PRESENCE_RULES
from domain.rules import PresenceRules
from domain.vaccines import UnknownVaccine, get_vaccine
from producers.validation import FieldError, Fields

__all__ = [
    "CLIENT_ID",
    "PERSON_ID",
    "SAMPLE_ID",
    "SCOPE_ID",
    "VENUE_ID",
    "CachedQrSigner",
    "DeclarationRequest",
    "DoseRequest",
    "IngestLimits",
    "MemberRequest",
    "PersonRequest",
    "ResultRequest",
    "SampleRequest",
    "ScanMethod",
    "ScanRequest",
    "Symptom",
    "VenueRequest",
    "batch_items",
    "limits_of",
    "parse_declaration",
    "parse_dose",
    "parse_person",
    "parse_result",
    "parse_sample",
    "parse_scan",
    "parse_venue",
]

#: Ids the API issues: a kind prefix and 20 random base32 characters (100 bits).
VENUE_ID = re.compile(r"v_[a-z2-7]{20}")
PERSON_ID = re.compile(r"p_[a-z2-7]{20}")
#: Client-generated ids (scan_id, dose_id, declaration_id): UUIDs, ULIDs and the like.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: A tube barcode (Code 128 / QR printed on the tube), used as the sample id.
SAMPLE_ID = re.compile(r"[A-Za-z0-9._-]{4,64}")
#: The value of a ``site:<id>`` / ``lab:<id>`` scope, and of a scanner's device id.
SCOPE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_CLIENT_ID_HINT = "must be 8-64 letters, digits, '_' or '-' (a UUID is fine)"


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


@dataclass(frozen=True)
class IngestLimits:
    """Bounds of what the API accepts; defaults follow DESIGN.md where it gives a number."""

    max_batch: int = 500
    presence: PresenceRules = PRESENCE_RULES
    results: ResultRules = RESULT_RULES
    #: A sample may be recorded this long after it was taken (offline sampling sites).
    sample_lateness: timedelta = timedelta(hours=72)
    #: A lab result may carry a ``resulted_at`` this far in the past.
    result_lateness: timedelta = timedelta(hours=72)
    #: Doses may be back-filled from paper records for this long.
    dose_lateness: timedelta = timedelta(days=30)
    #: A symptom onset may precede the sample's local day by at most this many days.
    onset_max_days_before: int = 30
    #: Accepted device clock drift into the future, for every event time.
    future_tolerance: timedelta = field(default=PRESENCE_RULES.future_tolerance)
    min_birth_year: int = 1900

    @property
    def zone(self) -> ZoneInfo:
        """The zone of local days (DESIGN: ``Asia/Ho_Chi_Minh``)."""
        return ZoneInfo(self.presence.timezone)


def limits_of(settings: Settings) -> IngestLimits:
    """The limits of a deployment: its domain rules (``Settings.domain_rules``)."""
    presence, results = settings.domain_rules()
    return IngestLimits(
        presence=presence, results=results, future_tolerance=presence.future_tolerance
    )


class CachedQrSigner(QrSigner):
    """A :class:`~domain.qr.QrSigner` that remembers payloads it verified.

    A venue's poster is scanned by everyone who enters and a person's code at every venue, so
    most scans repeat a payload already verified; a hit skips the HMAC. Only valid payloads
    are remembered (a forged one is checked, and refused, every time). Bounded: cleared when
    full.
    """

    def __init__(self, secret: str | bytes, capacity: int = 100_000) -> None:
        super().__init__(secret)
        self._capacity = capacity
        self._valid: dict[str, QrSubject] = {}

    def parse(self, payload: str) -> QrSubject:
        subject = self._valid.get(payload)
        if subject is None:
            subject = super().parse(payload)
            if len(self._valid) >= self._capacity:
                self._valid.clear()
            self._valid[payload] = subject
        return subject


# --------------------------------------------------------------------------- commands


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


@dataclass(frozen=True, slots=True)
class MemberRequest:
    """One person in a tube."""

    person_id: str
    symptom_onset: date | None


@dataclass(frozen=True, slots=True)
class SampleRequest:
    """``POST /v1/samples``; ``site_id`` None means "the token's only site"; ``lab_id``
    names the lab the tube is sent to (None: a lab of the sample's province)."""

    sample_id: str
    site_id: str | None
    province: str
    test_type: TestType
    collected_at: datetime
    members: tuple[MemberRequest, ...]
    lab_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResultRequest:
    """``POST /v1/samples/{sample_id}/result``; None fields are filled by the API."""

    result: TestResult
    resulted_at: datetime | None
    lab_id: str | None


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


# --------------------------------------------------------------------------- helpers


def batch_items(
    body: object, key: str, max_items: int, errors: list[FieldError]
) -> list[tuple[str, Any]] | None:
    """The items of a batch body ``{"<key>": [...]}`` (1..max_items), with their paths."""
    before = len(errors)
    fields = Fields.of(body, "", errors)
    if fields is None:
        return None
    items = fields.array(key, min_items=1, max_items=max_items)
    fields.finish()
    return items if _ok(errors, before) else None


def _province(fields: Fields, name: str, *, required: bool = True) -> str | None:
    code = fields.string(name, required=required, max_length=2)
    if code is not None and not is_province(code):
        fields.error(name, "unknown-province", "must be a GSO two-digit province code, e.g. 01")
        return None
    return code


def _qr_subject(fields: Fields, name: str, qr: QrSigner, kind: QrKind) -> str | None:
    payload = fields.string(name, max_length=256)
    if payload is None:
        return None
    try:
        subject = qr.parse(payload)
    except ForgedQr:
        fields.error(
            name, "forged-qr", "the QR code's signature does not match (forged or altered)"
        )
        return None
    except MalformedQr as e:
        fields.error(name, "malformed-qr", f"not a covidtech QR code: {e}")
        return None
    if subject.kind is not kind:
        fields.error(
            name, "wrong-qr-kind", f"must be a {kind.value} QR code, not a {subject.kind.value} one"
        )
        return None
    return subject.id


def _person(fields: Fields, qr: QrSigner) -> str | None:
    """``person_qr`` (scanned) or ``person_id`` (typed by staff): exactly one of them."""
    if fields.has("person_id") and fields.has("person_qr"):
        fields.ignore("person_id")
        fields.ignore("person_qr")
        fields.error("person_id", "invalid-value", "give person_qr or person_id, not both")
        return None
    if fields.has("person_id"):
        return fields.string(
            "person_id", pattern=PERSON_ID, pattern_hint="must be a person id issued by the API"
        )
    return _qr_subject(fields, "person_qr", qr, QrKind.PERSON)


def _bounded_time(
    fields: Fields,
    name: str,
    value: datetime | None,
    now: datetime,
    lateness: timedelta,
    future: timedelta,
) -> datetime | None:
    if value is None:
        return None
    if value - now > future:
        fields.error(
            name,
            "time-in-future",
            f"is more than {future} ahead of the server clock ({now.isoformat()})",
        )
        return None
    if now - value > lateness:
        fields.error(name, "time-too-old", f"is more than {lateness} before the server clock")
        return None
    return value


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


def _ok(errors: list[FieldError], before: int) -> bool:
    return len(errors) == before


# --------------------------------------------------------------------------- parsers


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
    province = _province(f, "province")
    district = f.text("district", max_length=64)
    category = f.text("category", max_length=64)
    dwell = f.integer(
        "default_dwell_minutes",
        required=False,
        minimum=1,
        maximum=int(rules.max_dwell.total_seconds() // 60),
    )
    f.finish()
    if not _ok(errors, before):
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
    province = _province(f, "province")
    district = f.text("district", max_length=64)
    birth_year = f.integer("birth_year", required=False, minimum=1900, maximum=now.year)
    f.finish()
    if not _ok(errors, before):
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
    scan_id = f.string("scan_id", max_length=64, pattern=CLIENT_ID, pattern_hint=_CLIENT_ID_HINT)
    venue_id = _qr_subject(f, "venue_qr", qr, QrKind.VENUE)
    person_id = _qr_subject(f, "person_qr", qr, QrKind.PERSON)
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
    if not _ok(errors, before):
        return None
    assert scan_id and venue_id and person_id and scanned_at and direction
    return ScanRequest(scan_id, venue_id, person_id, scanned_at, direction, method, device_id)


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
    declaration_id = f.string(
        "declaration_id",
        required=False,
        max_length=64,
        pattern=CLIENT_ID,
        pattern_hint=_CLIENT_ID_HINT,
    )
    person_id = _qr_subject(f, "person_qr", qr, QrKind.PERSON)
    province = _province(f, "province")
    symptoms = _symptoms(f)
    contact = f.boolean("contact_with_case")
    travelled = _province(f, "travelled_from_province", required=False)
    f.finish()
    if not _ok(errors, before):
        return None
    assert person_id and province and symptoms is not None and contact is not None
    return DeclarationRequest(declaration_id, person_id, province, symptoms, contact, travelled)


def parse_sample(
    body: object,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> SampleRequest | None:
    """A tube: ``{sample_id, site_id?, province, lab_id?, test_type, collected_at, members}``.

    Each member is ``{person_qr | person_id, symptom_onset?}``.

    A tube holds one person or a pool of 2-10 (:func:`domain.results.validate_pool_size`),
    each person once. A symptom onset lies on or before the local day of collection and at
    most ``onset_max_days_before`` days before it.
    """
    before = len(errors)
    f = Fields.of(body, "", errors)
    if f is None:
        return None
    sample_id = f.string(
        "sample_id",
        max_length=64,
        pattern=SAMPLE_ID,
        pattern_hint="must be the tube barcode: 4-64 letters, digits, '.', '_' or '-'",
    )
    site_id = f.string(
        "site_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a site id like the one of your site:<id> scope",
    )
    province = _province(f, "province")
    lab_id = f.string(
        "lab_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a lab id like the one of a lab:<id>@<province> scope",
    )
    test_type = f.choice("test_type", TestType)
    collected_at = _bounded_time(
        f,
        "collected_at",
        f.timestamp("collected_at"),
        now,
        limits.sample_lateness,
        limits.future_tolerance,
    )
    # Read generously, then apply the domain's pool rule, so "11 people" gets the pool message.
    items = f.array("members", min_items=1, max_items=10 * limits.results.pool_max)
    f.finish()
    members: list[MemberRequest] = []
    if items is not None:
        try:
            validate_pool_size(len(items), limits.results)
        except InvalidSample as e:
            f.error("members", "pool-size", str(e))
            items = None
    seen: dict[str, str] = {}
    collected_day = collected_at.astimezone(limits.zone).date() if collected_at else None
    for item_path, item in items or ():
        m = Fields.of(item, item_path, errors)
        if m is None:
            continue
        person_id = _person(m, qr)
        onset = m.day("symptom_onset", required=False)
        m.finish()
        if onset is not None and collected_day is not None:
            earliest = collected_day - timedelta(days=limits.onset_max_days_before)
            if not earliest <= onset <= collected_day:
                m.error(
                    "symptom_onset",
                    "out-of-range",
                    f"must lie between {earliest.isoformat()} and the day of collection "
                    f"({collected_day.isoformat()})",
                )
                onset = None
        if person_id is None:
            continue
        if person_id in seen:
            m.error(
                "person_qr" if m.has("person_qr") else "person_id",
                "duplicate-member",
                f"the same person is already {seen[person_id]}",
            )
            continue
        seen[person_id] = item_path
        members.append(MemberRequest(person_id, onset))
    if not _ok(errors, before):
        return None
    assert sample_id and province and test_type and collected_at
    return SampleRequest(
        sample_id, site_id, province, test_type, collected_at, tuple(members), lab_id
    )


def parse_result(
    body: object, errors: list[FieldError], now: datetime, limits: IngestLimits
) -> ResultRequest | None:
    """``{result, resulted_at?, lab_id?}``."""
    before = len(errors)
    f = Fields.of(body, "", errors)
    if f is None:
        return None
    result = f.choice("result", TestResult)
    resulted_at = _bounded_time(
        f,
        "resulted_at",
        f.timestamp("resulted_at", required=False),
        now,
        limits.result_lateness,
        limits.future_tolerance,
    )
    lab_id = f.string(
        "lab_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a lab id like the one of your lab:<id> scope",
    )
    f.finish()
    if not _ok(errors, before):
        return None
    assert result
    return ResultRequest(result, resulted_at, lab_id)


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
    dose_id = f.string("dose_id", max_length=64, pattern=CLIENT_ID, pattern_hint=_CLIENT_ID_HINT)
    person_id = _person(f, qr)
    administered_at = _bounded_time(
        f,
        "administered_at",
        f.timestamp("administered_at"),
        now,
        limits.dose_lateness,
        limits.future_tolerance,
    )
    site_id = f.string(
        "site_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a site id like the one of your site:<id> scope",
    )
    vaccine = f.string("vaccine", max_length=32)
    if vaccine is not None:
        try:
            get_vaccine(vaccine)
        except UnknownVaccine as e:
            f.error("vaccine", "unknown-vaccine", str(e))
            vaccine = None
    birth_year = f.integer("birth_year", minimum=limits.min_birth_year, maximum=now.year)
    residence = _province(f, "residence_province")
    f.finish()
    if not _ok(errors, before):
        return None
    assert dose_id and person_id and administered_at and vaccine and birth_year and residence
    return DoseRequest(dose_id, person_id, administered_at, site_id, vaccine, birth_year, residence)


def field_errors_for(items: Iterable[FieldError], prefix: str) -> list[FieldError]:
    """The errors whose field is ``prefix`` or lies under it (a batch item's own errors)."""
    return [
        e
        for e in items
        if e.field == prefix or e.field.startswith(prefix + ".") or e.field.startswith(prefix + "[")
    ]
