"""End to end: HTTP ingest -> Kafka -> worker -> Cassandra, beside the ceilings of this run.

    python -m bench.e2e [--scans 40000] [--trials 20] [--workers 1]

1. Sustained scans/s: offline-scanner batches of 500 scans posted to the ingest API (4
   concurrent clients), timed from the first request until the worker group has committed
   every partition (all rows written).
2. Alert latency: while single scans run in the background at ``--background`` req/s, each
   trial has a fresh case and contact share a venue visit, then posts the case's POSITIVE
   result; latency runs from the 202 of the result to the contact's alert row being readable
   in Cassandra (the row the read API serves), polled every 20 ms; and to the contact's
   exposure notice arriving on their app's open stream (``GET /v1/me/notices/stream`` of the
   read API, with the person's own token): what the exposed person sees.
Ceilings printed beside: Kafka's ProducerPerformance, a raw cassandra-driver write loop, and
how busy the machine's cores were during the sustained run (with the cores each process used).
On a cluster (``COVIDTECH_NODES=3`` set for ``covidtech infra up`` and for this command) the
same run measures the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.common import (
    Report,
    drop_isolated,
    isolated_settings,
    percentile,
)
from bench.kafka_ceiling import producer_performance
from bench.streams import cpu_seconds, machine_busy, raw_cassandra_writes, service_cpu
from covidtech import processes
from covidtech.processes import child_env, free_port
from covidtech.settings import Settings, with_overrides
from projections.cassandra import CassandraStore
from projections.model import Query
from streams.replay import caught_up


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


class Api:
    def __init__(self, s: Settings, base: str) -> None:
        self.s = s
        self.client = httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=32)
        )
        self.tokens: dict[str, dict[str, str]] = {}

    def auth(self, scope: str) -> dict[str, str]:
        if scope not in self.tokens:
            token = self.s.token_signer().issue("bench", [scope], timedelta(hours=2))
            self.tokens[scope] = {"Authorization": f"Bearer {token}"}
        return self.tokens[scope]

    async def post(self, scope: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(path, json=body, headers=self.auth(scope))
        if r.status_code >= 300:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
        return dict(r.json())

    async def person(self) -> str:
        return (await self.register())["person_qr"]

    async def register(self) -> dict[str, str]:
        """A person registered from their app: id, QR and the person's own token."""
        body = await self.post("app", "/v1/people", {"province": "79", "district": "760"})
        return {k: str(body[k]) for k in ("person_id", "person_qr", "token")}

    async def post_as(self, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with a token of the caller's (a person's own)."""
        r = await self.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        if r.status_code >= 300:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
        return dict(r.json())

    async def venue(self, dwell: int = 60) -> str:
        body = await self.post(
            "venue-admin:79",
            "/v1/venues",
            {
                "name": "Bench venue",
                "address": "1 Lê Lợi",
                "province": "79",
                "district": "760",
                "category": "market",
                "default_dwell_minutes": dwell,
            },
        )
        return str(body["venue_qr"])


def scan(venue: str, person: str, at: datetime, direction: str) -> dict[str, Any]:
    return {
        "scan_id": uuid.uuid4().hex,
        "venue_qr": venue,
        "person_qr": person,
        "scanned_at": iso(at),
        "direction": direction,
    }


async def sustained(
    api: Api, s: Settings, scans: int, report: Report, procs: list[subprocess.Popen[bytes]]
) -> None:
    venues = [await api.venue() for _ in range(50)]
    people = list(await asyncio.gather(*(api.person() for _ in range(1000))))
    now = datetime.now(UTC)
    bodies = []
    for i in range(scans // 2):
        v, p = venues[i % len(venues)], people[(i * 7) % len(people)]
        start = now - timedelta(hours=40) + timedelta(seconds=i * 3)
        bodies += [scan(v, p, start, "IN"), scan(v, p, start + timedelta(minutes=25), "OUT")]
    batches = [bodies[i : i + 500] for i in range(0, len(bodies), 500)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def client() -> None:
        while not queue.empty():
            await api.post("venue-admin:79", "/v1/scans", {"scans": queue.get_nowait()})

    started = time.monotonic()
    cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
    services0, busy0 = service_cpu(s), machine_busy()
    await asyncio.gather(*(client() for _ in range(4)))
    accepted = time.monotonic() - started
    while not await caught_up(s):  # noqa: ASYNC110 - polling Kafka, not a local event
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    cores = {p.pid: (cpu_seconds(p.pid) - cpu0[p.pid]) / elapsed for p in procs}
    services1, busy1 = service_cpu(s), machine_busy()
    workers = len(procs) - 1
    report.add(
        "ingest only: scans/s acknowledged (batches of 500)", len(bodies) / accepted, "scans/s"
    )
    report.add(
        f"end to end: scans/s, HTTP to rows written ({workers} worker(s))",
        len(bodies) / elapsed,
        "scans/s",
        f"{len(bodies)} scans in {elapsed:.1f}s",
    )
    used = ", ".join(
        [f"ingest {cores[procs[0].pid]:.2f}"]
        + [f"worker {sum(cores[p.pid] for p in procs[1:]):.2f}"]
        + [f"{name} {(services1[name] - c) / elapsed:.2f}" for name, c in sorted(services0.items())]
    )
    report.add(
        "ceiling: machine CPU busy during it (all cores)",
        100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]),
        "%",
        f"cores used by {used}",
    )


async def alert_latency(
    api: Api, s: Settings, read_url: str, trials: int, background: float, report: Report
) -> None:
    store = CassandraStore.from_settings(s)
    venues = [await api.venue(dwell=30) for _ in range(trials)]
    load_venue, load_people = await api.venue(), [await api.person() for _ in range(50)]
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            at = datetime.now(UTC)
            with contextlib.suppress(RuntimeError, httpx.HTTPError):
                await api.post(
                    "venue-admin:79",  # the venue's staff scan people's QR
                    "/v1/scans",
                    scan(load_venue, load_people[n % 50], at, "IN" if n % 2 else "OUT"),
                )
            n += 1
            await asyncio.sleep(1 / background)

    loader = asyncio.create_task(load())
    latencies, notices = [], []
    try:
        for i in range(trials):
            case, contact = await api.register(), await api.register()
            now = datetime.now(UTC)
            for who, offset in ((case, 0), (contact, 5)):
                for direction, at in (
                    ("IN", now - timedelta(minutes=90 - offset)),
                    ("OUT", now - timedelta(minutes=40)),
                ):
                    body = scan(venues[i], who["person_qr"], at, direction)
                    await api.post_as(who["token"], "/v1/scans", body)
            tube = f"BENCH-{uuid.uuid4().hex[:12]}"
            sample = await api.post(
                "site:bench@79",
                "/v1/samples",
                {
                    "sample_id": tube,
                    "province": "79",
                    "test_type": "PCR",
                    "collected_at": iso(now - timedelta(minutes=30)),
                    "members": [{"person_qr": case["person_qr"]}],
                },
            )
            contact_id = contact["person_id"]
            del sample
            listening = asyncio.Event()
            noticed = asyncio.create_task(first_notice(read_url, contact["token"], listening))
            await asyncio.wait_for(listening.wait(), 30)
            await api.post("lab:bench@79", f"/v1/samples/{tube}/result", {"result": "POSITIVE"})
            t0 = time.monotonic()
            while not await store.select(
                Query("alerts_by_person", {"contact_person_id": contact_id})
            ):
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("no alert after 60 s")
                await asyncio.sleep(0.02)
            latencies.append(time.monotonic() - t0)
            notices.append(await asyncio.wait_for(noticed, 60) - t0)
    finally:
        stop.set()
        await loader
        store.close()
    report.add(
        f"alert latency p50 (result 202 -> alert row), {background:.0f} scans/s load",
        percentile(latencies, 50) * 1000,
        "ms",
        f"{trials} trials",
    )
    report.add("alert latency p99", percentile(latencies, 99) * 1000, "ms")
    report.add(
        "notice latency p50 (result 202 -> notice on the contact's open stream)",
        percentile(notices, 50) * 1000,
        "ms",
        f"{trials} trials",
    )
    report.add("notice latency p99", percentile(notices, 99) * 1000, "ms")


async def first_notice(read_url: str, token: str, listening: asyncio.Event) -> float:
    """Open the person's notice stream, set ``listening`` once the read API said it is
    connected, and return the monotonic time at which the first notice arrived."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=read_url, timeout=httpx.Timeout(5, read=90)) as client,
        client.stream("GET", "/v1/me/notices/stream", headers=headers) as r,
    ):
        if r.status_code != 200:
            raise RuntimeError(f"notice stream: {r.status_code} {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if line.startswith(": connected"):
                listening.set()
            elif line == "event: notice":
                return time.monotonic()
    raise RuntimeError("the notice stream ended without a notice")


async def run(
    args: argparse.Namespace,
    s: Settings,
    report: Report,
    port: int,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    api = Api(s, f"http://127.0.0.1:{port}")
    try:
        await ready(api.client)
        await sustained(api, s, args.scans, report, procs)
        # The read API starts after the sustained run, which it would not serve.
        read_port = free_port()
        with processes.child(
            ["cli", "read-api", "--port", str(read_port)],
            s.home / "bench-e2e-read.log",
            child_env(with_overrides(s, read_port=read_port)),
        ):
            read_url = f"http://127.0.0.1:{read_port}"
            async with httpx.AsyncClient(base_url=read_url) as read_client:
                await ready(read_client)
            await alert_latency(api, s, read_url, args.trials, args.background, report)
    finally:
        await api.client.aclose()


async def ready(client: httpx.AsyncClient, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{client.base_url} not ready after {within:.0f}s")


def start_processes(s: Settings, port: int, workers: int) -> list[subprocess.Popen[bytes]]:
    """The ingest API, then ``workers`` worker processes of one group."""
    group = [
        processes.spawn(
            ["cli", "worker"], None, child_env(with_overrides(s, worker_web_port=free_port()))
        )
        for _ in range(workers)
    ]
    ingest = processes.spawn(
        ["cli", "ingest-api", "--port", str(port)],
        s.home / "bench-e2e-ingest.log",
        child_env(with_overrides(s, ingest_port=port)),
    )
    return [ingest, *group]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=40_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--background", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the group")
    args = parser.parse_args()
    report = Report("e2e")
    s = isolated_settings("e")
    try:
        perf = producer_performance(s, records=100_000, throughput=-1)
        report.add("ceiling: Kafka ProducerPerformance (acks=all)", perf.records_per_s, "records/s")
        report.add(
            "ceiling: raw cassandra-driver writes (concurrency 100)",
            raw_cassandra_writes(s, 30_000),
            "rows/s",
        )
        port = free_port()
        procs = start_processes(s, port, args.workers)
        try:
            asyncio.run(run(args, s, report, port, procs))
        finally:
            processes.stop(*procs, grace=60)
    finally:
        drop_isolated(s)
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
