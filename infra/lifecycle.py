"""``covidtech infra up | down | status | reset``: the whole local platform in one place."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from covidtech import kafka_clients
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
    s: Settings,
    keyspace: str | None = None,
    timeout: float = 30.0,
    only: str | None = None,
    login: tuple[str, str] | None = None,
) -> object:
    """A driver session for set-up work (migrations, readiness); ``only`` talks to that
    one node alone; ``login`` is a role and password other than the settings' (the default
    superuser, once). Rows are named tuples and statements LOCAL_ONE (the driver's
    defaults), as set-up code reads few rows by column name."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.query import named_tuple_factory

    from projections.cassandra import build_cluster

    cluster = build_cluster(
        s,
        request_timeout=timeout,
        only=only,
        consistency=ConsistencyLevel.LOCAL_ONE,
        row_factory=named_tuple_factory,
    )
    if login is not None:
        cluster.auth_provider = PlainTextAuthProvider(*login)
    try:
        return cluster.connect(keyspace)
    except BaseException:
        cluster.shutdown()
        raise


def login_refused(error: BaseException) -> bool:
    """True when the driver could not connect only because every node refused the login."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    return (
        isinstance(error, NoHostAvailable)
        and bool(error.errors)
        and all(isinstance(e, AuthenticationFailed) for e in error.errors.values())
    )


def cassandra_answers(s: Settings, host: str | None = None, login_refused_ok: bool = False) -> bool:
    """True when Cassandra (the node on ``host`` alone, if given) answers a CQL query, or
    with ``login_refused_ok`` when it answers by refusing the settings' login (a new node
    whose role infra has not made yet)."""
    if not services.port_open(s.cassandra_port, host or s.cassandra_contact_points[0]):
        return False
    try:
        session = cassandra_session(s, timeout=5, only=host)
    except Exception as e:
        return login_refused_ok and login_refused(e)
    try:
        row = session.execute("SELECT release_version FROM system.local").one()  # type: ignore[attr-defined]
        return row is not None
    except Exception:
        return False
    finally:
        session.cluster.shutdown()  # type: ignore[attr-defined]


def ring_formed(s: Settings) -> bool:
    """True when every Cassandra node knows the other ``s.nodes - 1`` as peers and all agree
    on one schema version: a node answers CQL before gossip has told it of the others, and a
    keyspace created then would be replicated by the nodes it knew (and a table made on one
    node would be unknown to another for a while: INCOMPATIBLE_SCHEMA)."""
    versions: set[object] = set()
    for host in s.cassandra_contact_points:
        try:
            session: Any = cassandra_session(s, timeout=5, only=host)
        except Exception:
            return False
        try:
            peers = list(session.execute("SELECT peer, schema_version FROM system.peers"))
            local = session.execute("SELECT schema_version FROM system.local").one()
        except Exception:
            return False
        finally:
            session.cluster.shutdown()
        if len(peers) != len(s.cassandra_contact_points) - 1:
            return False
        versions |= {p.schema_version for p in peers} | {local.schema_version}
    return len(versions) == 1


def kafka_node_answers(s: Settings, svc: services.Service) -> bool:
    """True when the broker of ``svc`` answers a metadata request itself."""
    return broker_answers(with_overrides(s, kafka_bootstrap=f"{svc.host}:{svc.port}"))


def kafka_node_ready(s: Settings, svc: services.Service) -> bool:
    """``kafka_node_answers``; with a Kafka account set, a broker that answers by refusing
    its login raises InfraError at once (a client only sees that it cannot connect)."""
    if kafka_node_answers(s, svc):
        return True
    if s.kafka_username and services.port_open(svc.port, svc.host):
        from aiokafka.errors import KafkaError, SaslAuthenticationFailed

        node = with_overrides(s, kafka_bootstrap=f"{svc.host}:{svc.port}")
        try:
            asyncio.run(asyncio.wait_for(kafka_clients.check_login(node), timeout=10))
        except SaslAuthenticationFailed as e:
            raise services.InfraError(
                f"{svc.label} refuses the login of {s.kafka_username!r} "
                f"(COVIDTECH_KAFKA_USERNAME / _PASSWORD): {e}"
            ) from e
        except (KafkaError, OSError, TimeoutError):
            pass  # booting
    return False


def _wait_for_node(s: Settings, svc: services.Service, pid: int) -> None:
    services.wait_until(
        lambda: cassandra_answers(s, svc.host if svc.node else None, bool(s.cassandra_username)),
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
            lambda svc=svc: kafka_node_ready(s, svc),  # type: ignore[misc]
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
    if len(nodes) > 1:
        services.wait_until(lambda: ring_formed(s), 300, "cassandra ring")
    t_cass = time.monotonic() - t0
    hosts = ",".join(s.cassandra_contact_points)
    pids = ", ".join(str(pid) for _svc, pid in nodes)
    log(f"cassandra ready on {hosts}:{s.cassandra_port} (pid {pids}) after {t_cass:.1f}s")
    if s.cassandra_username:
        set_up_cassandra_role(s, log)
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


# The role Cassandra's PasswordAuthenticator creates on a new cluster, with this password.
DEFAULT_SUPERUSER = ("cassandra", "cassandra")
# Beside the seed node's data: the role infra made on it (so a refused login later fails at
# once instead of waiting for a default superuser that is gone).
ROLE_MARKER = "cassandra-role"


def set_up_cassandra_role(s: Settings, log: Log = print, within: float = 120.0) -> None:
    """Make the local cluster's login ``cassandra_username`` (PasswordAuthenticator).

    Once, on a new cluster: log in as the default superuser cassandra/cassandra (the node
    creates it about a second after it starts answering), replicate ``system_auth`` to every
    node, create the configured role as a superuser that can log in, then, logged in as that
    role, disable the default superuser (no login, a random password). A marker beside the
    seed's data records that it is done; afterwards only the configured login is checked."""
    from cassandra import InvalidRequest
    from cassandra.cluster import NoHostAvailable

    marker = services.cassandra_nodes(s)[0].root(s) / ROLE_MARKER
    t0 = time.monotonic()
    deadline = t0 + within
    try:
        _close(cassandra_session(s, timeout=30))
    except NoHostAvailable as e:
        if not login_refused(e) or marker.exists():
            raise services.InfraError(
                f"Cassandra refuses the login of role {s.cassandra_username!r} "
                f"(COVIDTECH_CASSANDRA_USERNAME / _PASSWORD): {e}"
            ) from e
        session: Any = _default_superuser(s, deadline, within)
        role, password = _cql_name(s.cassandra_username), _cql_text(s.cassandra_password)
        try:
            session.execute(
                "ALTER KEYSPACE system_auth WITH replication = {'class': "
                f"'NetworkTopologyStrategy', {_cql_text(s.cassandra_local_dc)}: {s.nodes}}}"
            )
            try:
                session.execute(
                    f"CREATE ROLE {role} WITH PASSWORD = {password} "
                    "AND SUPERUSER = true AND LOGIN = true"
                )
            except InvalidRequest:  # left by an interrupted set-up with another password
                session.execute(
                    f"ALTER ROLE {role} WITH PASSWORD = {password} AND SUPERUSER = true "
                    "AND LOGIN = true"
                )
        finally:
            _close(session)
    else:
        if marker.exists() and marker.read_text().strip() == s.cassandra_username:
            return  # set up before
        # The role logs in but the default superuser may not be disabled yet (a set-up
        # interrupted): disable it below.
    session = _retry_login(s, deadline)
    try:
        # Cassandra refuses a second password change of a role within 5 s; the default
        # superuser's is changed once only.
        session.execute(
            f"ALTER ROLE {DEFAULT_SUPERUSER[0]} WITH LOGIN = false AND "
            f"PASSWORD = {_cql_text(secrets.token_urlsafe(32))}"
        )
    finally:
        _close(session)
    marker.write_text(s.cassandra_username + "\n")
    log(
        f"cassandra role {s.cassandra_username!r} set up, default superuser disabled "
        f"({time.monotonic() - t0:.1f}s)"
    )


