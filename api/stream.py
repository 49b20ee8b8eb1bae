"""The live alert stream (``GET /v1/alerts/stream``): Server-Sent Events over Kafka.

One :class:`AlertBroadcaster` per process follows every partition of ``exposure-alerts`` from
the end it found at start, decodes each record once and hands it to every connected client's
queue. Each client keeps a *position vector* (next offset per partition); an event's SSE
``id:`` is that vector after the event (``0:13,1:7,2:0,3:4``), so ``Last-Event-ID`` says
exactly what the client has seen, whatever was filtered out for it.

Resuming (ordering guarantee): when a client connects, its subscription is registered and the
broadcaster's current positions ``L`` are taken in one step (no ``await`` in between), so
every record at or after ``L[p]`` reaches the client's queue. Records between the client's
``Last-Event-ID`` and ``L`` are read from Kafka by a temporary consumer first. A record below
the client's own position is dropped, so nothing is delivered twice and nothing is skipped
(per partition, in offset order; Kafka gives no order across partitions).

Scope filtering happens per client (a province or tracer token sees only its provinces'
alerts, MOH all). A client too slow to drain ``queue_size`` alerts is disconnected; it resumes
with its Last-Event-ID. On shutdown (or :meth:`AlertBroadcaster.close_clients`) every stream
ends cleanly; a client that disconnects ends its stream and its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.kafka import FeedRecord
from api.problems import LogUnavailable
from covidtech import tasks
from schemas.codec import CodecError, decode

__all__ = [
    "ALERT_EVENT",
    "AlertBroadcaster",
    "AlertSource",
    "EventStreamResponse",
    "InvalidEventId",
    "Subscription",
    "alert_events",
    "format_event_id",
    "parse_event_id",
]

log = logging.getLogger(__name__)

ALERT_EVENT = "covidtech.exposure.ExposureAlertRaised"
_EVENT_ID = re.compile(r"\d{1,5}:\d{1,19}(,\d{1,5}:\d{1,19}){0,1023}", re.ASCII)


class InvalidEventId(ValueError):
    """A Last-Event-ID this stream never sent."""


def format_event_id(positions: Mapping[int, int]) -> str:
    """``{0: 13, 1: 7}`` -> ``"0:13,1:7"`` (next offset per partition)."""
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def parse_event_id(text: str) -> dict[int, int]:
    """The position vector of a Last-Event-ID; raises :class:`InvalidEventId`."""
    text = text.strip()
    if not _EVENT_ID.fullmatch(text):
        raise InvalidEventId("Last-Event-ID must look like 0:13,1:7")
    out: dict[int, int] = {}
    for part in text.split(","):
        p, _, o = part.partition(":")
        if int(p) in out:
            raise InvalidEventId("Last-Event-ID names a partition twice")
        out[int(p)] = int(o)
    return out


class AlertSource(Protocol):
    """What the broadcaster needs from Kafka (see :class:`api.kafka.KafkaAlertSource`)."""

    async def open(self) -> dict[int, int]: ...

    async def fetch(self, timeout_ms: int) -> list[FeedRecord]: ...

    async def close(self) -> None: ...

    async def read_range(
        self, ranges: Mapping[int, tuple[int, int]], timeout_s: float
    ) -> list[FeedRecord]: ...


@dataclass(frozen=True, slots=True)
class Alert:
    """A decoded record: where it is, and the alert (None if the record is not one)."""

    partition: int
    offset: int
    record: dict[str, Any] | None


def _decode(rec: FeedRecord) -> Alert:
    if rec.value is None:
        return Alert(rec.partition, rec.offset, None)
    try:
        event = decode(rec.value)
    except CodecError as e:
        log.warning("undecodable alert at %s@%s: %s", rec.partition, rec.offset, e)
        return Alert(rec.partition, rec.offset, None)
    if event.name != ALERT_EVENT:
        return Alert(rec.partition, rec.offset, None)
    return Alert(rec.partition, rec.offset, event.record)


@dataclass(eq=False)
class Subscription:
    """One connected client: its queue (None = the stream must end) and where live begins."""

    live_from: dict[int, int]
    queue: asyncio.Queue[Alert | None] = field(default_factory=asyncio.Queue)
    closed: bool = False


class AlertBroadcaster:
    """Follows the alert topic once per process and fans records out to subscribers."""

    def __init__(
        self, source: AlertSource, *, queue_size: int = 1000, poll_timeout_ms: int = 200
    ) -> None:
        self._source = source
        self._queue_size = queue_size
        self._poll_timeout_ms = poll_timeout_ms
        self._positions: dict[int, int] = {}
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self.records_seen = 0

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    @property
    def positions(self) -> dict[int, int]:
        return dict(self._positions)

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done() and self._failure is None

    async def start(self) -> None:
        """Position at the topic's end and start following it."""
        self._positions = await self._source.open()
        self._task = asyncio.create_task(self._follow(), name="alert-broadcaster")

    async def _follow(self) -> None:
        try:
            while True:
                records = await self._source.fetch(self._poll_timeout_ms)
                # No await below: positions and fan-out change together (see module doc).
                for rec in records:
                    alert = _decode(rec)
                    self._positions[rec.partition] = max(
                        self._positions.get(rec.partition, 0), rec.offset + 1
                    )
                    self.records_seen += 1
                    for sub in list(self._subscribers):
                        self._offer(sub, alert)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("alert broadcaster stopped")
            self._failure = e
            self.close_clients()

    def _offer(self, sub: Subscription, alert: Alert) -> None:
        if sub.queue.qsize() >= self._queue_size:
            log.warning("alert stream client too slow; disconnecting it (it can resume)")
            self._close(sub)
            return
        sub.queue.put_nowait(alert)

    def _close(self, sub: Subscription) -> None:
        if not sub.closed:
            sub.closed = True
            sub.queue.put_nowait(None)
        self._subscribers.discard(sub)

    def subscribe(self) -> Subscription:
        """Register a client; records from ``live_from`` on will reach its queue."""
        if not self.healthy:
            raise LogUnavailable("the alert stream is not following Kafka")
        sub = Subscription(live_from=dict(self._positions))
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.closed = True

    def close_clients(self) -> None:
        """End every open stream (shutdown)."""
        for sub in list(self._subscribers):
            self._close(sub)

    async def catch_up(
        self, ranges: Mapping[int, tuple[int, int]], timeout_s: float
    ) -> list[Alert]:
        """The alerts in ``{p: (start, end)}`` read from Kafka, in offset order per partition."""
        records = await self._source.read_range(ranges, timeout_s)
        return [_decode(r) for r in sorted(records, key=lambda r: (r.partition, r.offset))]

    async def stop(self) -> None:
        self.close_clients()
        task, self._task = self._task, None
        await tasks.cancel(task)
        await self._source.close()


