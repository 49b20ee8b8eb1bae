"""Broker stopped: the API answers 503 with Retry-After, never 2xx; back up: the same requests
succeed, and every acknowledged event is in its topic exactly once.

A private Kafka (own data folder and free ports, in ``tmp_path``) is stopped and started again;
the shared platform is never touched.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from infra import services
from infra.kafka_topics import broker_answers, create_topics
from producers.app import create_app
from producers.service import IngestConfig
from tests.integration.ingest_harness import (
    PROBLEM_JSON,
    bearer,
    client_id,
    read_topic,
    register_person,
    register_venue,
    rfc3339,
    scan_body,
    serving,
)
from tests.support import eventually_async, unique

pytestmark = pytest.mark.integration


async def _start_kafka(s: Settings) -> None:
    await asyncio.to_thread(services.start_kafka, s, print)
    await asyncio.to_thread(services.wait_until, lambda: broker_answers(s), 120, "private Kafka")


@pytest.fixture
async def private_kafka(platform: Settings, tmp_path: Path) -> Any:
    port, controller = free_port(), free_port()
    s = with_overrides(
        platform,
        home=tmp_path / "home",
        kafka_port=port,
        kafka_controller_port=controller,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_heap="512m",
        topic_prefix=f"{unique('down')}.",
    )
    try:
        await _start_kafka(s)
        await create_topics(s)
        yield s
    finally:
        await asyncio.to_thread(services.stop, services.kafka(s), s)


async def _post(api: httpx.AsyncClient, request: tuple[str, dict[str, str], Any]) -> httpx.Response:
    path, headers, body = request
    return await api.post(path, json=body, headers=headers)


async def test_broker_down_then_up(private_kafka: Settings) -> None:
    s = private_kafka
    config = IngestConfig(delivery_timeout_s=3.0, retry_after_s=1)
    async with serving(create_app(s, config=config)) as api:
        venue = await register_venue(
            api,
            s,
            {
                "name": "Siêu thị",
                "address": "1 Hàng Bài",
                "province": "01",
                "district": "002",
                "category": "shop",
            },
        )
        person = await register_person(api, s, "01", "002", birth_year=None)

        def scan() -> dict[str, Any]:
            return scan_body(venue, person)

        app, site = {"Authorization": f"Bearer {person['token']}"}, bearer(s, "site:s1@01")
        before = scan()
        assert (await api.post("/v1/scans", json=before, headers=app)).status_code == 202

        await asyncio.to_thread(services.stop, services.kafka(s), s)
        assert not services.port_open(s.kafka_port)

        batch = [scan(), scan()]
        sample_id = f"T-{client_id()[:8]}"
        dose_id = client_id()
        requests: list[tuple[str, dict[str, str], Any]] = [
            ("/v1/scans", app, scan()),
            ("/v1/scans", app, scan()),
            ("/v1/scans", app, {"scans": batch}),
            (
                "/v1/samples",
                site,
                {
                    "sample_id": sample_id,
                    "province": "01",
                    "test_type": "PCR",
                    "collected_at": rfc3339(datetime.now(UTC)),
                    "members": [{"person_qr": person["person_qr"]}],
                },
            ),
            (
                "/v1/doses",
                site,
                {
                    "dose_id": dose_id,
                    "person_id": person["person_id"],
                    "administered_at": rfc3339(datetime.now(UTC)),
                    "vaccine": _any_vaccine(),
                    "birth_year": 1990,
                    "residence_province": "01",
                },
            ),
            (
                "/v1/people",
                {**app, "Idempotency-Key": f"k-{client_id()}"},
                {"province": "01", "district": "002"},
            ),
        ]
        # Concurrently, like clients do: the first ones wait for the acknowledgement timeout,
        # and whatever comes after the breaker opened fails fast.
        down = await asyncio.gather(*(_post(api, r) for r in requests))
        down += [await _post(api, r) for r in requests]
        for r in down:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == PROBLEM_JSON
            assert r.json()["type"] == "urn:covidtech:problem:broker-unavailable"
            assert int(r.headers["retry-after"]) >= 1
        assert (await api.get("/readyz")).status_code == 503

        await _start_kafka(s)

        async def all_accepted() -> list[httpx.Response] | None:
            answers = [await _post(api, r) for r in requests]
            return answers if all(a.status_code < 300 for a in answers) else None

        answers = await eventually_async(
            all_accepted, within=60, interval=0.5, what="2xx after the broker came back"
        )

        async def ready() -> bool:
            return (await api.get("/readyz")).status_code == 200

        await eventually_async(ready, within=30, what="readiness after the broker came back")
        fresh = scan()

        async def fresh_accepted() -> bool:
            return (await api.post("/v1/scans", json=fresh, headers=app)).status_code < 300

        await eventually_async(fresh_accepted, within=30, what="a new scan accepted")
        person_id = answers[-1].json()["person_id"]

    acknowledged_scans = (
        [before["scan_id"], fresh["scan_id"]]
        + [r[2]["scan_id"] for r in requests[:2]]
        + [b["scan_id"] for b in batch]
    )
    scans = Counter(e.record["event_id"] for _, e in await read_topic(s, s.topic("checkins")))
    for scan_id in acknowledged_scans:
        assert scans[scan_id] == 1, (scan_id, scans)
    samples = Counter(e.record["event_id"] for _, e in await read_topic(s, s.topic("samples")))
    assert samples[f"{sample_id}.collected"] == 1
    doses = Counter(e.record["event_id"] for _, e in await read_topic(s, s.topic("doses")))
    assert doses[dose_id] == 1
    people = Counter(e.record["person_id"] for _, e in await read_topic(s, s.topic("people")))
    assert people[person_id] == 1


def _any_vaccine() -> str:
    from domain.vaccines import VACCINES

    return next(iter(VACCINES))
