"""The ingest API's pure parts: body reading, request parsing, problems, caches, idempotency,
events and the OpenAPI document. No broker, no HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import pytest
from pydantic import Field

from covidtech.instants import parse_instant as parse_timestamp
from covidtech.web.models import RequestBody, read, read_batch, text
from covidtech.web.problems import PROBLEM_TYPES, FieldError, Problem, type_uri, validation_problem
from domain.presence import Direction
from domain.qr import QrKind, QrSigner
from domain.results import TestResult, TestType, lookup_code_hash, new_lookup_code
from domain.vaccines import VACCINES
from producers import events
from producers.caches import SampleBook, VenueDirectory
from producers.idempotency import IdConflict, IdempotencyGuard
from producers.openapi import openapi_document
from producers.requests.checkins import (
    ScanBatchBody,
    ScanMethod,
    Symptom,
    parse_declaration,
    parse_person,
    parse_scan,
    parse_venue,
)
from producers.requests.common import IngestLimits
from producers.requests.testing import parse_result, parse_sample
from producers.requests.vaccination import parse_dose
from schemas.codec import default_registry

SECRET = "unit-test-secret-0123456789"
QR = QrSigner(SECRET)
NOW = datetime(2021, 8, 1, 9, 0, tzinfo=UTC)
LIMITS = IngestLimits()
VENUE = "v_abcdefghijklmnopqrst"
PERSON = "p_abcdefghijklmnopqrst"
PERSON2 = "p_bbcdefghijklmnopqrst"
A_VACCINE = next(iter(VACCINES))


def person(ident: str = PERSON) -> str:
    return QR.payload(QrKind.PERSON, ident)


def venue(ident: str = VENUE) -> str:
    return QR.payload(QrKind.VENUE, ident)


def codes(errors: list[FieldError]) -> dict[str, str]:
    return {e.field: e.code for e in errors}


# --------------------------------------------------------------------------- the reader


def test_timestamps_need_an_offset() -> None:
    assert parse_timestamp("2021-08-01T16:00:00+07:00") == NOW
    assert parse_timestamp("2021-08-01T09:00:00Z") == NOW
    assert parse_timestamp("2021-08-01t09:00:00.123456789z") == NOW + timedelta(microseconds=123456)
    for bad in (
        "2021-08-01T09:00:00",
        "2021-08-01",
        "yesterday",
        "2021-13-01T00:00:00Z",
        "20210801T090000Z",
    ):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


class Number(RequestBody):
    n: Annotated[int, Field(ge=1, le=10)]


class Named(RequestBody):
    a: str


class Texts(RequestBody):
    a: Annotated[str, text()]
    b: Annotated[str, text()] | None = None
    c: Annotated[str, text()] | None = None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (True, "wrong-type"),
        (1.0, "wrong-type"),
        ("5", "wrong-type"),
        (0, "out-of-range"),
        (None, "missing"),
    ],
)
def test_integers_are_strict(value: object, code: str) -> None:
    errors: list[FieldError] = []
    assert read(Number, {"n": value}, errors, "x") is None
    assert codes(errors) == {"x.n": code}


def test_unknown_fields_are_reported_with_their_path() -> None:
    errors: list[FieldError] = []
    assert read(Named, {"a": "x", "typo": 1}, errors, "items[2]") is None
    assert codes(errors) == {"items[2].typo": "unknown-field"}


def test_text_is_stripped_and_refuses_control_characters() -> None:
    errors: list[FieldError] = []
    body = read(Texts, {"a": "  Chợ  "}, errors)
    assert body is not None and body.a == "Chợ" and not errors
    assert read(Texts, {"a": "x", "b": "x\u0000y", "c": "   "}, errors) is None
    assert codes(errors) == {"b": "invalid-value", "c": "invalid-value"}


def test_a_body_that_is_not_an_object() -> None:
    errors: list[FieldError] = []
    assert parse_venue([1, 2], errors) is None
    assert codes(errors) == {"body": "wrong-type"}


# --------------------------------------------------------------------------- requests


def test_venue_defaults_and_limits() -> None:
    errors: list[FieldError] = []
    body = {
        "name": "Chợ",
        "address": "1 Lê Lợi",
        "province": "79",
        "district": "760",
        "category": "market",
    }
    v = parse_venue(body, errors)
    assert v is not None and v.default_dwell_minutes == 60 and not errors
    v = parse_venue({**body, "province": "99", "default_dwell_minutes": 721}, errors)
    assert v is None
    assert codes(errors) == {
        "province": "unknown-province",
        "default_dwell_minutes": "out-of-range",
    }


def test_person_birth_year_bounds() -> None:
    errors: list[FieldError] = []
    assert parse_person({"province": "01", "district": "001"}, errors, NOW) is not None
    assert (
        parse_person({"province": "01", "district": "001", "birth_year": 2022}, errors, NOW) is None
    )
    assert codes(errors) == {"birth_year": "out-of-range"}


def scan_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scan_id": "0b9f1d3e-7f00-4b7c-9d0e-2a4c1c8e9f01",
        "venue_qr": venue(),
        "person_qr": person(),
        "scanned_at": "2021-08-01T08:59:00Z",
        "direction": "IN",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_a_valid_scan() -> None:
    errors: list[FieldError] = []
    scan = parse_scan(
        scan_body(method="STAFF_SCANNED_PERSON", device_id="gate-1"), "", errors, QR, NOW, LIMITS
    )
    assert not errors and scan is not None
    assert (scan.venue_id, scan.person_id, scan.direction) == (VENUE, PERSON, Direction.IN)
    assert scan.method is ScanMethod.STAFF_SCANNED_PERSON
    assert scan.scanned_at == NOW - timedelta(minutes=1)


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        (
            {"venue_qr": venue()[:-1] + ("a" if venue()[-1] != "a" else "b")},
            "venue_qr",
            "forged-qr",
        ),
        ({"venue_qr": "https://example.org/v/1"}, "venue_qr", "malformed-qr"),
        ({"venue_qr": person()}, "venue_qr", "wrong-qr-kind"),
        ({"person_qr": 42}, "person_qr", "wrong-type"),
        ({"person_qr": ...}, "person_qr", "missing"),
        ({"direction": "SIDEWAYS"}, "direction", "unknown-enum"),
        ({"direction": "in"}, "direction", "unknown-enum"),
        ({"direction": 5}, "direction", "wrong-type"),
        ({"direction": None}, "direction", "missing"),
        ({"scan_id": "short"}, "scan_id", "invalid-value"),
        ({"scan_id": "has:colon-123"}, "scan_id", "invalid-value"),
        ({"scanned_at": "2021-08-01T09:00:00"}, "scanned_at", "invalid-value"),
        ({"scanned_at": "2021-07-29T08:59:59Z"}, "scanned_at", "scan-too-late"),
        ({"scanned_at": "2021-08-01T09:05:01Z"}, "scanned_at", "scan-in-future"),
        ({"extra": 1}, "extra", "unknown-field"),
    ],
)
def test_bad_scans_name_the_field(changes: dict[str, Any], field: str, code: str) -> None:
    errors: list[FieldError] = []
    assert parse_scan(scan_body(**changes), "scans[7]", errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {f"scans[7].{field}": code}


def test_scan_time_bounds_are_inclusive() -> None:
    for at in ("2021-07-29T09:00:00Z", "2021-08-01T09:05:00Z"):
        errors: list[FieldError] = []
        assert parse_scan(scan_body(scanned_at=at), "", errors, QR, NOW, LIMITS) is not None, at


def test_batch_envelope() -> None:
    errors: list[FieldError] = []
    assert read_batch(ScanBatchBody, {"scans": []}, errors) is None
    assert read_batch(ScanBatchBody, {"scans": [{}] * 501}, errors) is None
    assert read_batch(ScanBatchBody, {"scans": [{}], "x": 1}, errors) is None
    assert [(e.field, e.code) for e in errors] == [
        ("scans", "too-few-items"),
        ("scans", "too-many-items"),
        ("x", "unknown-field"),
    ]
    items = read_batch(ScanBatchBody, {"scans": [{"a": 1}, 2]}, [])
    assert items == [("scans[0]", {"a": 1}), ("scans[1]", 2)]


def test_declaration() -> None:
    errors: list[FieldError] = []
    body = {
        "person_qr": person(),
        "province": "01",
        "symptoms": ["FEVER", "COUGH"],
        "contact_with_case": False,
        "travelled_from_province": None,
    }
    d = parse_declaration(body, errors, QR)
    assert d is not None and d.symptoms == (Symptom.FEVER, Symptom.COUGH) and not errors
    d = parse_declaration(
        {**body, "symptoms": ["FEVER", "FEVER", "SNEEZE"], "contact_with_case": "no"}, errors, QR
    )
    assert d is None
    assert codes(errors) == {"symptoms[2]": "unknown-enum", "contact_with_case": "wrong-type"}
    errors.clear()  # a repeated symptom is the list's error, once each symptom is known
    assert parse_declaration({**body, "symptoms": ["FEVER", "FEVER"]}, errors, QR) is None
    assert codes(errors) == {"symptoms": "duplicate"}


def sample_body(n: int = 1, **changes: Any) -> dict[str, Any]:
    ids = [f"p_{i:020d}".replace("0", "a").replace("1", "b")[:22] for i in range(n)]
    members = [{"person_id": f"p_{chr(97 + i % 26) * 20}"} for i in range(n)]
    assert len(ids) == n
    body = {
        "sample_id": "HN-0001-22",
        "province": "01",
        "test_type": "PCR",
        "collected_at": "2021-08-01T08:00:00+07:00",
        "members": members,
    }
    body.update(changes)
    return body


def test_samples_single_and_pooled() -> None:
    errors: list[FieldError] = []
    one = parse_sample(
        sample_body(members=[{"person_qr": person(), "symptom_onset": "2021-07-30"}]),
        errors,
        QR,
        NOW,
        LIMITS,
    )
    assert one is not None and not errors
    assert one.members[0].person_id == PERSON and one.members[0].symptom_onset == date(2021, 7, 30)
    assert one.test_type is TestType.PCR
    pool = parse_sample(sample_body(10), errors, QR, NOW, LIMITS)
    assert pool is not None and len(pool.members) == 10 and not errors


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (sample_body(11), "members", "pool-size"),
        (sample_body(members=[]), "members", "too-few-items"),
        (sample_body(test_type="ELISA"), "test_type", "unknown-enum"),
        (sample_body(sample_id="a b"), "sample_id", "invalid-value"),
        (sample_body(collected_at="2021-08-01T09:06:00Z"), "collected_at", "time-in-future"),
        (sample_body(collected_at="2021-07-28T08:00:00Z"), "collected_at", "time-too-old"),
        (
            sample_body(members=[{"person_id": PERSON}, {"person_qr": person()}]),
            "members[1].person_qr",
            "duplicate-member",
        ),
        (
            sample_body(members=[{"person_id": PERSON, "person_qr": person()}]),
            "members[0].person_id",
            "invalid-value",
        ),
        (sample_body(members=[{"symptom_onset": None}]), "members[0].person_qr", "missing"),
        (
            sample_body(members=[{"person_id": PERSON, "symptom_onset": "2021-08-02"}]),
            "members[0].symptom_onset",
            "out-of-range",
        ),
    ],
)
def test_bad_samples(body: dict[str, Any], field: str, code: str) -> None:
    errors: list[FieldError] = []
    assert parse_sample(body, errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {field: code}


def test_a_sample_names_every_fault_at_once() -> None:
    # Checks across members (a person twice, an onset after the day of collection) are
    # reported with the other fields' errors, each at its member.
    body = sample_body(
        sample_id="a b",
        members=[
            {"person_id": PERSON},
            {"person_qr": person()},
            {"person_id": PERSON2, "symptom_onset": "2021-08-05"},
        ],
    )
    errors: list[FieldError] = []
    assert parse_sample(body, errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {
        "sample_id": "invalid-value",
        "members[1].person_qr": "duplicate-member",
        "members[2].symptom_onset": "out-of-range",
    }
    assert errors[1].message == "the same person is already members[0]"
    # A pool too large is refused before its members are read.
    errors.clear()
    assert parse_sample(sample_body(11, members=[{}] * 11), errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {"members": "pool-size"}


@pytest.mark.parametrize(
    ("member", "faults"),
    [
        # Both named, even one as null, is person_id's error; the member's other fields are
        # judged all the same.
        ({"person_qr": "x", "person_id": None}, {"person_id": "invalid-value"}),
        (
            {"person_qr": "x", "person_id": PERSON, "symptom_onset": "1 Aug"},
            {"person_id": "invalid-value", "symptom_onset": "invalid-value"},
        ),
        ({"person_id": None}, {"person_id": "missing"}),
        ({"person_qr": None, "extra": 1}, {"person_qr": "missing", "extra": "unknown-field"}),
    ],
)
def test_a_member_names_its_person_once(member: dict[str, Any], faults: dict[str, str]) -> None:
    errors: list[FieldError] = []
    body = sample_body(members=[{"person_id": PERSON2}, member])
    assert parse_sample(body, errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {f"members[1].{name}": code for name, code in faults.items()}


def test_symptom_onset_is_compared_with_the_local_day() -> None:
    # 2021-08-01T20:00Z is already 2 August in Ha Noi: an onset on 2 August is allowed.
    body = sample_body(
        collected_at="2021-08-01T20:00:00Z",
        members=[{"person_id": PERSON, "symptom_onset": "2021-08-02"}],
    )
    errors: list[FieldError] = []
    assert parse_sample(body, errors, QR, NOW + timedelta(hours=11), LIMITS) is not None, errors


def test_results() -> None:
    errors: list[FieldError] = []
    r = parse_result({"result": "POSITIVE"}, errors, NOW, LIMITS)
    assert r is not None and r.result is TestResult.POSITIVE and r.resulted_at is None
    assert parse_result({"result": "positive", "lab": "x"}, errors, NOW, LIMITS) is None
    assert codes(errors) == {"result": "unknown-enum", "lab": "unknown-field"}


def dose_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dose_id": "dose-000000001",
        "person_qr": person(),
        "administered_at": "2021-08-01T08:00:00Z",
        "vaccine": A_VACCINE,
        "birth_year": 1960,
        "residence_province": "79",
    }
    body.update(changes)
    return body


def test_doses() -> None:
    errors: list[FieldError] = []
    d = parse_dose(dose_body(), "", errors, QR, NOW, LIMITS)
    assert d is not None and d.person_id == PERSON and not errors
    bad = dose_body(
        vaccine="SPUTNIK_LIGHT", birth_year=1850, administered_at="2021-06-01T00:00:00Z"
    )
    assert parse_dose(bad, "doses[0]", errors, QR, NOW, LIMITS) is None
    assert codes(errors) == {
        "doses[0].vaccine": "unknown-vaccine",
        "doses[0].birth_year": "out-of-range",
        "doses[0].administered_at": "time-too-old",
    }


# --------------------------------------------------------------------------- problems


def test_problem_type_is_the_shared_class_or_validation_failed() -> None:
    one = validation_problem([FieldError("venue_qr", "forged-qr", "forged")])
    assert one.body("/v1/scans") == {
        "type": type_uri("forged-qr"),
        "title": PROBLEM_TYPES["forged-qr"].title,
        "status": 422,
        "detail": "venue_qr: forged",
        "instance": "/v1/scans",
        "field": "venue_qr",
        "errors": [
            {
                "field": "venue_qr",
                "code": "forged-qr",
                "type": type_uri("forged-qr"),
                "message": "forged",
            }
        ],
    }
    mixed = validation_problem(
        [FieldError("a", "missing", "m"), FieldError("b", "wrong-type", "w")]
    )
    assert mixed.body()["type"] == type_uri("validation-failed")
    assert mixed.body()["field"] == "a"


def test_every_problem_type_has_a_4xx_or_5xx_status() -> None:
    for slug, kind in PROBLEM_TYPES.items():
        assert 400 <= kind.status < 600, slug
        assert re.fullmatch(r"[a-z-]+", slug)
    assert Problem("broker-unavailable", "x").status == 503


# --------------------------------------------------------------------------- events and caches


def test_events_encode_with_the_registry() -> None:
    registry = default_registry()
    scan_req = parse_scan(scan_body(), "", [], QR, NOW, LIMITS)
    assert scan_req is not None
    out = events.checkin_scanned(scan_req, ScanMethod.PERSON_SCANNED_VENUE, "79", 45, NOW)
    decoded = registry.decode(registry.encode(out.record_name, out.record))
    assert out.key == PERSON and out.topic.name == "checkins" and out.event_id == scan_req.scan_id
    assert (
        decoded.record["venue_dwell_minutes"] == 45
        and decoded.record["method"] == "PERSON_SCANNED_VENUE"
    )
    sample = parse_sample(sample_body(2), [], QR, NOW, LIMITS)
    assert sample is not None
    code_list = [new_lookup_code() for _ in sample.members]
    out = events.sample_collected(sample, "s1", [lookup_code_hash(c) for c in code_list])
    decoded = registry.decode(registry.encode(out.record_name, out.record))
    assert out.key == sample.sample_id and out.event_id == "HN-0001-22.collected"
    assert [m["lookup_code_sha256"] for m in decoded.record["members"]] == [
        hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in code_list
    ]
    dose = parse_dose(dose_body(), "", [], QR, NOW, LIMITS)
    assert dose is not None
    out = events.dose_administered(dose, "s1")
    assert out.key == PERSON and out.event_id == dose.dose_id
    registry.encode(out.record_name, out.record)


def test_new_ids_are_random_and_well_formed() -> None:
    ids = {events.new_id("v") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"v_[a-z2-7]{20}", i) for i in ids)


def test_venue_directory_folds_the_topic() -> None:
    registry = default_registry()
    directory = VenueDirectory(registry)
    body = {"name": "A", "address": "B", "province": "01", "district": "1", "category": "c"}
    req = parse_venue(body, [])
    assert req is not None
    out = events.venue_registered(VENUE, req, NOW)
    directory.apply(VENUE.encode(), registry.encode(out.record_name, out.record))
    entry = directory.get(VENUE)
    assert entry is not None and entry.province == "01" and entry.default_dwell_minutes == 60
    directory.apply(b"x", b"garbage")
    assert directory.undecodable == 1
    directory.apply(VENUE.encode(), None)
    assert directory.get(VENUE) is None


def test_sample_book_keeps_the_first_result() -> None:
    registry = default_registry()
    book = SampleBook(registry)
    sample = parse_sample(sample_body(3), [], QR, NOW, LIMITS)
    assert sample is not None
    out = events.sample_collected(sample, "s1", ["0" * 64] * 3)
    book.apply(None, registry.encode(out.record_name, out.record))
    known = book.get(sample.sample_id)
    assert known is not None and known.member_count == 3 and known.result is None
    for result in ("POSITIVE", "NEGATIVE"):
        out = events.sample_resulted(sample.sample_id, result, NOW, "lab1")
        book.apply(None, registry.encode(out.record_name, out.record))
    known = book.get(sample.sample_id)
    assert known is not None and known.result is TestResult.POSITIVE
    out = events.sample_resulted("unknown", "POSITIVE", NOW, "lab1")
    book.apply(None, registry.encode(out.record_name, out.record))
    assert book.get("unknown") is None


# --------------------------------------------------------------------------- idempotency


async def test_guard_runs_one_write_per_key() -> None:
    guard: IdempotencyGuard[int] = IdempotencyGuard(capacity=10)
    calls = 0
    release = asyncio.Event()

    async def write() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 7

    first = asyncio.ensure_future(guard.run("k", b"a", write, within=5))
    second = asyncio.ensure_future(guard.run("k", b"a", write, within=5))
    await asyncio.sleep(0)
    with pytest.raises(IdConflict):
        await guard.run("k", b"other", write, within=5)
    release.set()
    outcomes = await asyncio.gather(first, second)
    assert calls == 1
    assert sorted(o.duplicate for o in outcomes) == [False, True]
    again = await guard.run("k", b"a", write, within=5)
    assert again.value == 7 and again.duplicate and calls == 1


async def test_guard_keeps_a_timed_out_write_for_the_retry() -> None:
    guard: IdempotencyGuard[int] = IdempotencyGuard()
    release = asyncio.Event()
    calls = 0

    async def write() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 1

    with pytest.raises(TimeoutError):
        await guard.run("k", b"a", write, within=0.01)
    assert guard.in_flight == 1
    release.set()
    outcome = await guard.run("k", b"a", write, within=5)
    # The first request was answered 503, so the retry is the first to be told "accepted".
    assert calls == 1 and outcome.value == 1 and not outcome.duplicate


async def test_guard_forgets_failed_writes() -> None:
    guard: IdempotencyGuard[int] = IdempotencyGuard()

    async def fail() -> int:
        raise RuntimeError("broker said no")

    async def succeed() -> int:
        return 2

    with pytest.raises(RuntimeError):
        await guard.run("k", b"a", fail, within=5)
    assert not guard.knows("k")
    assert (await guard.run("k", b"a", succeed, within=5)).value == 2


async def test_guard_evicts_completed_entries_beyond_capacity() -> None:
    guard: IdempotencyGuard[int] = IdempotencyGuard(capacity=3)

    async def write() -> int:
        return 0

    for i in range(10):
        await guard.run(f"k{i}", b"", write, within=5)
    assert len(guard) == 3 and guard.knows("k9") and not guard.knows("k0")


# --------------------------------------------------------------------------- OpenAPI


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_document_describes_every_route_and_resolves() -> None:
    from producers.app import ROUTES

    doc = openapi_document()
    json.dumps(doc)
    assert doc["openapi"] == "3.1.0"
    for route in ROUTES:
        assert route.methods is not None
        for method in route.methods - {"HEAD"}:
            assert method.lower() in doc["paths"][route.path], (route.path, method)
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            if method == "post":
                assert "requestBody" in op and {"401", "403", "422", "503"} <= set(op["responses"])
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["properties"]["type"]["enum"]) == {type_uri(s) for s in PROBLEM_TYPES}
