"""Exposure notices end to end: the real worker raises the alerts in Cassandra and Kafka, and
the read API (its Kafka alert feed, its Cassandra store) shows each exposed person their own
notice, live on their stream and in their record, then its withdrawal."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from covidtech.processes import free_port
from covidtech.settings import Settings
from tests.integration.worker_harness import publish, worker
from tests.scenarios import citizen_outbreak, m, scan
from tests.support import run_coroutine

pytestmark = pytest.mark.integration


def test_the_worker_raises_a_notice_the_person_sees_live_then_withdrawn(
    isolated: Settings,
) -> None:
    run_coroutine(_notices(isolated))


async def _notices(s: Settings) -> None:
    from api.app import create_app
    from api.config import ReadApiConfig
    from api.testing import EventStreamClient, bearer, client, running
    from projections.access import LOCAL_TZ
    from projections.cassandra import CassandraStore
    from projections.model import Query

    def me(person: str) -> dict[str, str]:
        return bearer(s, ["app", f"person:{person}"], subject=person)

    store = CassandraStore.from_settings(s)
    try:
        app = create_app(s, config=ReadApiConfig(), store=store)
        async with running(app), client(app) as http:
            stream = EventStreamClient(app, "/v1/me/notices/stream", me("b"))
            await stream.open()
            assert stream.status == 200
            await stream.connected()
            await publish(s, citizen_outbreak())
            with worker(s, free_port()):
                raised = await stream.next_event(within=90)
                assert raised is not None and raised.event == "notice"
                low = json.loads(raised.data)
                assert (low["risk"], low["status"], low["venue_name"]) == (
                    "LOW",
                    "ACTIVE",
                    "Chợ Bến Thành",
                )
                # B's offline scanner delivers the OUT late: the alert is withdrawn, and so
                # is the notice, on the stream and in the record.
                late = scan("b", "venue", m(85), "OUT")
                await publish(s, [late])
                withdrawn = await stream.next_event(within=60)
                assert withdrawn is not None and withdrawn.event == "notice"
                gone = json.loads(withdrawn.data)
                assert (gone["notice_id"], gone["status"]) == (low["notice_id"], "WITHDRAWN")
                assert '"case"' not in raised.data + withdrawn.data
                await stream.disconnect()

                listed = await http.get("/v1/me/notices", headers=me("b"))
                assert listed.status_code == 200, listed.text
                assert [(n["notice_id"], n["status"]) for n in listed.json()["items"]] == [
                    (low["notice_id"], "WITHDRAWN")
                ]
                # A overlapped the case for 30 minutes: one HIGH notice, and A sees only it.
                mine = await http.get("/v1/me/notices", headers=me("a"))
                assert [(n["risk"], n["status"]) for n in mine.json()["items"]] == [
                    ("HIGH", "ACTIVE")
                ]
        rows = await store.select(Query("audit_log", {"day": datetime.now(LOCAL_TZ).date()}))
        subjects = {r["subject"] for r in rows}
        assert {"person:a", "person:b"} <= subjects
        assert all(r["person_ids"] == ["b"] for r in rows if r["subject"] == "person:b")
    finally:
        store.close()
