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
from collections.abc import Iterable, Mapping
from typing import Any

from projections.model import ProjectionStore, StoreUnavailable
from schemas.codec import CodecError, Registry
from streams.context import BatchContext, Handler, Message, StateTable

log = logging.getLogger(__name__)


async def process_batch(
    handler: Handler,
    messages: Iterable[Message],
    store: ProjectionStore,
    tables: Mapping[str, StateTable],
    registry: Registry,
) -> BatchContext:
    """Run ``handler`` over ``messages`` in order; return the staged effects to commit."""
    ctx = BatchContext(store=store, tables=dict(tables))
    # A topic read by several agents has one primary reader that dead-letters its bad input;
    # the others skip it (``reports_bad_input`` names the topics a handler reports for).
    reports = getattr(handler, "reports_bad_input", handler.topics)
    for raw in messages:
        try:
            event = registry.decode(raw.value)
        except CodecError as e:
            if raw.topic in reports:
                ctx.dead_letter(raw, f"{type(e).__name__}: {e}")
            continue
        msg = Message(raw.topic, raw.partition, raw.offset, raw.key, raw.value, event)
        marks = (len(ctx.mutations), len(ctx.emits), len(ctx.dead_letters))
        before = dict(ctx.staged)  # small: the keys this batch touched so far
        try:
            await handler.handle(ctx, msg)
        except StoreUnavailable:
            raise
        except (ValueError, KeyError, TypeError, CodecError) as e:
            del ctx.mutations[marks[0] :]
            del ctx.emits[marks[1] :]
            del ctx.dead_letters[marks[2] :]
            ctx.staged = before
            ctx.dead_letter(msg, f"{type(e).__name__}: {e}")
            log.warning("dead-lettered %s: %s", msg.position, e)
    return ctx


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
