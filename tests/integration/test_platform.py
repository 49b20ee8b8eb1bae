"""The services are real: Kafka and Cassandra started by the project, used by real clients."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from covidtech import kafka_clients
from covidtech.settings import Settings, with_overrides
from infra import lifecycle, services
from schemas.codec import default_registry
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(s: Settings) -> dict[str, str]:
    return {**os.environ, **s.as_env()}


async def test_avro_record_round_trips_through_kafka(isolated: Settings) -> None:
    registry = default_registry()
    topic = isolated.topic("checkins")
    record = {
        "event_id": "scan-1",
        "scanned_at": 1_627_000_000_000,
        "received_at": 1_627_000_001_000,
        "person_id": "p-1",
        "venue_id": "v-1",
        "direction": "IN",
        "method": "PERSON_SCANNED_VENUE",
        "venue_province": "01",
        "venue_dwell_minutes": 60,
        "device_id": None,
    }
    payload = registry.encode("covidtech.checkin.CheckInScanned", record)
    producer = kafka_clients.producer(isolated, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, payload, key=b"p-1")
    finally:
        await producer.stop()
    consumer = kafka_clients.consumer(
        isolated, topic, auto_offset_reset="earliest", group_id=unique("g")
    )
    await consumer.start()
    try:
        msg = await consumer.getone()
    finally:
        await consumer.stop()
    assert (msg.partition, msg.offset) == (meta.partition, meta.offset)
    event = registry.decode(msg.value)
    assert event.name == "covidtech.checkin.CheckInScanned"
    assert event.record["person_id"] == "p-1"
    assert event.record["direction"] == "IN"
    assert int(event.record["scanned_at"].timestamp() * 1000) == 1_627_000_000_000


def test_faust_worker_writes_rows_to_cassandra(isolated: Settings) -> None:
    for i in range(20):
        asyncio.run(
            _produce_one(
                isolated, isolated.topic("venues"), f"venue-{i}".encode(), f"name-{i}".encode()
            )
        )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.probe_app",
            "worker",
            "-l",
            "warn",
            "--without-web",
        ],
        cwd=ROOT,
        env=_env(isolated),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    session: Any = lifecycle.cassandra_session(isolated, keyspace=isolated.keyspace)
    try:
        rows = eventually(
            lambda: (
                (
                    r
                    if len(r := list(session.execute("SELECT venue_id, name FROM venues"))) == 20
                    else None
                )
                if worker.poll() is None
                else _fail(worker)
            ),
            timeout=90,
            what="20 rows written by the faust worker",
        )
        assert {(r.venue_id, r.name) for r in rows} == {
            (f"venue-{i}", f"name-{i}") for i in range(20)
        }
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        session.cluster.shutdown()


def _fail(proc: subprocess.Popen[bytes]) -> None:
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    raise AssertionError(f"worker exited with {proc.returncode}:\n{out[-3000:]}")


async def _produce_one(s: Settings, topic: str, key: bytes, value: bytes) -> None:
    producer = kafka_clients.producer(s, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume_one(s: Settings, topic: str) -> tuple[bytes | None, bytes | None]:
    consumer = kafka_clients.consumer(s, topic, auto_offset_reset="earliest", group_id=unique("g"))
    await consumer.start()
    try:
        msg = await consumer.getone()
    finally:
        await consumer.stop()
    return msg.key, msg.value


def test_data_survives_down_then_up(platform: Settings, tmp_path: Path) -> None:
    """A second, private platform (own ports and data) is stopped and started again."""
    s = with_overrides(
        platform,
        home=tmp_path / "home",
        kafka_port=19092,
        kafka_controller_port=19093,
        kafka_bootstrap="127.0.0.1:19092",
        cassandra_port=19042,
        cassandra_storage_port=17000,
        kafka_heap="512m",
        cassandra_heap="768m",
        keyspace="survival",
    )
    try:
        lifecycle.up(s, log=print)
        asyncio.run(_produce_one(s, s.topic("venues"), b"k", b"kept"))
        session: Any = lifecycle.cassandra_session(s, keyspace=s.keyspace)
        session.execute("INSERT INTO venues (venue_id, name) VALUES ('v', 'kept')")
        session.cluster.shutdown()

        lifecycle.down(s, log=print)
        assert services.running_pid(services.kafka(s), s) is None
        assert services.running_pid(services.cassandra(s), s) is None
        assert not services.port_open(s.kafka_port)
        lifecycle.up(s, log=print)

        session = lifecycle.cassandra_session(s, keyspace=s.keyspace)
        row = session.execute("SELECT name FROM venues WHERE venue_id = 'v'").one()
        session.cluster.shutdown()
        assert row is not None and row.name == "kept"
        assert asyncio.run(_consume_one(s, s.topic("venues"))) == (b"k", b"kept")
    finally:
        lifecycle.down(s, log=print)


def test_the_services_run_the_reviewed_jars(platform: Settings) -> None:
    """Each lib folder holds exactly the jars its ``infra/<service>/jars.txt`` lists, so a
    change in what Maven resolves shows up in review."""
    for service in (services.kafka(platform), services.cassandra(platform)):
        lib = service.lib(platform)
        assert (lib / ".resolved").exists(), service.name
        assert {p.name for p in lib.glob("*.jar")} == services.expected_jars(service)
