"""Programme write routes (producers/routes/{registrations,appointments,stock,plans}.py) against
an in-memory event log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from covidtech.settings import Settings
from covidtech.web.problems import FieldError, Problem, problem_response
from domain import reference
from domain.programme import PriorityGroup
from domain.qr import QrKind, QrSigner
from producers.app import ROUTES
from producers.memory import memory_service, with_service
from producers.openapi import openapi_document
from producers.requests.common import VaccinationLimits
from producers.requests.supply import parse_allocation, parse_discard, parse_plan
from producers.requests.vaccination import parse_registration, parse_registration_list
from producers.service import IngestService
from tests.unit.ingest_support import MemoryLog

NOW = datetime(2021, 8, 2, 3, 0, tzinfo=UTC)
#: The programme's routes of the ingest app.
PROGRAMME_ROUTES = [
    r for r in ROUTES if isinstance(r, Route) and r.path.startswith("/v1/vaccination/")
]
SECRET = "unit-test-secret-0123456789"


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryLog, IngestService]]:
    log = MemoryLog()
    svc = memory_service(Settings(secret=SECRET), lambda: NOW, log=log)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    inner = Starlette(routes=PROGRAMME_ROUTES, exception_handlers={Problem: on_problem})

    app = with_service(inner, svc)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest"
    ) as client:
        yield client, log, svc


def auth(*scopes: str) -> dict[str, str]:
    token = (
        Settings(secret=SECRET).token_signer().issue("tests", scopes, timedelta(hours=1), now=NOW)
    )
    return {"Authorization": f"Bearer {token}"}


def person_qr(svc: IngestService, person: str) -> str:
    return svc.qr.payload(QrKind.PERSON, person)


def pid(n: int) -> str:
    return "p_" + "abcdefghijklmnopqrst"[:19] + "abcdefghijklmnopqrstuvwxyz234567"[n % 32]


def registration(n: int, **changes: Any) -> dict[str, Any]:
    body = {
        "registration_id": f"reg-{n:06d}",
        "person_id": pid(n),
        "province": "79",
        "district": "760",
        "priority_group": "HEALTH_WORKER",
    }
    body.update(changes)
    return body


Ingest = tuple[httpx.AsyncClient, MemoryLog, IngestService]


async def test_a_person_registers_with_their_qr_and_a_retry_is_a_duplicate(
    ingest: Ingest,
) -> None:
    client, log, svc = ingest
    body = registration(1, priority_group="GENERAL", birth_year=1990)
    body["person_qr"] = person_qr(svc, body.pop("person_id"))
    r = await client.post("/v1/vaccination/registrations", json=body, headers=auth("app"))
    assert r.status_code == 202, r.text
    assert r.json() == {"registration_id": "reg-000001", "status": "accepted"}
    r = await client.post("/v1/vaccination/registrations", json=body, headers=auth("app"))
    assert (r.status_code, r.json()["status"]) == (200, "duplicate")
    ((topic, key, name, record),) = log.events()
    assert (topic, key, name) == (
        "vaccination-registrations",
        pid(1),
        "covidtech.vaccination.VaccinationRegistered",
    )
    assert record["registered_at"] == NOW and record["institution_id"] is None
    # The same id with other content is a conflict; nothing more is written.
    r = await client.post(
        "/v1/vaccination/registrations",
        json={**body, "district": "761"},
        headers=auth("app"),
    )
    assert r.status_code == 409 and r.json()["field"] == "registration_id"
    assert len(log.records) == 1


async def test_an_app_cannot_register_someone_by_a_typed_person_id(ingest: Ingest) -> None:
    client, log, _ = ingest
    r = await client.post(
        "/v1/vaccination/registrations", json=registration(1), headers=auth("app")
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"person_id", "person_qr"}
    assert log.records == []


async def test_an_institution_list_is_answered_per_item(ingest: Ingest) -> None:
    client, log, _ = ingest
    items = [registration(n) for n in range(5)]
    items.append(registration(2))  # the same row twice: a duplicate
    items.append(registration(9, province="99"))  # an invalid row
    items.append(registration(10, person_id=pid(3)))  # someone already in the list
    r = await client.post(
        "/v1/vaccination/registrations",
        json={"registrations": items},
        headers=auth("institution:hospital-7"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (5, 1, 2)
    statuses = [x["status"] for x in body["results"]]
    assert statuses == ["accepted"] * 5 + ["duplicate", "rejected", "rejected"]
    assert body["results"][6]["problem"]["field"] == "registrations[6].province"
    assert body["results"][7]["problem"]["errors"][0]["code"] == "duplicate"
    events = log.events()
    assert len(events) == 5
    assert {e[3]["institution_id"] for e in events} == {"hospital-7"}


async def test_a_list_needs_an_institution_and_at_most_1000_people(ingest: Ingest) -> None:
    client, log, _ = ingest
    one = {"registrations": [registration(1)]}
    r = await client.post("/v1/vaccination/registrations", json=one, headers=auth("app"))
    assert r.status_code == 403
    too_many = {"registrations": [registration(n) for n in range(1001)]}
    r = await client.post(
        "/v1/vaccination/registrations", json=too_many, headers=auth("institution:i1")
    )
    assert (r.status_code, r.json()["field"]) == (422, "registrations")
    r = await client.post(
        "/v1/vaccination/registrations",
        json={"institution_id": "other", **one},
        headers=auth("institution:i1"),
    )
    assert (r.status_code, r.json()["field"]) == (403, "institution_id")
    assert log.records == []


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"priority_group": "VIP"}, "priority_group", "unknown-enum"),
        ({"priority_group": "AGE_65_PLUS", "birth_year": 1990}, "birth_year", "invalid-value"),
        ({"registration_id": "x"}, "registration_id", "invalid-value"),
        ({"district": ""}, "district", "invalid-value"),
        ({"extra": 1}, "extra", "unknown-field"),
    ],
)
async def test_bad_registrations_name_the_field(
    ingest: Ingest, changes: dict[str, Any], field: str, code: str
) -> None:
    client, log, _ = ingest
    r = await client.post(
        "/v1/vaccination/registrations",
        json=registration(1, **changes),
        headers=auth("institution:i1"),
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (r.json()["field"], r.json()["errors"][0]["code"]) == (field, code)
    assert log.records == []


async def test_appointments_and_cancellations(ingest: Ingest) -> None:
    client, log, _ = ingest
    site = auth("site:s1@79")
    appt = {
        "appointment_id": "appt-00000001",
        "person_id": pid(1),
        "appointment_at": "2021-08-05T09:00:00+07:00",
    }
    r = await client.post("/v1/vaccination/appointments", json=appt, headers=site)
    assert r.status_code == 202, r.text
    r = await client.post(
        "/v1/vaccination/appointments/appt-00000001/cancel",
        json={"person_id": pid(1), "reason": "moved"},
        headers=site,
    )
    assert r.status_code == 202, r.text
    (scheduled, cancelled) = log.events()
    assert scheduled[3]["site_id"] == "s1" and scheduled[3]["scheduled_at"] == NOW
    assert cancelled[3]["event_id"] == "appt-00000001.cancelled"
    r = await client.post(
        "/v1/vaccination/appointments",
        json={**appt, "appointment_at": "2022-08-05T09:00:00Z"},
        headers=site,
    )
    assert (r.status_code, r.json()["field"]) == (422, "appointment_at")
    r = await client.post("/v1/vaccination/appointments", json=appt, headers=auth("app"))
    assert r.status_code == 403
    r = await client.post(
        "/v1/vaccination/appointments", json={**appt, "site_id": "s2"}, headers=site
    )
    assert (r.status_code, r.json()["field"]) == (403, "site_id")


async def test_allocations_need_moh_and_discards_a_reason(ingest: Ingest) -> None:
    client, log, _ = ingest
    alloc = {"allocation_id": "alloc-0001", "province": "79", "vaccine": "AZ", "doses": 5000}
    r = await client.post("/v1/vaccination/allocations", json=alloc, headers=auth("province:79"))
    assert r.status_code == 403
    r = await client.post("/v1/vaccination/allocations", json=alloc, headers=auth("moh"))
    assert r.status_code == 202
    r = await client.post(
        "/v1/vaccination/allocations", json={**alloc, "doses": 0}, headers=auth("moh")
    )
    assert (r.status_code, r.json()["field"]) == (422, "doses")
    discard = {
        "discard_id": "disc-0001",
        "province": "79",
        "vaccine": "PFIZER",
        "doses": 6,
        "reason": "OPENED_VIAL_UNUSED",
        "discarded_at": "2021-08-02T09:00:00+07:00",
    }
    r = await client.post("/v1/vaccination/discards", json=discard, headers=auth("site:s1@79"))
    assert r.status_code == 202, r.text
    r = await client.post(
        "/v1/vaccination/discards",
        json={**discard, "discard_id": "disc-0002", "reason": "LOST", "vaccine": "XYZ"},
        headers=auth("site:s1@79"),
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"reason", "vaccine"}
    assert [e[2].rsplit(".", 1)[1] for e in log.events()] == ["VaccineAllocated", "DosesDiscarded"]
    assert {e[1] for e in log.events()} == {"79"}


async def test_a_province_sets_its_own_plan(ingest: Ingest) -> None:
    client, log, _ = ingest
    plan = {
        "target_date": "2021-12-31",
        "targets": {
            "AGE_65_PLUS": {"people_vaccinated": 700_000, "people_fully_vaccinated": 350_000},
            "HEALTH_WORKER": {"people_vaccinated": 60_000, "people_fully_vaccinated": 60_000},
        },
    }
    r = await client.put("/v1/vaccination/plans/79", json=plan, headers=auth("province:79"))
    assert r.status_code == 202, r.text
    plan_id = r.json()["plan_id"]
    r = await client.put("/v1/vaccination/plans/79", json=plan, headers=auth("province:79"))
    assert (r.status_code, r.json()["plan_id"]) == (200, plan_id)
    ((_, key, _, record),) = log.events()
    assert key == "79"
    assert [t["priority_group"] for t in record["targets"]] == ["HEALTH_WORKER", "AGE_65_PLUS"]
    r = await client.put("/v1/vaccination/plans/01", json=plan, headers=auth("province:79"))
    assert r.status_code == 403
    r = await client.put("/v1/vaccination/plans/01", json=plan, headers=auth("moh"))
    assert r.status_code == 202


@pytest.mark.parametrize(
    ("targets", "field", "code"),
    [
        ({}, "targets", "too-few-items"),
        (
            {"VIP": {"people_vaccinated": 1, "people_fully_vaccinated": 1}},
            "targets.VIP",
            "unknown-enum",
        ),
        (
            {"GENERAL": {"people_vaccinated": 1, "people_fully_vaccinated": 2}},
            "targets.GENERAL.people_fully_vaccinated",
            "invalid-value",
        ),
        (
            {"GENERAL": {"people_vaccinated": 10**9, "people_fully_vaccinated": 0}},
            "targets.GENERAL.people_vaccinated",
            "out-of-range",
        ),
        ([], "targets", "wrong-type"),
    ],
)
async def test_bad_plans_name_the_field(
    ingest: Ingest, targets: Any, field: str, code: str
) -> None:
    client, log, _ = ingest
    r = await client.put(
        "/v1/vaccination/plans/79",
        json={"target_date": "2021-12-31", "targets": targets},
        headers=auth("moh"),
    )
    assert r.status_code == 422, r.text
    assert (r.json()["field"], r.json()["errors"][0]["code"]) == (field, code)
    r = await client.put(
        "/v1/vaccination/plans/79",
        json={"target_date": "2021-01-01", "targets": {}},
        headers=auth("moh"),
    )
    assert "target_date" in {e["field"] for e in r.json()["errors"]}
    assert log.records == []


def test_the_openapi_paths_cover_every_route() -> None:
    paths = openapi_document()["paths"]
    assert len(PROGRAMME_ROUTES) == 6
    for route in PROGRAMME_ROUTES:
        assert route.methods is not None
        for method in route.methods - {"HEAD"}:
            operation = paths[route.path][method.lower()]
            assert {"401", "403", "422", "503"} <= set(operation["responses"])


QR = QrSigner(SECRET)
PERSON = pid(1)


@pytest.mark.parametrize(
    ("person", "allow_id", "expected"),
    [
        ({}, True, {("person_qr", "missing", "is required")}),
        ({"person_qr": None}, True, {("person_qr", "missing", "must not be null")}),
        ({"person_id": None}, True, {("person_id", "missing", "must not be null")}),
        (
            {"person_id": PERSON, "person_qr": None},
            True,
            {("person_id", "invalid-value", "give person_qr or person_id, not both")},
        ),
        (
            {"person_id": PERSON},
            False,
            {
                ("person_qr", "missing", "is required"),
                ("person_id", "unknown-field", "is not a field of this request"),
            },
        ),
        (
            {"person_qr": QrSigner("another-secret-0123456789").payload(QrKind.PERSON, PERSON)},
            False,
            {("person_qr", "forged-qr", "the QR code's signature does not match")},
        ),
        (
            {"person_qr": QR.payload(QrKind.VENUE, "v_abcdefghijklmnopqrst")},
            True,
            {("person_qr", "wrong-qr-kind", "must be a personal QR code")},
        ),
    ],
)
def test_a_registration_names_its_person_once(
    person: dict[str, Any], allow_id: bool, expected: set[tuple[str, str, str]]
) -> None:
    body = {k: v for k, v in registration(1).items() if k != "person_id"} | person
    errors: list[FieldError] = []
    assert parse_registration(body, "", errors, QR, NOW, allow_person_id=allow_id) is None
    assert {(e.field, e.code, e.message) for e in errors} == expected


def test_a_body_s_errors_come_in_field_order_under_its_path() -> None:
    body = registration(1, registration_id="x", person_qr=QR.payload(QrKind.PERSON, PERSON))
    body["district"] = " "
    errors: list[FieldError] = []
    assert (
        parse_registration(body, "registrations[4]", errors, QR, NOW, allow_person_id=True) is None
    )
    assert [(e.field, e.code) for e in errors] == [
        ("registrations[4].registration_id", "invalid-value"),
        ("registrations[4].person_id", "invalid-value"),
        ("registrations[4].district", "invalid-value"),
    ]


def test_a_registration_list_is_judged_as_an_envelope_first() -> None:
    errors: list[FieldError] = []
    assert parse_registration_list({"registrations": []}, errors) is None
    assert parse_registration_list({"registrations": [{}], "x": 1}, errors) is None
    assert parse_registration_list({"registrations": {}}, errors) is None
    assert [(e.field, e.code) for e in errors] == [
        ("registrations", "too-few-items"),
        ("x", "unknown-field"),
        ("registrations", "wrong-type"),
    ]
    items = parse_registration_list({"registrations": [{"a": 1}, 2]}, [])
    assert items == [("registrations[0]", {"a": 1}), ("registrations[1]", 2)]


def test_a_plan_s_targets_are_at_most_the_province_s_census() -> None:
    population = reference.population("01")
    errors: list[FieldError] = []
    body = {
        "target_date": "2021-12-31",
        "targets": {"GENERAL": {"people_vaccinated": population + 1, "people_fully_vaccinated": 0}},
    }
    assert parse_plan(body, "01", errors, NOW.date()) is None
    assert [(e.field, e.code, e.message) for e in errors] == [
        ("targets.GENERAL.people_vaccinated", "out-of-range", f"must be between 0 and {population}")
    ]
    plan = parse_plan(body, "79", [], NOW.date())  # Ho Chi Minh City has more people
    assert plan is not None and plan.targets == ((PriorityGroup.GENERAL, population + 1, 0),)


def test_stock_limits_and_windows_come_from_the_programme_s_limits() -> None:
    limits = VaccinationLimits(max_allocation_doses=10, discard_lateness=timedelta(days=1))
    alloc = {"allocation_id": "alloc-0001", "province": "79", "vaccine": "AZ", "doses": 11}
    errors: list[FieldError] = []
    assert parse_allocation(alloc, errors, limits) is None
    assert parse_allocation({**alloc, "doses": 10}, errors, limits) is not None
    discard = {
        "discard_id": "disc-0001",
        "province": "79",
        "vaccine": "AZ",
        "doses": 1,
        "reason": "EXPIRED",
        "discarded_at": "2021-07-31T00:00:00Z",
    }
    assert parse_discard(discard, errors, NOW) is not None
    assert parse_discard(discard, errors, NOW, limits) is None
    assert [(e.field, e.code) for e in errors] == [
        ("doses", "out-of-range"),
        ("discarded_at", "time-too-old"),
    ]


def test_the_programme_bodies_are_documented_by_their_models() -> None:
    document = openapi_document()
    paths = document["paths"]

    def body(path: str, method: str = "post") -> dict[str, Any]:
        schema: dict[str, Any] = paths[path][method]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        return schema

    single, batch = body("/v1/vaccination/registrations")["oneOf"]
    assert batch["properties"]["registrations"]["items"] == single
    assert batch["properties"]["registrations"]["maxItems"] == 1000
    for schema in (single, body("/v1/vaccination/appointments")):
        assert schema["oneOf"] == [{"required": ["person_qr"]}, {"required": ["person_id"]}]
        assert schema["properties"]["person_qr"]["type"] == "string"  # not nullable
    plan = body("/v1/vaccination/plans/{province}", "put")
    target = plan["properties"]["targets"]["additionalProperties"]
    assert target["required"] == ["people_vaccinated", "people_fully_vaccinated"]
    assert "$defs" not in str(document)
