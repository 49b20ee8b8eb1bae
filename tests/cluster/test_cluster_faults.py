"""A 3-node local cluster (``covidtech infra up --nodes 3``) losing a broker, then a Cassandra
node, under a steady scan load through the ingest API.

The cluster runs on 127.0.0.1, 127.0.0.2 and 127.0.0.3 with ports of its own, so the suite's
single node is untouched. A load thread posts scans at a steady rate, each an IN of its own
(person, hour) at one venue, so each 202 must become exactly one ``visits_by_person`` row.
Kafka broker 2 is SIGKILLed and restarted, then Cassandra node 3. The ingest API must answer
202 (or 503 while an acknowledgement is impossible, never anything else); once the worker
group has committed every end offset, every acknowledged scan has its row (read at
LOCAL_QUORUM); the worker never stopped; both nodes answer again and every partition is back
to three in-sync replicas.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from covidtech import kafka_clients, processes
from covidtech import settings as settings_mod
from covidtech.processes import child_env
from covidtech.settings import Settings, with_overrides
from infra import lifecycle, services
from infra.lifecycle import cassandra_answers, cassandra_session, kafka_node_answers
from streams.replay import caught_up
from tests.integration.ingest_harness import bearer, client_id, rfc3339
from tests.support import eventually, isolated_env, kill_service, run_coroutine

pytestmark = pytest.mark.integration
RATE = 100  # scans per second through the ingest API
CONNECTIONS = 100  # the load's requests in flight at most


_TAKEN: set[int] = set()


def free_port_on_all(hosts: tuple[str, ...]) -> int:
    """A port free on every loopback address of the cluster, never one handed out before
    in this session (the kernel may return a just-closed port again)."""
    import socket

    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _TAKEN and not any(services.port_open(port, h) for h in hosts):
            _TAKEN.add(port)
            return port


@pytest.fixture(scope="module")
def cluster(platform: Settings) -> Iterator[Settings]:
    """Three Kafka brokers and three Cassandra nodes, started here, stopped at the end."""
    hosts = settings_mod.local_hosts(3)
    home = Path(tempfile.mkdtemp(prefix="covidtech-cluster-"))
    env = {
        **os.environ,
        "COVIDTECH_NODES": "3",
        "COVIDTECH_HOME": str(home),
        "COVIDTECH_CACHE": str(platform.cache),
        "COVIDTECH_KAFKA_PORT": str(free_port_on_all(hosts)),
        "COVIDTECH_KAFKA_CONTROLLER_PORT": str(free_port_on_all(hosts)),
        "COVIDTECH_CASSANDRA_PORT": str(free_port_on_all(hosts)),
        "COVIDTECH_CASSANDRA_STORAGE_PORT": str(free_port_on_all(hosts)),
        "COVIDTECH_KAFKA_HEAP": "512m",
        "COVIDTECH_CASSANDRA_HEAP": "768m",
    }
    for name in ("COVIDTECH_KAFKA_BOOTSTRAP", "COVIDTECH_CASSANDRA_CONTACT_POINTS"):
        env.pop(name, None)
    s = settings_mod.load(env)
    try:
        lifecycle.up(s, log=lambda m: print(f"[cluster] {m}"))
        yield s
    finally:
        lifecycle.down(s, log=lambda m: None)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def on_cluster(cluster: Settings) -> Iterator[Settings]:
    yield from isolated_env(cluster, "k", drop=False)  # the cluster is wiped at the end


def test_the_cluster_is_replicated_as_configured(on_cluster: Settings) -> None:
    """Topics with 3 replicas and min.insync.replicas=2; the keyspace with
    NetworkTopologyStrategy RF 3; every node answers on its own address."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    s = on_cluster
    assert s.kafka_bootstrap.count(",") == 2 and len(s.cassandra_contact_points) == 3

    async def topic_facts() -> tuple[set[int], str]:
        admin = kafka_clients.admin(s)
        await admin.start()
        try:
            topic = s.topic("checkins")
            (described,) = await admin.describe_topics([topic])
            replicas = {len(p["replicas"]) for p in described["partitions"]}
            (configs,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = {e[0]: e[1] for e in configs.resources[0][4]}
            return replicas, entries["min.insync.replicas"]
        finally:
            await admin.close()

    replicas, min_isr = run_coroutine(topic_facts())
    assert replicas == {3} and min_isr == "2"
    session: Any = cassandra_session(s)
    try:
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (s.keyspace,),
        ).one()
    finally:
        session.cluster.shutdown()
    assert row.replication["class"].endswith("NetworkTopologyStrategy")
    assert row.replication[s.cassandra_local_dc] == "3"
    rows = lifecycle.status(s)
    assert [r["service"] for r in rows] == [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "cassandra-1",
        "cassandra-2",
        "cassandra-3",
    ]
    assert all(r["answers"] == "yes" for r in rows), rows


