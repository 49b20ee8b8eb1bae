"""The check-in status through the real worker and ingest API (issue 15, item 5).

Source events go to Kafka, the worker (a subprocess) keeps the people's facts in Cassandra,
and a scan answers with the scanned person's colour; with Cassandra unreachable the scan is
still written and its status is UNKNOWN.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from producers.app import create_app
from tests.integration.ingest_harness import (
    bearer,
    read_topic,
    register_person,
    register_venue,
    scan_body,
    serving,
)
from tests.integration.worker_harness import publish, worker
from tests.scenarios import dose, m, result, sample, stay
from tests.support import eventually_async

VENUE = {
    "name": "Chợ Bến Thành",
    "address": "Lê Lợi, Quận 1",
    "province": "79",
    "district": "760",
    "category": "market",
}


def gate(s: Settings, venue: dict[str, Any]) -> dict[str, str]:
    """The venue's scanner: its staff scan each person's QR and see the colour."""
    return bearer(s, f"venue:{venue['venue_id']}@{venue['province']}")


async def test_a_scan_answers_the_colour_the_worker_facts_give(isolated: Settings) -> None:
    async with serving(create_app(isolated)) as api:
        venue = await register_venue(api, isolated, VENUE)
        case, contact, vaccinated, nobody = [await register_person(api, isolated) for _ in range(4)]
        c, a, v = (p["person_id"] for p in (case, contact, vaccinated))
        place, tube = f"venue-{uuid.uuid4().hex[:8]}", f"tube-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC)
        events = [
            # the case and the contact overlap 30 min at a venue two days ago (HIGH); the
            # case's sample, collected yesterday, is positive
            *stay(c, place, m(0), m(60)),
            *stay(a, place, m(0), m(30)),
            sample(tube, [c], m(24 * 60)),
            result(tube, "POSITIVE", m(30 * 60)),
            # both the vaccinated person and the contact are fully vaccinated: the contact's
            # YELLOW comes from the exposure alone
            *(dose(p, f"{p}-1", now - timedelta(days=60), "AZ", province="79") for p in (v, a)),
            *(dose(p, f"{p}-2", now - timedelta(days=30), "AZ", province="79") for p in (v, a)),
        ]
        with worker(isolated, free_port()):
            await publish(isolated, events)
            expected = {
                "RED": case,
                "YELLOW": contact,
                "GREEN": vaccinated,
            }
            for colour, person in expected.items():

                async def shows(person: dict[str, Any] = person, colour: str = colour) -> bool:
                    r = await api.post(
                        "/v1/scans", json=scan_body(venue, person), headers=gate(isolated, venue)
                    )
                    assert r.status_code == 202, r.text
                    return bool(r.json()["person_status"] == colour)

                await eventually_async(shows, within=90, interval=0.5, what=f"{colour} scan")
        # nobody known: neither vaccinated nor recovered; a batch answers per item
        r = await api.post(
            "/v1/scans",
            json={"scans": [scan_body(venue, nobody), scan_body(venue, case), {"scan_id": "bad"}]},
            headers=gate(isolated, venue),
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x.get("person_status") for x in results] == ["YELLOW", "RED", None]
        assert set(results[0]) == {"index", "scan_id", "status", "person_status"}  # no reason


async def test_without_the_store_a_scan_is_written_and_its_status_is_unknown(
    isolated: Settings,
) -> None:
    closed = with_overrides(isolated, cassandra_port=free_port())
    async with serving(create_app(closed)) as api:
        venue = await register_venue(api, closed, VENUE)
        person = await register_person(api, closed)
        body = scan_body(venue, person)
        r = await api.post("/v1/scans", json=body, headers=gate(closed, venue))
        assert r.status_code == 202, r.text
        assert r.json() == {
            "scan_id": body["scan_id"],
            "status": "accepted",
            "person_status": "UNKNOWN",
        }
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["optional"] == {"status_store": False}
    written = [e.record["event_id"] for _, e in await read_topic(closed, closed.topic("checkins"))]
    assert written == [body["scan_id"]]
