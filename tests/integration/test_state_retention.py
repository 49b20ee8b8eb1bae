"""Retention in the worker's state, through the real worker, Kafka and Cassandra.

With rules shortened to seconds (presence 30 s, results 45 s, no lateness) and a retention
pass every second, a case, a contact and their alert go through the worker; once the window is
past, the rows are gone (Cassandra TTL), the worker's state holds none of their keys (its
gauge), the latest changelog record of each key is a tombstone, and after compaction the
changelogs hold no value for them any more. Polls with deadlines; no sleeps.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from covidtech import kafka_clients
from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from covidtech.topics import partition_of
from tests.integration.worker_harness import publish_sync, snapshot, worker
from tests.scenarios import person_registered, result, sample, scan, stay
from tests.support import eventually, run_coroutine

pytestmark = pytest.mark.integration

RULES = "presence_retention=30s,lateness=0s,result_retention=45s"
# Rows of the case, the contact and their alert: every one has a TTL from event time.
PERSONAL_TABLES = (
    "visits_by_person",
    "visits_by_venue",
    "exposure_windows_by_venue",
    "exposure_sites_by_province",
    "alerts_by_province",
    "alerts_by_person",
    "cases_by_person",
    "samples_by_id",
    "results_by_lookup",
    "results_by_person",
    "turnaround_by_province",
)
# Changelogs that compact quickly: a segment rolls at the first append 100 ms after it began,
# and the cleaner takes any dirty segment (it looks every 15 s, the broker's default).
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "max.compaction.lag.ms": "100",
    "delete.retention.ms": "100",
}
AGENTS = ("PersonHandler", "VenueHandler", "SampleHandler")


def changelog(s: Settings, agent: str) -> str:
    return f"{s.app_id}-{agent}-state-changelog"


async def create_changelogs(s: Settings) -> None:
    """The agents' changelogs, created before the worker (Faust keeps a topic that exists)."""
    admin = kafka_clients.admin(s)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=changelog(s, a),
                    num_partitions=s.topic_partitions,
                    replication_factor=s.topic_replication,
                    topic_configs=FAST_COMPACTION,
                )
                for a in AGENTS
            ]
        )
    finally:
        await admin.close()


async def read_changelog(s: Settings, agent: str) -> list[tuple[str, Any]]:
    """Every record of an agent's changelog, in offset order per partition: (key, value or
    None for a tombstone), as the JSON Faust's table codec reads."""
    import json

    topic = changelog(s, agent)
    consumer = kafka_clients.consumer(s, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(s.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(30):
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    fetched = await consumer.getmany(tp, timeout_ms=500)
                    for r in fetched.get(tp, ()):
                        value = None if r.value is None else json.loads(r.value)
                        out.append((json.loads(r.key), value))
    finally:
        await consumer.stop()
    return out


def latest(records: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in records:
        out[key] = value
    return out


def state_keys(port: int) -> dict[tuple[str, str], float]:
    """The worker's ``covidtech_stream_state_keys`` gauge: (agent, table) -> keys."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = r'covidtech_stream_state_keys\{agent="(\w+)",table="(\w+)"\} ([0-9.e+]+)'
    return {(a, t): float(v) for a, t, v in re.findall(pattern, text)}


def key_in_partition(prefix: str, partition: int, partitions: int) -> str:
    """A key Kafka's default partitioner puts in ``partition``."""
    i = 0
    while partition_of(f"{prefix}{i}".encode(), partitions) != partition:
        i += 1
    return f"{prefix}{i}"


def test_state_past_retention_leaves_the_rows_the_state_and_the_changelogs(
    isolated: Settings,
) -> None:
    s = with_overrides(isolated, rules=RULES, worker_prune_seconds=1)
    run_coroutine(create_changelogs(s))
    port = free_port()
    with worker(s, port) as proc:
        # Warm up: once the directory agent has written a row, the group is assigned and
        # every agent reads (events with seconds of retention must not wait for the start).
        publish_sync(s, [person_registered("warm", datetime.now(UTC), birth_year=1980)])
        eventually(
            lambda: proc.poll() is None and snapshot(s)["people"],
            timeout=120,
            what="worker running",
        )

        t = datetime.now(UTC)
        sec = timedelta(seconds=1)
        events = [
            *stay("case", "bar", t, t + 10 * sec),
            *stay("contact", "bar", t + 2 * sec, t + 8 * sec),
            sample("tube", ["case"], t),
            result("tube", "POSITIVE", t + sec),
        ]
        publish_sync(s, events)

        def rows() -> dict[str, int]:
            snap = snapshot(s)
            return {table: len(snap[table]) for table in PERSONAL_TABLES}

        # Within the window: the rows, and the state keys in the changelogs.
        eventually(
            lambda: rows()["alerts_by_person"] and rows()["cases_by_person"],
            timeout=25,
            what="the alert and the case written",
        )
        before = {a: latest(run_coroutine(read_changelog(s, a))) for a in AGENTS}
        ours = {
            "PersonHandler": ["persons|case", "persons|contact"],
            "VenueHandler": ["venue_exposure|bar"],
            "SampleHandler": ["samples_state|tube"],
        }
        for agent, keys in ours.items():
            assert all(before[agent].get(k) is not None for k in keys), (agent, before[agent])
        assert before["PersonHandler"]["persons|case"]["positives"]

        # After the window: no row, no state, a tombstone as the latest record of each key.
        eventually(lambda: not any(rows().values()) or None, timeout=90, what="rows expired (TTL)")
        eventually(
            lambda: (
                proc.poll() is None
                and all(state_keys(port).get((a, t)) == 0 for a, t in TABLES_OF.items())
            ),
            timeout=30,
            what="the worker's state emptied",
        )
        after = {a: latest(run_coroutine(read_changelog(s, a))) for a in AGENTS}
        for agent, keys in ours.items():
            for k in keys:
                assert k in after[agent] and after[agent][k] is None, (agent, k, after[agent])

        # Compaction drops the old values, then the tombstones (their keys are person ids
        # too). A segment is cleaned once a later one exists: each check first publishes a
        # scan and a sample in every partition, so each changelog appends (the commit record
        # of a batch) and rolls its segment.
        def keys_in_partitions(prefix: str) -> list[str]:
            return [
                key_in_partition(prefix, p, s.topic_partitions) for p in range(s.topic_partitions)
            ]

        nudgers, bars, tubes = (keys_in_partitions(k) for k in ("nudger-", "bar-", "tube-"))
        rounds = [0]

        def held(with_value: bool) -> dict[str, list[str]] | None:
            assert proc.poll() is None, "worker exited"
            now = datetime.now(UTC)
            n = rounds[0] = rounds[0] + 1
            publish_sync(
                s,
                [scan(p, b, now, "IN", scan_id=f"n{n}-{p}-{b}") for p in nudgers for b in bars]
                + [sample(tube, ["nudger"], now) for tube in tubes],  # again: a no-op
            )
            left = {
                agent: [
                    k
                    for k, v in run_coroutine(read_changelog(s, agent))
                    if k in keys and (v is not None or not with_value)
                ]
                for agent, keys in ours.items()
            }
            return None if any(left.values()) else left

        eventually(lambda: held(with_value=True), 120, 2, "old values compacted away")
        eventually(lambda: held(with_value=False), 120, 2, "tombstones compacted away")


TABLES_OF = {
    "PersonHandler": "persons",
    "VenueHandler": "venue_exposure",
    "SampleHandler": "samples_state",
}
