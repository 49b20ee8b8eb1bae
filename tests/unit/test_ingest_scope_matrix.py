"""The ingest API's scope matrix: every route that takes a token, times one token per scope
kind, against an in-memory event log (no Kafka).

The matrix is generated from the route table: the app's routes are looked up in its OpenAPI
document (which documents exactly those routes, ``test_ingest_openapi_routes.py``), and each
operation that takes a token declares in ``x-scopes`` the scope kinds it accepts. Every such
route must have a request below (a new route without one fails the test), and is called with
a token of each kind: a kind it declares gets a 2xx answer (the request is valid and within
the token's province, so the handler runs to the end), any other kind ``403
insufficient-scope``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from covidtech.settings import Settings
from covidtech.tokens import ScopeKind
from producers.app import create_app
from producers.memory import memory_service, with_service
from producers.openapi import openapi_document
from tests.unit.ingest_support import BOUND_SCOPES as SCOPES
from tests.unit.ingest_support import MemoryLog

NOW = datetime(2021, 8, 2, 3, 0, tzinfo=UTC)
SECRET = "unit-test-secret-0123456789"

#: One token per scope kind, all acting in province 79; ``{person}`` and ``{venue}`` stand for


def kind_of(scope: str) -> str:
    return scope.partition(":")[0]


SETTINGS = Settings(secret=SECRET)


def auth(*scopes: str) -> dict[str, str]:
    """The one place this module signs a token."""
    token = SETTINGS.token_signer().issue("matrix", scopes, timedelta(hours=1), now=NOW)
    return {"Authorization": f"Bearer {token}"}


def at(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


@dataclass
class Ingest:
    http: httpx.AsyncClient
    venue_id: str
    venue_qr: str
    person_id: str
    person_qr: str
    ids: itertools.count[int]

    def scope(self, template: str) -> str:
        return template.format(person=self.person_id, venue=self.venue_id)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):08d}"

    async def sample(self) -> str:
        """A sample of province 79 collected by site s1, not resulted yet."""
        sample_id = self.fresh("tube")
        r = await self.http.post(
            "/v1/samples",
            json={
                "sample_id": sample_id,
                "province": "79",
                "test_type": "PCR",
                "collected_at": at(-timedelta(hours=2)),
                "members": [{"person_qr": self.person_qr}],
            },
            headers=auth("site:s1@79"),
        )
        assert r.status_code == 201, r.text
        return sample_id


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    svc = memory_service(SETTINGS, lambda: NOW)
    # The real app (routes, middleware, error handlers); its lifespan, which would connect
    # to Kafka, is not run: the service is handed to requests as the lifespan would.
    inner = create_app(SETTINGS, producer=svc.log, clock=lambda: NOW, is_revoked=lambda _: False)

    app = with_service(inner, svc)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest"
    ) as http:
        venue = await http.post(
            "/v1/venues",
            json={
                "name": "Matrix Cafe",
                "address": "1 Le Loi",
                "province": "79",
                "district": "760",
                "category": "restaurant",
            },
            headers=auth("venue-admin:79"),
        )
        assert venue.status_code == 201, venue.text
        person = await http.post(
            "/v1/people", json={"province": "79", "district": "760"}, headers=auth("app")
        )
        assert person.status_code == 201, person.text
        yield Ingest(
            http,
            venue.json()["venue_id"],
            venue.json()["venue_qr"],
            person.json()["person_id"],
            person.json()["person_qr"],
            itertools.count(),
        )


# ------------------------------------------------------------------- one request per route

#: (path, JSON body or None) of a valid request, fresh ids each time.
Request = Callable[[Ingest], Awaitable[tuple[str, dict[str, Any] | None]]]


async def venue(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "name": "Pho 79",
        "address": "2 Le Loi",
        "province": "79",
        "district": "760",
        "category": "restaurant",
    }
    return "/v1/venues", body


async def poster_png(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return f"/v1/venues/{i.venue_id}/poster.png", None


async def poster_svg(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return f"/v1/venues/{i.venue_id}/poster.svg", None


async def person(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return "/v1/people", {"province": "79", "district": "760", "birth_year": 1985}


async def session(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return "/v1/people/sessions", {"person_qr": i.person_qr}


async def scan(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    # Without `method`, the token decides: the person's own token scans the poster, staff
    # (of this venue, or of its province) scan the person.
    body = {
        "scan_id": i.fresh("scan"),
        "venue_qr": i.venue_qr,
        "person_qr": i.person_qr,
        "scanned_at": at(-timedelta(minutes=1)),
        "direction": "IN",
    }
    return "/v1/scans", body


async def declaration(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "declaration_id": i.fresh("decl"),
        "person_qr": i.person_qr,
        "province": "79",
        "contact_with_case": False,
    }
    return "/v1/declarations", body


async def sample(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "sample_id": i.fresh("tube"),
        "province": "79",
        "test_type": "PCR",
        "collected_at": at(-timedelta(hours=1)),
        "members": [{"person_qr": i.person_qr}],
    }
    return "/v1/samples", body


async def result(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return f"/v1/samples/{await i.sample()}/result", {"result": "NEGATIVE"}


async def dose(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "dose_id": i.fresh("dose"),
        "person_qr": i.person_qr,
        "administered_at": at(-timedelta(hours=1)),
        "vaccine": "AZ",
        "birth_year": 1985,
        "residence_province": "79",
    }
    return "/v1/doses", body


async def vaccines(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    return "/v1/vaccines", None


async def registration(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "registration_id": i.fresh("reg"),
        "person_qr": i.person_qr,
        "province": "79",
        "district": "760",
        "priority_group": "GENERAL",
    }
    return "/v1/vaccination/registrations", body


async def appointment(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "appointment_id": i.fresh("appt"),
        "person_qr": i.person_qr,
        "appointment_at": at(timedelta(days=1)),
    }
    return "/v1/vaccination/appointments", body


async def cancellation(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    path = f"/v1/vaccination/appointments/{i.fresh('appt')}/cancel"
    return path, {"person_qr": i.person_qr, "reason": "moved away"}


async def allocation(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {"allocation_id": i.fresh("alloc"), "province": "79", "vaccine": "AZ", "doses": 100}
    return "/v1/vaccination/allocations", body


async def discard(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "discard_id": i.fresh("disc"),
        "province": "79",
        "vaccine": "AZ",
        "doses": 2,
        "reason": "EXPIRED",
        "discarded_at": at(-timedelta(hours=1)),
    }
    return "/v1/vaccination/discards", body


async def plan(i: Ingest) -> tuple[str, dict[str, Any] | None]:
    body = {
        "target_date": (NOW + timedelta(days=30)).date().isoformat(),
        "targets": {
            "GENERAL": {"people_vaccinated": 100 + next(i.ids), "people_fully_vaccinated": 50}
        },
    }
    return "/v1/vaccination/plans/79", body


REQUESTS: dict[tuple[str, str], Request] = {
    ("POST", "/v1/venues"): venue,
    ("GET", "/v1/venues/{venue_id}/poster.png"): poster_png,
    ("GET", "/v1/venues/{venue_id}/poster.svg"): poster_svg,
    ("POST", "/v1/people"): person,
    ("POST", "/v1/people/sessions"): session,
    ("POST", "/v1/scans"): scan,
    ("POST", "/v1/declarations"): declaration,
    ("POST", "/v1/samples"): sample,
    ("POST", "/v1/samples/{sample_id}/result"): result,
    ("POST", "/v1/doses"): dose,
    ("GET", "/v1/vaccines"): vaccines,
    ("POST", "/v1/vaccination/registrations"): registration,
    ("POST", "/v1/vaccination/appointments"): appointment,
    ("POST", "/v1/vaccination/appointments/{appointment_id}/cancel"): cancellation,
    ("POST", "/v1/vaccination/allocations"): allocation,
    ("POST", "/v1/vaccination/discards"): discard,
    ("PUT", "/v1/vaccination/plans/{province}"): plan,
}


def declared() -> dict[tuple[str, str], frozenset[str]]:
    """Per route of the app that takes a token, the scope kinds its document declares."""
    app = create_app(SETTINGS, producer=MemoryLog())
    paths = openapi_document()["paths"]
    out = {}
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = paths[route.path][method.lower()]
            if not operation.get("security"):
                continue
            kinds = operation.get("x-scopes")
            assert kinds, f"{method} {route.path} takes a token but declares no x-scopes"
            out[(method, route.path)] = frozenset(kinds)
    return out


def test_every_scope_kind_and_every_route_that_takes_a_token_is_in_the_matrix() -> None:
    assert {kind_of(s) for s in SCOPES} == {k.value for k in ScopeKind}
    routes = declared()
    assert set(REQUESTS) == set(routes)
    assert ("POST", "/v1/vaccination/registrations") in routes  # the programme's routes too
    for (method, path), kinds in routes.items():
        assert kinds <= {k.value for k in ScopeKind}, (method, path, kinds)


@pytest.mark.parametrize(("method", "path"), sorted(REQUESTS), ids=lambda v: str(v))
async def test_each_route_answers_the_scopes_it_declares_and_refuses_the_others(
    ingest: Ingest, method: str, path: str
) -> None:
    allowed = declared()[(method, path)]
    got: dict[str, int] = {}
    for template in SCOPES:
        scope = ingest.scope(template)
        url, body = await REQUESTS[(method, path)](ingest)
        r = await ingest.http.request(method, url, json=body, headers=auth(scope))
        if kind_of(scope) in allowed:
            assert 200 <= r.status_code < 300, (scope, r.status_code, r.text)
        elif r.status_code == 403:
            problem = r.json()
            assert problem["type"] == "urn:covidtech:problem:insufficient-scope", problem
            assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
        got[scope] = r.status_code
    refused = {s for s, status in got.items() if status == 403}
    assert refused == {ingest.scope(s) for s in SCOPES if kind_of(s) not in allowed}, got
