"""What a stream handler may do while it processes one batch of messages.

Handlers never touch Faust, Kafka or Cassandra themselves. They read and stage state, stage
row mutations and derived events, and dead-letter bad input through a :class:`BatchContext`.
The batch owns its transaction, as a partition transaction does in Kafka Streams or
Quix Streams: :meth:`BatchContext.begin` opens one message's savepoint,
:meth:`BatchContext.rollback` undoes everything that message staged (a poison message is
dead-lettered with nothing of it kept), and :meth:`BatchContext.commit` hands the effects to
the runtime's :class:`CommitSink` (the Faust worker's in ``streams.worker``, the in-process
pipeline's in ``streams.local``) in this order, which is what makes at-least-once delivery
safe:

1. row mutations are written to the projection store (idempotent upserts and deletes);
2. derived events are produced and acknowledged by Kafka (deterministic ids, so a repeat is
   a duplicate the consumer ignores);
3. staged state is written to the tables (and their changelogs, which are flushed);
4. only then are the source messages acknowledged, so their offsets may be committed.

A crash anywhere before 4 redelivers the batch; handlers recompute the same mutations and
events from the state as it was before the batch, so the projections converge.

Step 3 is atomic per partition: the worker appends all of a partition's staged state, with a
commit record naming the last source offset applied and the partition's logical clock, as
one Kafka record batch (``streams.worker``). A message at or below the recorded offset is
skipped on redelivery (``streams.batch``), so a handler that changes several keys for one
message (a person's last status and the counts it contributes to) never sees half of its
own update. Rows carry write timestamps from the clock, so a late write from a worker that
lost its partitions never overwrites its successor's newer rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from projections.model import Mutation, ProjectionStore, stamped
from schemas.codec import Event


class Message(NamedTuple):
    """One source message: where it came from, its raw bytes and (once decoded) its event.

    A named tuple, not a frozen dataclass: the worker builds one per record it fetches, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost three times as
    much."""

    topic: str  # the catalogue name (without prefix), e.g. "checkins"
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Event | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Emit:
    """A derived event to produce: catalogue topic name, key, schema name and record."""

    topic: str
    key: str
    name: str
    record: dict[str, Any]


class StateTable(Protocol):
    """Keyed state of one handler (a Faust table under the worker, a dict in tests)."""

    def get(self, key: str) -> Any: ...


@dataclass
class BatchContext:
    """Staged effects of one batch; see the module docstring for the commit order."""

    store: ProjectionStore
    tables: dict[str, StateTable]
    mutations: list[Mutation] = field(default_factory=list)
    emits: list[Emit] = field(default_factory=list)
    dead_letters: list[tuple[Message, str]] = field(default_factory=list)
    # (table, key) -> (value, partition of the message that set it)
    staged: dict[tuple[str, str], tuple[Any, int]] = field(default_factory=dict)
    flushed: int = 0  # how many of ``mutations`` are already written
    # Logical clock of this batch per source partition (``streams.batch``): mutations staged
    # while a message of partition p is handled are written with a timestamp from clock[p].
    clock: dict[int, int] = field(default_factory=dict)
    partition: int | None = None  # partition of the message being handled
    origins: list[int | None] = field(default_factory=list)  # partition per mutation
    flushes: int = 0
    # While a message is handled: what each set_state replaced (None: nothing staged), so
    # a message that fails can be undone without copying ``staged`` for every message.
    journal: list[tuple[tuple[str, str], tuple[Any, int] | None]] | None = None
    # Lengths of mutations, emits and dead letters when the current message began.
    savepoint: tuple[int, int, int] = (0, 0, 0)

    def begin(self, msg: Message) -> None:
        """Open ``msg``'s savepoint: what it stages from now on can be rolled back alone."""
        self.partition = msg.partition
        self.savepoint = (len(self.mutations), len(self.emits), len(self.dead_letters))
        self.journal = []

    def rollback(self) -> None:
        """Undo everything staged since :meth:`begin`: rows, events, dead letters, state."""
        rows, emits, dead = self.savepoint
        del self.mutations[rows:]
        del self.origins[rows:]
        del self.emits[emits:]
        del self.dead_letters[dead:]
        for k, previous in reversed(self.journal or ()):
            if previous is None:
                del self.staged[k]
            else:
                self.staged[k] = previous
        self.journal = []

    def end(self) -> None:
        """Close the last message's savepoint; what follows belongs to no message."""
        self.partition = None
        self.journal = None

    async def commit(self, sink: CommitSink) -> None:
        """Hand the batch's effects to ``sink`` in the commit order of the module docstring:
        rows, then derived events and dead letters (acknowledged), then state. The caller
        acknowledges the source messages only after this returns; if it raises, nothing of
        the batch counts as done and the batch is processed again."""
        await self.read_your_writes()
        await sink.produce(self.emits, self.dead_letters)
        by_partition: dict[int, list[tuple[str, str, Any]]] = {}
        for (table, key), (value, partition) in self.staged.items():
            by_partition.setdefault(partition, []).append((table, key, value))
        await sink.save_state(by_partition)

    def state(self, table: str, key: str) -> Any:
        """The state under ``key``: staged in this batch, else as committed."""
        staged = self.staged.get((table, key))
        if staged is not None:
            return staged[0]
        return self.tables[table].get(key)

    def set_state(self, table: str, key: str, value: Any, msg: Message) -> None:
        """Stage new state for ``key``; it belongs to the partition of ``msg``."""
        self.restate(table, key, value, msg.partition)

    def restate(self, table: str, key: str, value: Any, partition: int) -> None:
        """Stage new state (None: delete) for ``key`` of ``partition`` without a message
        (retention trims committed state this way)."""
        if self.journal is not None:
            self.journal.append(((table, key), self.staged.get((table, key))))
        self.staged[(table, key)] = (value, partition)

    def write(self, mutations: Sequence[Mutation]) -> None:
        self.mutations.extend(mutations)
        self.origins.extend([self.partition] * len(mutations))

    def emit(self, topic: str, key: str, name: str, record: dict[str, Any]) -> None:
        self.emits.append(Emit(topic, key, name, record))

    def dead_letter(self, msg: Message, error: str) -> None:
        self.dead_letters.append((msg, error))

    async def read_your_writes(self) -> ProjectionStore:
        """Write the mutations staged so far, then return the store for reading.

        A handler that reads rows it may itself have staged earlier in the batch calls this
        first (the per-venue agent reads the venue's visits when a window changes)."""
        pending = self.mutations[self.flushed :]
        if pending:
            origins = self.origins[self.flushed :]
            await self.store.apply(
                [self._stamp(m, p) for m, p in zip(pending, origins, strict=True)]
            )
            self.flushed = len(self.mutations)
            self.flushes += 1
        return self.store

    def _stamp(self, m: Mutation, partition: int | None) -> Mutation:
        """The write timestamp of a mutation: its partition's clock (milliseconds) times
        1,000 plus the number of earlier flushes in this batch, so writes of one row only
        ever get later, within a batch and across batches, workers and restarts."""
        tick = self.clock.get(partition) if partition is not None else None
        if tick is None:
            return m
        return stamped(m, tick * 1000 + min(self.flushes, 999))


