"""The worker through the real Kafka, Faust and Cassandra (poll with deadlines, no sleeps)."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import pytest

from covidtech import kafka_clients
from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from projections.cassandra import CassandraStore
from schemas.codec import default_registry
from tests.integration.worker_harness import (
    commit_end_offsets,
    converge,
    digest,
    expected_rows,
    midway,
    publish_sync,
    read_all,
    resumes_after_a_kill,
    slow_worker,
    snapshot,
    stable_members,
    uncommitted,
    worker,
)
from tests.scenarios import Ev
from tests.support import run_coroutine

pytestmark = pytest.mark.integration


def mixed_scenario() -> list[Ev]:
    from tests.scenarios import dose, m, outbreak_at_venue, pooled_retests, scan

    return [
        *outbreak_at_venue(),
        scan("gymgoer", "gym", m(0), "IN", dwell=120),  # a venue with a custom dwell
        *pooled_retests(),
        dose("j", "d1", m(0), "JANSSEN"),
        dose("j", "d2", m(60 * 24), "PFIZER"),
        dose("j", "d2", m(60 * 24), "PFIZER"),  # a duplicate dose
    ]


# ---------------------------------------------------------------------------- tests


def test_worker_builds_the_projections_and_a_replay_rebuilds_them_identically(
    isolated: Settings,
) -> None:
    from streams.rebuild import ONE_STAGE, rebuild
    from streams.replay import caught_up, replay
    from tests.scenarios import m, stay

    events = mixed_scenario()
    publish_sync(isolated, events)
    want = expected_rows(events)
    contacts = {r["contact_person_id"]: (r["risk"], r["status"]) for r in want["alerts_by_person"]}
    assert contacts == {"a": ("HIGH", "ACTIVE"), "b": ("LOW", "ACTIVE")}  # d: no overlap
    with worker(isolated, free_port()) as proc:
        converge(isolated, want, proc)
        # A contact's scans arrive late, after the case's window was opened.
        late = stay("late", "venue", m(20), m(50))
        publish_sync(isolated, late)
        events += late
        want = expected_rows(events)
        assert {r["contact_person_id"] for r in want["alerts_by_person"]} == {"a", "b", "late"}
        got = converge(isolated, want, proc)
        # Every event delivered twice changes nothing, not even an alert's version.
        publish_sync(isolated, events)
        from tests.support import eventually

        eventually(
            lambda: run_coroutine(caught_up(isolated)),
            timeout=60,
            what="worker caught up with the redelivered events",
        )
        assert digest(snapshot(isolated)) == digest(got)
    # Every way of replaying: folded in memory (each row written once) by the stage processes
    # and by a single one, and through a worker reading from offset 0 in its own group.
    folded = with_overrides(isolated, keyspace=f"{isolated.keyspace}f")
    single = with_overrides(isolated, keyspace=f"{isolated.keyspace}s")
    rebuilt = with_overrides(isolated, keyspace=f"{isolated.keyspace}r")
    try:
        fold_report = rebuild(isolated, folded.keyspace, log=print)
        assert fold_report.source_events == 2 * len(events)
        assert fold_report.rows == sum(len(rows) for rows in got.values())
        assert digest(snapshot(folded)) == digest(got)
        rebuild(isolated, single.keyspace, stages=ONE_STAGE, log=print)
        assert digest(snapshot(single)) == digest(got)
        report = replay(isolated, rebuilt.keyspace, log=print)
        assert report.source_events == 2 * len(events)
        assert digest(snapshot(rebuilt)) == digest(got)
    finally:
        from infra.lifecycle import cassandra_session

        session: Any = cassandra_session(isolated)
        for ks in (folded.keyspace, single.keyspace, rebuilt.keyspace):
            session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
        session.cluster.shutdown()


def test_shuffled_delivery_gives_the_same_projections(isolated: Settings) -> None:
    from tests.scenarios import outbreak_at_venue, shuffled, town

    events = town(7, people=120) + outbreak_at_venue("x")
    want = expected_rows(events)
    publish_sync(isolated, shuffled(events, seed=3))
    with worker(isolated, free_port()) as proc:
        converge(isolated, want, proc)


def test_a_killed_worker_resumes_without_loss_or_double_counts(isolated: Settings) -> None:
    from tests.scenarios import town

    resumes_after_a_kill(
        isolated, town(11, people=300), "visits_by_person", midway_within=90, converge_within=180
    )


def test_two_workers_give_the_same_projections_as_one(isolated: Settings) -> None:
    """The second worker joins in the middle of the stream: the first hands over half of its
    partitions (state recovered from the changelog by the new owner, the old owner's late
    writes losing to the new owner's by write timestamp)."""
    from tests.scenarios import outbreak_at_venue, town
    from tests.support import eventually

    events = town(5, people=200) + outbreak_at_venue("y")
    want = expected_rows(events)
    with slow_worker(isolated) as one:
        publish_sync(isolated, events)
        midway(isolated, want, "visits_by_person", timeout=90, what="first worker mid-stream")
        with worker(isolated, free_port()) as two:
            eventually(
                lambda: run_coroutine(stable_members(isolated)) == 2,
                timeout=90,
                interval=0.5,
                what="both workers in a stable consumer group",
            )
            converge(isolated, want, one, timeout=180)
            assert two.poll() is None


def test_a_consumer_resuming_past_the_committed_state_reads_what_it_skipped(
    isolated: Settings,
) -> None:
    """The consumer group's offsets are moved to the end of every source topic before the
    worker ever ran (as after a crash that committed offsets of events whose state was not
    committed). When events arrive again, the worker reads the skipped ranges itself."""

    events = mixed_scenario()
    publish_sync(isolated, events)

    assert run_coroutine(commit_end_offsets(isolated)) == len(events)
    # Again only the last event of each key: every partition that held events gets one past
    # the skipped range, and without reading that range most events would be missing.
    last_of_key = list({(e.topic, e.key): e for e in events}.values())
    assert len(last_of_key) < len(events)
    with worker(isolated, free_port()) as proc:
        publish_sync(isolated, last_of_key)
        converge(isolated, expected_rows(events), proc)


def test_events_past_the_last_delivered_one_are_read_once_the_partitions_are_quiet(
    isolated: Settings,
) -> None:
    """As above, but nothing more arrives: the consumer would wait forever for events it
    considers consumed. The agents' tail check compares quiet partitions with their end."""
    events = mixed_scenario()
    publish_sync(isolated, events)
    assert run_coroutine(commit_end_offsets(isolated)) == len(events)
    with worker(isolated, free_port()) as proc:
        converge(isolated, expected_rows(events), proc)


def test_poison_messages_go_to_each_topics_dlq_and_processing_continues(
    isolated: Settings,
) -> None:
    from covidtech.topics import SOURCE_TOPICS
    from tests.scenarios import outbreak_at_venue

    async def poison() -> None:
        producer = kafka_clients.producer(isolated, acks="all")
        await producer.start()
        try:
            for t in SOURCE_TOPICS:
                await producer.send_and_wait(
                    isolated.topic(t.name), b"\xc3\x01not-avro", key=b"poison"
                )
        finally:
            await producer.stop()

    run_coroutine(poison())
    events = outbreak_at_venue()
    publish_sync(isolated, events)
    handled = {"venues", "people", "checkins", "declarations", "samples", "doses"}
    with worker(isolated, free_port()) as proc:
        converge(isolated, expected_rows(events), proc)
        for name in sorted(handled):
            (letter,) = run_coroutine(read_all(isolated, isolated.topic(f"{name}.dlq"), 1))
            rec = default_registry().decode(letter).record
            assert rec["source_topic"] == name and rec["value"] == b"\xc3\x01not-avro"
            assert "MalformedEvent" in rec["error"] or "UnknownSchema" in rec["error"]


def test_workers_joining_and_leaving_mid_stream_leave_every_offset_committed(
    isolated: Settings,
) -> None:
    """Two workers; a third joins mid-stream and one leaves (two rebalances). The projections
    equal one in-process worker's, and within 10 s of the projections being complete every
    partition's committed offset is its end offset: offsets are committed from the agents'
    commit records (``AppliedOffsetsConsumer``), not from Faust's acks, whose gaps had held
    a partition's offsets thousands behind for minutes."""
    from tests.scenarios import outbreak_at_venue, town
    from tests.support import eventually

    events = town(7, people=300) + outbreak_at_venue("z")
    want = expected_rows(events)
    third = len(events) // 3
    with worker(isolated, free_port()) as one, worker(isolated, free_port()) as two:
        eventually(
            lambda: run_coroutine(stable_members(isolated)) == 2,
            timeout=90,
            interval=0.5,
            what="two workers in a stable group",
        )
        publish_sync(isolated, events[:third])
        with worker(isolated, free_port()) as three:
            publish_sync(isolated, events[third : 2 * third])
            eventually(
                lambda: run_coroutine(stable_members(isolated)) == 3,
                timeout=90,
                interval=0.5,
                what="three workers in a stable group",
            )
            one.send_signal(signal.SIGTERM)
            one.wait(timeout=60)
            publish_sync(isolated, events[2 * third :])
            converge(isolated, want, two, timeout=240)
            eventually(
                lambda: not run_coroutine(uncommitted(isolated)),
                timeout=10,
                interval=0.5,
                what="every partition committed to its end",
            )
            assert two.poll() is None and three.poll() is None


def test_a_slow_event_is_never_committed_over_and_survives_a_kill(isolated: Settings) -> None:
    """faust-streaming #606: one event is slow (its dose row never written) while later
    events of the same ``doses`` partition are applied by the registration agent and other
    partitions' offsets are committed. The group never commits past the slow event; after
    a SIGKILL a new worker applies it."""
    from aiokafka.partitioner import murmur2

    from streams.replay import committed
    from tests.scenarios import dose, m, scan
    from tests.support import eventually

    def partition(key: str) -> int:
        return int((murmur2(key.encode()) & 0x7FFFFFFF) % isolated.topic_partitions)

    slow = "slow-person"
    later = [k for k in (f"later{i}" for i in range(400)) if partition(k) == partition(slow)]
    elsewhere = [f"scan{i}" for i in range(40)]
    events = [
        dose(slow, "d-slow", m(0), "PFIZER"),  # offset 0 of its doses partition
        *(dose(k, f"d-{k}", m(1), "PFIZER") for k in later[:5]),
        *(scan(k, "v1", m(2), "IN") for k in elsewhere),
    ]
    publish_sync(isolated, events)
    slow_tp = (isolated.topic("doses"), partition(slow))

    def doses_committed() -> int:
        offsets = run_coroutine(committed(isolated, isolated.app_id))
        return next((o for tp, o in offsets.items() if (tp.topic, tp.partition) == slow_tp), 0)

    command = ("tests.integration.slow_worker", slow)
    with worker(isolated, free_port(), command) as proc:
        eventually(
            lambda: (
                not any(
                    k.startswith(isolated.topic("checkins"))
                    for k in run_coroutine(uncommitted(isolated))
                )
                and len(snapshot(isolated)["visits_by_person"]) == len(elsewhere)
            ),
            timeout=120,
            interval=0.5,
            what="check-ins applied and committed while the dose is stuck",
        )
        assert proc.poll() is None
        assert doses_committed() == 0, "committed past the slow event"
        assert not [r for r in snapshot(isolated)["doses_by_person"] if r["person_id"] == slow]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with worker(isolated, free_port()) as proc:
        converge(isolated, expected_rows(events), proc)
        eventually(lambda: doses_committed() > len(later[:5]), timeout=30, what="committed")


def test_check_finds_the_events_whose_rows_are_missing(isolated: Settings) -> None:
    """``covidtech check``: once the worker has caught up, every scan, sample and dose of
    the window has its row; a row deleted behind the worker's back is reported with the
    event's position."""
    from cassandra.query import SimpleStatement

    from infra.lifecycle import cassandra_session
    from streams.check import check

    events = mixed_scenario()
    publish_sync(isolated, events)
    with worker(isolated, free_port()) as proc:
        converge(isolated, expected_rows(events), proc)

    def run() -> Any:
        store = CassandraStore.from_settings(isolated)
        try:
            return run_coroutine(check(isolated, store, timedelta(hours=1)))
        finally:
            store.close()

    clean = run()
    assert clean.missing == 0, {n: t.missing for n, t in clean.topics.items()}
    assert clean.topics["checkins"].checked == sum(e.topic == "checkins" for e in events)
    assert clean.topics["doses"].checked == sum(e.topic == "doses" for e in events)
    assert clean.topics["samples"].checked == 4

    session: Any = cassandra_session(isolated, keyspace=isolated.keyspace)
    try:
        (dose_row,) = [r for r in snapshot(isolated)["doses_by_person"] if r["dose_id"] == "d1"]
        session.execute(
            SimpleStatement(
                "DELETE FROM doses_by_person WHERE person_id = %s AND administered_at = %s "
                "AND dose_id = %s"
            ),
            (dose_row["person_id"], dose_row["administered_at"], "d1"),
        )
        session.execute("DELETE FROM samples_by_id WHERE sample_id = 'r1'")
    finally:
        session.cluster.shutdown()
    broken = run()
    assert broken.missing == 2
    assert [m.split(": ")[1] for m in broken.topics["doses"].missing] == ["dose d1 of j"]
    assert [m.split(": ")[1] for m in broken.topics["samples"].missing] == ["sample r1"]
