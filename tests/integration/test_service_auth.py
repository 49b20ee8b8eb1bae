"""Service accounts (issue 13, item 8): Kafka with SASL/SCRAM-SHA-512 and Cassandra with
PasswordAuthenticator when the accounts are set, as the production profile requires.

The module starts its own broker and node (own home and ports, ``infra.lifecycle.up`` with
the accounts: SCRAM account formatted into the broker's storage, Cassandra role created with
the default superuser, which is then disabled) and stops them at its end. The shared platform
is neither needed nor touched.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable

from covidtech import kafka_clients
from covidtech import settings as settings_mod
from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides
from infra import lifecycle, services
from infra.kafka_topics import production_refusals
from projections.cassandra import build_cluster, connect
from projections.model import StoreUnavailable
from tests.support import unique

pytestmark = pytest.mark.integration

KAFKA_PASSWORD = "k4fka+/=@#%^*!?:~pass"  # every character the settings allow besides a-z0-9
CASSANDRA_PASSWORD = "c4ss-andra.pass_word"


@pytest.fixture(scope="module")
def secured() -> Iterator[Settings]:
    """Production settings with both accounts, on a broker and a node of this module's own
    that ask for them: started (first start: the account set-up) and, at the end, stopped."""
    home = Path(tempfile.mkdtemp(prefix="covidtech-auth-"))
    kafka_port = free_port()
    s = settings_mod.load(
        {
            "COVIDTECH_HOME": str(home),
            "COVIDTECH_PROFILE": "production",
            "COVIDTECH_SECRET": "q" * 40,
            "COVIDTECH_TOKEN_KEYS": "2026-12:" + "t" * 40,
            "COVIDTECH_CERT_KEYS": "2026-12:" + "c" * 43 + "=",
            "COVIDTECH_KAFKA_PORT": str(kafka_port),
            "COVIDTECH_KAFKA_CONTROLLER_PORT": str(free_port()),
            "COVIDTECH_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "COVIDTECH_KAFKA_HEAP": "512m",
            "COVIDTECH_CASSANDRA_PORT": str(free_port()),
            "COVIDTECH_CASSANDRA_STORAGE_PORT": str(free_port()),
            "COVIDTECH_CASSANDRA_HEAP": "768m",
            "COVIDTECH_KAFKA_USERNAME": "covidtech-svc",
            "COVIDTECH_KAFKA_PASSWORD": KAFKA_PASSWORD,
            "COVIDTECH_CASSANDRA_USERNAME": "covidtech_svc",
            "COVIDTECH_CASSANDRA_PASSWORD": CASSANDRA_PASSWORD,
        }
    )
    try:
        # On a helper thread: up runs its own event loops.
        with ThreadPoolExecutor(max_workers=1) as pool:
            timing = pool.submit(lifecycle.up, s, lambda m: print(f"[auth] {m}")).result()
        print(
            f"[auth] first start with accounts: kafka {timing.kafka_s:.1f}s, cassandra "
            f"{timing.cassandra_s:.1f}s, total with role, topics and schema {timing.total_s:.1f}s"
        )
        yield s
    finally:
        lifecycle.down(s, log=lambda m: print(f"[auth] {m}"))
        shutil.rmtree(home, ignore_errors=True)


def without_account(s: Settings, service: str) -> Settings:
    """What a client without the account would run with (a development process)."""
    return with_overrides(
        s, profile="development", **{f"{service}_username": "", f"{service}_password": ""}
    )


# ---------------------------------------------------------------- the right accounts


async def test_the_accounts_produce_consume_and_query(secured: Settings) -> None:
    s = secured
    topic, key, value = s.topic("venues"), unique("k").encode(), b"logged in"
    producer = kafka_clients.producer(s, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    consumer = kafka_clients.consumer(
        s, topic, group_id=unique("g"), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getmany(timeout_ms=10_000), timeout=30)
        records = [(m.key, m.value) for batch in got.values() for m in batch]
        assert (key, value) in records
        await consumer.commit()  # the group coordinator takes the account too
    finally:
        await consumer.stop()
    # The production profile's start-up checks ask the broker with the account.
    assert await production_refusals(s) == []

    session = connect(s)  # the projection store's session (build_cluster)
    try:
        venue = unique("v")
        session.execute(
            f"INSERT INTO {s.keyspace}.venues (venue_id, name) VALUES (%s, %s)", (venue, "kept")
        )
        row = session.execute(
            f"SELECT name FROM {s.keyspace}.venues WHERE venue_id = %s", (venue,)
        ).one()
        assert row == ("kept",)
        me = session.execute(
            "SELECT role, is_superuser, can_login FROM system_auth.roles WHERE role = %s",
            (s.cassandra_username,),
        ).one()
        assert me == (s.cassandra_username, True, True)
    finally:
        session.cluster.shutdown()


def test_a_second_up_reuses_the_accounts(secured: Settings) -> None:
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lifecycle.up, secured, lambda m: None, False).result()
    assert time.monotonic() - t0 < 15
    marker = services.cassandra(secured).root(secured) / lifecycle.ROLE_MARKER
    assert marker.read_text().strip() == secured.cassandra_username
    scram = services.kafka(secured).root(secured) / services.SCRAM_MARKER
    assert scram.read_text().strip() == secured.kafka_username


# ---------------------------------------------------------------- Kafka refuses


async def test_kafka_refuses_a_client_without_the_account(
    secured: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    anonymous = without_account(secured, "kafka")
    assert kafka_clients.connection(anonymous) == {"bootstrap_servers": secured.kafka_bootstrap}
    caplog.set_level(logging.WARNING, logger="aiokafka")
    producer = kafka_clients.producer(anonymous)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await producer.start()
    await producer.stop()
    # The SASL listener closes a connection whose first request is not a SASL handshake.
    assert "Unable to request metadata" in caplog.text and "closed" in caplog.text


@pytest.mark.parametrize(
    "account", [("covidtech-svc", "wrong-password"), ("mallory", KAFKA_PASSWORD)]
)
async def test_kafka_refuses_a_wrong_password_or_an_unknown_account(
    secured: Settings, account: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, password = account
    wrong = with_overrides(secured, kafka_username=name, kafka_password=password)
    caplog.set_level(logging.ERROR, logger="aiokafka")
    producer = kafka_clients.producer(wrong)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await producer.start()
    await producer.stop()
    assert "SaslAuthenticationFailed" in caplog.text
    # What a client start folds into "unable to bootstrap", one connection shows.
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        await kafka_clients.check_login(wrong)
    await kafka_clients.check_login(secured)  # the right account logs in


def test_infra_up_stops_at_once_on_a_refused_kafka_login(secured: Settings) -> None:
    wrong = with_overrides(secured, kafka_password="wrong-password")
    t0 = time.monotonic()
    with pytest.raises(services.InfraError, match="refuses the login of 'covidtech-svc'"):
        lifecycle.kafka_node_ready(wrong, services.kafka(wrong))
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------- Cassandra refuses


def refused_login(settings: Settings, login: tuple[str, str] | None = None) -> Any:
    """The driver's error connecting with ``settings`` (or ``login``)."""
    cluster = build_cluster(settings)
    if login is not None:
        from cassandra.auth import PlainTextAuthProvider

        cluster.auth_provider = PlainTextAuthProvider(*login)
    try:
        with pytest.raises(NoHostAvailable) as refused:
            cluster.connect()
    finally:
        cluster.shutdown()
    (error,) = refused.value.errors.values()
    assert isinstance(error, AuthenticationFailed), error
    return error


