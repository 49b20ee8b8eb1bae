"""``covidtech infra up | down | status | reset``: the whole local platform in one place."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from covidtech.settings import Settings
from infra import services
from infra.cassandra_schema import migrate
from infra.kafka_topics import broker_answers, create_topics

Log = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    kafka_s: float
    cassandra_s: float
    total_s: float


def cassandra_session(s: Settings, keyspace: str | None = None, timeout: float = 30.0) -> object:
    """A driver session for set-up work (migrations, readiness)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(s.cassandra_local_dc)),
        request_timeout=timeout,
    )
    cluster = Cluster(
        list(s.cassandra_contact_points),
        port=s.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=5,
    )
    return cluster.connect(keyspace)


def cassandra_answers(s: Settings) -> bool:
    """True when Cassandra answers a CQL query."""
    if not services.port_open(s.cassandra_port, s.cassandra_contact_points[0]):
        return False
    try:
        session = cassandra_session(s, timeout=5)
    except Exception:
        return False
    try:
        row = session.execute("SELECT release_version FROM system.local").one()  # type: ignore[attr-defined]
        return row is not None
    except Exception:
        return False
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]


def up(s: Settings, log: Log = print, with_schema: bool = True) -> Timing:
    """Resolve jars if needed, start both services, wait until they answer, create topics
    and apply migrations. Reuses running services, jars and data."""
    t0 = time.monotonic()
    # Resolve both first (the slow, network-bound part), then start both so their JVM
    # start-ups overlap.
    services.resolve(services.kafka(s), s, log)
    services.resolve(services.cassandra(s), s, log)
    kpid = services.start_kafka(s, log)
    cpid = services.start_cassandra(s, log)
    ksvc, csvc = services.kafka(s), services.cassandra(s)
    services.wait_until(
        lambda: broker_answers(s), 120, "Kafka", lambda: services._alive(kpid), ksvc.log_file(s)
    )
    t_kafka = time.monotonic() - t0
    log(f"kafka     ready on {s.kafka_bootstrap} (pid {kpid}) after {t_kafka:.1f}s")
    services.wait_until(
        lambda: cassandra_answers(s),
        240,
        "Cassandra",
        lambda: services._alive(cpid),
        csvc.log_file(s),
    )
    t_cass = time.monotonic() - t0
    log(
        f"cassandra ready on {s.cassandra_contact_points[0]}:{s.cassandra_port} "
        f"(pid {cpid}) after {t_cass:.1f}s"
    )
    if with_schema:
        created = asyncio.run(create_topics(s))
        if created:
            log(f"created {len(created)} topics")
        session = cassandra_session(s)
        try:
            migrate(session, s.keyspace, s.replication_factor, log)
        finally:
            session.cluster.shutdown()  # type: ignore[attr-defined]
    return Timing(t_kafka, t_cass, time.monotonic() - t0)


def down(s: Settings, log: Log = print) -> None:
    """Stop both services cleanly (SIGTERM, then wait)."""
    for svc in (services.kafka(s), services.cassandra(s)):
        t0 = time.monotonic()
        if services.stop(svc, s):
            log(f"stopped {svc.name} in {time.monotonic() - t0:.1f}s")
        else:
            log(f"{svc.name} was not running")


def status(s: Settings) -> list[dict[str, str]]:
    """What runs where: one row per service."""
    rows = []
    for svc, answers in (
        (services.kafka(s), broker_answers),
        (services.cassandra(s), cassandra_answers),
    ):
        pid = services.running_pid(svc, s)
        rss = services.rss_mib(pid) if pid else None
        rows.append(
            {
                "service": svc.name,
                "pid": str(pid or "-"),
                "port": str(svc.port),
                "answers": "yes" if pid and answers(s) else "no",
                "rss_mib": f"{rss:.0f}" if rss else "-",
                "data": str(svc.root(s)),
            }
        )
    return rows


def reset(s: Settings, log: Log = print, jars: bool = False) -> None:
    """Stop the services and wipe their data (and the jars with ``jars=True``)."""
    down(s, log)
    for svc in (services.kafka(s), services.cassandra(s)):
        shutil.rmtree(svc.root(s), ignore_errors=True)
        log(f"wiped {svc.root(s)}")
    if jars:
        shutil.rmtree(s.cache / "lib", ignore_errors=True)
        log(f"wiped {s.cache / 'lib'}")
