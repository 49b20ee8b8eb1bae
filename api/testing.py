"""Helpers to drive the read API in-process (tests and benchmarks).

- :func:`running`: enter the app's lifespan (the composition root) around a block.
- :func:`client`: an ``httpx.AsyncClient`` over the ASGI app (no network).
- :class:`EventStreamClient`: an ASGI-level client for ``text/event-stream`` responses. httpx's
  ASGI transport buffers a whole response, which a stream never finishes, so this drives the
  ASGI protocol directly: it reads events as they are sent and can disconnect like a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from covidtech.settings import Settings

__all__ = ["EventStreamClient", "SseEvent", "bearer", "client", "running"]


@contextlib.asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """Run the app's lifespan (startup before, shutdown after the block)."""
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def client(app: Starlette, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the ASGI app, as if from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://read-api") as c:
        yield c


def bearer(
    settings: Settings,
    scopes: Sequence[str],
    *,
    subject: str = "test-agency",
    ttl: timedelta = timedelta(hours=1),
    grant_id: str | None = None,
) -> dict[str, str]:
    """An Authorization header with a fresh token for ``scopes``."""
    token = settings.token_signer().issue(subject, scopes, ttl, grant_id=grant_id)
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event (comments are skipped)."""

    id: str | None
    event: str | None
    data: str


class EventStreamClient:
    """One GET of an event stream, driven at the ASGI level."""

    def __init__(self, app: Starlette, path: str, headers: Mapping[str, str] | None = None) -> None:
        raw_path, _, query = path.partition("?")
        self._scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 40001),
            "server": ("read-api", 80),
            "app": app,
        }
        self._app = app
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._disconnected = asyncio.Event()
        self._request_sent = False
        self._task: asyncio.Task[None] | None = None
        self._buffer = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.comments: list[str] = []
        self.ended = False

    async def _receive(self) -> dict[str, Any]:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self._messages.put(dict(message))

    async def open(self, within: float = 10.0) -> None:
        """Send the request and wait for the response's status and headers."""
        self._task = asyncio.create_task(self._app(self._scope, self._receive, self._send))
        message = await asyncio.wait_for(self._messages.get(), within)
        assert message["type"] == "http.response.start", message
        self.status = message["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}

    async def body(self, within: float = 10.0) -> bytes:
        """The rest of the body of a response that ends (an error answer)."""
        out = b""
        while True:
            message = await asyncio.wait_for(self._messages.get(), within)
            out += bytes(message.get("body", b""))
            if not message.get("more_body", False):
                self.ended = True
                return out

    async def _next_block(self, within: float) -> bytes | None:
        while b"\n\n" not in self._buffer:
            if self.ended:
                return None
            message = await asyncio.wait_for(self._messages.get(), within)
            self._buffer += message.get("body", b"")
            if not message.get("more_body", False):
                self.ended = True
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        self.comments.extend(
            line[1:].strip() for line in block.decode().split("\n") if line.startswith(":")
        )
        return block

    async def next_event(self, within: float = 20.0) -> SseEvent | None:
        """The next event (comments are collected in ``comments``), or None at the end."""
        while True:
            block = await self._next_block(within)
            if block is None:
                return None
            fields: dict[str, str] = {}
            data: list[str] = []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
            if data:
                return SseEvent(fields.get("id"), fields.get("event"), "\n".join(data))

    async def connected(self, within: float = 20.0) -> None:
        """Wait for the stream's opening comment (the subscription is live from then on)."""
        while "connected" not in self.comments:
            if await self._next_block(within) is None:
                raise AssertionError("the stream ended before it was connected")

    async def next_comment(self, within: float = 20.0) -> str | None:
        """Read blocks until a comment comes (e.g. a keep-alive); None at the end."""
        seen = len(self.comments)
        while len(self.comments) == seen:
            if await self._next_block(within) is None:
                return None
        return self.comments[seen]

    async def disconnect(self, within: float = 10.0) -> None:
        """Close the connection like a client going away; wait for the app to finish."""
        self._disconnected.set()
        await self.finished(within)

    async def finished(self, within: float = 10.0) -> None:
        """Wait until the app has finished handling the request."""
        if self._task is not None:
            await asyncio.wait_for(self._task, within)
