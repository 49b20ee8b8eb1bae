"""Epidemiology read routes (api/routes/epidemiology.py) in process, over counted rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from api.config import ReadApiConfig
from api.testing import bearer, client, running
from covidtech.settings import Settings
from tests.scenarios import Ev
from tests.unit.pipeline_support import run
from tests.unit.read_support import read_app
from tests.unit.test_epidemiology_pipeline import D1, T0, events

SETTINGS = Settings(secret="unit-test-secret-0123456789", rules="rt_min_cases=1")
CONFIG = ReadApiConfig(aggregate_cache_seconds=0, page_size=50)
FROM, TO = D1.isoformat(), (D1 + timedelta(days=5)).isoformat()


def declaration(n: int, symptoms: list[str]) -> Ev:
    return Ev(
        "declarations",
        f"p{n}",
        "covidtech.checkin.HealthDeclarationSubmitted",
        {
            "event_id": f"decl-{n}",
            "declaration_id": f"decl-{n}",
            "person_id": f"p{n}",
            "province": "79",
            "submitted_at": T0 + timedelta(hours=1),
            "symptoms": symptoms,
            "contact_with_case": False,
            "travelled_from_province": None,
        },
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    declarations = [declaration(i, symptoms) for i, symptoms in enumerate([["FEVER"], [], []])]
    _, store = await run([*events(), *declarations])
    app = read_app(SETTINGS, CONFIG, store)
    async with running(app), client(app) as c:
        yield c


def auth(*scopes: str) -> dict[str, str]:
    return bearer(SETTINGS, scopes)


async def get(c: httpx.AsyncClient, what: str, area: str, scope: str = "moh") -> httpx.Response:
    return await c.get(
        f"/v1/epidemiology/{what}",
        params={"area": area, "from": FROM, "to": TO},
        headers=auth(scope),
    )


async def test_cases_positivity_and_syndromic_per_day(http: httpx.AsyncClient) -> None:
    r = await get(http, "cases", "79", "province:79")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["area"] == "79" and len(body["rows"]) == 6  # zero-filled days
    by_day = {row["date"]: row for row in body["rows"]}
    assert by_day[FROM] == {
        "province": "79",
        "date": FROM,
        "by_sampling_date": 1,
        "by_result_date": 0,
    }
    assert sum(row["by_result_date"] for row in body["rows"]) == 2
    pos = {row["date"]: row for row in (await get(http, "positivity", "79")).json()["rows"]}
    d4 = (D1 + timedelta(days=4)).isoformat()
    assert (pos[d4]["tests"], pos[d4]["positives"], pos[d4]["positivity"]) == (4, 2, 0.5)
    assert pos[FROM]["positivity"] is None  # no tests that day
    syn = (await get(http, "syndromic", "79")).json()["rows"]
    assert sum(r["declarations"] for r in syn) == 3 and sum(r["symptomatic"] for r in syn) == 1


async def test_the_nation_sums_provinces_and_scopes_hold(http: httpx.AsyncClient) -> None:
    rows = (await get(http, "cases", "VN")).json()["rows"]
    assert {r["province"] for r in rows} == {"VN", "79"}
    nation = [r for r in rows if r["province"] == "VN"]
    assert nation == [{**r, "province": "VN"} for r in rows if r["province"] == "79"]
    assert (await get(http, "cases", "79", "province:01")).status_code == 403
    assert (await get(http, "rt", "VN", "province:79")).status_code == 403
    assert (await get(http, "cases", "79", "tracer:hcm")).status_code == 403


async def test_rt_and_csv(http: httpx.AsyncClient) -> None:
    r = await get(http, "rt", "79")
    body = r.json()
    assert body["method"]["si_mean"] == 4.7 and body["method"]["min_cases"] == 1
    d3 = next(row for row in body["rows"] if row["date"] == (D1 + timedelta(days=3)).isoformat())
    assert d3["cases"] == 1 and d3["window_cases"] == 2
    assert d3["rt_lower"] < d3["rt"] < d3["rt_upper"]
    c = await get(http, "rt.csv", "79")
    assert c.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert list(rows[0]) == [
        "province",
        "date",
        "cases",
        "window_cases",
        "rt",
        "rt_lower",
        "rt_upper",
    ]
    assert rows[0]["rt"] == ""  # no estimate before the first case
    assert float(next(x for x in rows if x["date"] == d3["date"])["rt"]) == d3["rt"]
    again = await http.get(
        "/v1/epidemiology/rt.csv",
        params={"area": "79", "from": FROM, "to": TO},
        headers={**auth("moh"), "If-None-Match": c.headers["etag"]},
    )
    assert again.status_code == 304
