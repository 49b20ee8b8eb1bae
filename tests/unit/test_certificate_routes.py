"""Certificate routes of the read API (api/routes/certificates.py) in process: the public keys,
verification, rate limits."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from api.config import ReadApiConfig
from api.testing import client, running
from covidtech.settings import Settings
from domain.certificate import CertificateKeys, certificate_doses, issue, pseudonym
from schemas.codec import decode
from tests.scenarios import dose
from tests.unit.pipeline_support import run
from tests.unit.read_support import MemoryLog, read_app


def seed(label: str) -> str:
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


SETTINGS = Settings(
    secret="unit-test-secret-0123456789",
    cert_keys=f"2021-10:{seed('new')},2021-04:{seed('old')}",
)
KEYS = SETTINGS.certificate_keys()
NOW = datetime(2021, 10, 1, 3, 0, tzinfo=UTC)
DOSES = certificate_doses(
    [("d1", NOW - timedelta(days=90), "AZ"), ("d2", NOW - timedelta(days=30), "AZ")]
)


def certificate(keys: CertificateKeys = KEYS, now: datetime = NOW, **kw: Any) -> str:
    return issue(
        keys,
        subject=pseudonym(SETTINGS.secret, "p1"),
        birth_year=1980,
        doses=DOSES,
        now=now,
        **kw,
    )


class Clock:
    def __init__(self) -> None:
        self.now = NOW + timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now


def auth(clock: Clock, *scopes: str) -> dict[str, str]:
    """A token issued at the app's clock (the tests' 2021)."""
    token = SETTINGS.token_signer().issue("test", scopes, timedelta(hours=1), now=clock.now)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Http:
    c: httpx.AsyncClient
    log: MemoryLog
    clock: Clock
    app: Starlette

    def __iter__(self) -> Iterator[Any]:
        return iter((self.c, self.log, self.clock))


@pytest.fixture
def config() -> Iterator[ReadApiConfig]:
    yield ReadApiConfig(certificate_burst=1000)


@pytest.fixture
async def http(config: ReadApiConfig) -> AsyncIterator[Http]:
    log, clock = MemoryLog(), Clock()
    _, store = await run(  # the doses go through the stream handlers
        [
            dose("p1", "d2", NOW - timedelta(days=30), "AZ", birth_year=1961, province="79"),
            dose("p1", "d1", NOW - timedelta(days=90), "AZ", birth_year=1961, province="79"),
            dose("p1", "d3", NOW - timedelta(hours=7), "PFIZER", birth_year=1961, province="79"),
            dose("p1", "d1", NOW - timedelta(days=90), "AZ", birth_year=1961, province="79"),
        ]
    )
    app = read_app(SETTINGS, config, store, event_log=log, clock=clock)
    async with running(app), client(app) as c:
        yield Http(c, log, clock, app)


async def test_the_public_keys_are_every_key_public_and_cacheable(http: Http) -> None:
    c, log, _ = http
    r = await c.get("/v1/certificates/keys")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "public, max-age=3600"
    body = r.json()
    assert body == KEYS.public.document()
    assert [k["kid"] for k in body["keys"]] == ["2021-10", "2021-04"]
    assert seed("new") not in r.text and seed("old") not in r.text
    again = await c.get("/v1/certificates/keys", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert log.published == []


async def verify(c: httpx.AsyncClient, payload: Any) -> httpx.Response:
    return await c.post("/v1/certificates/verify", json={"payload": payload})


async def test_a_valid_certificate_is_answered_with_its_claims(http: Http) -> None:
    c, log, _ = http
    r = await verify(c, certificate())
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert (body["valid"], body["reason"], body["detail"]) == (True, None, None)
    claims = body["claims"]
    assert claims["subject"] == pseudonym(SETTINGS.secret, "p1")
    assert [(d["number"], d["vaccine"]) for d in claims["doses"]] == [(1, "AZ"), (2, "AZ")]
    assert claims["fully_vaccinated"] is True and claims["kid"] == "2021-10"
    assert log.published == []  # a public check of a pseudonymous payload: nothing audited


async def test_refusals_are_answered_with_their_reason(http: Http) -> None:
    c, _, clock = http
    good = certificate()
    old_key = CertificateKeys.parse(f"2021-04:{seed('old')}")
    stranger = CertificateKeys.parse(f"elsewhere:{seed('x')}")
    forger = CertificateKeys.parse(f"2021-10:{seed('forger')}")
    cases = {
        "malformed": "hello",
        "unknown-version": "CT9:" + good[4:],
        "unknown-key": certificate(stranger),
        "bad-signature": certificate(forger),
        "expired": certificate(now=NOW - timedelta(days=400)),
        "not-yet-valid": certificate(now=clock.now + timedelta(hours=1)),
    }
    for reason, payload in cases.items():
        r = await verify(c, payload)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["valid"], body["reason"], body["claims"]) == (False, reason, None), body
        assert body["detail"]
    # the retired-but-listed key still verifies (rotation)
    assert (await verify(c, certificate(old_key))).json()["valid"] is True
    # time passes: the same payload expires
    clock.now = NOW + timedelta(days=365)
    assert (await verify(c, good)).json()["reason"] == "expired"


@pytest.mark.parametrize(
    ("content", "headers", "status", "slug"),
    [
        (b"{", {"content-type": "application/json"}, 400, "malformed-json"),
        (b'{"payload": "CT1:"}', {"content-type": "text/plain"}, 415, "unsupported-media-type"),
        (b"[]", {"content-type": "application/json"}, 422, "validation-failed"),
        (b'{"payload": 1}', {"content-type": "application/json"}, 422, "validation-failed"),
        (b'{"payload": "x", "more": 1}', {"content-type": "application/json"}, 422, "validation"),
        (b'{"payload": "' + b"A" * 20000 + b'"}', {"content-type": "application/json"}, 413, ""),
    ],
)
async def test_a_bad_request_is_a_problem(
    http: Http, content: bytes, headers: dict[str, str], status: int, slug: str
) -> None:
    c, _, _ = http
    r = await c.post("/v1/certificates/verify", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert slug in r.json()["type"]


@pytest.mark.parametrize("config", [ReadApiConfig(certificate_burst=3)])
async def test_both_routes_are_rate_limited_per_address(http: Http) -> None:
    c, _, _ = http
    statuses = [(await c.get("/v1/certificates/keys")).status_code for _ in range(2)]
    statuses.append((await verify(c, "x")).status_code)
    refused = await verify(c, "x")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    async with client(http.app, address="10.0.0.2") as other:
        assert (await verify(other, "x")).status_code == 200


async def test_moh_issues_a_certificate_from_the_recorded_doses_and_the_read_is_audited(
    http: Http,
) -> None:
    c, log, clock = http
    r = await c.get("/v1/people/p1/certificate", headers=auth(clock, "moh"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    body = r.json()
    claims = body["claims"]
    assert claims["subject"] == pseudonym(SETTINGS.secret, "p1") and "p1" not in body["payload"]
    assert claims["birth_year"] == 1961 and claims["kid"] == "2021-10"
    assert [(d["number"], d["vaccine"], d["date"]) for d in claims["doses"]] == [
        (1, "AZ", (NOW - timedelta(days=90)).date().isoformat()),
        (2, "AZ", (NOW - timedelta(days=30)).date().isoformat()),
        (3, "PFIZER", "2021-10-01"),  # 30 Sep 20:00 UTC: 1 Oct in Vietnam
    ]
    assert claims["issued_at"] == "2021-10-02T03:00:00Z"
    assert claims["expires_at"] == "2022-10-02T03:00:00Z"  # COVIDTECH_CERT_VALIDITY: 365d
    # the QR code is the payload, as a PNG
    png = base64.b64decode(body["qr_png"])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] == image.size[1] > 100
    # audited: one PersonalDataRead naming the person
    [(topic, key, value)] = log.published
    assert topic.endswith("audit")
    record = decode(value).record
    assert key == "certificate:p1" and record["person_ids"] == ["p1"]
    assert record["route"] == "/v1/people/{person_id}/certificate"
    # and it verifies, through the route and against the published keys
    v = await verify(c, body["payload"])
    assert v.json()["valid"] is True and v.json()["claims"] == claims


async def test_no_certificate_without_doses_nor_for_other_scopes(http: Http) -> None:
    c, log, clock = http
    r = await c.get("/v1/people/nobody/certificate", headers=auth(clock, "moh"))
    assert r.status_code == 404 and log.published == []
    for scope in ("province:79", "tracer:79", "app"):
        r = await c.get("/v1/people/p1/certificate", headers=auth(clock, scope))
        assert r.status_code == 403, scope
    assert (await c.get("/v1/people/p1/certificate")).status_code == 401


async def test_the_person_gets_their_own_certificate_and_nobody_else_s(http: Http) -> None:
    c, log, clock = http
    mine = await c.get("/v1/me/certificate", headers=auth(clock, "person:p1"))
    assert mine.status_code == 200, mine.text
    claims = mine.json()["claims"]
    assert claims["subject"] == pseudonym(SETTINGS.secret, "p1")
    assert [d["number"] for d in claims["doses"]] == [1, 2, 3]
    [(_, key, value)] = log.published
    assert key == "certificate:p1" and decode(value).record["route"] == "/v1/me/certificate"
    # a person without doses: 404, nothing read, nothing audited
    r = await c.get("/v1/me/certificate", headers=auth(clock, "person:p2"))
    assert r.status_code == 404 and len(log.published) == 1
    # MOH has its own route; on this one, only a person-bound token
    for scope in ("moh", "province:79", "app"):
        r = await c.get("/v1/me/certificate", headers=auth(clock, scope))
        assert r.status_code == 403, scope
    r = await c.get("/v1/people/p1/certificate", headers=auth(clock, "person:p1"))
    assert r.status_code == 403