class CommitSink(Protocol):
    """Where a runtime puts a batch's effects (:meth:`BatchContext.commit`)."""

    async def produce(
        self, emits: Sequence[Emit], dead_letters: Sequence[tuple[Message, str]]
    ) -> None:
        """Produce the derived events and dead letters; return once all are acknowledged."""

    async def save_state(self, by_partition: Mapping[int, list[tuple[str, str, Any]]]) -> None:
        """Write the staged state, (table, key, value or None) per source partition, each
        partition's atomically; the local copy changes only once it is durable."""


class Handler(Protocol):
    """Processes messages of some topics; must be deterministic in (state, message)."""

    @property
    def topics(self) -> tuple[str, ...]:
        """Catalogue names of the topics it reads (co-partitioned, one key)."""

    @property
    def tables(self) -> tuple[str, ...]:
        """Names of its state tables."""

    async def handle(self, ctx: BatchContext, msg: Message) -> None: ...


class Prunes(Protocol):
    """A handler whose state holds data with a retention: besides ``handle``, it says what
    of one committed value is past retention at a wall-clock time (``streams.batch.
    expired_states``; the worker applies it on a timer, ``COVIDTECH_WORKER_PRUNE_SECONDS``).
    Handlers without it keep their state (vaccination records)."""

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """``value`` without what is past retention at ``now_ms`` (epoch ms): ``value``
        itself when nothing is, a new value when some is, None when all of it is (the key is
        deleted). Pure: ``value`` is committed state and must not be changed."""
