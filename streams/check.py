"""Do the read models hold what the log says? (``covidtech check --since 1h``)

An operator's check for lost rows (a node that lost acknowledged writes, a bug that skipped
events): it reads the source events appended in a time window, from the offset of the
window's start to the end offsets of the moment it starts, and looks up for each the row it
must have produced:

- a check-in scan: a ``visits_by_person`` row of the person at the venue that started at
  or before the scan and at most the longest visit before it (``max_dwell`` or
  ``out_pairing_limit``, whichever is longer);
- a sample collected: its ``samples_by_id`` row;
- a dose: its ``doses_by_person`` row.

Events the worker dead-lettered (found in the topic's DLQ) and events past their retention
are not counted. Run it once the worker group has caught up (``covidtech status``): events
still in flight count as missing. It costs one partition read per person or sample in the
window, so keep the window to what you suspect.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from covidtech import kafka_clients
from covidtech.settings import Settings
from domain.rules import PresenceRules
from projections.model import ProjectionStore, Query
from schemas.codec import CodecError, Event, Registry, default_registry

CHECKED = ("checkins", "samples", "doses")


@dataclass
class TopicCheck:
    """What one source topic's window held and how much of it has its rows."""

    events: int = 0  # events read in the window
    checked: int = 0  # of which one has a row to look for
    missing: list[str] = field(default_factory=list)  # "topic[partition]@offset: what"


@dataclass
class CheckReport:
    since: datetime
    topics: dict[str, TopicCheck]

    @property
    def missing(self) -> int:
        return sum(len(t.missing) for t in self.topics.values())


async def read_window(
    s: Settings, topic: str, since: datetime
) -> list[tuple[int, int, Any]]:  # (partition, offset, record)
    """The records of ``topic`` appended since ``since``, up to the end offsets of now."""
    consumer = kafka_clients.consumer(s, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await kafka_clients.partitions_of(consumer, topic, missing_ok=True)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        todo = {}
        for tp in tps:
            start = starts[tp].offset if starts.get(tp) is not None else ends[tp]
            if start < ends[tp]:
                consumer.seek(tp, start)
                todo[tp] = ends[tp]
        out: list[tuple[int, int, Any]] = []
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in fetched.items():
                out += [(tp.partition, r.offset, r) for r in records if r.offset < todo[tp]]
                if records and records[-1].offset + 1 >= todo[tp]:
                    del todo[tp]
        return out
    finally:
        await consumer.stop()


async def check(
    s: Settings,
    store: ProjectionStore,
    window: timedelta,
    *,
    rules: PresenceRules | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    registry: Registry | None = None,
    concurrency: int = 64,
) -> CheckReport:
    """Count, per checked source topic, the events of the last ``window`` without their rows."""
    rules = rules or s.domain_rules()[0]
    registry = registry or default_registry()
    since = now() - window
    oldest = now() - rules.presence_retention
    longest = max(rules.max_dwell, rules.out_pairing_limit)
    gate = asyncio.Semaphore(concurrency)
    report = CheckReport(since, {})

    async def rows(query: Query) -> list[dict[str, Any]]:
        async with gate:
            return await store.select(query)

    for name in CHECKED:
        result = report.topics[name] = TopicCheck()
        records = await read_window(s, s.topic(name), since)
        dead = {
            (d.record["source_partition"], d.record["source_offset"])
            for d in _decoded(
                registry,
                (
                    r
                    for _p, _o, r in await read_window(
                        s, s.topic(f"{name}.dlq"), since - timedelta(minutes=5)
                    )
                ),
            )
        }
        result.events = len(records)
        wanted: dict[str, list[tuple[str, Event]]] = defaultdict(list)  # partition key -> events
        for partition, offset, record in records:
            if (partition, offset) in dead:
                continue
            try:
                event = registry.decode(record.value)
            except CodecError:
                continue  # dead-lettered, or on its way there
            key = _row_key(name, event)
            if key is None:
                continue
            if name == "checkins" and event.record["scanned_at"] < oldest:
                continue
            wanted[key].append((f"{name}[{partition}]@{offset}", event))
        result.checked = sum(len(v) for v in wanted.values())

        async def one(key: str, events: list[tuple[str, Event]], name: str = name) -> list[str]:
            found = await rows(_query(name, key))
            return [f"{pos}: {_what(e)}" for pos, e in events if not _has(name, e, found, longest)]

        for missing in await asyncio.gather(*(one(k, v) for k, v in wanted.items())):
            result.missing += missing
    return report


def _decoded(registry: Registry, records: Iterable[Any]) -> Iterable[Event]:
    for r in records:
        try:
            yield registry.decode(r.value)
        except CodecError:
            continue


def _row_key(topic: str, e: Event) -> str | None:
    if topic == "checkins":
        return str(e.record["person_id"])
    if topic == "samples" and e.name.endswith(".SampleCollected"):
        return str(e.record["sample_id"])
    if topic == "doses":
        return str(e.record["person_id"])
    return None


def _query(topic: str, key: str) -> Query:
    table, column = {
        "checkins": ("visits_by_person", "person_id"),
        "samples": ("samples_by_id", "sample_id"),
        "doses": ("doses_by_person", "person_id"),
    }[topic]
    return Query(table, {column: key})


def _has(topic: str, e: Event, rows: list[dict[str, Any]], longest: timedelta) -> bool:
    r = e.record
    if topic == "checkins":
        at = r["scanned_at"]
        return any(
            row["venue_id"] == r["venue_id"] and at - longest <= row["visit_start"] <= at
            for row in rows
        )
    if topic == "samples":
        return bool(rows)
    return any(row["dose_id"] == r["dose_id"] for row in rows)


def _what(e: Event) -> str:
    r = e.record
    if "scanned_at" in r:
        return f"scan of {r['person_id']} at {r['venue_id']} {r['scanned_at'].isoformat()}"
    if "dose_id" in r:
        return f"dose {r['dose_id']} of {r['person_id']}"
    return f"sample {r.get('sample_id')}"
