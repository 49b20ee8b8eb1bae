"""Programme read routes (api/routes/vaccination.py) in process, over rows the handlers computed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.config import ReadApiConfig
from api.testing import bearer, client, running
from covidtech.settings import Settings
from projections.programme_queries import PUBLIC_FIELDS
from tests.programme_scenarios import (
    allocation,
    appointment,
    day_at,
    programme_scenario,
    registration,
)
from tests.unit.pipeline_support import run
from tests.unit.read_support import MemoryLog, read_app

SETTINGS = Settings(secret="unit-test-secret-0123456789")
CONFIG = ReadApiConfig(aggregate_cache_seconds=0, page_size=50)


def scenario() -> list[Any]:
    # programme_scenario() plus a person whose appointment day ended by the wall clock while
    # the province's clock (its last supply or dose event) is still before that day's end.
    return [
        *programme_scenario(),
        registration("late", day_at(0, 9), district="769"),
        appointment("late", "a-late", day_at(4, 9)),
        allocation("alloc-3", 10, day_at(4, 8)),
    ]


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryLog]]:
    _, store = await run(scenario())
    log = MemoryLog()
    app = read_app(SETTINGS, CONFIG, store, event_log=log)
    async with running(app), client(app) as c:
        yield c, log


Http = tuple[httpx.AsyncClient, MemoryLog]


def auth(*scopes: str) -> dict[str, str]:
    return bearer(SETTINGS, scopes)


async def test_public_figures_are_aggregates_only_and_cacheable(http: Http) -> None:
    c, log = http
    r = await c.get("/v1/public/vaccination")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "public, max-age=300"
    body = r.json()
    # The documented shape, and nothing else: no field could carry a person.
    assert set(body) == {"date", "nation", "provinces"}
    assert list(body["nation"]) == list(PUBLIC_FIELDS[2:])
    assert len(body["provinces"]) == 63
    assert all(list(p) == list(PUBLIC_FIELDS) for p in body["provinces"])
    (hcm,) = [p for p in body["provinces"] if p["province"] == "79"]
    assert hcm == {
        "province": "79",
        "name": hcm["name"],
        "allocated": 1510,
        "administered": 3,
        "registered": 7,
        "people_vaccinated": 2,  # hw1 and hw3 (coverage: every resident with a dose)
        "people_fully_vaccinated": 2,
    }
    assert body["nation"]["allocated"] == 1510
    for person in ("hw1", "hw2", "hw3", "g1", "g2", "old", "late", "reg-", "site-1"):
        assert person not in r.text
    assert log.published == []  # nothing personal was read, nothing audited
    again = await c.get("/v1/public/vaccination", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


async def test_public_figures_as_csv(http: Http) -> None:
    c, _ = http
    r = await c.get("/v1/public/vaccination.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["cache-control"].startswith("public")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["date", *PUBLIC_FIELDS]
    assert len(rows) == 63
    (hcm,) = [row for row in rows if row["province"] == "79"]
    assert (hcm["allocated"], hcm["registered"]) == ("1510", "7")


async def test_registrations_by_group_and_status_are_paged_and_audited(http: Http) -> None:
    c, log = http
    r = await c.get(
        "/v1/vaccination/registrations?province=79&limit=2", headers=auth("province:79")
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    body = r.json()
    counts = {(x["priority_group"], x["status"]): x["people"] for x in body["counts"]}
    assert counts == {
        ("HEALTH_WORKER", "VACCINATED"): 2,
        ("HEALTH_WORKER", "NO_SHOW"): 1,
        ("AGE_65_PLUS", "REGISTERED"): 1,
        ("GENERAL", "SCHEDULED"): 1,
        ("GENERAL", "REGISTERED"): 2,
    }
    seen = [i["person_id"] for i in body["items"]]
    token = body["next_page_token"]
    while token:
        r = await c.get(
            f"/v1/vaccination/registrations?province=79&limit=2&page_token={token}",
            headers=auth("province:79"),
        )
        assert r.status_code == 200, r.text
        seen += [i["person_id"] for i in r.json()["items"]]
        token = r.json()["next_page_token"]
    # By group (priority order), then status (REGISTERED, SCHEDULED, VACCINATED, NO_SHOW),
    # then registration time.
    assert seen == ["hw1", "hw3", "hw2", "old", "g1", "g2", "late"]
    assert len(log.published) == 4  # one audit record per page read
    r = await c.get(
        "/v1/vaccination/registrations?province=79&group=HEALTH_WORKER&status=NO_SHOW",
        headers=auth("moh"),
    )
    assert [i["person_id"] for i in r.json()["items"]] == ["hw2"]


@pytest.mark.parametrize(
    ("path", "scopes", "status", "slug"),
    [
        ("/v1/vaccination/registrations?province=79", ("province:01",), 403, "insufficient-scope"),
        ("/v1/vaccination/registrations?province=79", ("tracer:79",), 403, "insufficient-scope"),
        ("/v1/vaccination/registrations?province=79", (), 401, "token-missing"),
        ("/v1/vaccination/registrations?province=79&stauts=X", ("moh",), 400, "invalid-parameter"),
        ("/v1/vaccination/registrations?province=79&group=VIP", ("moh",), 400, "invalid-parameter"),
        ("/v1/vaccination/waiting-list?province=79", ("moh",), 400, "invalid-parameter"),
        ("/v1/vaccination/stock?province=01", ("province:79",), 403, "insufficient-scope"),
        ("/v1/vaccination/plans/99/progress", ("moh",), 400, "invalid-parameter"),
        (
            "/v1/vaccination/registrations?province=79&page_token=x",
            ("moh",),
            400,
            "invalid-page-token",
        ),
    ],
)
async def test_wrong_scopes_and_bad_parameters_are_problems(
    http: Http, path: str, scopes: tuple[str, ...], status: int, slug: str
) -> None:
    c, log = http
    r = await c.get(path, headers=auth(*scopes) if scopes else {})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == f"urn:covidtech:problem:{slug}"
    assert "hw1" not in r.text
    assert log.published == []


async def test_the_waiting_list_is_in_serving_order(http: Http) -> None:
    c, log = http
    r = await c.get(
        "/v1/vaccination/waiting-list?province=79&district=760", headers=auth("province:79")
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["person_id"], i["status"]) for i in items] == [
        ("hw2", "NO_SHOW"),
        ("old", "REGISTERED"),
        ("g1", "REGISTERED"),
    ]
    assert len(log.published) == 1
    r = await c.get(
        "/v1/vaccination/waiting-list?province=79&district=769", headers=auth("province:79")
    )
    (late,) = r.json()["items"]
    # Scheduled as of the province's clock; its day has ended by the wall clock.
    assert (late["status"], late["appointment_overdue"]) == ("SCHEDULED", True)


async def test_stock_and_plan_progress(http: Http) -> None:
    c, log = http
    r = await c.get("/v1/vaccination/stock", headers=auth("province:79"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"].startswith("private, max-age=")
    body = r.json()
    az = next(i for i in body["items"] if i["vaccine"] == "AZ")
    assert (az["allocated"], az["administered"], az["discarded"], az["in_stock"]) == (
        1010,
        2,
        5,
        1003,
    )
    assert body["total"]["allocated"] == 1510
    r = await c.get("/v1/vaccination/stock", headers=auth("moh"))
    assert {i["province"] for i in r.json()["items"]} == {"79"}
    r = await c.get("/v1/vaccination/plans/79/progress", headers=auth("moh"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"]["plan_id"] == "plan-1"
    hw = body["groups"][0]
    assert hw["priority_group"] == "HEALTH_WORKER"
    assert hw["people_vaccinated"]["target"] == 3 and hw["people_vaccinated"]["achieved"] == 2
    assert hw["people_fully_vaccinated"]["reached"] is True
    assert log.published == []  # aggregates are not personal data
    json.dumps(body)
