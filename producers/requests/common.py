"""What every request parser shares: id patterns, limits, the QR signer, the field rules of
the request models (``covidtech.web.models``) and the person a body names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema

from covidtech.settings import Settings
from covidtech.web.models import (
    FORGED_QR,
    Context,
    RequestBody,
    Rules,
    context_of,
    invalid,
    matching,
    read,
    signed_qr,
)
from covidtech.web.problems import FieldError
from domain.programme import DEFAULT_PROGRAMME_RULES, ProgrammeRules
from domain.qr import QrKind, QrSigner, QrSubject
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import ResultRules
from domain.rules import DEFAULT_RULES as PRESENCE_RULES
from domain.rules import PresenceRules
from domain.vaccines import VACCINES, UnknownVaccine, get_vaccine

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
    "between",
    "ingest_limits",
    "limits_of",
    "person_faults",
    "person_qr",
    "read_naming_person",
    "recent",
    "site",
    "vaccine",
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


def ingest_limits(info: ValidationInfo) -> IngestLimits:
    """The :class:`IngestLimits` a body is read with (the defaults if none were given)."""
    limits = context_of(info).limits
    return limits if isinstance(limits, IngestLimits) else IngestLimits()


def recent(lateness: Callable[[IngestLimits], timedelta]) -> Rules:
    """An instant at most ``lateness(limits)`` before the server clock and the limits'
    ``future_tolerance`` after it (the context's clock and limits; the check-in, testing and
    dose routes' wording): ``recent(lambda limits: limits.dose_lateness)``."""

    def check(at: datetime, info: ValidationInfo) -> datetime:
        now = context_of(info).now
        assert now is not None, "a recent instant is read at a time"
        limits = ingest_limits(info)
        if at - now > limits.future_tolerance:
            raise invalid(
                "time-in-future",
                f"is more than {limits.future_tolerance} ahead of the server clock "
                f"({now.isoformat()})",
            )
        if now - at > lateness(limits):
            raise invalid(
                "time-too-old", f"is more than {lateness(limits)} before the server clock"
            )
        return at

    return Rules(AfterValidator(check))


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


def person_faults(body: dict[str, Any], *, allow_id: bool = True) -> list[tuple[str, str, str]]:
    """What is wrong with how ``body`` (a JSON object) names its person, as (field, code,
    message): both ``person_qr`` and ``person_id`` (even ``null``) is ``person_id``'s error,
    neither is ``person_qr``'s, and so is ``person_id`` where staff may not type it
    (``allow_id``). The keys at fault are taken out of ``body``, which is read after."""
    found: list[tuple[str, str, str]] = []
    if not allow_id and "person_id" in body:
        del body["person_id"]
        found.append(("person_id", "unknown-field", "is not a field of this request"))
    if "person_qr" in body and "person_id" in body:
        del body["person_qr"], body["person_id"]
        found.append(("person_id", "invalid-value", "give person_qr or person_id, not both"))
    else:
        name = "person_id" if "person_id" in body else "person_qr"
        if body.get(name) is None:
            found.append((name, "missing", "must not be null" if name in body else "is required"))
    return found


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
    body = dict(value)
    at = (lambda name: f"{path}.{name}") if path else (lambda name: name)
    found = [
        FieldError(at(name), code, message)
        for name, code, message in person_faults(body, allow_id=allow_id)
    ]
    model_value = read(model, body, found, path, context)
    order = {at(name): i for i, name in enumerate(model.model_fields)}
    found.sort(key=lambda e: order.get(e.field, len(order)))
    errors.extend(found)
    return model_value if not found else None
