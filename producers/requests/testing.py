"""Requests of the testing platform: samples (one person or a pool) and lab results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from covidtech.web.models import (
    Context,
    Loc,
    RequestBody,
    choice,
    day,
    faults_of,
    field_path,
    invalid,
    invalid_at,
    matching,
    province,
    read,
    timestamp,
)
from covidtech.web.problems import FieldError
from domain.qr import QrSigner
from domain.results import DEFAULT_RULES, InvalidSample, TestResult, TestType, validate_pool_size
from producers.requests.common import (
    SAMPLE_ID,
    SCOPE_ID,
    IngestLimits,
    NamesPerson,
    PersonId,
    ingest_limits,
    person_faults,
    person_qr,
    recent,
    site,
)

__all__ = [
    "MemberRequest",
    "ResultBody",
    "ResultRequest",
    "SampleBody",
    "SampleMemberBody",
    "SampleRequest",
    "parse_result",
    "parse_sample",
]

_SAMPLE_ID_HINT = "must be the tube barcode: 4-64 letters, digits, '.', '_' or '-'"
_TIME = "RFC 3339 with an offset (Z or +07:00)"
_PERSON_QR = person_qr()
#: The lab a sample is sent to, and the lab that results it (when the token has several).
_SAMPLE_LAB = matching(SCOPE_ID, "must be a lab id like the one of a lab:<id>@<province> scope")
_RESULT_LAB = matching(SCOPE_ID, "must be a lab id like the one of your lab:<id> scope")


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


class SampleMemberBody(NamesPerson):
    """One person in a tube."""

    person_qr: Annotated[str, _PERSON_QR] | None = None
    person_id: PersonId | None = None
    symptom_onset: Annotated[date, day()] | None = Field(
        None,
        description="Local day of symptom onset, when the person has symptoms: on or before "
        "the local day of collection, at most 30 days before it.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_person(cls, value: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """The person named by exactly one of person_qr and person_id (as
        :func:`~producers.requests.common.read_naming_person` judges a body), beside the
        other fields' errors."""
        if not isinstance(value, dict):
            return handler(value)
        body = dict(value)
        faults: list[tuple[Loc, PydanticCustomError]] = [
            ((name,), invalid(code, message)) for name, code, message in person_faults(body)
        ]
        try:
            member = handler(body)
        except ValidationError as e:
            if not faults:
                raise
            faults += faults_of(e)
        if faults:
            order = {name: i for i, name in enumerate(cls.model_fields)}
            faults.sort(key=lambda fault: order.get(str(fault[0][0]), len(order)))
            raise invalid_at(*faults)
        return member

    @property
    def person(self) -> str:
        """The person's id (one of the two is set once the body is read)."""
        named = self.person_qr or self.person_id
        assert named is not None
        return named


def _pool(members: Any, info: ValidationInfo) -> Any:
    """Before the members are read: a tube holds one person or a pool
    (:func:`domain.results.validate_pool_size`), so "11 people" gets the pool's message."""
    if isinstance(members, list) and members:
        try:
            validate_pool_size(len(members), ingest_limits(info).results)
        except InvalidSample as e:
            raise invalid("pool-size", str(e)) from None
    return members


def _members(members: list[SampleMemberBody], info: ValidationInfo) -> list[SampleMemberBody]:
    """Each person once; each symptom onset within the days before the local day of
    collection (when ``collected_at`` is valid)."""
    faults = []
    seen: dict[str, int] = {}
    for i, m in enumerate(members):
        if m.person in seen:
            name = "person_qr" if m.person_qr is not None else "person_id"
            where = field_path("members", seen[m.person])
            faults.append(
                ((i, name), invalid("duplicate-member", f"the same person is already {where}"))
            )
        else:
            seen[m.person] = i
    collected_at = info.data.get("collected_at")
    if isinstance(collected_at, datetime):
        limits = ingest_limits(info)
        collected_day = collected_at.astimezone(limits.zone).date()
        earliest = collected_day - timedelta(days=limits.onset_max_days_before)
        for i, m in enumerate(members):
            if m.symptom_onset is not None and not earliest <= m.symptom_onset <= collected_day:
                message = (
                    f"must lie between {earliest.isoformat()} and the day of collection "
                    f"({collected_day.isoformat()})"
                )
                faults.append(((i, "symptom_onset"), invalid("out-of-range", message)))
    if faults:
        raise invalid_at(*sorted(faults, key=lambda fault: fault[0][0]))
    return members


class SampleBody(RequestBody):
    """A tube: one person or a pool of 2-10, each person once."""

    sample_id: Annotated[
        str, matching(SAMPLE_ID, _SAMPLE_ID_HINT), Field(description="The tube's barcode.")
    ]
    site_id: Annotated[str, site()] | None = None
    province: Annotated[str, province()]
    lab_id: Annotated[str, _SAMPLE_LAB] | None = Field(
        None,
        description="The lab the tube is sent to; it may result the sample whatever its own "
        "province. Without it, labs of the sample's province may.",
    )
    test_type: Annotated[TestType, choice(TestType)]
    collected_at: Annotated[
        datetime,
        timestamp(),
        recent(lambda limits: limits.sample_lateness),
        Field(description=f"{_TIME}; at most 72 h old and 5 min ahead."),
    ]
    members: Annotated[
        list[SampleMemberBody],
        Field(
            min_length=1,
            json_schema_extra={"maxItems": DEFAULT_RULES.pool_max},
            description="One person, or a pool of 2-10.",
        ),
        BeforeValidator(_pool),
        AfterValidator(_members),
    ]


class ResultBody(RequestBody):
    """A lab's result of a sample."""

    result: Annotated[TestResult, choice(TestResult)]
    resulted_at: (
        Annotated[datetime, timestamp(), recent(lambda limits: limits.result_lateness)] | None
    ) = Field(None, description=f"{_TIME}; at most 72 h old. Default: now.")
    lab_id: Annotated[str, _RESULT_LAB] | None = Field(
        None, description="Needed only if the token has several labs."
    )


def parse_sample(
    body: object,
    errors: list[FieldError],
    qr: QrSigner,
    now: datetime,
    limits: IngestLimits,
) -> SampleRequest | None:
    """A :class:`SampleBody`: ``collected_at`` at most ``sample_lateness`` old, the pool's
    size within the domain's rules, each person once, each symptom onset on or before the
    local day of collection and at most ``onset_max_days_before`` days before it."""
    sample = read(SampleBody, body, errors, context=Context(qr, now, limits))
    if sample is None:
        return None
    return SampleRequest(
        sample.sample_id,
        sample.site_id,
        sample.province,
        sample.test_type,
        sample.collected_at,
        tuple(MemberRequest(m.person, m.symptom_onset) for m in sample.members),
        sample.lab_id,
    )


def parse_result(
    body: object, errors: list[FieldError], now: datetime, limits: IngestLimits
) -> ResultRequest | None:
    """A :class:`ResultBody`: ``resulted_at`` at most ``result_lateness`` old."""
    r = read(ResultBody, body, errors, context=Context(now=now, limits=limits))
    if r is None:
        return None
    return ResultRequest(r.result, r.resulted_at, r.lab_id)
