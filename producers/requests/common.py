"""What every request parser shares: id patterns, limits, the QR signer, the field readers.

The readers here each read one field (or the person of a body) with
:class:`~producers.validation.Fields` and append a :class:`~producers.validation.FieldError`
instead of raising; ``ok(errors, before)`` then tells a parser whether its body was clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema

from covidtech.settings import Settings
from covidtech.web.models import Context, RequestBody, Rules, invalid, matching, read, signed_qr
from domain.programme import DEFAULT_PROGRAMME_RULES, ProgrammeRules
from domain.qr import ForgedQr, MalformedQr, QrKind, QrSigner, QrSubject
from domain.reference import is_province
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import ResultRules
from domain.rules import DEFAULT_RULES as PRESENCE_RULES
from domain.rules import PresenceRules
from domain.vaccines import VACCINES, UnknownVaccine, get_vaccine
from producers.validation import FieldError, Fields

__all__ = [
    "CLIENT_ID",
    "CLIENT_ID_HINT",
    "PERSON_ID",
    "PROGRAMME_LIMITS",
    "SAMPLE_ID",
    "SCOPE_ID",
    "VENUE_ID",
    "CachedQrSigner",
    "IngestLimits",
    "NamesPerson",
    "PersonId",
    "VaccinationLimits",
    "batch_items",
    "between",
    "bounded_time",
    "client_id_field",
    "limits_of",
    "ok",
    "person_field",
    "person_qr",
    "province_field",
    "qr_subject",
    "read_naming_person",
    "site",
    "site_field",
    "vaccine",
    "vaccine_field",
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

CLIENT_ID_HINT = "must be 8-64 letters, digits, '_' or '-' (a UUID is fine)"

B = TypeVar("B", bound=RequestBody)


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


PROGRAMME_LIMITS = VaccinationLimits()


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


def ok(errors: list[FieldError], before: int) -> bool:
    """No error was added since ``before`` (the length of ``errors`` when parsing began)."""
    return len(errors) == before


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
    return items if ok(errors, before) else None


def client_id_field(fields: Fields, name: str, *, required: bool = True) -> str | None:
    """A client-generated id (the idempotency key of a write)."""
    return fields.string(
        name, required=required, max_length=64, pattern=CLIENT_ID, pattern_hint=CLIENT_ID_HINT
    )


def site_field(fields: Fields) -> str | None:
    """``site_id``: needed only when the token holds several ``site:`` scopes."""
    return fields.string(
        "site_id",
        required=False,
        max_length=64,
        pattern=SCOPE_ID,
        pattern_hint="must be a site id like the one of your site:<id> scope",
    )


def province_field(fields: Fields, name: str, *, required: bool = True) -> str | None:
    code = fields.string(name, required=required, max_length=2)
    if code is not None and not is_province(code):
        fields.error(name, "unknown-province", "must be a GSO two-digit province code, e.g. 01")
        return None
    return code


def vaccine_field(fields: Fields) -> str | None:
    """``vaccine``: a product code of :data:`domain.vaccines.VACCINES`."""
    code = fields.string("vaccine", max_length=32)
    if code is not None:
        try:
            get_vaccine(code)
        except UnknownVaccine as e:
            fields.error("vaccine", "unknown-vaccine", str(e))
            return None
    return code


#: How the check-in, testing and dose routes word a QR code's errors.
FORGED_QR = "the QR code's signature does not match (forged or altered)"


def qr_subject(
    fields: Fields,
    name: str,
    qr: QrSigner,
    kind: QrKind,
    *,
    forged: str = FORGED_QR,
    wrong_kind: str | None = None,
) -> str | None:
    """The id a signed QR payload names, if it is of ``kind``; ``forged`` and ``wrong_kind``
    word the errors (the programme's routes say it more briefly)."""
    payload = fields.string(name, max_length=256)
    if payload is None:
        return None
    try:
        subject = qr.parse(payload)
    except ForgedQr:
        fields.error(name, "forged-qr", forged)
        return None
    except MalformedQr as e:
        fields.error(name, "malformed-qr", f"not a covidtech QR code: {e}")
        return None
    if subject.kind is not kind:
        fields.error(
            name,
            "wrong-qr-kind",
            wrong_kind or f"must be a {kind.value} QR code, not a {subject.kind.value} one",
        )
        return None
    return subject.id


def person_field(
    fields: Fields,
    qr: QrSigner,
    *,
    allow_id: bool = True,
    forged: str = FORGED_QR,
    wrong_kind: str | None = None,
) -> str | None:
    """``person_qr`` (scanned) or, where staff may type it (``allow_id``), ``person_id``:
    exactly one of them."""
    if allow_id and fields.has("person_id") and fields.has("person_qr"):
        fields.ignore("person_id")
        fields.ignore("person_qr")
        fields.error("person_id", "invalid-value", "give person_qr or person_id, not both")
        return None
    if allow_id and fields.has("person_id"):
        return fields.string(
            "person_id", pattern=PERSON_ID, pattern_hint="must be a person id issued by the API"
        )
    return qr_subject(fields, "person_qr", qr, QrKind.PERSON, forged=forged, wrong_kind=wrong_kind)


def bounded_time(
    fields: Fields,
    name: str,
    now: datetime,
    lateness: timedelta,
    future: timedelta,
    *,
    required: bool = True,
) -> datetime | None:
    """The instant ``name`` if it lies within ``lateness`` before and ``future`` after
    ``now``."""
    value = fields.timestamp(name, required=required)
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


# ------------------------------------------------------------- field rules of request models

_SITE_HINT = "must be a site id like the one of your site:<id> scope"


def site() -> Rules:
    """``site_id``: needed only when the token holds several ``site:`` scopes."""
    schema = {
        "type": "string",
        "pattern": f"^{SCOPE_ID.pattern}$",
        "description": "Needed only if the token has several sites.",
    }
    return Rules(*matching(SCOPE_ID, _SITE_HINT), WithJsonSchema(schema))


def _vaccine(code: str) -> str:
    try:
        get_vaccine(code)
    except UnknownVaccine as e:
        raise invalid("unknown-vaccine", str(e)) from None
    return code


def vaccine() -> Rules:
    """``vaccine``: a product code of :data:`domain.vaccines.VACCINES` (``unknown-vaccine``
    otherwise)."""
    return Rules(
        Field(max_length=32),
        AfterValidator(_vaccine),
        WithJsonSchema({"enum": list(VACCINES)}),
    )


def between(at: datetime, earliest: datetime, latest: datetime) -> datetime:
    """``at`` if it lies between ``earliest`` and ``latest`` (a validator's check, the
    programme's wording)."""
    if at > latest:
        raise invalid("time-in-future", f"must not be after {latest.isoformat()}")
    if at < earliest:
        raise invalid("time-too-old", f"must not be before {earliest.isoformat()}")
    return at


def person_qr(*, forged: str = FORGED_QR, wrong_kind: str | None = None) -> Rules:
    """``person_qr``: a person's signed QR payload, read as the person's id."""
    return signed_qr(QrKind.PERSON, forged=forged, wrong_kind=wrong_kind)


#: ``person_id``: typed by staff when the QR cannot be scanned.
PersonId = Annotated[str, matching(PERSON_ID, "must be a person id issued by the API")]

#: The fields that name a person, with their descriptions.
_PERSON = {
    "person_qr": "The person's signed QR payload.",
    "person_id": "Typed by staff when the QR cannot be scanned.",
}


def _one_person_schema(schema: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    for name, description in _PERSON.items():
        if name in properties:
            field = properties[name]
            (value,) = [s for s in field.pop("anyOf") if s != {"type": "null"}]
            properties[name] = {**value, "description": description, **field}
    schema["oneOf"] = [{"required": [name]} for name in _PERSON if name in properties]


class NamesPerson(RequestBody):
    """A body naming a person by exactly one of ``person_qr`` and ``person_id`` (declared
    ``person_qr: Annotated[str, person_qr()] | None = None``, ``person_id: PersonId | None =
    None``), read with :func:`read_naming_person`, which judges the pair: the schema says
    so (``oneOf``), and neither is nullable."""

    model_config = ConfigDict(json_schema_extra=_one_person_schema)


def read_naming_person(
    model: type[B],
    value: object,
    errors: list[FieldError],
    path: str = "",
    context: Context | None = None,
    *,
    allow_id: bool = True,
) -> B | None:
    """``value`` read as ``model`` (a :class:`NamesPerson`), which names its person by
    exactly one of ``person_qr`` and, where staff may type it (``allow_id``), ``person_id``;
    both (even ``null``) is ``person_id``'s error. The errors in the model's field order."""
    if not isinstance(value, dict):
        return read(model, value, errors, path, context)
    found: list[FieldError] = []
    body = dict(value)
    at = (lambda name: f"{path}.{name}") if path else (lambda name: name)
    if not allow_id and "person_id" in body:
        del body["person_id"]
        found.append(FieldError(at("person_id"), "unknown-field", "is not a field of this request"))
    if "person_qr" in body and "person_id" in body:
        del body["person_qr"], body["person_id"]
        found.append(
            FieldError(at("person_id"), "invalid-value", "give person_qr or person_id, not both")
        )
    else:
        name = "person_id" if "person_id" in body else "person_qr"
        if body.get(name) is None:
            message = "must not be null" if name in body else "is required"
            found.append(FieldError(at(name), "missing", message))
    model_value = read(model, body, found, path, context)
    order = {at(name): i for i, name in enumerate(model.model_fields)}
    found.sort(key=lambda e: order.get(e.field, len(order)))
    errors.extend(found)
    return model_value if not found else None
