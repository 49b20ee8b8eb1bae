"""Chains of transmission through the real worker, Kafka and Cassandra, and a rebuild."""

from __future__ import annotations

from typing import Any

import pytest

from covidtech.settings import Settings, with_overrides
from tests.chain_scenarios import chain_at_venue
from tests.integration.worker_harness import (
    converge,
    digest,
    expected_rows,
    free_port,
    publish_sync,
    snapshot,
    worker,
)
from tests.scenarios import shuffled

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
    folded = with_overrides(isolated, keyspace=f"{isolated.keyspace}f")
    try:
        rebuild(isolated, folded.keyspace, log=print)
        assert digest(snapshot(folded)) == digest(got)
    finally:
        from infra.lifecycle import cassandra_session

        session: Any = cassandra_session(isolated)
        session.execute(f"DROP KEYSPACE IF EXISTS {folded.keyspace}", timeout=60)
        session.cluster.shutdown()
