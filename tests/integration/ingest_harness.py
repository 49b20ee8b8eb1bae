"""Helpers of the ingest API integration tests: serve the app in-process, read topics, tokens,
register a venue and a person, a scan's body.

The app runs in the test's event loop behind ``httpx.ASGITransport``; its lifespan is driven
with the ASGI lifespan protocol, like uvicorn does, so the typed lifespan state reaches requests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import TopicPartition
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from covidtech import kafka_clients
from covidtech.kafka_clients import partitions_of
from covidtech.settings import Settings
from schemas.codec import Event, default_registry
from tests.support import eventually_async

PROBLEM_JSON = "application/problem+json"


def token(
    s: Settings, *scopes: str, ttl: timedelta = timedelta(hours=1), now: datetime | None = None
) -> str:
    """A bearer token for ``scopes`` signed with the settings' secret."""
    return s.token_signer().issue("tests", scopes, ttl, now=now)


def bearer(s: Settings, *scopes: str) -> dict[str, str]:
    """An Authorization header for ``scopes``."""
    return {"Authorization": f"Bearer {token(s, *scopes)}"}


def client_id() -> str:
    """A client-generated id (scan_id, dose_id, ...)."""
    return str(uuid.uuid4())


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def register_venue(
    api: httpx.AsyncClient, s: Settings, venue: dict[str, Any]
) -> dict[str, Any]:
    """Registers ``venue`` as its province's venue admin: the answer (id, QR, posters)."""
    r = await api.post(
        "/v1/venues", json=venue, headers=bearer(s, f"venue-admin:{venue['province']}")
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def register_person(
    api: httpx.AsyncClient,
    s: Settings,
    province: str = "79",
    district: str = "760",
    birth_year: int | None = 1985,
) -> dict[str, Any]:
    """Registers a person through the app: the answer (id, QR, the person's own token)."""
    body: dict[str, Any] = {"province": province, "district": district}
    if birth_year is not None:
        body["birth_year"] = birth_year
    r = await api.post("/v1/people", json=body, headers=bearer(s, "app"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def scan_body(
    venue: dict[str, Any],
    person: dict[str, Any],
    *,
    ago: timedelta = timedelta(0),
    **changes: Any,
) -> dict[str, Any]:
    """A new scan (its own id) of the person IN at the venue, ``ago`` before now."""
    return {
        "scan_id": client_id(),
        "venue_qr": venue["venue_qr"],
        "person_qr": person["person_qr"],
        "scanned_at": rfc3339(datetime.now(UTC) - ago),
        "direction": "IN",
        **changes,
    }


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan, yield a client talking to it, then shut it down."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await to_app.get()

    async def send(message: dict[str, Any]) -> None:
        await from_app.put(message)

    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(lifespan_scope, receive, send))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"lifespan start-up failed: {started}")

    async def with_state(scope: Scope, rcv: Receive, snd: Send) -> None:
        await app({**scope, "state": dict(state)}, rcv, snd)

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=with_state), base_url="http://ingest"
        ) as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task


class OffsetReader:
    """End offsets read with one long-lived consumer (cheap enough around every request)."""

    def __init__(self, s: Settings) -> None:
        self._consumer = kafka_clients.consumer(s, group_id=None)
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> OffsetReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def ends(self, *topics: str) -> dict[str, int]:
        """Per topic, the sum of its partitions' end offsets: how many records it ever got."""
        for topic in topics:
            if topic not in self._partitions:
                ids = await partitions_of(self._consumer, topic)
                self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(ids)]
        tps = [tp for topic in topics for tp in self._partitions[topic]]
        ends = await self._consumer.end_offsets(tps)
        return {topic: sum(v for tp, v in ends.items() if tp.topic == topic) for topic in topics}


async def end_offsets(s: Settings, *topics: str) -> dict[str, int]:
    """Per topic, the sum of its partitions' end offsets (one-off)."""
    async with OffsetReader(s) as reader:
        return await reader.ends(*topics)


async def read_topic(s: Settings, topic: str) -> list[tuple[bytes | None, Event]]:
    """Every record of the topic, decoded, up to the end offsets at call time."""
    registry = default_registry()
    consumer = kafka_clients.consumer(s, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[bytes | None, Event]] = []
    try:
        partitions = await partitions_of(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)

        async def done() -> bool:
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for records in batch.values():
                for r in records:
                    assert r.value is not None
                    out.append((r.key, registry.decode(r.value)))
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    return False
            return True

        await eventually_async(done, within=30, interval=0, what=f"reading {topic}")
    finally:
        await consumer.stop()
    return out


async def events_with(
    s: Settings, topic: str, field: str, values: Iterable[str]
) -> list[tuple[bytes | None, Event]]:
    """The records of ``topic`` whose ``field`` is one of ``values``."""
    wanted = set(values)
    return [(k, e) for k, e in await read_topic(s, topic) if e.record.get(field) in wanted]
