"""The topic catalogue of DESIGN.md: names, keys, retention and compaction.

One place names every topic so that producers, workers, infra and tests agree. A deployment
prefixes every name with ``COVIDTECH_TOPIC_PREFIX`` (tests use it to isolate themselves).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

DAY_MS = 24 * 3600 * 1000


@functools.lru_cache(maxsize=200_000)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (murmur2,
    as Java's client and aiokafka's): where the ingest API, the workers and the rebuild
    put a keyed event, so co-partitioned topics stay co-partitioned. Memoised: the same
    people and venues come back all day, and murmur2 in pure Python costs more than the
    rest of a send."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name (without prefix), what its key is, and how long Kafka keeps it."""

    name: str
    key: str
    retention_ms: int | None  # None = forever
    compacted: bool = False
    derived: bool = False
    dlq: bool = False

    def configs(self) -> dict[str, str]:
        """Kafka topic configs that enforce this spec's retention."""
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(-1 if self.retention_ms is None else self.retention_ms),
        }


VENUES = TopicSpec("venues", "venue_id", None, compacted=True)
PEOPLE = TopicSpec("people", "person_id", None, compacted=True)
CHECKINS = TopicSpec("checkins", "person_id", 21 * DAY_MS)
DECLARATIONS = TopicSpec("declarations", "person_id", 21 * DAY_MS)
SAMPLES = TopicSpec("samples", "sample_id", 90 * DAY_MS)
DOSES = TopicSpec("doses", "person_id", None)
VACCINATION_REGISTRATIONS = TopicSpec("vaccination-registrations", "person_id", None)
VACCINE_SUPPLY = TopicSpec("vaccine-supply", "province", None)
CASES = TopicSpec("cases", "person_id", 90 * DAY_MS, derived=True)
VISITS = TopicSpec("visits", "venue_id", 21 * DAY_MS, derived=True)
EXPOSURE_WINDOWS = TopicSpec("exposure-windows", "venue_id", 21 * DAY_MS, derived=True)
EXPOSURE_ALERTS = TopicSpec("exposure-alerts", "province", 21 * DAY_MS, derived=True)
CLUSTERS = TopicSpec("clusters", "province", 90 * DAY_MS, derived=True)
# Chains of transmission (streams/chains.py): HIGH-risk alerts keyed by contact person and the
# claims of infected cases keyed by source person, so each side meets the person's cases.
TRANSMISSION = TopicSpec("transmission", "person_id", 21 * DAY_MS, derived=True)
COVERAGE_STATUS = TopicSpec("coverage-status", "province", 90 * DAY_MS, derived=True)
# Vaccination programme (streams/programme.py): a registered person's status facts and each
# administered dose drawn from stock, both for the per-province aggregator.
REGISTRATION_STATUS = TopicSpec("registration-status", "province", 90 * DAY_MS, derived=True)
STOCK_MOVEMENTS = TopicSpec("stock-movements", "province", 90 * DAY_MS, derived=True)
# Access control (written by the read API): grants and their revocations, compacted by grant
# so a revocation survives compaction; and the audit trail of personal-data reads, keyed by
# what was read so every read of one person's data lands in one partition, in order.
GRANTS = TopicSpec("grants", "grant_id", None, compacted=True)
AUDIT = TopicSpec("audit", "subject", 365 * DAY_MS)

SOURCE_TOPICS: tuple[TopicSpec, ...] = (
    VENUES,
    PEOPLE,
    CHECKINS,
    DECLARATIONS,
    SAMPLES,
    DOSES,
    VACCINATION_REGISTRATIONS,
    VACCINE_SUPPLY,
)
DERIVED_TOPICS: tuple[TopicSpec, ...] = (
    CASES,
    VISITS,
    EXPOSURE_WINDOWS,
    EXPOSURE_ALERTS,
    CLUSTERS,
    TRANSMISSION,
    COVERAGE_STATUS,
    REGISTRATION_STATUS,
    STOCK_MOVEMENTS,
)


def dlq_of(spec: TopicSpec) -> TopicSpec:
    """The dead-letter topic of ``spec``: same key, 30 days."""
    return TopicSpec(f"{spec.name}.dlq", spec.key, 30 * DAY_MS, dlq=True)


ACCESS_TOPICS: tuple[TopicSpec, ...] = (GRANTS, AUDIT)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SOURCE_TOPICS
    + DERIVED_TOPICS
    + tuple(dlq_of(t) for t in SOURCE_TOPICS + DERIVED_TOPICS)
    + ACCESS_TOPICS
)


_DERIVED_NAMES = frozenset(t.name for t in ALL_TOPICS if t.derived or t.dlq)


def is_derived(name: str) -> bool:
    """Whether ``name`` is a derived or dead-letter topic (rebuilt by a replay)."""
    return name in _DERIVED_NAMES or name.endswith(".dlq")
