"""Create the topics of the catalogue (covidtech.topics) with their retention and compaction."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from covidtech import kafka_clients
from covidtech.settings import Settings, SettingsError
from covidtech.topics import ALL_TOPICS, TopicSpec
from infra.services import port_open


async def _admin(s: Settings) -> AIOKafkaAdminClient:
    admin = kafka_clients.admin(s, request_timeout_ms=10000)
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


def catalogue_topics(s: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """The full names of the catalogue's topics under these settings' prefixes."""
    return [s.topic(spec.name) for spec in specs]


async def auto_creating_brokers(s: Settings) -> list[int]:
    """The ids of the brokers that create a topic on first use (``auto.create.topics.enable``)."""
    admin = await _admin(s)
    try:
        brokers = [b["node_id"] for b in (await admin.describe_cluster())["brokers"]]
        wanted = {"auto.create.topics.enable": None}
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(b), wanted) for b in brokers]
        )
        return sorted(
            int(resource["resource_name"])
            for answer in answers
            for resource in answer.to_object()["resources"]
            for entry in resource["config_entries"]
            if entry["config_names"] == "auto.create.topics.enable"
            and entry["config_value"] == "true"
        )
    finally:
        await admin.close()


async def production_refusals(s: Settings) -> list[str]:
    """What the production profile refuses to start with on the broker side: a broker that
    auto-creates topics (a mistyped prefix would find empty new topics, and a read API an
    empty revocation list), and catalogue topics that do not exist."""
    refusals = []
    if brokers := await auto_creating_brokers(s):
        listed = ", ".join(map(str, brokers))
        refusals.append(f"broker {listed} has auto.create.topics.enable=true")
    existing = await list_topics(s)
    if missing := [t for t in catalogue_topics(s) if t not in existing]:
        refusals.append(f"topics missing: {', '.join(missing)}")
    return refusals


async def require_production_ready(s: Settings) -> None:
    """With ``COVIDTECH_PROFILE=production``, raise :class:`SettingsError` naming every
    refusal (the development keys are refused earlier, when the settings load)."""
    if not s.production:
        return
    if refusals := await production_refusals(s):
        raise SettingsError("COVIDTECH_PROFILE=production refuses to start: " + "; ".join(refusals))


class TopicCheck:
    """Which of a process's topics the broker does not list, asked at most every ``every_s``
    (readiness probes come every few seconds; a metadata request each time is not needed)."""

    def __init__(self, s: Settings, names: Iterable[str], every_s: float = 10.0) -> None:
        self._s = s
        self._names = sorted(set(names))
        self._every_s = every_s
        self._missing: list[str] = list(self._names)
        self._asked_at: float | None = None

    async def missing(self) -> list[str]:
        now = time.monotonic()
        if self._asked_at is None or now - self._asked_at >= self._every_s:
            try:
                existing = await asyncio.wait_for(list_topics(self._s), 5.0)
            except (KafkaError, TimeoutError, OSError):
                return self._missing  # the broker check says why; keep the last answer
            self._missing = [t for t in self._names if t not in existing]
            self._asked_at = now
        return self._missing
