"""Requests of the testing platform: samples (one person or a pool) and lab results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from domain.qr import QrSigner
from domain.results import InvalidSample, TestResult, TestType, validate_pool_size
from producers.requests.common import (
    SAMPLE_ID,
    SCOPE_ID,
    IngestLimits,
    bounded_time,
    ok,
    person_field,
    province_field,
    site_field,
)
from producers.validation import FieldError, Fields

__all__ = [
    "MemberRequest",
    "ResultRequest",
    "SampleRequest",
    "parse_result",
    "parse_sample",
]


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


def _lab(fields: Fields, hint: str) -> str | None:
    return fields.string(
        "lab_id", required=False, max_length=64, pattern=SCOPE_ID, pattern_hint=hint
    )


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
    site_id = site_field(f)
    province = province_field(f, "province")
    lab_id = _lab(f, "must be a lab id like the one of a lab:<id>@<province> scope")
    test_type = f.choice("test_type", TestType)
    collected_at = bounded_time(
        f, "collected_at", now, limits.sample_lateness, limits.future_tolerance
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
        person_id = person_field(m, qr)
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
    if not ok(errors, before):
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
    resulted_at = bounded_time(
        f, "resulted_at", now, limits.result_lateness, limits.future_tolerance, required=False
    )
    lab_id = _lab(f, "must be a lab id like the one of your lab:<id> scope")
    f.finish()
    if not ok(errors, before):
        return None
    assert result
    return ResultRequest(result, resulted_at, lab_id)
