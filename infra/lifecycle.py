"""``covidtech infra up | down | status | reset``: the whole local platform in one place."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from covidtech.settings import Settings, with_overrides
from infra import services
from infra.cassandra_schema import migrate
from infra.kafka_topics import broker_answers, create_topics

Log = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    kafka_s: float
    cassandra_s: float
    total_s: float


def cassandra_session(
    s: Settings, keyspace: str | None = None, timeout: float = 30.0, only: str | None = None
) -> object:
    """A driver session for set-up work (migrations, readiness); ``only`` talks to that
    one node alone. Rows are named tuples and statements LOCAL_ONE (the driver's defaults),
    as set-up code reads few rows by column name."""
    from cassandra import ConsistencyLevel
    from cassandra.query import named_tuple_factory

    from projections.cassandra import build_cluster

    cluster = build_cluster(
        s,
        request_timeout=timeout,
        only=only,
        consistency=ConsistencyLevel.LOCAL_ONE,
        row_factory=named_tuple_factory,
    )
    return cluster.connect(keyspace)


def cassandra_answers(s: Settings, host: str | None = None) -> bool:
    """True when Cassandra (the node on ``host`` alone, if given) answers a CQL query."""
    if not services.port_open(s.cassandra_port, host or s.cassandra_contact_points[0]):
        return False
    try:
        session = cassandra_session(s, timeout=5, only=host)
    except Exception:
        return False
    try:
        row = session.execute("SELECT release_version FROM system.local").one()  # type: ignore[attr-defined]
        return row is not None
    except Exception:
        return False
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]


def kafka_node_answers(s: Settings, svc: services.Service) -> bool:
    """True when the broker of ``svc`` answers a metadata request itself."""
    return broker_answers(with_overrides(s, kafka_bootstrap=f"{svc.host}:{svc.port}"))


def _wait_for_node(s: Settings, svc: services.Service, pid: int) -> None:
    services.wait_until(
        lambda: cassandra_answers(s, svc.host if svc.node else None),
        300,
        svc.label,
        lambda: services._alive(pid),
        svc.log_file(s),
    )


def up(s: Settings, log: Log = print, with_schema: bool = True) -> Timing:
    """Resolve jars if needed, start every Kafka broker and Cassandra node (one of each, or
    ``s.nodes`` of each on 127.0.0.1 .. 127.0.0.N), wait until each answers, create topics
    and apply migrations. Reuses running services, jars and data."""
    t0 = time.monotonic()
    # Resolve both first (the slow, network-bound part), then start all so their JVM
    # start-ups overlap.
    services.resolve(services.kafka(s), s, log)
    services.resolve(services.cassandra(s), s, log)
    kafkas = [(svc, services.start_kafka(s, log, svc.node)) for svc in services.kafka_nodes(s)]
    seed, *others = services.cassandra_nodes(s)
    nodes = [(seed, services.start_cassandra(s, log, seed.node))]
    if others:
        # The other nodes gossip with the seed as they start: it must answer first.
        _wait_for_node(s, *nodes[0])
        nodes += [(svc, services.start_cassandra(s, log, svc.node)) for svc in others]
    for svc, pid in kafkas:
        services.wait_until(
            lambda svc=svc: kafka_node_answers(s, svc),  # type: ignore[misc]
            180,
            svc.label,
            lambda pid=pid: services._alive(pid),  # type: ignore[misc]
            svc.log_file(s),
        )
    t_kafka = time.monotonic() - t0
    pids = ", ".join(str(pid) for _svc, pid in kafkas)
    log(f"kafka     ready on {s.kafka_bootstrap} (pid {pids}) after {t_kafka:.1f}s")
    for svc, pid in nodes:
        _wait_for_node(s, svc, pid)
    t_cass = time.monotonic() - t0
    hosts = ",".join(s.cassandra_contact_points)
    pids = ", ".join(str(pid) for _svc, pid in nodes)
    log(f"cassandra ready on {hosts}:{s.cassandra_port} (pid {pids}) after {t_cass:.1f}s")
    if with_schema:
        created = asyncio.run(create_topics(s))
        if created:
            log(f"created {len(created)} topics")
        session = cassandra_session(s)
        try:
            migrate(session, s.keyspace, s.replication_factor, log, s.cassandra_local_dc)
        finally:
            session.cluster.shutdown()  # type: ignore[attr-defined]
    return Timing(t_kafka, t_cass, time.monotonic() - t0)


def all_services(s: Settings) -> list[services.Service]:
    return [*services.kafka_nodes(s), *services.cassandra_nodes(s)]


def down(s: Settings, log: Log = print) -> None:
    """Stop every local broker and node cleanly (SIGTERM, then wait), all at once: a
    cluster's brokers each wait for the others' controlled shutdown otherwise."""
    from concurrent.futures import ThreadPoolExecutor

    def stop(svc: services.Service) -> str:
        t0 = time.monotonic()
        if services.stop(svc, s):
            return f"stopped {svc.label} in {time.monotonic() - t0:.1f}s"
        return f"{svc.label} was not running"

    targets = all_services(s)
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for line in pool.map(stop, targets):
            log(line)


def status(s: Settings) -> list[dict[str, str]]:
    """What runs where: one row per broker and node."""
    rows = []
    for svc in all_services(s):
        pid = services.running_pid(svc, s)
        rss = services.rss_mib(pid) if pid else None
        if svc.name == "kafka":
            answers = bool(pid) and kafka_node_answers(s, svc)
        else:
            answers = bool(pid) and cassandra_answers(s, svc.host if svc.node else None)
        rows.append(
            {
                "service": svc.label,
                "pid": str(pid or "-"),
                "address": f"{svc.host}:{svc.port}",
                "answers": "yes" if answers else "no",
                "rss_mib": f"{rss:.0f}" if rss else "-",
                "data": str(svc.root(s)),
            }
        )
    return rows


def reset(s: Settings, log: Log = print, jars: bool = False) -> None:
    """Stop the services and wipe their data (and the jars with ``jars=True``)."""
    down(s, log)
    for svc in all_services(s):
        shutil.rmtree(svc.root(s), ignore_errors=True)
        log(f"wiped {svc.root(s)}")
    if jars:
        shutil.rmtree(s.cache / "lib", ignore_errors=True)
        log(f"wiped {s.cache / 'lib'}")
