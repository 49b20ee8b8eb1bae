"""The read API against the real Cassandra and Kafka: scopes, results, aggregates, lists,
pagination, audit, grants and revocation, problems."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from starlette.applications import Starlette

from api.app import create_app
from api.config import ReadApiConfig
from api.testing import EventStreamClient, bearer, client, running
from covidtech import kafka_clients
from covidtech.settings import Settings
from covidtech.tokens import TokenSigner
from projections.cassandra import CassandraStore
from projections.model import Query, StoreUnavailable
from schemas.codec import decode
from tests.integration.read_api_support import DataSet, alert_row, populate
from tests.support import eventually_async

pytestmark = pytest.mark.integration

CONFIG = ReadApiConfig(
    aggregate_cache_seconds=0, page_size=50, lookup_burst=1000, lookup_code_burst=1000
)


@dataclass
class Api:
    settings: Settings
    app: Starlette
    http: httpx.AsyncClient
    store: CassandraStore
    data: DataSet

    def auth(self, *scopes: str, **kw: Any) -> dict[str, str]:
        return bearer(self.settings, scopes, **kw)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(env: Settings) -> AsyncIterator[Api]:
    store = CassandraStore.from_settings(env)
    try:
        data = await populate(store)
        app = create_app(env, config=CONFIG, store=store)
        async with running(app), client(app) as http:
            yield Api(env, app, http, store, data)
    finally:
        store.close()


def is_problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"urn:covidtech:problem:{slug}", body
    assert body["status"] == status
    assert "Traceback" not in r.text


# ------------------------------------------------------------------------------ scope matrix

SCOPES = [
    "moh",
    "province:79",
    "tracer:79",
    "app",
    "venue-admin:79",
    "site:s1@79",
    "lab:l1@79",
    "institution:i1",
    "person:p79",
    "venue:v79@79",
]
MOH, PROV, TRACER, PERSON = "moh", "province", "tracer", "person"


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    ok: int = 200


def grant_body(now: datetime) -> dict[str, Any]:
    """A valid grant; it expires within the hour of the test's MOH tokens (a grant never
    outlives the token that issues it), counted from the wall clock, not the data set's
    ``now``."""
    del now
    expires = datetime.now(UTC) + timedelta(minutes=50)
    return {
        "agency": "So Y te TP.HCM",
        "scopes": ["province:79"],
        "purpose": "scope matrix",
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }


MOH_PROVINCE = frozenset({MOH, PROV})
CALLS = [
    Call("sample", "GET", "/v1/samples/s79", frozenset({MOH, PROV})),
    Call("coverage", "GET", "/v1/coverage?area=79", frozenset({MOH, PROV})),
    Call("coverage-series", "GET", "/v1/coverage/series?area=79", frozenset({MOH, PROV})),
    Call("doses-daily", "GET", "/v1/doses/daily?area=79", frozenset({MOH, PROV})),
    Call("vaccinations", "GET", "/v1/people/p79/vaccinations", frozenset({MOH, PROV})),
    Call("certificate", "GET", "/v1/people/p79/certificate", frozenset({MOH})),
    Call("my-certificate", "GET", "/v1/me/certificate", frozenset({PERSON})),
    Call("turnaround", "GET", "/v1/testing/turnaround?area=79", frozenset({MOH, PROV})),
    Call("alerts", "GET", "/v1/alerts?province=79", frozenset({MOH, PROV, TRACER})),
    Call("alert-stream", "GET", "/v1/alerts/stream?province=79", frozenset({MOH, PROV, TRACER})),
    Call("exposures", "GET", "/v1/people/p79/exposures", frozenset({MOH, TRACER})),
    Call("visits", "GET", "/v1/people/p79/visits", frozenset({MOH, TRACER})),
    Call("windows", "GET", "/v1/venues/v79/exposure-windows", frozenset({MOH, PROV, TRACER})),
    Call("sites", "GET", "/v1/exposure-sites?province=79", frozenset({MOH, PROV, TRACER})),
    Call("clusters", "GET", "/v1/clusters?province=79", frozenset({MOH, PROV, TRACER})),
    Call("chains", "GET", "/v1/provinces/79/chains", frozenset({MOH, PROV, TRACER})),
    Call("audit", "GET", "/v1/audit", frozenset({MOH})),
    Call("grant-create", "POST", "/v1/grants", frozenset({MOH}), body={}, ok=201),
    Call("grant-list", "GET", "/v1/grants", frozenset({MOH})),
    Call("grant-get", "GET", "/v1/grants/{grant}", frozenset({MOH})),
    Call("grant-revoke", "DELETE", "/v1/grants/{grant}", frozenset({MOH})),
    Call(
        "registrations", "GET", "/v1/vaccination/registrations?province=79", frozenset({MOH, PROV})
    ),
    Call(
        "waiting-list",
        "GET",
        "/v1/vaccination/waiting-list?province=79&district=760",
        frozenset({MOH, PROV}),
    ),
    Call("stock", "GET", "/v1/vaccination/stock?province=79", frozenset({MOH, PROV})),
    Call("plan-progress", "GET", "/v1/vaccination/plans/79/progress", frozenset({MOH, PROV})),
    *(
        Call(f"epi-{name}{ext}", "GET", f"/v1/epidemiology/{name}{ext}?area=79", MOH_PROVINCE)
        for name in ("cases", "positivity", "syndromic", "rt")
        for ext in ("", ".csv")
    ),
    Call("dashboard-coverage", "GET", "/v1/dashboard/coverage-by-province", frozenset({MOH})),
    Call("ops-rates", "GET", "/v1/ops/rates", frozenset({MOH})),
    Call("me", "GET", "/v1/me", frozenset({PERSON})),
    Call("my-visits", "GET", "/v1/me/visits", frozenset({PERSON})),
    Call("my-results", "GET", "/v1/me/results", frozenset({PERSON})),
    Call("my-doses", "GET", "/v1/me/doses", frozenset({PERSON})),
    Call("my-notices", "GET", "/v1/me/notices", frozenset({PERSON})),
    Call("my-notice-stream", "GET", "/v1/me/notices/stream", frozenset({PERSON})),
]
STREAMS = {"alert-stream", "my-notice-stream"}


def test_the_scope_matrix_covers_every_route_as_declared(api: Api) -> None:
    """The matrix below is checked against the route table: every operation that takes a
    token has a call, and each call's allowed scopes are the ones its operation declares, so
    a new route (or a changed declaration) cannot go untested."""
    from starlette.routing import Match, Route

    app = create_app(api.settings, config=CONFIG, store=api.store)
    declared = {
        (op.method, op.path): frozenset(k.value for k in op.scopes)
        for op in app.state.operations
        if op.scopes is not None
    }
    covered = {}
    for c in CALLS:
        path = c.path.split("?")[0].replace("{grant}", "g-any")
        scope = {"type": "http", "path": path, "method": c.method}
        [route] = [
            r for r in app.routes if isinstance(r, Route) and r.matches(scope)[0] == Match.FULL
        ]
        covered[(c.method, route.path)] = c.allowed
    assert covered == declared


async def call(api: Api, c: Call, headers: dict[str, str]) -> int:
    """Status of one call (streams: the status of the response start, then disconnect)."""
    path = c.path
    if "{grant}" in path:
        created = await api.http.post(
            "/v1/grants", json=grant_body(api.data.now), headers=api.auth("moh")
        )
        assert created.status_code == 201, created.text
        path = path.replace("{grant}", created.json()["grant_id"])
    if c.name in STREAMS:
        stream = EventStreamClient(api.app, path, headers)
        await stream.open()
        if stream.status == 200:
            await stream.disconnect()
        else:
            await stream.body()
        assert stream.status is not None
        return stream.status
    body = grant_body(api.data.now) if c.body is not None else None
    r = await api.http.request(c.method, path, json=body, headers=headers)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return r.status_code


@pytest.mark.parametrize("c", CALLS, ids=lambda c: c.name)
async def test_every_route_answers_allowed_scopes_and_refuses_the_others(api: Api, c: Call) -> None:
    got = {}
    for scope in SCOPES:
        got[scope] = await call(api, c, api.auth(scope))
    expected = {s: (c.ok if s.split(":")[0] in c.allowed else 403) for s in SCOPES}
    assert got == expected


def forged(settings: Settings) -> str:
    token = TokenSigner("another-secret-of-enough-length").issue(
        "mallory", ["moh"], timedelta(hours=1)
    )
    return token


def tampered(settings: Settings) -> str:
    token = settings.token_signer().issue("mallory", ["province:79"], timedelta(hours=1))
    head, claims, sig = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    raw["scopes"] = ["moh"]
    claims = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    return f"{head}.{claims}.{sig}"


@pytest.mark.parametrize("c", CALLS, ids=lambda c: c.name)
async def test_missing_expired_forged_or_tampered_tokens_get_401(api: Api, c: Call) -> None:
    expired = api.settings.token_signer().issue(
        "old", ["moh"], timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )
    cases = {
        "missing": ({}, "token-missing"),
        "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, "token-missing"),
        "expired": ({"Authorization": f"Bearer {expired}"}, "token-expired"),
        "forged": ({"Authorization": f"Bearer {forged(api.settings)}"}, "token-invalid"),
        "tampered": ({"Authorization": f"Bearer {tampered(api.settings)}"}, "token-invalid"),
        "garbage": ({"Authorization": "Bearer ct1.x.y"}, "token-invalid"),
    }
    for name, (headers, slug) in cases.items():
        path = c.path.replace("{grant}", "g-any")
        if c.name in STREAMS:
            stream = EventStreamClient(api.app, path, headers)
            await stream.open()
            body = json.loads(await stream.body())
            assert (stream.status, body["type"]) == (401, f"urn:covidtech:problem:{slug}"), name
            assert "www-authenticate" in stream.headers
            continue
        r = await api.http.request(
            c.method,
            path,
            json=grant_body(api.data.now) if c.body is not None else None,
            headers=headers,
        )
        is_problem(r, 401, slug)
        assert r.headers["www-authenticate"].startswith("Bearer"), name


# ------------------------------------------------------------------------------ citizens


async def test_a_citizen_reads_state_type_and_times_only(api: Api) -> None:
    typed = api.data.lookup_code.lower().replace("-", " ")
    r = await api.http.get(f"/v1/results/{typed}")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"state", "test_type", "collected_at", "resulted_at"}
    assert body["state"] == "NEGATIVE" and body["test_type"] == "PCR"
    pool = (await api.http.get(f"/v1/results/{api.data.pool_code}")).json()
    assert pool["state"] == "POOL_POSITIVE_RETEST"
    assert "s01" not in json.dumps(pool) and "p01" not in json.dumps(pool)


async def test_unknown_and_malformed_codes_are_the_same_404(api: Api) -> None:
    unknown = await api.http.get("/v1/results/0000-0000-0000-0000")
    malformed = await api.http.get("/v1/results/not-a-code")
    for r in (unknown, malformed):
        is_problem(r, 404, "not-found")
    strip = [{k: v for k, v in r.json().items() if k != "instance"} for r in (unknown, malformed)]
    assert strip[0] == strip[1]


async def test_lookups_are_rate_limited_per_client_address(api: Api) -> None:
    config = ReadApiConfig(lookup_burst=2, lookup_rate_per_second=0.01)
    app = create_app(api.settings, config=config, store=api.store)
    async with running(app), client(app, "10.0.0.1") as one, client(app, "10.0.0.2") as two:
        codes = [await one.get(f"/v1/results/{api.data.lookup_code}") for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        is_problem(codes[2], 429, "rate-limited")
        assert int(codes[2].headers["retry-after"]) >= 1
        assert (await two.get(f"/v1/results/{api.data.lookup_code}")).status_code == 200


async def test_lookups_of_one_code_are_limited_whatever_the_address(api: Api) -> None:
    config = ReadApiConfig(lookup_code_burst=3, lookup_code_rate_per_second=0.01)
    app = create_app(api.settings, config=config, store=api.store)
    async with running(app):
        answers = []
        for i in range(4):
            async with client(app, f"10.0.1.{i}") as http:
                answers.append(await http.get(f"/v1/results/{api.data.lookup_code}"))
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        is_problem(answers[3], 429, "rate-limited")
        async with client(app, "10.0.1.9") as http:  # another code is not held back
            assert (await http.get(f"/v1/results/{api.data.pool_code}")).status_code == 200


async def test_behind_a_trusted_proxy_lookups_are_limited_per_forwarded_address(
    api: Api,
) -> None:
    """`covidtech read-api --proxy-headers --forwarded-allow-ips <proxy>` (uvicorn's proxy
    headers): the forwarded address counts when the proxy is trusted, never otherwise."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    config = ReadApiConfig(lookup_burst=1, lookup_rate_per_second=0.01)
    app = create_app(api.settings, config=config, store=api.store)
    proxied: Any = ProxyHeadersMiddleware(app, trusted_hosts="10.9.9.9")  # type: ignore[arg-type]
    path = f"/v1/results/{api.data.lookup_code}"
    async with running(app):
        transport = httpx.ASGITransport(app=proxied, client=("10.9.9.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://read-api") as proxy:
            a = [await proxy.get(path, headers={"X-Forwarded-For": "203.0.113.1"}) for _ in "ab"]
            b = await proxy.get(path, headers={"X-Forwarded-For": "203.0.113.2"})
        assert [r.status_code for r in (*a, b)] == [200, 429, 200]
        untrusted = httpx.ASGITransport(app=proxied, client=("10.8.8.8", 40000))
        async with httpx.AsyncClient(transport=untrusted, base_url="http://read-api") as other:
            c = [
                await other.get(path, headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in "12"
            ]
        assert [r.status_code for r in c] == [200, 429]  # its own address, not the header's


# ------------------------------------------------------------------------------ health staff


async def test_samples_are_seen_by_their_province_only(api: Api) -> None:
    r = await api.http.get("/v1/samples/s79", headers=api.auth("province:79"))
    assert r.status_code == 200
    assert r.json()["state"] == "NEGATIVE" and r.json()["pooled"] is False
    assert r.headers["cache-control"] == "private, no-store"
    other = await api.http.get("/v1/samples/s79", headers=api.auth("province:01"))
    is_problem(other, 404, "not-found")
    pending = await api.http.get("/v1/samples/s01", headers=api.auth("moh"))
    assert pending.json()["state"] == "PENDING" and pending.json()["pooled"] is True


async def test_coverage_is_as_of_the_day_and_the_nation_sums_the_provinces(api: Api) -> None:
    today = api.data.today
    h = api.auth("moh")

    async def vaccinated(area: str, day: Any, band: str = "all") -> int:
        r = await api.http.get(
            "/v1/coverage", params={"area": area, "date": str(day), "age_band": band}, headers=h
        )
        assert r.status_code == 200, r.text
        return int(r.json()["people_vaccinated"])

    assert await vaccinated("79", today - timedelta(days=11)) == 0
    assert await vaccinated("79", today - timedelta(days=5)) == 100
    assert await vaccinated("79", today) == 150
    assert await vaccinated("79", today, "65+") == 0
    assert await vaccinated("VN", today) == 157
    assert await vaccinated("VN", today, "18+") == 157
    r = await api.http.get("/v1/coverage", params={"area": "79"}, headers=h)
    body = r.json()
    assert [b["age_band"] for b in body["by_age_band"]] == [
        "0-11",
        "12-17",
        "18-49",
        "50-64",
        "65+",
    ]
    assert body["population"] == sum(b["population"] for b in body["by_age_band"])
    assert body["drop_out"] == 0.5
    assert r.headers["cache-control"] == "private, max-age=60"
    again = await api.http.get(
        "/v1/coverage", params={"area": "79"}, headers={**h, "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"]


async def test_a_province_reads_its_own_area_only(api: Api) -> None:
    h = api.auth("province:79")
    for area in ("VN", "01"):
        r = await api.http.get("/v1/coverage", params={"area": area}, headers=h)
        is_problem(r, 403, "insufficient-scope")


async def test_coverage_series_carries_values_forward(api: Api) -> None:
    today = api.data.today
    r = await api.http.get(
        "/v1/coverage/series",
        params={"area": "79", "from": str(today - timedelta(days=11)), "to": str(today)},
        headers=api.auth("province:79"),
    )
    points = [p["people_vaccinated"] for p in r.json()["points"]]
    assert points == [0] + [100] * 8 + [150] * 3


async def test_doses_daily_and_its_unavailable_vaccine_filter(api: Api) -> None:
    today = api.data.today
    h = api.auth("moh")
    r = await api.http.get(
        "/v1/doses/daily",
        params={"area": "VN", "from": str(today - timedelta(days=2)), "to": str(today)},
        headers=h,
    )
    assert [d["doses"] for d in r.json()["days"]] == [70, 8, 0]
    assert r.json()["total"]["doses"] == 78
    r = await api.http.get("/v1/doses/daily", params={"area": "79", "vaccine": "AZ"}, headers=h)
    is_problem(r, 400, "filter-not-supported")


async def test_a_vaccination_record(api: Api) -> None:
    r = await api.http.get("/v1/people/p79/vaccinations", headers=api.auth("province:79"))
    body = r.json()
    assert [d["dose_id"] for d in body["doses"]] == ["d1", "d2"]
    assert body["status"]["fully_vaccinated"] is True and body["status"]["boosters"] == 0
    other = await api.http.get("/v1/people/p79/vaccinations", headers=api.auth("province:01"))
    is_problem(other, 404, "not-found")


async def test_turnaround_percentiles_and_late_samples(api: Api) -> None:
    r = await api.http.get(
        "/v1/testing/turnaround", params={"area": "79"}, headers=api.auth("province:79")
    )
    body = r.json()
    assert body["overall"]["count"] == 4
    assert (body["overall"]["p50"], body["overall"]["p90"]) == (7200, 86400)
    assert [(b["lab_id"], b["count"], b["p50"]) for b in body["by_lab"]] == [
        ("lab-a", 3, 7200),
        ("lab-b", 1, 86400),
    ]
    assert body["pending_late"]["count"] == 1
    assert body["pending_late"]["by_site"] == [{"site_id": "site-79", "count": 1}]


# ------------------------------------------------------------------------------ lists


async def list_all(api: Api, path: str, headers: dict[str, str], **params: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    for _ in range(100):
        q = {**params, **({"page_token": token} if token else {})}
        r = await api.http.get(path, params=q, headers=headers)
        assert r.status_code == 200, r.text
        items.extend(r.json()["items"])
        token = r.json()["next_page_token"]
        if token is None:
            return items
    raise AssertionError("pagination did not end")


async def test_alerts_page_through_days_newest_first_within_the_province(api: Api) -> None:
    now = api.data.now
    starts = [now - timedelta(hours=h) for h in (1, 1, 20, 30, 50, 75, 76)]
    rows = [
        m
        for i, s in enumerate(starts)
        for m in alert_row(
            "48", s, f"a48-{i}", f"c48-{i}", risk="HIGH" if i % 2 else "LOW", venue="v48"
        )
    ]
    rows += alert_row("49", now, "a49-0", "c49-0", venue="v49")
    await api.store.apply(rows)
    tracer = api.auth("tracer:48")
    got = await list_all(api, "/v1/alerts", tracer, limit=2)
    assert [a["alert_id"] for a in got] == [
        "a48-0",
        "a48-1",
        "a48-2",
        "a48-3",
        "a48-4",
        "a48-5",
        "a48-6",
    ]
    assert {a["province"] for a in got} == {"48"}
    high = await list_all(api, "/v1/alerts", tracer, limit=1, risk="HIGH")
    assert [a["alert_id"] for a in high] == ["a48-1", "a48-3", "a48-5"]
    national = await list_all(api, "/v1/alerts", api.auth("moh"), limit=3)
    assert {"a48-0", "a49-0", "a79-1", "a01-1"} <= {a["alert_id"] for a in national}
    assert (
        await list_all(api, "/v1/alerts", tracer, since=(now - timedelta(hours=25)).isoformat())
        == got[:3]
    )


async def test_alerts_are_active_ones_unless_asked_otherwise(api: Api) -> None:
    """Issue 15: a tracer asking for HIGH alerts also got WITHDRAWN ones (nobody to call)
    unless they added a filter."""
    now = api.data.now
    rows = [
        *alert_row("47", now - timedelta(hours=1), "a47-on", "c47-1", venue="v47"),
        *alert_row(
            "47", now - timedelta(hours=2), "a47-off", "c47-2", venue="v47", status="WITHDRAWN"
        ),
    ]
    await api.store.apply(rows)
    tracer = api.auth("tracer:47")

    async def ids(**params: Any) -> list[str]:
        return [a["alert_id"] for a in await list_all(api, "/v1/alerts", tracer, **params)]

    assert await ids() == ["a47-on"]
    assert await ids(risk="HIGH") == ["a47-on"]
    assert await ids(status="WITHDRAWN") == ["a47-off"]
    assert await ids(status="ANY") == ["a47-on", "a47-off"]


async def test_page_tokens_cannot_be_forged_or_moved_to_another_province(api: Api) -> None:
    first = await api.http.get(
        "/v1/alerts", params={"province": "48", "limit": 1}, headers=api.auth("moh")
    )
    token = first.json()["next_page_token"]
    assert token
    moved = await api.http.get(
        "/v1/alerts",
        params={"province": "01", "limit": 1, "page_token": token},
        headers=api.auth("moh"),
    )
    is_problem(moved, 400, "invalid-page-token")
    body, mac = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["b"]["provinces"] = ["01"]
    forged_body = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    forged_token = await api.http.get(
        "/v1/alerts",
        params={"province": "01", "limit": 1, "page_token": f"{forged_body}.{mac}"},
        headers=api.auth("moh"),
    )
    is_problem(forged_token, 400, "invalid-page-token")
    # Another province's tracer cannot use it either: the province is checked first.
    theirs = await api.http.get(
        "/v1/alerts",
        params={"province": "48", "limit": 1, "page_token": token},
        headers=api.auth("tracer:01"),
    )
    is_problem(theirs, 403, "insufficient-scope")
    mine = await api.http.get(
        "/v1/alerts", params={"limit": 1, "page_token": token}, headers=api.auth("tracer:01")
    )
    is_problem(mine, 400, "invalid-page-token")
    other_list = await api.http.get(
        "/v1/exposure-sites",
        params={"province": "48", "page_token": token},
        headers=api.auth("moh"),
    )
    is_problem(other_list, 400, "invalid-page-token")


async def test_a_tracer_reads_exposures_and_visits_of_people_of_its_province(api: Api) -> None:
    mine = api.auth("tracer:79")
    exposures = await api.http.get("/v1/people/p79/exposures", headers=mine)
    assert [a["alert_id"] for a in exposures.json()["items"]] == ["a79-1"]
    visits = await list_all(api, "/v1/people/p79/visits", mine, limit=2)
    assert [v["venue_id"] for v in visits] == ["v1", "v2", "v3"]
    window = await list_all(
        api,
        "/v1/people/p79/visits",
        mine,
        **{
            "from": (api.data.now - timedelta(hours=2, minutes=30)).isoformat(),
            "to": (api.data.now - timedelta(minutes=90)).isoformat(),
        },
    )
    assert [v["venue_id"] for v in window] == ["v2"]
    for path in ("/v1/people/p79/exposures", "/v1/people/p79/visits", "/v1/people/nobody/visits"):
        is_problem(await api.http.get(path, headers=api.auth("tracer:01")), 404, "not-found")


async def test_exposure_sites_windows_and_clusters_stay_in_the_province(api: Api) -> None:
    h = api.auth("province:79")
    sites = (await api.http.get("/v1/exposure-sites", headers=h)).json()["items"]
    assert [(s["province"], s["venue_id"], s["venue_name"]) for s in sites] == [
        ("79", "v79", "Cho Ben Thanh")
    ]
    windows = (await api.http.get("/v1/venues/v79/exposure-windows", headers=h)).json()
    assert windows["cases"] == 1 and len(windows["windows"]) == 1
    is_problem(await api.http.get("/v1/venues/v01/exposure-windows", headers=h), 404, "not-found")
    clusters = (await api.http.get("/v1/clusters", headers=h)).json()["items"]
    assert [c["venue_id"] for c in clusters] == ["v79"]
    everything = (await api.http.get("/v1/clusters", headers=api.auth("moh"))).json()["items"]
    assert {c["venue_id"] for c in everything} >= {"v79", "v01"}
    is_problem(
        await api.http.get("/v1/exposure-sites", params={"province": "01"}, headers=h),
        403,
        "insufficient-scope",
    )


# ------------------------------------------------------------------------------ audit


async def audit_events(settings: Settings, subject: str) -> list[dict[str, Any]]:
    consumer = kafka_clients.consumer(settings, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        topic = settings.topic("audit")
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    event = decode(rec.value)
                    if event.record["subject"] == subject:
                        assert rec.key == subject.encode()
                        found.append(event.record)
        return found
    finally:
        await consumer.stop()


async def test_personal_reads_are_audited_in_cassandra_and_kafka(api: Api) -> None:
    headers = api.auth("tracer:79", subject="Tracer team Q1")
    r = await api.http.get("/v1/people/p79/visits", headers=headers)
    assert r.status_code == 200
    rows = await api.store.select(Query("audit_log", {"day": api.data.today}))
    mine = [x for x in rows if x["actor"] == "Tracer team Q1"]
    assert len(mine) == 1
    row = mine[0]
    assert row["route"] == "/v1/people/{person_id}/visits" and row["method"] == "GET"
    assert row["subject"] == "person:p79" and row["person_ids"] == ["p79"]
    assert row["scopes"] == ["tracer:79"] and row["client_address"] == "127.0.0.1"
    events = await eventually_async(
        lambda: audit_events(api.settings, "person:p79"), what="audit event in Kafka"
    )
    assert any(e["event_id"] == row["audit_id"] for e in events)
    listed = await api.http.get(
        "/v1/audit", params={"actor": "Tracer team Q1"}, headers=api.auth("moh")
    )
    assert [x["audit_id"] for x in listed.json()["items"]] == [row["audit_id"]]


def own(api: Api, person: str) -> dict[str, str]:
    """A person's own token, as the ingest API issues it (subject: the person)."""
    token = api.settings.token_signer().issue(
        person, ["app", f"person:{person}"], timedelta(hours=1)
    )
    return {"Authorization": f"Bearer {token}"}


async def test_my_record_is_the_persons_own_and_each_read_is_audited(api: Api) -> None:
    mine = own(api, "p79")
    visits = (await api.http.get("/v1/me/visits", headers=mine)).json()["items"]
    assert visits and all(v["visit_start"] >= visits[-1]["visit_start"] for v in visits)
    doses = (await api.http.get("/v1/me/doses", headers=mine)).json()["items"]
    assert len(doses) == 2 and doses[0]["administered_at"] < doses[1]["administered_at"]
    r = await api.http.get("/v1/me/notices", headers=mine)
    assert r.status_code == 200, r.text
    (notice,) = [n for n in r.json()["items"] if n["venue_id"] == "v79"]
    assert (notice["risk"], notice["status"], notice["province"]) == ("HIGH", "ACTIVE", "79")
    assert notice["advice"] == CONFIG.notice_advice_high
    assert "case-1" not in r.text and "a79-1" not in r.text  # no case, no alert id
    # Another person (p01, with an alert and visits of their own) sees none of p79's.
    theirs = own(api, "p01")
    other = (await api.http.get("/v1/me/notices", headers=theirs)).json()["items"]
    assert [n["venue_id"] for n in other] == ["v01"]
    for path in ("/v1/me/visits", "/v1/me/doses", "/v1/me/results", "/v1/me/notices"):
        body = (await api.http.get(path, headers=theirs)).text
        assert "p79" not in body, path
    # Every read audited, in Cassandra and Kafka: actor and subject the person.
    rows = await api.store.select(Query("audit_log", {"day": api.data.today}))
    by_p79 = [x for x in rows if x["actor"] == "p79"]
    assert {x["route"] for x in by_p79} == {"/v1/me/visits", "/v1/me/doses", "/v1/me/notices"}
    assert all(x["subject"] == "person:p79" and x["person_ids"] == ["p79"] for x in by_p79)
    events = await eventually_async(
        lambda: audit_events(api.settings, "person:p79"), what="audit event in Kafka"
    )
    assert {x["audit_id"] for x in by_p79} <= {e["event_id"] for e in events}


async def test_aggregates_are_not_audited(api: Api) -> None:
    await api.http.get("/v1/coverage?area=79", headers=api.auth("province:79", subject="agg"))
    rows = await api.store.select(Query("audit_log", {"day": api.data.today}))
    assert not [x for x in rows if x["actor"] == "agg"]


class FailingLog:
    async def publish(self, topic: str, key: str, value: bytes) -> None:
        from api.problems import LogUnavailable

        raise LogUnavailable("broker down")

    async def ping(self) -> bool:
        return False


async def test_a_read_that_cannot_be_audited_is_refused(api: Api) -> None:
    app = create_app(api.settings, config=CONFIG, store=api.store, event_log=FailingLog())
    async with running(app), client(app) as http:
        r = await http.get("/v1/people/p79/visits", headers=api.auth("tracer:79"))
        is_problem(r, 503, "audit-unavailable")
        assert "p79" not in r.text.replace("/v1/people/p79/visits", "")
        assert (await http.get("/v1/coverage?area=79", headers=api.auth("moh"))).status_code == 200
        ready = await http.get("/readyz")
        is_problem(ready, 503, "not-ready")
        assert ready.json()["checks"]["kafka"] is False


# ------------------------------------------------------------------------------ grants


async def test_grants_are_issued_listed_and_revoked_for_both_processes(api: Api) -> None:
    moh = api.auth("moh", subject="MOH duty officer")
    body = {
        **grant_body(api.data.now),
        "scopes": ["tracer:79", "province:79"],
        "agency": "CDC TP.HCM",
        "purpose": "outbreak Q1",
    }
    created = await api.http.post("/v1/grants", json=body, headers=moh)
    assert created.status_code == 201, created.text
    grant = created.json()
    assert created.headers["location"] == f"/v1/grants/{grant['grant_id']}"
    assert grant["status"] == "active" and grant["granted_by"] == "MOH duty officer"
    assert grant["scopes"] == ["province:79", "tracer:79"]
    token = {"Authorization": f"Bearer {grant['token']}"}
    listed = await list_all(api, "/v1/grants", moh, limit=1)
    assert grant["grant_id"] in [g["grant_id"] for g in listed]
    assert all("token" not in g for g in listed)

    # A second process (its own revocation list) accepts the token until the revocation.
    other = create_app(api.settings, config=CONFIG, store=api.store)
    async with running(other), client(other) as other_http:
        assert (await other_http.get("/v1/people/p79/visits", headers=token)).status_code == 200
        revoked = await api.http.delete(
            f"/v1/grants/{grant['grant_id']}", params={"reason": "left the team"}, headers=moh
        )
        assert revoked.json()["status"] == "revoked"
        assert revoked.json()["revoke_reason"] == "left the team"
        is_problem(await api.http.get("/v1/alerts", headers=token), 401, "token-revoked")

        async def refused() -> bool:
            r = await other_http.get("/v1/alerts", headers=token)
            return r.status_code == 401 and r.json()["type"].endswith("token-revoked")

        await eventually_async(refused, within=10, what="revocation seen by another process")
    again = await api.http.delete(f"/v1/grants/{grant['grant_id']}", headers=moh)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    # A process started later reads the revocation from the topic before it serves.
    late = create_app(api.settings, config=CONFIG, store=api.store)
    async with running(late), client(late) as late_http:
        is_problem(await late_http.get("/v1/alerts", headers=token), 401, "token-revoked")


async def test_a_grant_never_outlives_nor_outranks_its_issuer(api: Api) -> None:
    """A grant expires at the latest with the token that issues it; a grant issued under a
    grant is revoked with it, however deep; the issuer holds every scope it hands on."""
    now = datetime.now(UTC)
    short = api.auth("moh", subject="MOH night shift", ttl=timedelta(hours=2))

    def body(hours: float, scopes: list[str]) -> dict[str, Any]:
        expires = (now + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
        return {"agency": "A", "scopes": scopes, "purpose": "p", "expires_at": expires}

    r = await api.http.post("/v1/grants", json=body(24 * 300, ["moh"]), headers=short)
    is_problem(r, 422, "validation-failed")
    assert [e["field"] for e in r.json()["errors"]] == ["expires_at"]
    assert "issuing token" in r.json()["errors"][0]["message"]

    parent = await api.http.post("/v1/grants", json=body(1.5, ["moh"]), headers=short)
    assert parent.status_code == 201, parent.text
    parent_token = {"Authorization": f"Bearer {parent.json()['token']}"}
    r = await api.http.post("/v1/grants", json=body(1.9, ["moh"]), headers=parent_token)
    is_problem(r, 422, "validation-failed")  # past the parent grant's 1.5 h
    child = await api.http.post("/v1/grants", json=body(1, ["moh"]), headers=parent_token)
    assert child.status_code == 201, child.text
    child_token = {"Authorization": f"Bearer {child.json()['token']}"}
    grandchild = await api.http.post(
        "/v1/grants", json=body(0.5, ["tracer:79"]), headers=child_token
    )
    assert grandchild.status_code == 201, grandchild.text
    grandchild_token = {"Authorization": f"Bearer {grandchild.json()['token']}"}
    assert (await api.http.get("/v1/alerts", headers=grandchild_token)).status_code == 200

    revoked = await api.http.delete(
        f"/v1/grants/{parent.json()['grant_id']}", headers=api.auth("moh")
    )
    assert revoked.status_code == 200
    for token in (parent_token, child_token, grandchild_token):
        is_problem(await api.http.get("/v1/alerts", headers=token), 401, "token-revoked")
    # A process started later folds the chain from the grants topic before it serves.
    late = create_app(api.settings, config=CONFIG, store=api.store)
    async with running(late), client(late) as late_http:
        is_problem(
            await late_http.get("/v1/alerts", headers=grandchild_token), 401, "token-revoked"
        )


async def test_a_bootstrap_token_is_revoked_from_the_cli_with_what_it_issued(api: Api) -> None:
    """``covidtech token issue`` tokens have an id and a revocation like any grant's."""
    import asyncio
    import re

    from click.testing import CliRunner

    from cli.main import main

    env = api.settings.as_env()
    runner = CliRunner()
    issued = await asyncio.to_thread(
        runner.invoke,
        main,
        ["token", "issue", "--scope", "moh", "--subject", "ops", "--ttl", "2h"],
        env=env,
    )
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    printed = re.search(r"token id (\S+)", issued.stderr)
    assert printed, issued.stderr
    token_id = printed.group(1)
    boot = {"Authorization": f"Bearer {token}"}
    too_long = await asyncio.to_thread(
        runner.invoke,
        main,
        ["token", "issue", "--scope", "moh", "--subject", "ops", "--ttl", "400d"],
        env=env,
    )
    assert too_long.exit_code == 2 and "COVIDTECH_TOKEN_MAX_TTL" in too_long.output
    grant = await api.http.post("/v1/grants", json=grant_body(api.data.now), headers=boot)
    assert grant.status_code == 201, grant.text
    granted = {"Authorization": f"Bearer {grant.json()['token']}"}
    assert (await api.http.get("/v1/coverage?area=79", headers=granted)).status_code == 200

    revoked = await asyncio.to_thread(
        runner.invoke, main, ["token", "revoke", token_id, "--reason", "leaked"], env=env
    )
    assert revoked.exit_code == 0, (token_id, revoked.output)

    async def refused() -> bool:
        answers = [await api.http.get("/v1/alerts", headers=h) for h in (boot, granted)]
        return all(
            r.status_code == 401 and r.json()["type"].endswith("token-revoked") for r in answers
        )

    await eventually_async(refused, within=10, what="the CLI's revocation seen by the API")


def test_a_token_hands_on_only_the_scopes_it_holds() -> None:
    from api.routes.access import _covers
    from covidtech.tokens import Claims, Scope

    def claims(*scopes: str) -> Claims:
        now = datetime.now(UTC)
        return Claims("s", frozenset(Scope.parse(s) for s in scopes), now, now, "j", None)

    assert _covers(claims("moh"), Scope.parse("tracer:01"))
    assert _covers(claims("tracer:79", "province:79"), Scope.parse("tracer:79"))
    assert not _covers(claims("tracer:79"), Scope.parse("tracer:01"))
    assert not _covers(claims("province:79"), Scope.parse("moh"))


async def test_grant_requests_are_validated(api: Api) -> None:
    moh = api.auth("moh")
    bad = {
        "agency": "",
        "scopes": ["province:99", "root"],
        "purpose": "x",
        "expires_at": "2000-01-01T00:00:00Z",
        "extra": 1,
    }
    r = await api.http.post("/v1/grants", json=bad, headers=moh)
    is_problem(r, 422, "validation-failed")
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"agency", "scopes[0]", "scopes[1]", "expires_at", "extra"}
    r = await api.http.post("/v1/grants", content=b"{", headers=moh)
    is_problem(r, 415, "unsupported-media-type")
    r = await api.http.post(
        "/v1/grants", content=b"{", headers={**moh, "content-type": "application/json"}
    )
    is_problem(r, 400, "malformed-json")
    is_problem(await api.http.delete("/v1/grants/nope", headers=moh), 404, "not-found")


# ------------------------------------------------------------------------------ problems, ops


class BrokenStore:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def apply(self, mutations: Any) -> None:
        raise self.error

    async def select(self, query: Any) -> list[Any]:
        raise self.error

    async def scan(self, table: str) -> list[Any]:
        raise self.error


async def test_store_failures_are_503_and_bugs_are_bare_500s(api: Api) -> None:
    for error, status, slug in (
        (StoreUnavailable("cassandra down"), 503, "store-unavailable"),
        (RuntimeError("secret internals"), 500, "internal-error"),
    ):
        app = create_app(api.settings, config=CONFIG, store=BrokenStore(error))
        async with running(app), client(app) as http:
            r = await http.get("/v1/coverage?area=79", headers=api.auth("moh"))
            is_problem(r, status, slug)
            assert "secret internals" not in r.text and "cassandra down" not in r.text
            if status == 503:
                assert r.headers["retry-after"] == "2"


async def test_bad_parameters_unknown_routes_and_methods_are_problems(api: Api) -> None:
    h = api.auth("moh")
    for query in (
        "area=ZZ",
        "area=79&date=2021-13-01",
        "area=79&date=20210801",
        "area=79&age_band=99+",
        "",
    ):
        is_problem(await api.http.get(f"/v1/coverage?{query}", headers=h), 400, "invalid-parameter")
    for query in (
        "limit=0",
        "limit=1.5",
        "limit=100000",
        "since=2021-08-01",
        "since=yesterday",
        "risk=MEDIUM",
    ):
        is_problem(await api.http.get(f"/v1/alerts?{query}", headers=h), 400, "invalid-parameter")
    is_problem(await api.http.get("/v1/nothing-here"), 404, "not-found")
    r = await api.http.put("/v1/alerts", headers=h)
    is_problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    # Two operations on one path: Allow names both (Starlette named the first route's only).
    r = await api.http.put("/v1/grants", headers=h)
    is_problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    r = await api.http.options("/v1/grants")
    assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, OPTIONS, POST"


async def test_health_readiness_metrics_and_openapi(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and all(ready.json()["checks"].values())
    metrics = (await api.http.get("/metrics")).text
    assert (
        'covidtech_read_requests_total{method="GET",route="/v1/coverage",status="200"}' in metrics
    )
    assert "covidtech_read_audit_records_total" in metrics
    doc = (await api.http.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert {
        "/v1/results/{lookup_code}",
        "/v1/alerts/stream",
        "/v1/grants/{grant_id}",
        "/v1/audit",
    } <= set(doc["paths"])
    assert doc["paths"]["/v1/results/{lookup_code}"]["get"]["security"] == []


def test_openapi_documents_every_route_of_the_read_api(api: Api) -> None:
    """Every (path, method) the app routes is in /openapi.json and the other way round, the
    programme's and the dashboard's operations included (the six programme routes were
    missing, so no fuzzer reached them); only the dashboard's page and assets are not API."""
    from starlette.routing import Route

    from api.routes.dashboard import PAGE_PATHS

    app = create_app(api.settings, config=CONFIG, store=api.store)
    routed = {
        (r.path, m)
        for r in app.routes
        if isinstance(r, Route) and r.path not in PAGE_PATHS
        for m in (r.methods or set()) - {"HEAD"}
    }
    doc = app.state.openapi
    documented = {(p, m.upper()) for p, item in doc["paths"].items() for m in item}
    assert routed == documented
    assert {"/v1/vaccination/registrations", "/v1/dashboard/coverage-by-province"} <= {
        p for p, _ in documented
    }


async def test_without_the_revocation_list_a_process_does_not_start(api: Api) -> None:
    from covidtech.revocations import RevocationList, RevocationsUnavailable
    from covidtech.settings import with_overrides

    unreachable = with_overrides(api.settings, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(RevocationsUnavailable):
        await RevocationList(unreachable).start(timeout_s=2)
