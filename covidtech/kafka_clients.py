"""The one place Kafka clients are made: every process's producers, consumers and admin
clients connect with the same options (``connection``), so a setting that concerns the
connection (the bootstrap servers; the SASL/SCRAM account when ``kafka_username`` is set) is
added once. Callers pass what differs by purpose (acks, group, fetch sizes) as keyword
arguments. A Faust app takes the same through ``faust_broker`` and ``faust_credentials``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

from covidtech.settings import Settings

if TYPE_CHECKING:
    from faust.auth import SASLCredentials

__all__ = [
    "SASL_MECHANISM",
    "admin",
    "check_login",
    "connection",
    "consumer",
    "faust_broker",
    "faust_credentials",
    "partitions_of",
    "producer",
]

#: The brokers' SASL mechanism when an account is set (over SASL_PLAINTEXT: TLS is the
#: network's, docs/security.md).
SASL_MECHANISM = "SCRAM-SHA-512"


def connection(s: Settings) -> dict[str, Any]:
    """The options every Kafka client of these settings shares: the bootstrap servers, and
    the SCRAM account when ``kafka_username`` is set (PLAINTEXT otherwise)."""
    options: dict[str, Any] = {"bootstrap_servers": s.kafka_bootstrap}
    if s.kafka_username:
        options.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=SASL_MECHANISM,
            sasl_plain_username=s.kafka_username,
            sasl_plain_password=s.kafka_password,
        )
    return options


def producer(s: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer (not started): ``options`` are aiokafka's (``acks``, ``linger_ms``, ...)."""
    return AIOKafkaProducer(**connection(s), **options)


def consumer(s: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer (not started), subscribed to ``topics`` if any are given."""
    return AIOKafkaConsumer(*topics, **connection(s), **options)


def admin(s: Settings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client (not started)."""
    return AIOKafkaAdminClient(**connection(s), **options)


async def check_login(s: Settings, timeout_ms: int = 10000) -> None:
    """Connect to the first bootstrap server as ``connection`` does (logging in with the
    account, if any) and close. A client's start reports any failure to connect as
    ``KafkaConnectionError``; this raises aiokafka's ``SaslAuthenticationFailed`` when the
    broker refuses the account (``infra up`` fails at once on a wrong password)."""
    options = connection(s)
    host, _, port = options.pop("bootstrap_servers").split(",")[0].rpartition(":")
    conn = await create_conn(host, int(port), request_timeout_ms=timeout_ms, **options)
    conn.close()


def faust_broker(s: Settings) -> str:
    """The ``broker`` URL of a Faust app: every bootstrap server, ``;``-separated."""
    return ";".join(f"kafka://{h}" for h in s.kafka_bootstrap.split(","))


def faust_credentials(s: Settings) -> SASLCredentials | None:
    """The ``broker_credentials`` of a Faust app: the SCRAM account of ``connection``, or
    None (PLAINTEXT) without one. Faust is imported only here, when a worker asks."""
    if not s.kafka_username:
        return None
    from faust.auth import SASLCredentials
    from faust.types.auth import SASLMechanism

    return SASLCredentials(
        username=s.kafka_username,
        password=s.kafka_password,
        mechanism=SASLMechanism(SASL_MECHANISM),
    )


async def partitions_of(
    client: AIOKafkaConsumer, topic: str, *, missing_ok: bool = False
) -> set[int]:
    """The partition ids of ``topic``, fetching its metadata if the client has none yet.

    A topic that does not exist raises ``KafkaError`` (after the client's metadata wait), or
    with ``missing_ok`` gives an empty set after one metadata refresh (status and lag reports
    over topics that may not be created yet)."""
    partitions = client.partitions_for_topic(topic)
    if not partitions and missing_ok:
        await client._client.force_metadata_update()
        return set(client.partitions_for_topic(topic) or ())
    if not partitions:
        # Asking for one partition's end offset makes the client track the topic and wait for
        # its metadata (it raises a timeout if the topic does not exist).
        await client.end_offsets([TopicPartition(topic, 0)])
        partitions = client.partitions_for_topic(topic)
    if not partitions:
        raise KafkaError(f"topic {topic} does not exist")
    return set(partitions)
