"""Read API benchmark: result lookups and coverage queries at fixed offered loads, during ingest.

Each figure is printed beside two ceilings measured in the same run with the same load
generator: a bare Starlette endpoint answering a fixed JSON body on the lookup route, and the
lookup's own Cassandra read issued directly from the load generator's process (the projection
store, no HTTP). Servers
run as uvicorn subprocesses (one worker, uvloop, httptools) against the running local Kafka and
Cassandra (``covidtech infra up``), in a fresh keyspace and topic prefix:

- read API "A", aggregate cache off: lookups (one partition read each) and one province's
  coverage on a random day (5 partition reads each, every request);
- read API "B", production defaults: national coverage today, as the dashboard asks it (315
  partition reads when computed, then served from the 15 s aggregate cache);
- the ingest API, fed scans at ``--ingest-rate`` for the whole run ("while ingest runs").

The generator is open-loop: request ``i`` is due at ``t0 + i / rate`` and its latency counts
from that due time, so a server that falls behind shows it in p99 (no coordinated omission).
It runs in this process, on the same 2 cores as the servers, Kafka and Cassandra: figures are
for this machine only. Results go to ``bench/results/read_api.json``.

    .venv/bin/python -m bench.read_api                     # 500 req/s x 10 s per target
    .venv/bin/python -m bench.read_api --rates 250 500 --seconds 5 --ingest-rate 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bench.common import Call, LoadStep, open_loop
from bench.common import bare_app as common_bare_app

LOOKUP_BODY = (
    b'{"state":"NEGATIVE","test_type":"PCR","collected_at":"2021-08-01T03:00:00.000Z",'
    b'"resulted_at":"2021-08-01T15:00:00.000Z"}'
)


# --------------------------------------------------------------------------- the ceiling


async def _bare_lookup(request: Request) -> Response:
    return Response(
        LOOKUP_BODY, media_type="application/json", headers={"Cache-Control": "no-store"}
    )


def bare_app() -> Starlette:
    """One endpoint on the lookup route that answers a fixed body: the ceiling."""
    return common_bare_app("/v1/results/{code}", "GET", _bare_lookup)


# --------------------------------------------------------------------------- load


def http(
    session: aiohttp.ClientSession,
    request: Callable[[], tuple[str, str, dict[str, str], bytes | None]],
    ok: int = 200,
) -> Call:
    """A call that sends one HTTP request and checks its status."""

    async def call() -> bool:
        method, url, headers, body = request()
        async with session.request(method, url, headers=headers, data=body) as r:
            await r.read()
            return r.status == ok

    return call


# --------------------------------------------------------------------------- data


async def populate(settings: Any, codes: int, days: int) -> tuple[list[str], list[date]]:
    """Lookup codes with results, and coverage rows of every province x band x day."""
    from domain.coverage import AGE_BANDS
    from domain.reference import PROVINCES
    from domain.results import lookup_code_hash, new_lookup_code
    from projections.access import LOCAL_TZ
    from projections.cassandra import CassandraStore
    from projections.model import Upsert

    store = CassandraStore.from_settings(settings)
    try:
        now = datetime.now(UTC)
        rng = random.Random(7)
        lookup = [new_lookup_code(rng) for _ in range(codes)]
        rows: list[Upsert] = [
            Upsert(
                "results_by_lookup",
                {
                    "lookup_code_sha256": lookup_code_hash(c),
                    "sample_id": f"s{i}",
                    "person_id": f"p{i}",
                    "state": "NEGATIVE",
                    "test_type": "PCR",
                    "collected_at": now - timedelta(hours=20),
                    "resulted_at": now - timedelta(hours=8),
                },
            )
            for i, c in enumerate(lookup)
        ]
        today = now.astimezone(LOCAL_TZ).date()
        dates = [today - timedelta(days=d) for d in range(days)]
        for province in PROVINCES:
            for band in AGE_BANDS:
                for n, day in enumerate(reversed(dates), start=1):
                    rows.append(
                        Upsert(
                            "coverage_daily",
                            {
                                "province": province,
                                "age_band": band,
                                "day": day,
                                "first_doses": 10,
                                "completions": 5,
                                "boosters": 1,
                                "doses": 16,
                                "people_vaccinated": 10 * n,
                                "people_fully_vaccinated": 5 * n,
                                "total_boosters": n,
                                "total_doses": 16 * n,
                            },
                        )
                    )
        for i in range(0, len(rows), 2000):
            await store.apply(rows[i : i + 2000])
        return lookup, dates
    finally:
        store.close()


@contextlib.asynccontextmanager
async def ingest_load(
    session: aiohttp.ClientSession, base: str, settings: Any, rate: float
) -> AsyncIterator[None]:
    """Scans posted to the ingest API at ``rate``/s in the background, until the block ends."""
    if rate <= 0:
        yield
        return

    signer = settings.token_signer()
    app = {"Authorization": "Bearer " + signer.issue("bench", ["app"], timedelta(hours=2))}
    admin = {
        "Authorization": "Bearer " + signer.issue("bench", ["venue-admin:79"], timedelta(hours=2))
    }
    async with session.post(
        f"{base}/v1/venues",
        headers=admin,
        json={
            "name": "Bench market",
            "address": "1 Le Loi",
            "province": "79",
            "district": "760",
            "category": "market",
        },
    ) as r:
        venue = await r.json()
    venue_qr = venue["venue_qr"]
    # The venue's gate scans each person's QR (a person's own token places that person only).
    gate = signer.issue("bench", [f"venue:{venue['venue_id']}@79"], timedelta(hours=2))
    people = []
    for _ in range(50):
        async with session.post(
            f"{base}/v1/people", headers=app, json={"province": "79", "district": "760"}
        ) as r:
            people.append((await r.json())["person_qr"])
    counter = iter(range(10**9))

    def scan() -> tuple[str, str, dict[str, str], bytes | None]:
        i = next(counter)
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = (
            f'{{"scan_id":"{uuid.uuid4().hex}","venue_qr":"{venue_qr}",'
            f'"person_qr":"{people[i % len(people)]}","scanned_at":"{at}",'
            f'"direction":"{"IN" if i % 2 == 0 else "OUT"}"}}'
        ).encode()
        headers = {"Authorization": f"Bearer {gate}", "Content-Type": "application/json"}
        return "POST", f"{base}/v1/scans", headers, body

    stop = asyncio.Event()
    results: list[LoadStep] = []

    async def run() -> None:
        while not stop.is_set():
            results.append(await open_loop(http(session, scan, ok=202), rate, 2.0))

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task
        errors = sum(s.errors for s in results)
        done = sum(s.achieved * 2.0 for s in results)
        print(f"  (ingest ran at {rate:.0f} scans/s offered: {done:.0f} scans, {errors} errors)")


# --------------------------------------------------------------------------- scenario


async def main(args: argparse.Namespace, settings: Any) -> None:
    from bench.common import Report, serve, wait_ready
    from covidtech.processes import ROOT, free_port
    from domain.reference import PROVINCES
    from domain.results import lookup_code_hash
    from projections import queries
    from projections.cassandra import CassandraStore

    report = Report("read_api")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"populating {settings.keyspace} ...", flush=True)
        codes, dates = await populate(settings, args.codes, args.days)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "COVIDTECH_TOPIC_PREFIX": settings.topic_prefix,
            "COVIDTECH_KEYSPACE": settings.keyspace,
            "COVIDTECH_READ_LOOKUP_RATE_PER_SECOND": "1000000",
            "COVIDTECH_READ_LOOKUP_BURST": "1000000",
        }
        ports = {name: free_port() for name in ("bare", "a", "b", "ingest")}
        procs.append(serve("bench.read_api:bare_app", ports["bare"], env))
        procs.append(
            serve(
                "api.app:app_from_env",
                ports["a"],
                {**env, "COVIDTECH_READ_AGGREGATE_CACHE_SECONDS": "0"},
            )
        )
        procs.append(serve("api.app:app_from_env", ports["b"], env))
        if args.ingest_rate > 0:
            procs.append(serve("producers.app:app_from_env", ports["ingest"], env))
        base = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        moh = {
            "Authorization": "Bearer "
            + settings.token_signer().issue("bench", ["moh"], timedelta(hours=2))
        }
        provinces = sorted(PROVINCES)
        rng = random.Random(11)

        def lookup(target: str) -> Callable[[], tuple[str, str, dict[str, str], bytes | None]]:
            return lambda: ("GET", f"{base[target]}/v1/results/{rng.choice(codes)}", {}, None)

        def province_coverage() -> tuple[str, str, dict[str, str], bytes | None]:
            area, day = rng.choice(provinces), rng.choice(dates).isoformat()
            return "GET", f"{base['a']}/v1/coverage?area={area}&date={day}", moh, None

        def national_coverage() -> tuple[str, str, dict[str, str], bytes | None]:
            return "GET", f"{base['b']}/v1/coverage?area=VN", moh, None  # today: the dashboard

        store = CassandraStore.from_settings(settings)
        hashes = [lookup_code_hash(c) for c in codes]

        async def raw_read() -> bool:
            return await queries.result_by_lookup(store, rng.choice(hashes)) is not None

        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector) as session:
            targets: list[tuple[str, Call]] = [
                ("bare starlette (ceiling)", http(session, lookup("bare"))),
                ("cassandra read, same query (ceiling)", raw_read),
                ("result lookup", http(session, lookup("a"))),
                ("coverage, one province, no cache", http(session, province_coverage)),
                ("coverage, national (today), 15 s cache", http(session, national_coverage)),
            ]
            for name in ("bare", "a", "b") + (("ingest",) if args.ingest_rate > 0 else ()):
                await wait_ready(session, base[name])
            async with ingest_load(session, base["ingest"], settings, args.ingest_rate):
                print(
                    f"read API benchmark, {args.seconds:.0f} s per step, "
                    f"ingest {args.ingest_rate:.0f} scans/s"
                )
                print(
                    f"{'target':>40} {'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} "
                    f"{'p99 ms':>8} {'errors':>7}"
                )
                for rate in args.rates:
                    for name, call in targets:
                        await open_loop(call, rate, 1.0)  # warm-up, not measured
                        step = await open_loop(call, rate, args.seconds)
                        print(
                            f"{name:>40} {step.offered:>10.0f} {step.achieved:>11.0f} "
                            f"{step.p50_ms:>8.1f} {step.p99_ms:>8.1f} {step.errors:>7}",
                            flush=True,
                        )
                        report.rows.append(
                            {
                                "target": name,
                                "offered": step.offered,
                                "achieved": step.achieved,
                                "p50_ms": round(step.p50_ms, 2),
                                "p99_ms": round(step.p99_ms, 2),
                                "errors": step.errors,
                                "ingest_rate": args.ingest_rate,
                            }
                        )
        store.close()
        print(f"saved {report.save()}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rates", type=float, nargs="+", default=[500])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--ingest-rate", type=float, default=300.0)
    p.add_argument("--codes", type=int, default=20_000)
    p.add_argument("--days", type=int, default=30)
    return p.parse_args()


if __name__ == "__main__":
    from bench.common import drop_isolated, isolated_settings

    arguments = _args()
    isolated = isolated_settings("read")  # topics and tables of its own (before the loop runs)
    try:
        uvloop.run(main(arguments, isolated))
    finally:
        drop_isolated(isolated)
