"""The live alert stream (SSE) over the real Kafka: scope filtering, exact resumption with
Last-Event-ID, keep-alives, clean ends on disconnect and on shutdown."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette

from api.app import create_app
from api.config import ReadApiConfig
from api.testing import EventStreamClient, bearer, client, running
from covidtech import kafka_clients
from covidtech.settings import Settings
from projections.memory import InMemoryStore
from schemas.codec import encode
from tests.support import eventually_async

pytestmark = pytest.mark.integration

CONFIG = ReadApiConfig(sse_keepalive_seconds=0.3)
T0 = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def producer(env: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = kafka_clients.producer(env, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def app(env: Settings) -> AsyncIterator[Starlette]:
    application = create_app(env, config=CONFIG, store=InMemoryStore())
    async with running(application):
        yield application


_counter = iter(range(10**6))


async def raise_alert(
    producer: AIOKafkaProducer, env: Settings, province: str, risk: str = "HIGH"
) -> str:
    n = next(_counter)
    alert_id = f"alert-{province}-{n}"
    record: dict[str, Any] = {
        "event_id": f"{alert_id}:1",
        "alert_id": alert_id,
        "case_person_id": "case-1",
        "contact_person_id": f"contact-{n}",
        "venue_id": f"venue-{province}",
        "province": province,
        "contact_visit_start": T0 + timedelta(minutes=n),
        "contact_visit_end": T0 + timedelta(minutes=n + 20),
        "overlap_seconds": 1200,
        "risk": risk,
        "status": "ACTIVE",
        "version": 1,
    }
    await producer.send_and_wait(
        env.topic("exposure-alerts"),
        encode("covidtech.exposure.ExposureAlertRaised", record),
        key=province.encode(),
    )
    return alert_id


async def open_stream(
    app: Starlette, env: Settings, scope: str, path: str = "/v1/alerts/stream", **headers: str
) -> EventStreamClient:
    stream = EventStreamClient(app, path, {**bearer(env, [scope]), **headers})
    await stream.open()
    assert stream.status == 200, await stream.body()
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-store"
    await stream.connected()
    return stream


async def take(stream: EventStreamClient, n: int) -> list[tuple[str, str]]:
    """(alert id, event id) of the next ``n`` events."""
    out = []
    for _ in range(n):
        event = await stream.next_event()
        assert event is not None and event.event == "alert" and event.id
        out.append((json.loads(event.data)["alert_id"], event.id))
    return out


async def test_a_province_stream_sees_only_its_province_and_moh_sees_all(
    app: Starlette, env: Settings, producer: AIOKafkaProducer
) -> None:
    tracer = await open_stream(app, env, "tracer:79")
    moh = await open_stream(app, env, "moh")
    province = await open_stream(app, env, "province:01")
    sent = [await raise_alert(producer, env, p) for p in ("01", "79", "48", "79", "01")]
    assert [a for a, _ in await take(tracer, 2)] == [sent[1], sent[3]]
    assert [a for a, _ in await take(province, 2)] == [sent[0], sent[4]]
    assert sorted(a for a, _ in await take(moh, 5)) == sorted(sent)
    for stream in (tracer, moh, province):
        await stream.disconnect()


async def test_last_event_id_resumes_exactly_after_the_last_delivered_event(
    app: Starlette, env: Settings, producer: AIOKafkaProducer
) -> None:
    first = await open_stream(app, env, "tracer:79", "/v1/alerts/stream?risk=HIGH")
    before = [await raise_alert(producer, env, "79", "HIGH" if i != 1 else "LOW") for i in range(4)]
    got = await take(first, 2)
    assert [a for a, _ in got] == [before[0], before[2]]
    last_id = got[-1][1]
    await first.disconnect()
    # Missed while away: the rest of the earlier batch and new alerts of both provinces.
    after = [await raise_alert(producer, env, p) for p in ("79", "01", "79")]
    resumed = await open_stream(
        app, env, "tracer:79", "/v1/alerts/stream?risk=HIGH", **{"Last-Event-ID": last_id}
    )
    assert [a for a, _ in await take(resumed, 3)] == [before[3], after[0], after[2]]
    live = await raise_alert(producer, env, "79")
    assert [a for a, _ in await take(resumed, 1)] == [live]
    await resumed.disconnect()
    # The query parameter does the same as the header.
    again = await open_stream(
        app, env, "tracer:79", f"/v1/alerts/stream?risk=HIGH&last_event_id={last_id}"
    )
    assert [a for a, _ in await take(again, 4)] == [before[3], after[0], after[2], live]
    await again.disconnect()


async def test_keepalives_disconnects_and_bad_ids(app: Starlette, env: Settings) -> None:
    broadcaster = app.state.services.broadcaster
    stream = await open_stream(app, env, "moh")

    assert await stream.next_comment(within=10) == "keep-alive"
    assert broadcaster.clients >= 1
    await stream.disconnect()
    await eventually_async(
        lambda: _async(broadcaster.clients == 0), within=10, what="subscription released"
    )
    bad = EventStreamClient(
        app, "/v1/alerts/stream", {**bearer(env, ["moh"]), "Last-Event-ID": "yesterday"}
    )
    await bad.open()
    assert bad.status == 400
    assert json.loads(await bad.body())["type"] == "urn:covidtech:problem:invalid-last-event-id"


async def _async(value: bool) -> bool:
    return value


async def test_streams_end_cleanly_when_the_app_shuts_down(env: Settings) -> None:
    application = create_app(env, config=CONFIG, store=InMemoryStore())
    async with running(application):
        stream = await open_stream(application, env, "tracer:79")
    assert await stream.next_event(within=10) is None
    await stream.finished()


async def test_a_stream_ends_within_seconds_of_its_token_revoked_or_expired(
    app: Starlette, env: Settings, producer: AIOKafkaProducer
) -> None:
    """A revoked grant's open stream used to keep receiving alerts with person ids."""
    moh = bearer(env, ["moh"])
    expires = (datetime.now(UTC) + timedelta(minutes=50)).isoformat().replace("+00:00", "Z")
    async with client(app) as http:
        r = await http.post(
            "/v1/grants",
            json={"agency": "HCDC", "scopes": ["tracer:79"], "purpose": "p", "expires_at": expires},
            headers=moh,
        )
        assert r.status_code == 201, r.text
        grant = r.json()
        stream = EventStreamClient(
            app, "/v1/alerts/stream", {"Authorization": f"Bearer {grant['token']}"}
        )
        await stream.open()
        await stream.connected()
        alert = await raise_alert(producer, env, "79")
        assert [a for a, _ in await take(stream, 1)] == [alert]
        revoked = await http.delete(f"/v1/grants/{grant['grant_id']}", headers=moh)
        assert revoked.status_code == 200
        end = await stream.next_event(within=5)
        assert end is not None and end.event == "end"
        assert json.loads(end.data) == {"reason": "token-revoked"}
        await stream.finished(within=5)

    short = EventStreamClient(
        app, "/v1/alerts/stream", bearer(env, ["tracer:79"], ttl=timedelta(seconds=2))
    )
    await short.open()
    await short.connected()
    end = await short.next_event(within=8)  # 2 s of token left, then at most 5 s
    assert end is not None and end.event == "end"
    assert json.loads(end.data) == {"reason": "token-expired"}
    await short.finished(within=5)


async def test_a_resumed_stream_audits_every_person_id_it_sends(
    app: Starlette, env: Settings, producer: AIOKafkaProducer
) -> None:
    store = app.state.services.store
    subject = "tracer on the night shift"
    first = EventStreamClient(app, "/v1/alerts/stream", bearer(env, ["tracer:79"], subject=subject))
    await first.open()
    await first.connected()
    await raise_alert(producer, env, "79")
    [(_, last_id)] = await take(first, 1)
    await first.disconnect()
    missed = [await raise_alert(producer, env, "79") for _ in range(3)]
    resumed = EventStreamClient(
        app,
        "/v1/alerts/stream",
        {**bearer(env, ["tracer:79"], subject=subject), "Last-Event-ID": last_id},
    )
    await resumed.open()
    await resumed.connected()
    assert [a for a, _ in await take(resumed, 3)] == missed
    await resumed.disconnect()
    contacts = {f"contact-{a.rsplit('-', 1)[1]}" for a in missed}
    audited = [r for r in await store.scan("audit_log") if r["actor"] == subject]
    # The catch-up was audited as one record naming every person it sent, before sending.
    assert any(contacts | {"case-1"} == set(r["person_ids"]) for r in audited)
