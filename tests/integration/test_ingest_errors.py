"""Bad input, wrong scopes and bad tokens: each gets its 4xx problem, and nothing reaches Kafka.

Every case checks the status, ``application/problem+json``, the problem ``type`` and the
offending ``field``, and that the end offsets of every topic the API writes are unchanged. The
API answers only after its writes are acknowledged, so end offsets read after the answer
include anything the request wrote.

One app and one set of topics serve the whole module (a unique topic prefix, created here):
the ingest API uses no Cassandra, and the matrices below are ~80 requests, so a keyspace per
case would only slow them down. Cases never depend on each other's writes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from covidtech.settings import Settings, with_overrides
from covidtech.tokens import TokenSigner
from domain.qr import QrKind, QrSigner
from domain.vaccines import VACCINES
from infra.kafka_topics import create_topics
from producers.app import WRITTEN_TOPICS, create_app
from tests.integration.ingest_harness import (
    PROBLEM_JSON,
    OffsetReader,
    bearer,
    client_id,
    register_person,
    register_venue,
    rfc3339,
    scan_body,
    serving,
    token,
)
from tests.support import unique
from tests.unit.ingest_support import BOUND_SCOPES as SCOPES

pytestmark = pytest.mark.integration


@dataclass
class World:
    s: Settings
    api: httpx.AsyncClient
    venue: dict[str, Any]
    person: dict[str, Any]
    sample_id: str
    offsets: OffsetReader


@pytest.fixture(scope="module")
async def world(platform: Settings) -> AsyncIterator[World]:
    s = with_overrides(platform, topic_prefix=f"{unique('ing')}.")
    await create_topics(s)
    async with serving(create_app(s)) as api, OffsetReader(s) as offsets:
        venue = await register_venue(
            api,
            s,
            {
                "name": "Chợ",
                "address": "1 Lê Lợi",
                "province": "79",
                "district": "760",
                "category": "market",
            },
        )
        person = await register_person(api, s, birth_year=None)
        sample_id = f"T-{client_id()[:8]}"
        r = await api.post(
            "/v1/samples", json=sample(sample_id, person), headers=bearer(s, "site:s1@79")
        )
        assert r.status_code == 201, r.text
        yield World(s, api, venue, person, sample_id, offsets)


async def written(w: World) -> dict[str, int]:
    return await w.offsets.ends(*(w.s.topic(t.name) for t in WRITTEN_TOPICS))


def now() -> datetime:
    return datetime.now(UTC)


def scan(w: World, **changes: Any) -> dict[str, Any]:
    body = scan_body(w.venue, w.person, **changes)
    return {k: v for k, v in body.items() if v is not ...}


def sample(
    sample_id: str, person: dict[str, Any], members: int = 1, **changes: Any
) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "province": "79",
        "test_type": "PCR",
        "collected_at": rfc3339(now()),
        "members": [{"person_qr": person["person_qr"]}]
        + [{"person_id": f"p_{chr(98 + i) * 20}"} for i in range(members - 1)],
        **changes,
    }


def dose(w: World, **changes: Any) -> dict[str, Any]:
    return {
        "dose_id": client_id(),
        "person_qr": w.person["person_qr"],
        "administered_at": rfc3339(now()),
        "vaccine": next(iter(VACCINES)),
        "birth_year": 1970,
        "residence_province": "79",
        **changes,
    }


#: The world person's own token (``{person}``: its id), as registration gives it to the app.
OWN = ("app", "person:{person}")


def resolve(w: World, scopes: tuple[str, ...] | list[str]) -> list[str]:
    """Scopes with ``{person}`` and ``{venue}`` standing for the world's person and venue."""
    return [s.format(person=w.person["person_id"], venue=w.venue["venue_id"]) for s in scopes]


@dataclass(frozen=True)
class Case:
    """One bad request and the problem it must get."""

    name: str
    path: str
    scopes: tuple[str, ...]
    body: Callable[[World], Any]
    status: int
    slug: str
    field: str | None = None
    raw: bool = False  # body(w) returns bytes sent as they are
    headers: Callable[[World], dict[str, str]] | None = None


def _venue_qr_of(w: World, venue_id: str) -> str:
    return QrSigner(w.s.secret).payload(QrKind.VENUE, venue_id)