def test_cassandra_refuses_a_client_without_the_account(secured: Settings) -> None:
    anonymous = without_account(secured, "cassandra")
    assert build_cluster(anonymous).auth_provider is None
    error = refused_login(anonymous)
    assert "requires authentication" in str(error)
    with pytest.raises(StoreUnavailable, match="cannot connect to Cassandra"):
        connect(anonymous)


def test_cassandra_refuses_a_wrong_password_and_the_default_superuser(secured: Settings) -> None:
    wrong = with_overrides(secured, cassandra_password="wrong-password")
    assert "are incorrect" in str(refused_login(wrong))
    # The default superuser was disabled once the configured role existed.
    assert "are incorrect" in str(refused_login(secured, login=lifecycle.DEFAULT_SUPERUSER))
    # infra's set-up, run again with the wrong password, fails at once naming the role.
    with pytest.raises(services.InfraError, match="refuses the login of role 'covidtech_svc'"):
        lifecycle.set_up_cassandra_role(wrong, log=lambda m: None)


def test_system_auth_is_replicated_to_every_node(secured: Settings) -> None:
    session: Any = lifecycle.cassandra_session(secured)
    try:
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'system_auth'"
        ).one()
        roles = {
            r.role: r.can_login
            for r in session.execute("SELECT role, can_login FROM system_auth.roles")
        }
    finally:
        session.cluster.shutdown()
    assert dict(row.replication) == {
        "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
        secured.cassandra_local_dc: str(secured.nodes),
    }
    assert roles == {"cassandra": False, secured.cassandra_username: True}


# ---------------------------------------------------------------- the stream worker


async def test_the_stream_workers_faust_app_logs_in_as_the_kafka_account(
    secured: Settings,
) -> None:
    from faust.auth import SASLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    from faust.types.auth import SASLMechanism

    from streams.worker import build_app

    app = build_app(secured)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism) == (
        secured.kafka_username,
        KAFKA_PASSWORD,
        SASLMechanism.SCRAM_SHA_512,
    )
    assert [str(url) for url in app.conf.broker] == [f"kafka://{secured.kafka_bootstrap}"]
    # What Faust gives each of its consumers and producers logs in to the broker.
    options = credentials_to_aiokafka_auth(credentials)
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        k: v for k, v in kafka_clients.connection(secured).items() if k != "bootstrap_servers"
    }
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=secured.kafka_bootstrap, **options)
    await producer.start()
    try:
        await producer.send_and_wait(secured.topic("venues"), b"from faust's options", key=b"f")
    finally:
        await producer.stop()
    assert kafka_clients.faust_credentials(without_account(secured, "kafka")) is None
