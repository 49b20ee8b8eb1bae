"""The citizen's own record (api/routes/me.py) in process: the events of an outbreak run
through the local pipeline, then each person reads their own record with their own token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.config import ReadApiConfig
from api.routes.me import notice_id
from api.testing import EventStreamClient, bearer, client, running
from covidtech.settings import Settings
from projections.access import LOCAL_TZ
from schemas.codec import decode
from streams.local import LocalPipeline
from tests.scenarios import citizen_outbreak, m, scan
from tests.unit.pipeline_support import run
from tests.unit.read_support import MemoryLog, Source, read_app

SETTINGS = Settings(secret="unit-test-secret-0123456789")
CONFIG = ReadApiConfig(aggregate_cache_seconds=0, page_size=50, notice_advice_low="Watch out.")


@dataclass
class World:
    http: httpx.AsyncClient
    app: Starlette
    pipeline: LocalPipeline
    log: MemoryLog
    source: Source

    def me(self, person: str) -> dict[str, str]:
        """The person's own token, as the ingest API issues it (subject: the person)."""
        token = SETTINGS.token_signer().issue(
            person, ["app", f"person:{person}"], timedelta(days=30)
        )
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, person: str) -> dict[str, Any]:
        r = await self.http.get(path, headers=self.me(person))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "private, no-store"
        # The source case (person "case") is never named.
        assert '"case"' not in r.text and "case_person" not in r.text
        return dict(r.json())

    def audited(self) -> list[dict[str, Any]]:
        return [decode(value).record for _, _, value in self.log.published]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    pipeline, store = await run(citizen_outbreak())
    log, source = MemoryLog(), Source()
    app = read_app(SETTINGS, CONFIG, store, event_log=log, alert_source=source)
    async with running(app), client(app) as c:
        yield World(c, app, pipeline, log, source)


async def test_my_record_is_mine_only_and_every_read_is_audited(world: World) -> None:
    me = await world.get("/v1/me", "a")
    assert me == {
        "person_id": "a",
        "province": "79",
        "district": "760",
        "birth_year": 1985,
        "registered_at": me["registered_at"],
    }
    visits = (await world.get("/v1/me/visits", "a"))["items"]
    assert [(v["venue_id"], v["venue_name"]) for v in visits] == [("venue", "Chợ Bến Thành")]
    assert visits[0]["visit_start"].startswith(m(0).isoformat()[:16])
    assert (await world.get("/v1/me/results", "a"))["items"] == []
    assert [d["dose_id"] for d in (await world.get("/v1/me/doses", "a"))["items"]] == ["a-1"]
    # Another person sees their own, and nothing of A's.
    d = await world.get("/v1/me/doses", "d")
    assert d["items"] == []
    assert (await world.get("/v1/me/notices", "d"))["items"] == []
    assert (await world.get("/v1/me", "d"))["province"] is None  # not registered here
    # The case's own results (read by the case's token: no other person's result shows).
    r = await world.http.get("/v1/me/results", headers=world.me("case"))
    assert [(x["sample_id"], x["state"]) for x in r.json()["items"]] == [("tube", "POSITIVE")]
    audited = world.audited()
    assert len(audited) == 8
    assert {(a["actor"], a["subject"], tuple(a["person_ids"])) for a in audited} == {
        ("a", "person:a", ("a",)),
        ("d", "person:d", ("d",)),
        ("case", "person:case", ("case",)),
    }
    assert {a["route"] for a in audited} == {
        "/v1/me",
        "/v1/me/visits",
        "/v1/me/results",
        "/v1/me/doses",
        "/v1/me/notices",
    }


async def test_only_a_person_token_reads_a_record(world: World) -> None:
    for scopes in (["app"], ["moh"], ["tracer:79"], ["venue:venue@79"]):
        r = await world.http.get("/v1/me/notices", headers=bearer(SETTINGS, scopes))
        assert r.status_code == 403, (scopes, r.text)
    assert world.log.published == []


async def test_a_notice_names_venue_day_risk_and_advice_and_follows_its_alert(
    world: World,
) -> None:
    (high,) = (await world.get("/v1/me/notices", "a"))["items"]
    assert high["risk"] == "HIGH" and high["status"] == "ACTIVE"
    assert (high["venue_name"], high["venue_address"]) == ("Chợ Bến Thành", "1 Lê Lợi")
    assert high["day"] == m(0).astimezone(LOCAL_TZ).date().isoformat()
    assert high["advice"] == CONFIG.notice_advice_high and "test" in high["advice"]
    assert set(high) == {
        "notice_id",
        "venue_id",
        "venue_name",
        "venue_address",
        "province",
        "day",
        "visit_start",
        "visit_end",
        "risk",
        "status",
        "advice",
    }
    (low,) = (await world.get("/v1/me/notices", "b"))["items"]
    assert (low["risk"], low["status"], low["advice"]) == ("LOW", "ACTIVE", "Watch out.")
    # B's offline scanner delivers the OUT late: B left at 11:25, the alert is withdrawn, and
    # so is the notice (same id), with the withdrawal's advice.
    e = scan("b", "venue", m(85), "OUT")
    world.pipeline.publish(e.topic, e.key, e.name, e.record)
    await world.pipeline.run_until_idle()
    (withdrawn,) = (await world.get("/v1/me/notices", "b"))["items"]
    assert withdrawn["notice_id"] == low["notice_id"]
    assert (withdrawn["status"], withdrawn["advice"]) == (
        "WITHDRAWN",
        CONFIG.notice_advice_withdrawn,
    )
    assert (await world.get("/v1/me/notices?status=ACTIVE", "b"))["items"] == []
    assert len((await world.get("/v1/me/notices?status=WITHDRAWN", "b"))["items"]) == 1
    # The notice id is not the alert id (a UUIDv5 of the case's and the contact's ids).
    alerts = [
        world.pipeline.registry.decode(x.value).record
        for x in world.pipeline.logs["exposure-alerts"]
    ]
    ids = {a["alert_id"] for a in alerts}
    assert low["notice_id"] not in ids and high["notice_id"] not in ids
    assert {notice_id(SETTINGS.secret, i) for i in ids} >= {low["notice_id"], high["notice_id"]}


async def test_the_notice_stream_sends_my_notices_only_raised_then_withdrawn(
    world: World,
) -> None:
    stream = EventStreamClient(world.app, "/v1/me/notices/stream", world.me("b"))
    await stream.open()
    assert stream.status == 200
    await stream.connected()
    # Every alert of the log goes live, A's and B's; B's withdrawal comes after.
    e = scan("b", "venue", m(85), "OUT")
    world.pipeline.publish(e.topic, e.key, e.name, e.record)
    await world.pipeline.run_until_idle()
    for x in world.pipeline.logs["exposure-alerts"]:
        world.source.push(world.source.append(0, x.value))
    raised = await stream.next_event()
    withdrawn = await stream.next_event()
    assert raised is not None and withdrawn is not None
    assert raised.event == withdrawn.event == "notice"
    first, second = json.loads(raised.data), json.loads(withdrawn.data)
    assert (first["risk"], first["status"], first["venue_name"]) == (
        "LOW",
        "ACTIVE",
        "Chợ Bến Thành",
    )
    assert second["status"] == "WITHDRAWN" and second["notice_id"] == first["notice_id"]
    assert '"case"' not in raised.data + withdrawn.data
    await stream.disconnect()
    audited = world.audited()
    assert audited and {a["subject"] for a in audited} == {"person:b"}
    assert all(a["person_ids"] == ["b"] for a in audited)
