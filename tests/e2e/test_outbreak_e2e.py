"""End to end: HTTP ingest -> Kafka -> worker -> Cassandra -> read API, as users see it.

A venue owner registers a venue; three people check in through the citizen app; a sample
site swabs one of them, whose lab result is POSITIVE. The tracer of the province then reads
the alerts of the two contacts (HIGH and LOW), the citizen reads the result with the receipt's
code, and MOH finds those reads in the audit log. A dose recorded by a site shows up in the
province's coverage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app as create_read_app
from api.testing import client as read_client
from api.testing import running
from covidtech.processes import free_port
from covidtech.settings import Settings
from producers.app import create_app as create_ingest_app
from tests.integration.ingest_harness import bearer, client_id, rfc3339, serving
from tests.integration.worker_harness import worker
from tests.support import eventually_async

pytestmark = pytest.mark.e2e


async def poll(
    c: httpx.AsyncClient, url: str, headers: dict[str, str], ready: Any, what: str
) -> Any:
    async def check() -> Any:
        r = await c.get(url, headers=headers)
        if r.status_code != 200:
            return None
        body = r.json()
        return body if ready(body) else None

    return await eventually_async(check, within=120, interval=0.5, what=what)


async def test_a_positive_result_reaches_tracers_citizens_and_the_audit(
    isolated: Settings,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with worker(isolated, free_port()):
        read_app = create_read_app(isolated)
        async with (
            serving(create_ingest_app(isolated)) as ingest,
            running(read_app),
            read_client(read_app) as read,
        ):
            admin, app, site, lab = (
                bearer(isolated, "venue-admin:79"),
                bearer(isolated, "app"),
                bearer(isolated, "site:hcm-07@79"),
                bearer(isolated, "lab:pasteur@79"),
            )
            r = await ingest.post(
                "/v1/venues",
                headers=admin,
                json={
                    "name": "Chợ Bến Thành",
                    "address": "Lê Lợi, Quận 1",
                    "province": "79",
                    "district": "760",
                    "category": "market",
                    "default_dwell_minutes": 60,
                },
            )
            assert r.status_code == 201, r.text
            venue_qr = r.json()["venue_qr"]
            people = {}
            for name in ("case", "near", "brief"):
                r = await ingest.post(
                    "/v1/people",
                    headers=app,
                    json={"province": "79", "district": "760", "birth_year": 1980},
                )
                assert r.status_code == 201, r.text
                people[name] = r.json()

            async def visit(name: str, start: timedelta, end: timedelta) -> None:
                for direction, at in (("IN", now - start), ("OUT", now - end)):
                    r = await ingest.post(
                        "/v1/scans",
                        headers={"Authorization": f"Bearer {people[name]['token']}"},
                        json={
                            "scan_id": client_id(),
                            "venue_qr": venue_qr,
                            "person_qr": people[name]["person_qr"],
                            "scanned_at": rfc3339(at),
                            "direction": direction,
                        },
                    )
                    assert r.status_code == 202, r.text

            h = timedelta(hours=1)
            await visit("case", 5 * h, 4 * h)  # window: 5 h ago to 3 h 30 ago (30 min tail)
            await visit("near", 4.75 * h, 4.25 * h)  # 30 min inside the window: HIGH
            await visit("brief", 3.75 * h, 3.6 * h)  # 9 min inside the tail: LOW
            r = await ingest.post(
                "/v1/samples",
                headers=site,
                json={
                    "sample_id": "HCM-E2E-1",
                    "province": "79",
                    "test_type": "PCR",
                    "collected_at": rfc3339(now - 2 * h),
                    "members": [{"person_qr": people["case"]["person_qr"]}],
                },
            )
            assert r.status_code == 201, r.text
            code = r.json()["members"][0]["lookup_code"]
            r = await ingest.post(
                "/v1/samples/HCM-E2E-1/result", headers=lab, json={"result": "POSITIVE"}
            )
            assert r.status_code == 202, r.text

            tracer = bearer(isolated, "tracer:79")
            body = await poll(
                read,
                "/v1/alerts?province=79",
                tracer,
                lambda b: len(b["items"]) >= 2,
                "two alerts for province 79",
            )
            risks = {a["contact_person_id"]: a["risk"] for a in body["items"]}
            assert risks == {
                people["near"]["person_id"]: "HIGH",
                people["brief"]["person_id"]: "LOW",
            }

            r = await read.get(f"/v1/results/{code}")
            assert r.status_code == 200 and r.json()["state"] == "POSITIVE", r.text
            case_id = people["case"]["person_id"]
            r = await read.get(f"/v1/people/{case_id}/visits", headers=tracer)
            assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
            other_province = bearer(isolated, "tracer:01")
            r = await read.get("/v1/alerts?province=79", headers=other_province)
            assert r.status_code == 403

            r = await ingest.post(
                "/v1/doses",
                headers=site,
                json={
                    "dose_id": client_id(),
                    "person_qr": people["near"]["person_qr"],
                    "administered_at": rfc3339(now - h),
                    "vaccine": "JANSSEN",
                    "birth_year": 1980,
                    "residence_province": "79",
                },
            )
            assert r.status_code == 202, r.text
            moh = bearer(isolated, "moh")
            await poll(
                read,
                "/v1/coverage?area=79",
                moh,
                lambda b: b.get("people_fully_vaccinated", 0) >= 1,
                "a fully vaccinated person in province 79",
            )
            audit = await poll(
                read, "/v1/audit", moh, lambda b: len(b["items"]) >= 2, "audit records of the reads"
            )
            routes = {a.get("route") for a in audit["items"]}
            assert any("alerts" in (r or "") for r in routes), routes


async def test_a_revoked_grant_is_refused_by_the_ingest_api_within_seconds(
    isolated: Settings,
) -> None:
    """MOH grants a sample site's scope through the read API; the site writes with it; MOH
    revokes the grant; the ingest API refuses the token (through the Kafka-fed list)."""
    read_app = create_read_app(isolated)
    async with (
        serving(create_ingest_app(isolated)) as ingest,
        running(read_app),
        read_client(read_app) as read,
    ):
        moh = bearer(isolated, "moh")
        r = await read.post(
            "/v1/grants",
            headers=moh,
            json={
                "agency": "Pasteur Institute HCMC",
                "scopes": ["site:pasteur-1@79"],
                "purpose": "testing campaign District 8",
                # within the MOH token's own hour: a grant never outlives its issuer
                "expires_at": rfc3339(datetime.now(UTC) + timedelta(minutes=50)),
            },
        )
        assert r.status_code == 201, r.text
        grant = r.json()
        site = {"Authorization": f"Bearer {grant['token']}"}
        r = await ingest.post(
            "/v1/people", headers=site, json={"province": "79", "district": "760"}
        )
        assert r.status_code == 201, r.text
        r = await read.delete(f"/v1/grants/{grant['grant_id']}", headers=moh)
        assert r.status_code in (200, 204), r.text

        async def refused() -> bool:
            r = await ingest.post(
                "/v1/people", headers=site, json={"province": "79", "district": "760"}
            )
            assert r.status_code in (201, 401), r.text
            return r.status_code == 401 and "revoked" in r.json()["type"]

        await eventually_async(
            refused, within=10, interval=0.2, what="the ingest API refuses the revoked token"
        )
