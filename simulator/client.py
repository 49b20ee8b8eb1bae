"""Sends a simulation through the ingest API (``covidtech simulate``).

Phase 1 registers the venues and people (the API issues their ids and QR codes). Phase 2
sends the back-filled timeline of the last ``days`` at up to ``rate`` requests/s (everything
already due). With ``live``, phase 3 keeps sending fresh check-ins (scanned now, with their
OUT after the venue's dwell) at ``rate`` until ``duration`` is over or the run is cancelled.
Every request can be written to a JSON-lines file (``record``) and sent again later
(``replay_file``) for repeatable load. The operator's secret mints the tokens.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx

from covidtech.progress import bar
from covidtech.settings import Settings
from simulator.model import Issued, Outbreak, Request, Simulation, own_token, stable_id

Progress = Callable[[str], None]


@dataclass
class Stats:
    sent: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        rate = self.sent / max(1e-9, time.monotonic() - self.started)
        codes = " ".join(f"{k}:{v}" for k, v in sorted(self.by_status.items()))
        return f"{self.sent} requests ({rate:.0f}/s) {codes}"


class Sender:
    """An HTTP client with one token per scope (or space-separated scopes: a person's own
    ``app person:<id>``) and a steady request rate."""

    def __init__(
        self, s: Settings, base_url: str, rate: float, record: TextIO | None = None
    ) -> None:
        self.s = s
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=64)
        )
        self.rate = rate
        self.record = record
        self.tokens: dict[str, str] = {}
        self.stats = Stats()
        self._next = time.monotonic()
        self._sem = asyncio.Semaphore(32)

    def token(self, scope: str) -> str:
        if scope not in self.tokens:
            self.tokens[scope] = self.s.token_signer().issue(
                "simulator", scope.split(), timedelta(days=2)
            )
        return self.tokens[scope]

    async def _pace(self) -> None:
        if self.rate <= 0:
            return
        self._next = max(self._next + 1 / self.rate, time.monotonic() - 1)
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(self, r: Request) -> httpx.Response:
        await self._pace()
        async with self._sem:
            for attempt in range(8):
                resp = await self.client.request(
                    r.method,
                    r.path,
                    json=r.body,
                    headers={"Authorization": f"Bearer {self.token(r.scope)}"},
                )
                if resp.status_code != 503:
                    break
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))  # broker back: retry
        self.stats.sent += 1
        self.stats.by_status[resp.status_code] += 1
        if self.record is not None:
            self.record.write(
                json.dumps({"method": r.method, "path": r.path, "scope": r.scope, "body": r.body})
                + "\n"
            )
        return resp

    async def send_all(
        self,
        requests: Iterable[Request],
        progress: Progress,
        every: float = 2.0,
        total: int | None = None,
    ) -> None:
        """Send ``requests`` at the sender's rate, reporting every ``every`` seconds (with a
        progress bar when ``total`` is known)."""
        pending: set[asyncio.Task[httpx.Response]] = set()
        last = time.monotonic()
        first = self.stats.sent

        def report() -> None:
            done = self.stats.sent - first
            drawn = f"{bar(done, total)} " if total else ""
            progress(f"{drawn}{self.stats.line()}")

        try:
            for r in requests:
                task = asyncio.create_task(self.send(r))
                pending.add(task)
                task.add_done_callback(pending.discard)
                if len(pending) >= 64:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if time.monotonic() - last > every:
                    report()
                    last = time.monotonic()
            if pending:
                await asyncio.wait(pending)
            if total:
                report()
        finally:
            # Interrupted (Ctrl-C): stop the requests in flight before the client closes.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        await self.client.aclose()


async def register(
    sender: Sender, sim: Simulation, progress: Progress
) -> tuple[list[Any], list[Any], dict[str, Issued]]:
    venues, people = sim.venues(), sim.people()
    issued: dict[str, Issued] = {}

    async def one(ref: str, r: Request, id_key: str, qr_key: str) -> None:
        resp = await sender.send(r)
        if resp.status_code != 201:
            raise RuntimeError(f"{r.path} answered {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        issued[ref] = Issued(body[id_key], body[qr_key])

    await asyncio.gather(
        *(one(v.ref, v.registration(i), "venue_id", "venue_qr") for i, v in enumerate(venues))
    )
    progress(f"registered {len(venues)} venues")
    for i in range(0, len(people), 200):
        await asyncio.gather(
            *(one(p.ref, p.registration(), "person_id", "person_qr") for p in people[i : i + 200])
        )
    progress(f"registered {len(people)} people")
    return venues, people, issued


async def simulate(
    s: Settings,
    base_url: str,
    params: Outbreak,
    *,
    seed: int = 1,
    rate: float = 500,
    live: bool = False,
    duration: float | None = None,
    record: Path | None = None,
    progress: Progress = print,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Stats:
    """Run a whole simulation against the ingest API at ``base_url``."""
    out = record.open("w") if record else None
    sender = Sender(s, base_url, rate, out)
    try:
        start = now() - timedelta(days=params.days)
        sim = Simulation(start, params, seed)
        venues, people, issued = await register(sender, sim, progress)
        timeline = [r for r in sim.requests(venues, people, issued) if r.due <= now()]
        progress(f"sending the last {params.days:g} days: {len(timeline)} requests ...")
        await sender.send_all(timeline, progress, total=len(timeline))
        progress(sender.stats.line())
        if live:
            await live_checkins(sender, sim, venues, people, issued, duration, progress, now)
        return sender.stats
    finally:
        await sender.close()
        if out:
            out.close()


async def live_checkins(
    sender: Sender,
    sim: Simulation,
    venues: list[Any],
    people: list[Any],
    issued: dict[str, Issued],
    duration: float | None,
    progress: Progress,
    now: Callable[[], datetime],
) -> None:
    """Fresh check-ins at the sender's rate: an IN now, its OUT after the venue's dwell."""
    rng = random.Random(sim.seed + 1)
    outs: list[tuple[float, Request]] = []
    ends = time.monotonic() + duration if duration else None
    progress("live check-ins: press Ctrl-C to stop")

    def requests() -> Iterable[Request]:
        n = 0
        while ends is None or time.monotonic() < ends:
            while outs and outs[0][0] <= time.monotonic():
                yield outs.pop(0)[1]
            person, venue = rng.choice(people), rng.choice(venues)
            at = now()
            body = {"venue_qr": issued[venue.ref].qr, "person_qr": issued[person.ref].qr}
            yield Request(
                at,
                "POST",
                "/v1/scans",
                own_token(issued[person.ref].id),
                {
                    **body,
                    "scan_id": stable_id("live", sim.seed, n, "IN"),
                    "scanned_at": at.isoformat(),
                    "direction": "IN",
                },
            )
            # Leave after a fraction of the dwell (demo time runs faster than a real visit).
            leave = time.monotonic() + rng.uniform(5, 60)
            outs.append(
                (
                    leave,
                    Request(
                        at,
                        "POST",
                        "/v1/scans",
                        own_token(issued[person.ref].id),
                        {
                            **body,
                            "scan_id": stable_id("live", sim.seed, n, "OUT"),
                            "direction": "OUT",
                            "scanned_at": (
                                at + timedelta(seconds=leave - time.monotonic())
                            ).isoformat(),
                        },
                    ),
                )
            )
            outs.sort(key=lambda o: o[0])
            n += 1

    await sender.send_all(requests(), progress, every=5.0)


async def replay_file(
    s: Settings, base_url: str, path: Path, rate: float, progress: Progress = print
) -> Stats:
    """Send the requests recorded in ``path`` again (same bodies, fresh tokens)."""
    sender = Sender(s, base_url, rate)
    try:

        def requests() -> Iterable[Request]:
            with path.open() as f:
                for line in f:
                    d = json.loads(line)
                    yield Request(datetime.now(UTC), d["method"], d["path"], d["scope"], d["body"])

        with path.open() as f:
            total = sum(1 for _ in f)
        await sender.send_all(requests(), progress, total=total)
        return sender.stats
    finally:
        await sender.close()
