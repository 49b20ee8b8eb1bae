"""Chains of transmission through the real worker, Kafka and Cassandra, and a rebuild."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from tests.chain_scenarios import chain_at_venue
from tests.integration.worker_harness import (
    converge,
    digest,
    expected_rows,
    publish_sync,
    snapshot,
    worker,
)
from tests.scenarios import shuffled
from tests.support import run_coroutine

pytestmark = pytest.mark.integration


def test_the_worker_links_a_chain_whatever_the_order_and_a_rebuild_gives_the_same_rows(
    isolated: Settings,
) -> None:
    from streams.rebuild import rebuild

    events = chain_at_venue()
    want = expected_rows(events)
    links = {
        (r["source_person_id"], r["case_person_id"], r["venue_id"])
        for r in want["transmission_links_by_province"]
    }
    assert links == {("src", "p", "venue"), ("p", "q", "cafe")}
    publish_sync(isolated, shuffled(events, seed=5))
    with worker(isolated, free_port()) as proc:
        got = converge(isolated, want, proc)
    run_coroutine(read_the_chains(isolated))
    folded = with_overrides(isolated, keyspace=f"{isolated.keyspace}f")
    try:
        rebuild(isolated, folded.keyspace, log=print)
        assert digest(snapshot(folded)) == digest(got)
    finally:
        from infra.lifecycle import cassandra_session

        session: Any = cassandra_session(isolated)
        session.execute(f"DROP KEYSPACE IF EXISTS {folded.keyspace}", timeout=60)
        session.cluster.shutdown()


async def read_the_chains(s: Settings) -> None:
    """The read API over the worker's rows: the graph with its generations, scopes, the
    venue filter, the limit and the audit record."""
    from api.app import create_app
    from api.config import ReadApiConfig
    from api.testing import bearer, client, running
    from domain.results import case_id
    from projections.access import LOCAL_TZ
    from projections.cassandra import CassandraStore
    from projections.model import Query
    from tests.chain_scenarios import at

    store = CassandraStore.from_settings(s)
    try:
        app = create_app(s, config=ReadApiConfig(aggregate_cache_seconds=0), store=store)
        async with running(app), client(app) as http:

            async def get(scope: str, **params: str) -> httpx.Response:
                return await http.get(
                    "/v1/provinces/79/chains", params=params, headers=bearer(s, [scope])
                )

            r = await get("tracer:79")
            assert r.status_code == 200, r.text
            body = r.json()
            generation = {c["person_id"]: c["generation"] for c in body["cases"]}
            assert generation == {"src": 0, "p": 1, "q": 2}
            assert body["generations"] == 3 and body["truncated"] is False
            edges = {
                (k["source_person_id"], k["case_person_id"], k["venue_id"]) for k in body["links"]
            }
            assert edges == {("src", "p", "venue"), ("p", "q", "cafe")}
            first = next(k for k in body["links"] if k["case_person_id"] == "p")
            assert first["source_case_id"] == case_id("src", "tube-src")
            assert first["case_id"] == case_id("p", "tube-p")
            assert {v["venue_id"]: v["links"] for v in body["venues"]} == {"venue": 1, "cafe": 1}
            assert (await get("moh")).json() == body
            assert (await get("province:79")).status_code == 200
            assert (await get("tracer:01")).status_code == 403
            assert (await get("app")).status_code == 403
            # One venue: the link through it, generations counted within what is returned.
            cafe = (await get("moh", venue_id="cafe")).json()
            assert {c["person_id"]: c["generation"] for c in cafe["cases"]} == {"p": 0, "q": 1}
            # A limit of one link: the earlier day's link, and the answer says it is cut.
            cut = (await get("moh", limit="1")).json()
            assert [k["case_person_id"] for k in cut["links"]] == ["p"] and cut["truncated"]
            # A range without the cases' sample days: nothing.
            day = at(0, 9).astimezone(LOCAL_TZ).date()
            later = (await get("moh", **{"from": (day.replace(day=day.day)).isoformat()})).json()
            assert [k["case_person_id"] for k in later["links"]] == ["q"]
            bad = await get("moh", **{"from": "2021-01-01", "to": "2021-03-01"})
            assert bad.status_code == 400, bad.text
        rows = await store.select(Query("audit_log", {"day": datetime.now(LOCAL_TZ).date()}))
        audited = [r for r in rows if r["subject"] == "chains:79"]
        assert all(set(r["person_ids"]) <= {"src", "p", "q"} for r in audited)
        assert any(set(r["person_ids"]) == {"src", "p", "q"} for r in audited)
    finally:
        store.close()
