"""The dashboard's routes in the read API: the static page without a token, its two data
routes with the moh scope only (coverage of all provinces, ingest and processing rates from
the real Kafka)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.config import ReadApiConfig
from api.testing import bearer, client, running
from covidtech import kafka_clients
from covidtech.settings import Settings
from domain import reference
from domain.coverage import ADULT_BANDS
from projections.access import LOCAL_TZ
from projections.memory import InMemoryStore
from projections.model import Upsert
from tests.support import eventually_async

pytestmark = pytest.mark.integration

CONFIG = ReadApiConfig(aggregate_cache_seconds=0)
EXTERNAL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", re.IGNORECASE)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@dataclass
class Dashboard:
    settings: Settings
    http: httpx.AsyncClient
    store: InMemoryStore
    today: date


def coverage_row(province: str, band: str, day: date, vaccinated: int, full: int) -> Upsert:
    return Upsert(
        "coverage_daily",
        {
            "province": province,
            "age_band": band,
            "day": day,
            "first_doses": vaccinated,
            "completions": full,
            "boosters": 0,
            "doses": vaccinated + full,
            "people_vaccinated": vaccinated,
            "people_fully_vaccinated": full,
            "total_boosters": 0,
            "total_doses": vaccinated + full,
        },
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dash(env: Settings) -> AsyncIterator[Dashboard]:
    from datetime import UTC, datetime

    today = datetime.now(UTC).astimezone(LOCAL_TZ).date()
    store = InMemoryStore()
    await store.apply(
        [
            coverage_row("79", "18-49", today - timedelta(days=3), 90_000, 40_000),
            coverage_row("79", "0-11", today - timedelta(days=1), 10_000, 0),
            coverage_row("01", "65+", today - timedelta(days=2), 5_000, 5_000),
        ]
    )
    app = create_app(env, config=CONFIG, store=store)
    async with running(app), client(app) as http:
        yield Dashboard(env, http, store, today)


async def test_the_page_and_its_files_need_no_token(dash: Dashboard) -> None:
    page = await dash.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-cache"
    assert '<script src="/dashboard/app.js"' in page.text
    again = await dash.http.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
    js = await dash.http.get("/dashboard/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = await dash.http.get("/dashboard/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # Offline: nothing is loaded from elsewhere (the SVG namespace is a name, not a fetch).
    for text in (page.text, js.text, css.text):
        assert not EXTERNAL.findall(text.replace(SVG_NAMESPACE, ""))
    for missing in ("/dashboard/secrets.py", "/dashboard/..%2Fdashboard.py", "/dashboard/x.js"):
        r = await dash.http.get(missing)
        assert r.status_code == 404, missing
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_coverage_by_province_is_moh_only(dash: Dashboard) -> None:
    url = "/v1/dashboard/coverage-by-province"
    assert (await dash.http.get(url)).status_code == 401
    for scope in ("province:79", "tracer:79", "app"):
        r = await dash.http.get(url, headers=bearer(dash.settings, [scope]))
        assert r.status_code == 403, scope
    r = await dash.http.get(f"{url}?provnce=79", headers=bearer(dash.settings, ["moh"]))
    assert r.status_code == 400
    r = await dash.http.get(f"{url}?date=2021-13-01", headers=bearer(dash.settings, ["moh"]))
    assert r.status_code == 400


async def test_coverage_by_province_per_hundred(dash: Dashboard) -> None:
    moh = bearer(dash.settings, ["moh"])
    r = await dash.http.get("/v1/dashboard/coverage-by-province", headers=moh)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"].startswith("private, max-age=")
    assert r.headers["vary"] == "Authorization" and r.headers["etag"]
    body = r.json()
    assert body["date"] == dash.today.isoformat() and body["age_band"] == "all"
    provinces = {p["province"]: p for p in body["provinces"]}
    assert len(provinces) == 63
    hcmc = provinces["79"]
    assert hcmc["name"] == reference.PROVINCES["79"].name
    assert hcmc["people_vaccinated"] == 100_000 and hcmc["people_fully_vaccinated"] == 40_000
    population = reference.population("79")
    assert hcmc["population"] == population
    assert hcmc["people_vaccinated_per_hundred"] == round(100 * 100_000 / population, 6)
    assert provinces["48"]["people_vaccinated"] == 0
    assert body["nation"]["people_vaccinated"] == 105_000
    assert body["nation"]["population"] == reference.population("VN")

    adults = await dash.http.get("/v1/dashboard/coverage-by-province?age_band=18%2B", headers=moh)
    hcmc_adults = {p["province"]: p for p in adults.json()["provinces"]}["79"]
    assert hcmc_adults["people_vaccinated"] == 90_000  # the 0-11 band is not counted
    assert hcmc_adults["population"] == sum(reference.population("79", b) for b in ADULT_BANDS)

    before = (dash.today - timedelta(days=2)).isoformat()
    earlier = await dash.http.get(f"/v1/dashboard/coverage-by-province?date={before}", headers=moh)
    assert {p["province"]: p for p in earlier.json()["provinces"]}["79"]["people_vaccinated"] == (
        90_000
    )
    cached = await dash.http.get(
        "/v1/dashboard/coverage-by-province", headers={**moh, "If-None-Match": r.headers["etag"]}
    )
    assert cached.status_code == 304


async def test_rates_follow_the_source_topics(dash: Dashboard) -> None:
    url = "/v1/ops/rates"
    assert (await dash.http.get(url)).status_code == 401
    assert (
        await dash.http.get(url, headers=bearer(dash.settings, ["province:79"]))
    ).status_code == 403
    moh = bearer(dash.settings, ["moh"])
    first = await dash.http.get(url, headers=moh)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    assert first.json()["group"] == dash.settings.app_id
    start = first.json()["appended"]

    producer = kafka_clients.producer(dash.settings, acks="all")
    await producer.start()
    try:
        for i in range(25):
            await producer.send_and_wait(dash.settings.topic("declarations"), b"x", key=b"%d" % i)
    finally:
        await producer.stop()

    async def rate_seen() -> dict[str, object] | None:
        body: dict[str, object] = (await dash.http.get(url, headers=moh)).json()
        appended = body["appended"]
        assert isinstance(appended, int)
        return body if appended >= start + 25 and body["ingest_per_second"] else None

    body = await eventually_async(rate_seen, within=30, interval=0.5, what="an ingest rate")
    assert body["lag"] == body["appended"]  # no worker: nothing processed
    assert body["processing_per_second"] == 0
    # The lag per topic the workers read, source and derived, prefix-free.
    topics = {row["topic"]: row for row in body["topics"]}  # type: ignore[attr-defined]
    assert topics["declarations"] == {"topic": "declarations", "kind": "source", "lag": 25}
    assert topics["visits"] == {"topic": "visits", "kind": "derived", "lag": 0}
    samples = body["samples"]
    assert isinstance(samples, list) and samples