CASES = [
    Case(
        "malformed json",
        "/v1/scans",
        OWN,
        lambda w: b'{"scan_id": ',
        400,
        "malformed-json",
        raw=True,
    ),
    Case(
        "json constant",
        "/v1/scans",
        OWN,
        lambda w: b'{"x": NaN}',
        400,
        "malformed-json",
        raw=True,
    ),
    Case(
        "not an object", "/v1/declarations", ("app",), lambda w: [1, 2], 422, "wrong-type", "body"
    ),
    Case(
        "wrong type",
        "/v1/scans",
        OWN,
        lambda w: scan(w, direction=5),
        422,
        "wrong-type",
        "direction",
    ),
    Case(
        "wrong type int",
        "/v1/doses",
        ("site:s1@79",),
        lambda w: dose(w, birth_year="1970"),
        422,
        "wrong-type",
        "birth_year",
    ),
    Case(
        "missing field",
        "/v1/scans",
        OWN,
        lambda w: scan(w, scan_id=...),
        422,
        "missing",
        "scan_id",
    ),
    Case(
        "missing venue name",
        "/v1/venues",
        ("venue-admin:79",),
        lambda w: {"address": "a", "province": "79", "district": "d", "category": "c"},
        422,
        "missing",
        "name",
    ),
    Case(
        "unknown enum",
        "/v1/scans",
        OWN,
        lambda w: scan(w, direction="SIDEWAYS"),
        422,
        "unknown-enum",
        "direction",
    ),
    Case(
        "unknown test type",
        "/v1/samples",
        ("site:s1@79",),
        lambda w: sample(f"T-{client_id()[:8]}", w.person, test_type="ELISA"),
        422,
        "unknown-enum",
        "test_type",
    ),
    Case(
        "unknown result",
        "/v1/samples/{sample}/result",
        ("lab:l1@79",),
        lambda w: {"result": "MAYBE"},
        422,
        "unknown-enum",
        "result",
    ),
    Case(
        "unknown symptom",
        "/v1/declarations",
        ("app",),
        lambda w: {
            "person_qr": w.person["person_qr"],
            "province": "79",
            "symptoms": ["HICCUPS"],
            "contact_with_case": False,
        },
        422,
        "unknown-enum",
        "symptoms[0]",
    ),
    Case(
        "unknown field",
        "/v1/scans",
        OWN,
        lambda w: scan(w, colour="red"),
        422,
        "unknown-field",
        "colour",
    ),
    Case(
        "body over the limit",
        "/v1/scans",
        OWN,
        lambda w: json.dumps({"scans": [scan(w, device_id="x" * 60)] * 4000}).encode(),
        413,
        "body-too-large",
        raw=True,
    ),
    Case(
        "batch over 500",
        "/v1/scans",
        OWN,
        lambda w: {"scans": [scan(w) for _ in range(501)]},
        422,
        "too-many-items",
        "scans",
    ),
    Case(
        "forged venue qr",
        "/v1/scans",
        OWN,
        lambda w: scan(w, venue_qr=w.venue["venue_qr"][:-3] + "aaa"),
        422,
        "forged-qr",
        "venue_qr",
    ),
    Case(
        "forged person qr",
        "/v1/samples",
        ("site:s1@79",),
        lambda w: sample(f"T-{client_id()[:8]}", {"person_qr": w.person["person_qr"][:-3] + "aaa"}),
        422,
        "forged-qr",
        "members[0].person_qr",
    ),
    Case(
        "foreign qr",
        "/v1/scans",
        OWN,
        lambda w: scan(w, person_qr="https://tokhaiyte.vn/q/123"),
        422,
        "malformed-qr",
        "person_qr",
    ),
    Case(
        "person qr as venue",
        "/v1/scans",
        OWN,
        lambda w: scan(w, venue_qr=w.person["person_qr"]),
        422,
        "wrong-qr-kind",
        "venue_qr",
    ),
    Case(
        "unknown venue",
        "/v1/scans",
        OWN,
        lambda w: scan(w, venue_qr=_venue_qr_of(w, "v_zzzzzzzzzzzzzzzzzzzz")),
        422,
        "unknown-venue",
        "venue_qr",
    ),
    Case(
        "scan too late",
        "/v1/scans",
        OWN,
        lambda w: scan(w, scanned_at=rfc3339(now() - timedelta(hours=72, minutes=1))),
        422,
        "scan-too-late",
        "scanned_at",
    ),
    Case(
        "scan in the future",
        "/v1/scans",
        OWN,
        lambda w: scan(w, scanned_at=rfc3339(now() + timedelta(minutes=6))),
        422,
        "scan-in-future",
        "scanned_at",
    ),
    Case(
        "naive timestamp",
        "/v1/scans",
        OWN,
        lambda w: scan(w, scanned_at=now().replace(tzinfo=None).isoformat()),
        422,
        "invalid-value",
        "scanned_at",
    ),
    Case(
        "dose too old",
        "/v1/doses",
        ("site:s1@79",),
        lambda w: dose(w, administered_at=rfc3339(now() - timedelta(days=31))),
        422,
        "time-too-old",
        "administered_at",
    ),
    Case(
        "pool over 10",
        "/v1/samples",
        ("site:s1@79",),
        lambda w: sample(f"T-{client_id()[:8]}", w.person, members=11),
        422,
        "pool-size",
        "members",
    ),
    Case(
        "unknown vaccine",
        "/v1/doses",
        ("site:s1@79",),
        lambda w: dose(w, vaccine="SPUTNIK_LIGHT"),
        422,
        "unknown-vaccine",
        "vaccine",
    ),
    Case(
        "unknown province",
        "/v1/people",
        ("app",),
        lambda w: {"province": "00", "district": "1"},
        422,
        "unknown-province",
        "province",
    ),
    Case(
        "sample id reused",
        "/v1/samples",
        ("site:s1@79",),
        lambda w: sample(w.sample_id, w.person, test_type="RAPID_ANTIGEN"),
        409,
        "sample-exists",
        "sample_id",
    ),
    Case(
        "result of an unknown sample",
        "/v1/samples/NOT-A-TUBE/result",
        ("lab:l1@79",),
        lambda w: {"result": "POSITIVE"},
        404,
        "unknown-sample",
    ),
    Case("wrong scope", "/v1/venues", ("app",), lambda w: {}, 403, "insufficient-scope"),
    Case(
        "wrong province",
        "/v1/venues",
        ("venue-admin:01",),
        lambda w: {"name": "n", "address": "a", "province": "79", "district": "d", "category": "c"},
        403,
        "insufficient-scope",
        "province",
    ),
    Case(
        "staff of another province",
        "/v1/scans",
        ("venue-admin:01",),
        lambda w: scan(w),
        403,
        "insufficient-scope",
        "venue_qr",
    ),
    Case(
        "other site",
        "/v1/doses",
        ("site:s1@79",),
        lambda w: dose(w, site_id="s2"),
        403,
        "insufficient-scope",
        "site_id",
    ),
    Case(
        "two sites, none named",
        "/v1/doses",
        ("site:s1@79", "site:s2@79"),
        lambda w: dose(w),
        422,
        "site-ambiguous",
        "site_id",
    ),
    Case("no token", "/v1/scans", (), lambda w: scan(w), 401, "token-missing"),
    Case(
        "expired token",
        "/v1/scans",
        (),
        lambda w: scan(w),
        401,
        "token-expired",
        headers=lambda w: {
            "Authorization": "Bearer "
            + token(w.s, "app", ttl=timedelta(minutes=5), now=now() - timedelta(minutes=10))
        },
    ),
    Case(
        "forged token",
        "/v1/scans",
        (),
        lambda w: scan(w),
        401,
        "token-invalid",
        headers=lambda w: {
            "Authorization": "Bearer "
            + TokenSigner("another-secret-0123456789").issue("x", ["app"], timedelta(hours=1))
        },
    ),
    Case(
        "not a bearer token",
        "/v1/scans",
        (),
        lambda w: scan(w),
        401,
        "token-invalid",
        headers=lambda w: {"Authorization": "Basic dXNlcjpwYXNz"},
    ),
    Case(
        "form body",
        "/v1/scans",
        OWN,
        lambda w: b"scan_id=1",
        415,
        "unsupported-media-type",
        raw=True,
        headers=lambda w: {
            **bearer(w.s, *resolve(w, OWN)),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_request_gets_a_problem_and_writes_nothing(world: World, case: Case) -> None:
    w = world
    before = await written(w)
    headers = (
        case.headers(w)
        if case.headers
        else (bearer(w.s, *resolve(w, case.scopes)) if case.scopes else {})
    )
    body = case.body(w)
    path = case.path.replace("{sample}", w.sample_id)
    if case.raw:
        r = await w.api.post(
            path, content=body, headers={"Content-Type": "application/json", **headers}
        )
    else:
        r = await w.api.post(path, json=body, headers=headers)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    problem = r.json()
    assert problem["type"] == f"urn:covidtech:problem:{case.slug}", problem
    assert problem["status"] == case.status and problem["title"] and problem["instance"] == path
    if case.field is not None:
        assert problem["field"] == case.field, problem
        assert case.field in [e["field"] for e in problem["errors"]]
    if case.status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer ")
    if case.status == 403:
        assert "insufficient_scope" in r.headers["www-authenticate"]
    assert await written(w) == before, "a refused request reached Kafka"


async def test_a_second_different_result_is_a_conflict(world: World) -> None:
    w = world
    sample_id = f"T-{client_id()[:8]}"
    assert (
        await w.api.post(
            "/v1/samples", json=sample(sample_id, w.person), headers=bearer(w.s, "site:s1@79")
        )
    ).status_code == 201
    path = f"/v1/samples/{sample_id}/result"
    lab = bearer(w.s, "lab:l1@79")
    assert (await w.api.post(path, json={"result": "INVALID"}, headers=lab)).status_code == 202
    before = await written(w)
    r = await w.api.post(path, json={"result": "NEGATIVE"}, headers=lab)
    assert r.status_code == 409 and r.json()["recorded_result"] == "INVALID"
    assert (await w.api.post(path, json={"result": "INVALID"}, headers=lab)).status_code == 200
    assert await written(w) == before


# --------------------------------------------------------------------------- scope matrix


Builder = Callable[[World], Awaitable[tuple[str, Any]]]


async def _venue(w: World) -> tuple[str, Any]:
    return "/v1/venues", {
        "name": "n",
        "address": "a",
        "province": "79",
        "district": "d",
        "category": "c",
    }


async def _person(w: World) -> tuple[str, Any]:
    return "/v1/people", {"province": "79", "district": "760"}


async def _scan(w: World) -> tuple[str, Any]:
    return "/v1/scans", scan(w)


async def _declaration(w: World) -> tuple[str, Any]:
    return "/v1/declarations", {
        "person_qr": w.person["person_qr"],
        "province": "79",
        "contact_with_case": False,
    }


async def _sample(w: World) -> tuple[str, Any]:
    return "/v1/samples", sample(f"T-{client_id()[:8]}", w.person)


async def _result(w: World) -> tuple[str, Any]:
    sample_id = f"T-{client_id()[:8]}"
    r = await w.api.post(
        "/v1/samples", json=sample(sample_id, w.person), headers=bearer(w.s, "site:s1@79")
    )
    assert r.status_code == 201
    return f"/v1/samples/{sample_id}/result", {"result": "NEGATIVE"}


async def _dose(w: World) -> tuple[str, Any]:
    return "/v1/doses", dose(w)


ROUTES: dict[str, tuple[Builder, set[str]]] = {
    "venues": (_venue, {"venue-admin:79"}),
    "people": (_person, {"app", "site:s1@79", "institution:i1"}),
    "scans": (_scan, {"person:{person}", "venue:{venue}@79", "venue-admin:79"}),
    "declarations": (_declaration, {"app"}),
    "samples": (_sample, {"site:s1@79"}),
    "result": (_result, {"lab:l1@79"}),
    "doses": (_dose, {"site:s1@79"}),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_scope_matrix(world: World, route: str) -> None:
    """Each write route accepts exactly its scopes; every other scope gets 403 and no write."""
    build, allowed = ROUTES[route]
    w = world
    outcomes: dict[str, int] = {}
    for scope in SCOPES:
        path, body = await build(w)
        before = await written(w)
        r = await w.api.post(path, json=body, headers=bearer(w.s, *resolve(w, [scope])))
        outcomes[scope] = r.status_code
        if scope not in allowed:
            assert r.json()["type"] == "urn:covidtech:problem:insufficient-scope"
            assert await written(w) == before
    assert {s for s, status in outcomes.items() if status < 300} == allowed, outcomes
    assert {s for s, status in outcomes.items() if status == 403} == set(SCOPES) - allowed, outcomes
