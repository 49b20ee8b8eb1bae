"""The vaccination programme from HTTP to HTTP: ingest API -> Kafka -> worker -> Cassandra ->
read API, with the real services (poll with deadlines, no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.app import create_app as create_read_app
from api.config import ReadApiConfig
from api.testing import bearer as read_bearer
from api.testing import client, running
from covidtech.processes import free_port
from covidtech.settings import Settings
from producers.app import create_app as create_ingest_app
from projections.cassandra import CassandraStore
from projections.programme_queries import PUBLIC_FIELDS
from tests.integration.ingest_harness import bearer, rfc3339, serving
from tests.integration.worker_harness import worker
from tests.support import eventually_async

pytestmark = pytest.mark.integration


def person(n: int) -> str:
    return "p_" + "abcdefghijklmnopqrs" + "bcdefghijklmnopqrstuvwxyz234567"[n]


def row(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "registration_id": f"hosp7-reg-{n:04d}",
        "person_id": person(n),
        "province": "79",
        "district": "760",
        "priority_group": "HEALTH_WORKER",
        **changes,
    }


async def test_registrations_appointments_doses_and_public_figures_end_to_end(
    isolated: Settings,
) -> None:
    now = datetime.now(UTC)
    async with serving(create_ingest_app(isolated)) as ingest:

        async def accepted(path: str, body: dict[str, Any], scope: str) -> None:
            r = await ingest.post(path, json=body, headers=bearer(isolated, scope))
            assert r.status_code == 202, r.text

        allocation = {
            "allocation_id": "alloc-79-az-1",
            "province": "79",
            "vaccine": "AZ",
            "doses": 100,
        }
        await accepted("/v1/vaccination/allocations", allocation, "moh")
        # An institution's list: four people, one row twice, one row with a bad province.
        rows = [row(n) for n in range(4)] + [row(1), row(9, province="99")]
        r = await ingest.post(
            "/v1/vaccination/registrations",
            json={"registrations": rows},
            headers=bearer(isolated, "institution:hospital-7"),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["accepted"], body["duplicate"], body["rejected"]) == (4, 1, 1)
        assert body["results"][5]["problem"]["field"] == "registrations[5].province"
        # Person 0 was expected two days ago and never came; person 1 got a dose.
        appointment = {
            "appointment_id": "appt-0000-0001",
            "person_id": person(0),
            "appointment_at": rfc3339(now - timedelta(days=2)),
        }
        await accepted("/v1/vaccination/appointments", appointment, "site:s1@79")
        dose = {
            "dose_id": "dose-0000-0001",
            "person_id": person(1),
            "administered_at": rfc3339(now - timedelta(hours=1)),
            "vaccine": "AZ",
            "birth_year": 1985,
            "residence_province": "79",
        }
        await accepted("/v1/doses", dose, "site:s1@79")

    store = CassandraStore.from_settings(isolated)
    read_app = create_read_app(
        isolated, config=ReadApiConfig(aggregate_cache_seconds=0), store=store
    )
    try:
        with worker(isolated, free_port()) as proc:
            async with running(read_app), client(read_app) as read:
                moh = read_bearer(isolated, ["moh"])

                async def counted() -> dict[tuple[str, str], int] | None:
                    assert proc.poll() is None, "worker exited"
                    r = await read.get("/v1/vaccination/registrations?province=79", headers=moh)
                    assert r.status_code == 200, r.text
                    got = {
                        (c["priority_group"], c["status"]): c["people"] for c in r.json()["counts"]
                    }
                    want = {
                        ("HEALTH_WORKER", "VACCINATED"): 1,
                        ("HEALTH_WORKER", "NO_SHOW"): 1,
                        ("HEALTH_WORKER", "REGISTERED"): 2,
                    }
                    return got if got == want else None

                await eventually_async(counted, within=120, interval=1, what="registrations")

                async def stocked() -> dict[str, Any] | None:
                    r = await read.get("/v1/vaccination/stock?province=79", headers=moh)
                    items = r.json()["items"]
                    return items[0] if items and items[0]["administered"] == 1 else None

                az = await eventually_async(stocked, within=60, interval=1, what="stock")
                assert (az["allocated"], az["in_stock"]) == (100, 99)

                async def published() -> dict[str, Any] | None:
                    r = await read.get("/v1/public/vaccination")
                    assert r.status_code == 200 and r.headers["cache-control"].startswith("public")
                    (hcm,) = [p for p in r.json()["provinces"] if p["province"] == "79"]
                    return r.json() if hcm["people_vaccinated"] == 1 else None

                body = await eventually_async(published, within=60, interval=1, what="public")
                assert all(list(p) == list(PUBLIC_FIELDS) for p in body["provinces"])
                (hcm,) = [p for p in body["provinces"] if p["province"] == "79"]
                assert (hcm["allocated"], hcm["administered"], hcm["registered"]) == (100, 1, 4)
                assert not any(person(n) in str(body) for n in range(10))
    finally:
        store.close()
