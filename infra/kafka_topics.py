"""Create the topics of the catalogue (covidtech.topics) with their retention and compaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from covidtech.settings import Settings
from covidtech.topics import ALL_TOPICS, TopicSpec
from infra.services import port_open


async def _admin(s: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=10000)
    await admin.start()
    return admin


async def list_topics(s: Settings) -> set[str]:
    """A real metadata request to the broker; raises if it does not answer."""
    admin = await _admin(s)
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def broker_answers(s: Settings) -> bool:
    """True when the broker answers a metadata request."""
    host, _, port = s.kafka_bootstrap.split(",")[0].rpartition(":")
    if not port_open(int(port), host or "127.0.0.1"):
        return False  # skip the client's noisy connection-refused logging while it boots
    try:
        asyncio.run(asyncio.wait_for(list_topics(s), timeout=10))
    except (KafkaError, TimeoutError, OSError):
        return False  # booting: not answering yet (a programming error still raises)
    return True


def durability_configs(s: Settings) -> dict[str, str]:
    """With three or more replicas, an ``acks=all`` write needs two in-sync replicas: one
    broker may be lost without refusing writes, and no acknowledged write lives on one only."""
    return {"min.insync.replicas": "2"} if s.topic_replication >= 3 else {}


async def create_topics(
    s: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS, partitions: int | None = None
) -> list[str]:
    """Create missing topics (prefixed by the settings); return the names created."""
    admin = await _admin(s)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=s.topic(spec.name),
                num_partitions=partitions or s.topic_partitions,
                replication_factor=s.topic_replication,
                topic_configs={**spec.configs(), **durability_configs(s)},
            )
            for spec in specs
            if s.topic(spec.name) not in existing
        ]
        if not wanted:
            return []
        # A topic created concurrently by another process is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(wanted, timeout_ms=30000)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def delete_topics(s: Settings, prefixes: Iterable[str]) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (test teardown)."""
    admin = await _admin(s)
    try:
        wanted = tuple(p for p in prefixes if p)
        names = [t for t in await admin.list_topics() if wanted and t.startswith(wanted)]
        if names:
            await admin.delete_topics(names, timeout_ms=60000)
        return names
    finally:
        await admin.close()