def _sse(event_id: str, data: Mapping[str, Any], event: str = "alert") -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


def _ended(reason: str) -> bytes:
    """The last event of a stream the server ends: why, so the client does not retry blindly."""
    return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()


async def alert_events(
    broadcaster: AlertBroadcaster,
    sub: Subscription,
    *,
    resume: Mapping[int, int] | None,
    wanted: Callable[[Mapping[str, Any]], bool],
    render: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    keepalive_s: float,
    catchup_timeout_s: float,
    on_event: Callable[[], None] = lambda: None,
    refused: Callable[[], str | None] = lambda: None,
    audit: Callable[[list[Mapping[str, Any]]], Awaitable[None]] | None = None,
    recheck_s: float = 1.0,
    event: str = "alert",
) -> AsyncGenerator[bytes, None]:
    """The SSE byte stream of one client (see the module docstring for the guarantees).

    ``refused`` is asked at least every ``recheck_s`` seconds and before anything is sent:
    once it names a reason (the token was revoked or expired), the stream sends an ``end``
    event with it and ends. ``audit`` is awaited with the records about to be sent (the
    whole catch-up of a resumed stream at once, then each live one) before they leave: if it
    fails, nothing of them is sent and the stream ends. ``event`` names the SSE events
    (``alert``; a person's notices stream sends ``notice``)."""
    position = dict(sub.live_from)
    if resume:
        position.update({p: o for p, o in resume.items() if p in position})

    def select(alert: Alert | None) -> Mapping[str, Any] | None:
        """The record to send for ``alert`` (moving the position past it), or None."""
        if alert is None:
            return None
        if alert.offset < position.get(alert.partition, 0):
            return None  # already delivered (or before the client's position)
        position[alert.partition] = alert.offset + 1
        if alert.record is None or not wanted(alert.record):
            return None
        return alert.record

    async def send(records: list[tuple[Mapping[str, Any], str]]) -> list[bytes] | None:
        """The SSE events of ``(record, event id)`` pairs once audited; None: end the
        stream."""
        if not records:
            return []
        if audit is not None:
            try:
                await audit([r for r, _ in records])
            except LogUnavailable:
                log.warning("alert stream could not audit what it sends; ending it")
                return None
        for _ in records:
            on_event()
        return [_sse(event_id, render(r), event) for r, event_id in records]

    yield b"retry: 3000\n: connected\n\n"
    if (reason := refused()) is not None:
        yield _ended(reason)
        return
    ranges = {p: (o, sub.live_from[p]) for p, o in position.items() if o < sub.live_from[p]}
    if ranges:
        try:
            missed = await broadcaster.catch_up(ranges, catchup_timeout_s)
        except LogUnavailable:
            log.warning("alert stream could not resume from Kafka; ending it (client retries)")
            return
        replay = []
        for alert in missed:
            record = select(alert)
            if record is not None:
                replay.append((record, format_event_id(position)))
        chunks = await send(replay)
        if chunks is None:
            return
        for chunk in chunks:
            yield chunk
    getter: asyncio.Task[Alert | None] | None = None
    quiet = 0.0  # seconds since the last bytes sent
    try:
        while True:
            if (reason := refused()) is not None:
                yield _ended(reason)
                return
            if getter is None:
                getter = asyncio.ensure_future(sub.queue.get())
            wait = max(0.0, min(recheck_s, keepalive_s - quiet))
            done, _ = await asyncio.wait({getter}, timeout=wait)
            if not done:
                quiet += wait
                if quiet >= keepalive_s:
                    quiet = 0.0
                    yield b": keep-alive\n\n"
                continue
            item, getter = getter.result(), None
            if item is None:
                return
            record = select(item)
            if record is None:
                continue
            if (reason := refused()) is not None:
                yield _ended(reason)
                return
            chunks = await send([(record, format_event_id(position))])
            if chunks is None:
                return
            quiet = 0.0
            for chunk in chunks:
                yield chunk
    finally:
        if getter is not None:
            getter.cancel()


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that always cleans up.

    It watches for the client's disconnect whatever ASGI version the server speaks (Starlette
    relies on a failed send for ASGI 2.4, which a quiet stream would notice only at its next
    keep-alive), and closes the generator and runs ``on_close`` however the stream ends.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(content, headers=headers)
        self._content = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    with contextlib.suppress(OSError):
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    await self.listen_for_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                tg.start_soon(watch)
        finally:
            try:
                aclose = getattr(self._content, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
            finally:
                self._on_close()
