"""Shared helpers of the benchmarks: isolated environments, percentiles, reporting.

Benchmarks print figures beside the ceilings measured in the same run on the same machine;
they never assert timings (tests assert behaviour, benchmarks measure it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from covidtech import settings as settings_mod
from covidtech.processes import ROOT
from covidtech.settings import Settings, with_overrides

RESULTS = Path(__file__).resolve().parent / "results"


async def wait_ready(session: aiohttp.ClientSession, base: str, within: float = 90) -> None:
    """Return once ``base``/readyz answers 200, else ``RuntimeError`` after ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{base} not ready after {within}s")


def bare_app(
    path: str, method: str, endpoint: Callable[[Request], Awaitable[Response]]
) -> Starlette:
    """The ceiling of an API benchmark: Starlette with one route that does the least the
    real one must (parse, answer), and ``/readyz``."""
    return Starlette(
        routes=[
            Route(path, endpoint, methods=[method]),
            Route("/readyz", lambda r: Response(b"{}"), methods=["GET"]),
        ]
    )


def serve(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """An ASGI app factory under uvicorn (uvloop, httptools, no access log) in a subprocess."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=ROOT,
        env=env,
    )


def isolated_settings(tag: str, **overrides: Any) -> Settings:
    """Settings with a fresh topic prefix, keyspace and app id; topics and tables created."""
    from infra.cassandra_schema import migrate
    from infra.kafka_topics import create_topics
    from infra.lifecycle import cassandra_session

    name = f"b{tag}{uuid.uuid4().hex[:8]}"
    s = with_overrides(
        settings_mod.load(),
        topic_prefix=f"{name}.",
        keyspace=name,
        app_id=f"app-{name}",
        **overrides,
    )
    asyncio.run(create_topics(s))
    session: Any = cassandra_session(s)
    try:
        migrate(session, s.keyspace, s.replication_factor, log=lambda _m: None)
    finally:
        session.cluster.shutdown()
    return s


def drop_keyspace(s: Settings) -> None:
    from infra.lifecycle import cassandra_session

    session: Any = cassandra_session(s)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=120)
    finally:
        session.cluster.shutdown()


def drop_isolated(s: Settings) -> None:
    """Drop what :func:`isolated_settings` created: the keyspace, the topics and the worker
    groups' internal topics (left behind, they pile up and slow every broker start)."""
    from infra.kafka_topics import delete_topics

    drop_keyspace(s)
    asyncio.run(delete_topics(s, [s.topic_prefix, f"{s.app_id}-", f"{s.app_id}-replay-"]))


def percentile(values: Iterable[float], p: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


@dataclass
class LoadStep:
    """What one step of load measured: calls offered and achieved per second, latency
    percentiles, errors, and for batches the items per second."""

    offered: float
    achieved: float
    p50_ms: float
    p99_ms: float
    errors: int
    items_per_s: float = 0.0


def rank_ms(latencies: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of latencies in seconds, in ms; NaN if none."""
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


Call = Callable[[], Awaitable[bool]]
"""One request of a load step; False (or an aiohttp or OS error) counts as an error."""


async def open_loop(call: Call, rate: float, seconds: float) -> LoadStep:
    """Offer ``rate`` calls/s for ``seconds``; latency from each call's due time."""
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)

    async def one(due: float) -> None:
        nonlocal errors
        try:
            if not await call():
                errors += 1
        except (aiohttp.ClientError, OSError):
            errors += 1
        latencies.append(time.perf_counter() - due)

    tasks = []
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return LoadStep(
        rate, total / elapsed, rank_ms(latencies, 0.5), rank_ms(latencies, 0.99), errors
    )


@dataclass
class Report:
    """Rows of (measure, value, unit, ceiling) printed as a table and saved as JSON."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, measure: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append({"measure": measure, "value": round(value, 2), "unit": unit, "note": note})
        print(f"  {measure:<58} {value:>12,.1f} {unit:<10} {note}", flush=True)

    def save(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(
            json.dumps(
                {
                    "benchmark": self.name,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                    "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                    "rows": self.rows,
                },
                indent=2,
            )
        )
        return path


def mean(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.fmean(data) if data else float("nan")