class ScanLoad:
    """Posts one IN scan per (person, hour) at ``RATE`` per second until stopped."""

    def __init__(self, url: str, s: Settings, venue_qr: str, people: list[dict[str, str]]) -> None:
        self.url, self.s, self.venue_qr, self.people = url, s, venue_qr, people
        self.acked: list[tuple[str, datetime]] = []
        self.statuses: Counter[int] = Counter()
        self.refused: str = ""  # the last answer other than 202 or 503
        self.in_flight = 0
        self._client: httpx.AsyncClient | None = None
        self.last_answer = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def acks_beyond(self, count: int) -> bool:
        assert not self.refused, self.refused
        return len(self.acked) > count

    def more_acks(self, count: int, timeout: float, what: str, log: Path, pid: int) -> None:
        """Wait for ``count`` more acknowledgements; on failure say what the load saw, what
        the ingest API (process ``pid``) last logged and where its threads are (py-spy)."""
        seen, started = len(self.acked), time.monotonic()
        try:
            eventually(lambda: self.acks_beyond(seen + count), timeout=timeout, what=what)
        except AssertionError as e:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise AssertionError(
                f"{e}; {len(self.acked) - seen} acks, statuses {dict(self.statuses)}, "
                f"{self.in_flight} in flight, last answer "
                f"{time.monotonic() - self.last_answer:.1f}s ago; the load's connections: "
                f"{self.connections}; the ingest API's gauges: {gauges_of(self.url)}; "
                f"ingest log:\n{tail}\ningest threads:\n{threads_of(pid)}"
            ) from None
        print(f"[cluster] {what}: {count} acks in {time.monotonic() - started:.1f}s")

    @property
    def connections(self) -> dict[str, int]:
        """The load's HTTP connections by state (ACTIVE: a request sent, no answer yet)."""
        pool: Any = getattr(getattr(self._client, "_transport", None), "_pool", None)
        states: Counter[str] = Counter()
        for conn in list(getattr(pool, "connections", [])):
            info = conn.info()
            states[
                next((w for w in ("ACTIVE", "IDLE", "CLOSED", "CONNECTING") if w in info), info)
            ] += 1
        return dict(states)

    def __enter__(self) -> ScanLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    async def _run(self) -> None:
        # The venue's own staff scan every person's QR (one token for all of them).
        headers = bearer(self.s, "venue-admin:79")
        people = self.people
        base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        i, started = 0, time.monotonic()
        # At most CONNECTIONS requests in flight, waiting for their turn on a semaphore of
        # our own; the client's pool is never full, so it never queues requests itself
        # (httpcore 1.0.9's queue can leave a waiting request without a connection for good
        # under contention: encode/httpcore#822, #1110). Three runs stalled for 120 s with
        # thousands of requests started, none timing out after its 60 s and the API's event
        # loop idle: requests waiting for the pool, not for the API.
        turns = asyncio.Semaphore(CONNECTIONS)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(60.0), limits=limits
        ) as client:
            self._client = client

            async def one(person: dict[str, str], at: datetime) -> None:
                self.in_flight += 1
                try:
                    async with turns:
                        r = await client.post(
                            "/v1/scans",
                            headers=headers,
                            json={
                                "scan_id": client_id(),
                                "venue_qr": self.venue_qr,
                                "person_qr": person["person_qr"],
                                "scanned_at": rfc3339(at),
                                "direction": "IN",
                            },
                        )
                except httpx.HTTPError as e:  # no answer at all: counted, and refused below
                    self.statuses[0] += 1
                    self.refused = f"no answer: {e!r}"
                    return
                finally:
                    self.in_flight -= 1
                self.last_answer = time.monotonic()
                self.statuses[r.status_code] += 1
                if r.status_code not in (202, 503):
                    self.refused = f"{r.status_code} {r.text[:500]}"
                if r.status_code == 202:
                    self.acked.append((person["person_id"], at))

            while not self._stop.is_set():
                due = int((time.monotonic() - started) * RATE)
                batch = []
                while i < due:
                    person = people[i % len(people)]
                    at = base - timedelta(hours=1 + i // len(people), minutes=i % 50)
                    batch.append(one(person, at))
                    i += 1
                await asyncio.gather(*batch)
                await asyncio.sleep(0.02)


def gauges_of(url: str) -> str:
    """The ingest API's writes in flight and broker-unavailable count, asked on a new
    connection (whether it answers at all is part of the answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError as e:
        return f"(no answer: {e!r})"
    wanted = ("writes_in_flight", "broker_unavailable", "requests_total")
    return "; ".join(
        line
        for line in text.splitlines()
        if not line.startswith("#") and any(w in line for w in wanted)
    )[:3000]


def threads_of(pid: int) -> str:
    """Where each thread of process ``pid`` is (py-spy's dump, with local variables)."""
    import subprocess
    import sys

    spy = Path(sys.executable).with_name("py-spy")
    try:
        done = subprocess.run(
            [str(spy), "dump", "--pid", str(pid), "--locals"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(py-spy failed: {e!r})"
    return (done.stdout + done.stderr)[-12000:]


def rows_of(s: Settings, wanted: list[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    session: Any = cassandra_session(s, keyspace=s.keyspace)
    try:
        found: set[tuple[str, datetime]] = set()
        query = SimpleStatement(
            "SELECT person_id, visit_start FROM visits_by_person WHERE person_id = %s",
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        )
        for person in {p for p, _at in wanted}:
            for r in session.execute(query, (person,), timeout=30):
                found.add((r.person_id, r.visit_start.replace(tzinfo=UTC)))
        return found
    finally:
        session.cluster.shutdown()


def test_a_broker_and_a_node_killed_under_load_lose_no_acknowledged_scan(
    on_cluster: Settings,
) -> None:
    s = with_overrides(on_cluster, worker_web_port=free_port_on_all(("127.0.0.1",)))
    logs = s.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port_on_all(("127.0.0.1",))
    ingest_url = f"http://127.0.0.1:{port}"
    worker = processes.spawn(["cli", "worker"], logs / f"{s.app_id}-worker.log", child_env(s))
    ingest_log = logs / f"{s.app_id}-ingest.log"
    ingest = processes.spawn(["cli", "ingest-api", "--port", str(port)], ingest_log, child_env(s))
    try:
        eventually(
            lambda: (
                httpx.get(f"{ingest_url}/readyz", timeout=2).status_code == 200
                if services.port_open(port)
                else None
            ),
            timeout=90,
            what="ingest API ready",
        )
        r = httpx.post(
            f"{ingest_url}/v1/venues",
            headers=bearer(s, "venue-admin:79"),
            json={
                "name": "Chợ Bến Thành",
                "address": "Lê Lợi, Quận 1",
                "province": "79",
                "district": "760",
                "category": "market",
                "default_dwell_minutes": 30,
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        venue_qr = r.json()["venue_qr"]
        people = []
        with httpx.Client(base_url=ingest_url, timeout=30) as client:
            for _ in range(400):
                p = client.post(
                    "/v1/people",
                    headers=bearer(s, "app"),
                    json={"province": "79", "district": "760", "birth_year": 1980},
                )
                assert p.status_code == 201, p.text
                people.append(p.json())
        with ScanLoad(ingest_url, s, venue_qr, people) as load:
            broker, node = services.kafka(s, 2), services.cassandra(s, 3)
            load.more_acks(5 * RATE, 60, "load running", ingest_log, ingest.pid)
            kill_service(s, broker)
            load.more_acks(5 * RATE, 120, "acks without broker 2", ingest_log, ingest.pid)
            services.start_kafka(s, node=2)
            eventually(lambda: kafka_node_answers(s, broker), timeout=120, what="broker 2")
            kill_service(s, node)
            load.more_acks(5 * RATE, 120, "acks without node 3", ingest_log, ingest.pid)
            services.start_cassandra(s, node=3)
            eventually(lambda: cassandra_answers(s, node.host), timeout=240, what="node 3")
            load.more_acks(3 * RATE, 120, "acks with node 3 back", ingest_log, ingest.pid)
        assert set(load.statuses) <= {202, 503}, load.statuses
        assert worker.poll() is None and ingest.poll() is None
        eventually(lambda: run_coroutine(caught_up(s)), timeout=300, interval=1, what="caught up")
        wanted = list(load.acked)
        missing = set(wanted) - rows_of(s, wanted)
        assert not missing, f"{len(missing)} of {len(wanted)} acknowledged scans have no row"
        print(f"[cluster] {len(wanted)} scans acknowledged, statuses {dict(load.statuses)}")
        assert all(r["answers"] == "yes" for r in lifecycle.status(s))
        eventually(lambda: run_coroutine(fully_replicated(s)), timeout=180, what="ISR back to 3")
    finally:
        processes.stop(ingest, worker, grace=60)


async def fully_replicated(s: Settings) -> bool:
    """Every partition of the test's topics has its three replicas in sync."""
    admin = kafka_clients.admin(s)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(s.topic_prefix)]
        described = await admin.describe_topics(names)
        return all(len(p["isr"]) == 3 for t in described for p in t["partitions"])
    finally:
        await admin.close()
