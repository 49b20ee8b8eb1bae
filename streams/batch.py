"""Processing of one batch, shared by the Faust worker and the in-process pipeline.

Per message: decode (undecodable bytes are dead-lettered with the error and their position),
then run the handler. A handler error caused by the message (a domain rule refusing it, a
schema mismatch) dead-letters that message and rolls back whatever it had staged, so one
poison message never blocks a partition. Infrastructure errors (StoreUnavailable) are not
caught here: the caller retries the whole batch, which is safe because nothing of it was
committed (see ``streams.context``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import CodecError, Registry
from streams.context import BatchContext, Handler, Message, StateTable

log = logging.getLogger(__name__)

COMMITS = "_commits"  # the state table holding each handler's commit record per partition


def commit_key(handler: Handler, partition: int) -> str:
    return f"{type(handler).__name__}|{partition}"


def applied_offsets(
    handler: Handler, tables: Mapping[str, StateTable], partition: int
) -> dict[str, int]:
    """The last offset applied per topic of ``partition``, from the committed state."""
    held = tables[COMMITS].get(commit_key(handler, partition))
    return dict(held["o"]) if held else {}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


async def process_batch(
    handler: Handler,
    messages: Iterable[Message],
    store: ProjectionStore,
    tables: Mapping[str, StateTable],
    registry: Registry,
    clock: Callable[[], int] = wall_clock_ms,
    *,
    dead_letter_unexpected: bool = False,
) -> BatchContext:
    """Run ``handler`` over ``messages`` in order; return the staged effects to commit.

    Per source partition, the handler's commit record (in state table ``COMMITS``) holds the
    last offset applied per topic and the partition's logical clock. Messages at or below
    that offset were applied already (their state was committed, so were their rows and
    events) and are skipped; the clock moves to ``max(previous + 1, wall clock ms)`` and
    stamps this batch's writes (``BatchContext._stamp``). The new commit record is staged
    with the rest of the state, which the runtime writes atomically per partition.

    A handler error of a declared kind (a domain rule refusing the message, a schema
    mismatch) dead-letters the message. Any other error (a bug) is raised, so the caller
    retries the batch; with ``dead_letter_unexpected`` (the caller's last attempt) it
    dead-letters the message too, so a bug costs one message, not the partition. Outages
    (``StoreUnavailable``, ``OSError``) are always raised."""
    batch = list(messages)
    ctx = BatchContext(store=store, tables=dict(tables))
    commits: dict[int, dict[str, Any]] = {}
    last: dict[int, Message] = {}
    for raw in batch:
        if raw.partition not in commits:
            held = ctx.state(COMMITS, commit_key(handler, raw.partition))
            commits[raw.partition] = {
                "o": dict(held["o"]) if held else {},
                "t": held["t"] if held else 0,
            }
        last[raw.partition] = raw
    now = clock()
    for partition, record in commits.items():
        ctx.clock[partition] = record["t"] = max(record["t"] + 1, now)
    # A topic read by several agents has one primary reader that dead-letters its bad input;
    # the others skip it (``reports_bad_input`` names the topics a handler reports for).
    reports = getattr(handler, "reports_bad_input", handler.topics)
    for raw in batch:
        applied = commits[raw.partition]["o"]
        if raw.offset <= applied.get(raw.topic, -1):
            continue  # applied before a crash or a rebalance: its state is committed
        applied[raw.topic] = raw.offset
        ctx.begin(raw)
        try:
            event = registry.decode(raw.value)
        except CodecError as e:
            if raw.topic in reports:
                ctx.dead_letter(raw, f"{type(e).__name__}: {e}")
            continue
        msg = Message(raw.topic, raw.partition, raw.offset, raw.key, raw.value, event)
        try:
            await handler.handle(ctx, msg)
        except (StoreUnavailable, OSError):
            raise
        except Exception as e:
            declared = isinstance(e, (ValueError, KeyError, TypeError, CodecError))
            if not (declared or dead_letter_unexpected):
                raise
            ctx.rollback()
            ctx.dead_letter(msg, f"{type(e).__name__}: {e}")
            log.warning("dead-lettered %s: %r", msg.position, e)
    ctx.end()
    for partition, record in commits.items():
        ctx.set_state(COMMITS, commit_key(handler, partition), record, last[partition])
    return ctx


def expired_states(
    handler: Handler,
    tables: Mapping[str, StateTable],
    keys: Iterable[tuple[str, str]],
    now_ms: int,
) -> dict[tuple[str, str], tuple[Any, Any]]:
    """What retention removes from ``handler``'s committed state at ``now_ms`` (wall clock,
    epoch ms), among ``keys`` (table, key): (table, key) -> (the committed value, what
    replaces it: the value trimmed, or None to delete the key). Keys with nothing past
    retention, and every key of a handler that keeps its state (no ``prune``), are left
    out. Pure: the caller commits the result as it commits a batch's state."""
    prune = getattr(handler, "prune", None)
    out: dict[tuple[str, str], tuple[Any, Any]] = {}
    if prune is None:
        return out
    for table, key in keys:
        value = tables[table].get(key)
        if value is None:
            continue
        pruned = prune(table, key, value, now_ms)
        if pruned is not value:
            out[(table, key)] = (value, pruned)
    return out


def dead_letter_record(msg: Message, error: str) -> dict[str, Any]:
    """The DeadLetter record of a message: raw bytes, the error, topic[partition]@offset."""
    return {
        "source_topic": msg.topic,
        "source_partition": msg.partition,
        "source_offset": msg.offset,
        "key": msg.key,
        "value": msg.value,
        "error": error[:2000],
    }
