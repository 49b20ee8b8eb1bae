"""The one place Kafka clients are made: every process's producers, consumers and admin
clients connect with the same options (``connection``), so a setting that concerns the
connection (the bootstrap servers today; credentials when the brokers ask for them) is added
once. Callers pass what differs by purpose (acks, group, fetch sizes) as keyword arguments.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from covidtech.settings import Settings

__all__ = ["admin", "connection", "consumer", "faust_broker", "partitions_of", "producer"]


def connection(s: Settings) -> dict[str, Any]:
    """The options every Kafka client of these settings shares."""
    return {"bootstrap_servers": s.kafka_bootstrap}


def producer(s: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer (not started): ``options`` are aiokafka's (``acks``, ``linger_ms``, ...)."""
    return AIOKafkaProducer(**connection(s), **options)


def consumer(s: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer (not started), subscribed to ``topics`` if any are given."""
    return AIOKafkaConsumer(*topics, **connection(s), **options)


def admin(s: Settings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client (not started)."""
    return AIOKafkaAdminClient(**connection(s), **options)


def faust_broker(s: Settings) -> str:
    """The ``broker`` URL of a Faust app: every bootstrap server, ``;``-separated."""
    return ";".join(f"kafka://{h}" for h in s.kafka_bootstrap.split(","))


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
