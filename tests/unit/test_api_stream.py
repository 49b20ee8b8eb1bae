"""The alert stream's guarantees, with a scripted source instead of Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import pytest

from api.stream import (
    AlertBroadcaster,
    InvalidEventId,
    alert_events,
    format_event_id,
    parse_event_id,
)
from schemas.codec import encode
from tests.unit.read_support import Source

T0 = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)


def alert(alert_id: str, province: str) -> bytes:
    return encode(
        "covidtech.exposure.ExposureAlertRaised",
        {
            "event_id": alert_id,
            "alert_id": alert_id,
            "case_person_id": "c",
            "contact_person_id": "p",
            "venue_id": "v",
            "province": province,
            "contact_visit_start": T0,
            "contact_visit_end": T0,
            "overlap_seconds": 60,
            "risk": "LOW",
            "status": "ACTIVE",
            "version": 1,
        },
    )


def test_event_ids_round_trip_and_garbage_is_refused() -> None:
    assert parse_event_id(format_event_id({1: 7, 0: 13})) == {0: 13, 1: 7}
    for bad in ("", "0:", "a:1", "0:1,0:2", "0:1;1:2", "0:-1", "0:1,", "x" * 10):
        with pytest.raises(InvalidEventId):
            parse_event_id(bad)


async def events(
    broadcaster: AlertBroadcaster, resume: dict[int, int] | None, province: str
) -> AsyncGenerator[bytes, None]:
    sub = broadcaster.subscribe()
    return alert_events(
        broadcaster,
        sub,
        resume=resume,
        wanted=lambda r: r["province"] == province,
        render=lambda r: {"alert_id": r["alert_id"]},
        keepalive_s=30,
        catchup_timeout_s=5,
    )


async def read(stream: AsyncGenerator[bytes, None], n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    while len(out) < n:
        chunk = (await asyncio.wait_for(anext(stream), 5)).decode()
        if chunk.startswith("id:"):
            lines = dict(line.split(": ", 1) for line in chunk.strip().split("\n"))
            out.append((json.loads(lines["data"])["alert_id"], lines["id"]))
    return out


async def test_resume_replays_what_was_missed_then_continues_live_without_duplicates() -> None:
    source = Source()
    source.append(0, alert("old-79", "79"))
    broadcaster = AlertBroadcaster(source)
    await broadcaster.start()
    try:
        first = await events(broadcaster, None, "79")
        source.push(source.append(0, alert("a", "79")), source.append(1, alert("x", "01")))
        [(_, after_a)] = await read(first, 1)
        assert parse_event_id(after_a) == {0: 2, 1: 0}
        await first.aclose()
        # missed while away, delivered live to nobody
        source.push(
            source.append(1, alert("b", "79")),
            source.append(0, alert("c", "79")),
            source.append(0, None),
        )
        for _ in range(100):
            if broadcaster.positions == {0: 4, 1: 2}:
                break
            await asyncio.sleep(0.01)
        resumed = await events(broadcaster, parse_event_id(after_a), "79")
        missed = await read(resumed, 2)
        assert sorted(a for a, _ in missed) == ["b", "c"]
        source.push(source.append(1, alert("d", "79")))
        [(live, last_id)] = await read(resumed, 1)
        assert live == "d" and parse_event_id(last_id) == {0: 4, 1: 3}
        await resumed.aclose()
    finally:
        await broadcaster.stop()


async def test_a_slow_client_is_disconnected_and_shutdown_ends_every_stream() -> None:
    source = Source()
    broadcaster = AlertBroadcaster(source, queue_size=2)
    await broadcaster.start()
    slow = broadcaster.subscribe()
    source.push(*(source.append(0, alert(f"a{i}", "79")) for i in range(3)))
    for _ in range(100):
        if slow.closed:
            break
        await asyncio.sleep(0.01)
    assert slow.closed and broadcaster.clients == 0
    idle = broadcaster.subscribe()
    await broadcaster.stop()
    assert idle.closed and idle.queue.get_nowait() is None
