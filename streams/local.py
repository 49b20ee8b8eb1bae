"""An in-process pipeline: the same handlers and commit order as the worker, no Kafka.

Topics are in-memory logs, partitioned by key like Kafka's, tables are dicts and the store is
any ProjectionStore. Unit tests use it to check the domain data flow end to end in
milliseconds (order independence, duplicates, replays); the integration tests check the same
properties through the real Kafka, Faust and Cassandra.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from covidtech.topics import partition_of
from projections.model import ProjectionStore
from schemas.codec import Registry, default_registry
from streams.batch import COMMITS, dead_letter_record, expired_states, process_batch
from streams.context import Emit, Handler, Message
from streams.handlers import all_handlers


@dataclass
class LocalPipeline:
    store: ProjectionStore
    handlers: Sequence[Handler] = field(default_factory=all_handlers)
    partitions: int = 4
    registry: Registry = field(default_factory=default_registry)
    batch_size: int = 100
    logs: dict[str, list[Message]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[tuple[int, str], int] = field(default_factory=dict)  # handler, topic
    trimmed: dict[str, int] = field(default_factory=dict)  # messages dropped per topic
    # A stage of a larger fold (``streams.rebuild``): messages for topics none of these
    # handlers reads go to ``outbox`` (for later stages) instead of a log; a derived event
    # for a topic in ``upstream`` (read by an earlier stage: this stage may read it too, as
    # events routed from the earlier stage), or a message for a key this share does not
    # ``own`` on a topic it reads (another share's), is a data-flow error.
    outbox: list[tuple[str, bytes | None, bytes]] | None = None
    upstream: frozenset[str] = frozenset()
    owns: Callable[[bytes | None], bool] | None = None

    def __post_init__(self) -> None:
        for h in self.handlers:
            for t in (*h.tables, COMMITS):
                self.tables.setdefault(t, {})
        self._read = frozenset(t for h in self.handlers for t in h.topics)

    def append(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        """Append raw bytes to a topic's log (as a producer would)."""
        kb = key.encode() if isinstance(key, str) else key
        if self.outbox is not None and topic not in self._read:
            self.outbox.append((topic, kb, value))
            return
        if self.owns is not None and not self.owns(kb):
            raise RuntimeError(
                f"a message for {topic} belongs to another share of this stage: its key is "
                "not in the partition it was read from, or it was routed to the wrong share"
            )
        log = self.logs.setdefault(topic, [])
        # Kafka's partition of the key (murmur2), so a rebuild's shares own whole partitions
        # and rows keyed by source partition (daily counts) match the live worker's.
        partition = partition_of(kb, self.partitions) if kb is not None else 0
        log.append(Message(topic, partition, self._end(topic), kb, value))

    def _end(self, topic: str) -> int:
        """The offset the next message of ``topic`` gets."""
        return self.trimmed.get(topic, 0) + len(self.logs.get(topic, []))

    def trim(self) -> None:
        """Drop the messages every reader of their topic has processed (a long fold keeps
        only what is still unread in memory)."""
        for topic, log in self.logs.items():
            readers = [
                self.positions.get((i, topic), 0)
                for i, h in enumerate(self.handlers)
                if topic in h.topics
            ]
            upto = min(readers) if readers else self._end(topic)
            drop = upto - self.trimmed.get(topic, 0)
            if drop > 0:
                del log[:drop]
                self.trimmed[topic] = upto

    def publish(self, topic: str, key: str, name: str, record: dict[str, Any]) -> None:
        self.append(topic, key, self.registry.encode(name, record))

    async def run_until_idle(
        self, max_rounds: int = 100_000, rng: random.Random | None = None
    ) -> None:
        """Feed every handler its unread messages until no handler has anything left.

        With ``rng``, each step picks a random (handler, topic) with unread messages and a
        random batch size, so derived topics interleave in orders the round-robin default
        never produces (a window before the visits it overlaps, and so on)."""
        for _ in range(max_rounds):
            pending = [
                (i, h, topic, self.positions.get((i, topic), 0))
                for i, h in enumerate(self.handlers)
                for topic in h.topics
                if self.positions.get((i, topic), 0) < self._end(topic)
            ]
            if not pending:
                return
            steps = [rng.choice(pending)] if rng else pending
            for i, h, topic, start in steps:
                size = rng.randint(1, self.batch_size) if rng else self.batch_size
                first = start - self.trimmed.get(topic, 0)
                batch = self.logs[topic][first : first + size]
                await self._commit(h, batch)
                self.positions[(i, topic)] = start + len(batch)
        raise RuntimeError("pipeline did not become idle")

    def prune(self, now_ms: int) -> dict[str, tuple[int, int]]:
        """Apply retention to every handler's state at ``now_ms`` (epoch ms), as the
        worker's timer does; per handler that changed anything, (keys trimmed, deleted)."""
        out: dict[str, tuple[int, int]] = {}
        for h in self.handlers:
            keys = [(t, k) for t in h.tables for k in self.tables[t]]
            expired = expired_states(h, self.tables, keys, now_ms)
            for (table, key), (_, value) in expired.items():
                if value is None:
                    del self.tables[table][key]
                else:
                    self.tables[table][key] = value
            if expired:
                gone = sum(1 for _, value in expired.values() if value is None)
                out[type(h).__name__] = (len(expired) - gone, gone)
        return out

    async def _commit(self, handler: Handler, batch: list[Message]) -> None:
        ctx = await process_batch(handler, batch, self.store, self.tables, self.registry)
        await ctx.commit(self)

    async def produce(
        self, emits: Sequence[Emit], dead_letters: Sequence[tuple[Message, str]]
    ) -> None:
        """:class:`streams.context.CommitSink`: derived events and dead letters to the logs."""
        for e in emits:
            if e.topic in self.upstream:  # a derived event, not an input routed here
                raise RuntimeError(
                    f"{e.topic} is read by an earlier stage; the stages form a cycle"
                )
            self.publish(e.topic, e.key, e.name, e.record)
        for msg, error in dead_letters:
            self.publish(
                f"{msg.topic}.dlq",
                (msg.key or b"").decode(errors="replace"),
                "covidtech.ops.DeadLetter",
                dead_letter_record(msg, error),
            )

    async def save_state(self, by_partition: Mapping[int, list[tuple[str, str, Any]]]) -> None:
        """:class:`streams.context.CommitSink`: staged state into the tables (None deletes)."""
        for items in by_partition.values():
            for table, key, value in items:
                if value is None:
                    self.tables[table].pop(key, None)
                else:
                    self.tables[table][key] = value