def _default_superuser(s: Settings, deadline: float, within: float) -> Any:
    """A session as cassandra/cassandra, waiting for the node to have made that role."""
    from cassandra.cluster import NoHostAvailable

    while True:
        try:
            return cassandra_session(s, timeout=30, login=DEFAULT_SUPERUSER)
        except NoHostAvailable as e:
            if not login_refused(e) or time.monotonic() > deadline:
                raise services.InfraError(
                    f"neither role {s.cassandra_username!r} nor the default superuser logs in "
                    f"to Cassandra after {within:.0f}s (a node set up with other credentials? "
                    f"`covidtech infra reset` wipes it): {e}"
                ) from e
            time.sleep(0.5)  # the default superuser is not there yet


def _retry_login(s: Settings, deadline: float) -> Any:
    """A session as the configured role, which a moment ago did not exist (roles caches)."""
    from cassandra.cluster import NoHostAvailable

    while True:
        try:
            return cassandra_session(s, timeout=30)
        except NoHostAvailable as e:
            if not login_refused(e) or time.monotonic() > deadline:
                raise services.InfraError(
                    f"role {s.cassandra_username!r} was created but does not log in: {e}"
                ) from e
            time.sleep(0.5)


def _close(session: Any) -> None:
    session.cluster.shutdown()


def _cql_name(name: str) -> str:
    """A quoted CQL identifier (role names keep their case)."""
    return '"' + name.replace('"', '""') + '"'


def _cql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
