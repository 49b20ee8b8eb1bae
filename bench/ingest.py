"""Ingest API benchmark: single-scan latency at fixed offered loads, and batched scans/s.

Each figure is printed beside the ceiling measured in the same run with the same load
generator: a bare Starlette endpoint that parses the same JSON and answers 202 without doing
anything else. Both servers run as uvicorn subprocesses (one worker, uvloop, httptools) against
the running local Kafka (``covidtech infra up``), with a fresh topic prefix.

The generator is open-loop: request ``i`` is due at ``t0 + i / rate`` and its latency is
measured from that due time, so a server that falls behind shows it in p99 instead of slowing
the generator down (no coordinated omission). It runs in this process (aiohttp client, uvloop),
on the same 2 cores as the servers, Kafka and Cassandra: figures are for this machine only.

    .venv/bin/python -m bench.ingest                 # 250/500/1000 req/s x 10 s, batches 10 s
    .venv/bin/python -m bench.ingest --rates 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bench.common import Call, LoadStep, open_loop, rank_ms, serve, wait_ready
from bench.common import bare_app as common_bare_app
from covidtech import settings as settings_mod
from covidtech.processes import ROOT, free_port

# --------------------------------------------------------------------------- the ceiling


async def _bare_scans(request: Request) -> Response:
    body = json.loads(await request.body())
    status = 200 if isinstance(body, dict) and "scans" in body else 202
    return Response(b'{"status":"accepted"}', status_code=status, media_type="application/json")


def bare_app() -> Starlette:
    """A Starlette app with one endpoint that parses JSON and answers: the ceiling."""
    return common_bare_app("/v1/scans", "POST", _bare_scans)


# --------------------------------------------------------------------------- load


def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str], bodies: Any) -> Call:
    """A call that posts the next of ``bodies`` and checks for a 2xx answer."""

    async def call() -> bool:
        async with session.post(url, data=next(bodies), headers=headers) as r:
            await r.read()
            return r.status < 300

    return call


async def closed_batches(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    bodies: Any,
    batch: int,
    concurrency: int,
    seconds: float,
) -> LoadStep:
    """``concurrency`` clients posting batches back to back for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors, sent
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with session.post(url, data=next(bodies), headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
                else:
                    sent += batch
            latencies.append(time.perf_counter() - started)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return LoadStep(
        float("nan"),
        len(latencies) / elapsed,
        rank_ms(latencies, 0.5),
        rank_ms(latencies, 0.99),
        errors,
        items_per_s=sent / elapsed,
    )


# --------------------------------------------------------------------------- scenario


def _scan_bodies(venue_qr: str, person_qrs: list[str], batch: int = 0) -> Any:
    """An endless supply of fresh scans (new scan_id, current time), as JSON bytes."""
    i = 0
    while True:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        scans = []
        for _ in range(max(batch, 1)):
            scans.append(
                {
                    "scan_id": uuid.uuid4().hex,
                    "venue_qr": venue_qr,
                    "person_qr": person_qrs[i % len(person_qrs)],
                    "scanned_at": now,
                    "direction": "IN" if i % 2 == 0 else "OUT",
                }
            )
            i += 1
        yield json.dumps({"scans": scans} if batch else scans[0]).encode()


async def main(args: argparse.Namespace) -> None:
    from covidtech.settings import with_overrides
    from infra.kafka_topics import create_topics

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    s = with_overrides(settings_mod.load(), topic_prefix=prefix)
    await create_topics(s)
    env = {**os.environ, "COVIDTECH_TOPIC_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    ingest_port, bare_port = free_port(), free_port()
    ingest = serve("producers.app:app_from_env", ingest_port, env)
    bare = serve("bench.ingest:bare_app", bare_port, env)
    signer = s.token_signer()
    auth = {
        "Authorization": "Bearer " + signer.issue("bench", ["app"], timedelta(hours=2)),
        "Content-Type": "application/json",
    }
    admin = {
        "Authorization": "Bearer " + signer.issue("bench", ["venue-admin:01"], timedelta(hours=2)),
        "Content-Type": "application/json",
    }
    connector = aiohttp.TCPConnector(limit=256)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            ingest_base, bare_base = (
                f"http://127.0.0.1:{ingest_port}",
                f"http://127.0.0.1:{bare_port}",
            )
            await wait_ready(session, ingest_base)
            await wait_ready(session, bare_base)
            venue_body = {
                "name": "Bench market",
                "address": "1 Trang Tien",
                "province": "01",
                "district": "001",
                "category": "market",
            }
            async with session.post(
                f"{ingest_base}/v1/venues", json=venue_body, headers=admin
            ) as r:
                venue = await r.json()
            # The venue's gate scans each person's QR (staff scan): one token for every
            # person; a person's own token places that person only.
            gate = signer.issue("bench", [f"venue:{venue['venue_id']}@01"], timedelta(hours=2))
            scans_auth = {**auth, "Authorization": f"Bearer {gate}"}
            person_qrs = []
            for _ in range(args.people):
                async with session.post(
                    f"{ingest_base}/v1/people",
                    json={"province": "01", "district": "001"},
                    headers=auth,
                ) as r:
                    person_qrs.append((await r.json())["person_qr"])

            print(f"ingest API benchmark (prefix {prefix}), {args.seconds:.0f} s per step")
            head = ("target", "offered/s", "achieved/s", "p50 ms", "p99 ms", "errors")
            print("{:>14} {:>10} {:>11} {:>8} {:>8} {:>7}".format(*head))
            for rate in args.rates:
                for name, base in (("bare starlette", bare_base), ("ingest api", ingest_base)):
                    # A short warm-up at the same rate, not measured.
                    bodies = _scan_bodies(venue["venue_qr"], person_qrs)
                    post = _post(session, f"{base}/v1/scans", scans_auth, bodies)
                    await open_loop(post, rate, 1.0)
                    run = await open_loop(post, rate, args.seconds)
                    print(
                        f"{name:>14} {run.offered:>10.0f} {run.achieved:>11.0f} "
                        f"{run.p50_ms:>8.1f} {run.p99_ms:>8.1f} {run.errors:>7}"
                    )
            print(f"\nbatches of {args.batch} scans, {args.concurrency} concurrent clients")
            head = ("target", "scans/s", "batches/s", "p50 ms", "p99 ms", "errors")
            print("{:>14} {:>10} {:>10} {:>8} {:>8} {:>7}".format(*head))
            for name, base in (("bare starlette", bare_base), ("ingest api", ingest_base)):
                bodies = _scan_bodies(venue["venue_qr"], person_qrs, batch=args.batch)
                run = await closed_batches(
                    session,
                    f"{base}/v1/scans",
                    scans_auth,
                    bodies,
                    args.batch,
                    args.concurrency,
                    args.seconds,
                )
                print(
                    f"{name:>14} {run.items_per_s:>10.0f} {run.achieved:>10.1f} "
                    f"{run.p50_ms:>8.1f} {run.p99_ms:>8.1f} {run.errors:>7}"
                )
        print("\nKafka's own ProducerPerformance (acks=all, idempotent, 120-byte records)")
        from bench.kafka_ceiling import producer_performance

        s = settings_mod.load()
        for throughput, records in ((-1, 200_000), *((int(r), int(r * 10)) for r in args.rates)):
            perf = await asyncio.to_thread(
                producer_performance, s, records=records, throughput=throughput
            )
            label = "unthrottled" if throughput < 0 else f"{throughput}/s"
            print(
                f"{label:>14} {perf.records_per_s:>10.0f} records/s "
                f"p50 {perf.p50_ms:>6.0f} ms  p99 {perf.p99_ms:>6.0f} ms"
            )
    finally:
        for proc in (ingest, bare):
            proc.terminate()
        for proc in (ingest, bare):
            proc.wait(timeout=30)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rates", type=float, nargs="+", default=[250, 500, 1000])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--people", type=int, default=50)
    return p.parse_args()


if __name__ == "__main__":
    args = _args()
    uvloop.run(main(args))
