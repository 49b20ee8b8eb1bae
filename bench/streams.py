"""Stream worker throughput, beside the ceilings measured in the same run.

    python -m bench.streams [--people 8000]

1. Produces a deterministic town (check-ins with IN/OUT, repeated INs, cases, a pool, doses)
   into a fresh topic set.
2. Ceiling: a raw aiokafka consumer reading the same source events (no processing).
3. Ceilings: a raw cassandra-driver write loop (``execute_concurrent_with_args``, 100 in
   flight) of visit rows; the same number of rows through the worker's own write path alone
   (``store_writes``: the store's batches, 4 lanes), whatever the worker's CPU.
4. ``--workers`` workers from offset 0 until their group has committed every end offset:
   source events/s from start and in the steady phase (first commit to caught up), CPU per
   source event, the cores each of Kafka and Cassandra used meanwhile and how busy the
   machine was (the ceiling that two workers on 2 cores meet), the largest consumer lag
   seen, the workers' RSS.
5. ``covidtech replay`` of the same log into fresh keyspaces, ``--replay-trials`` times:
   the median events/s and every trial's (the 2-core machine is noisy: the same replay's
   CPU time varies by 20% between runs); ``--via-worker`` also times the worker-based
   replay.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from bench.common import Report, drop_isolated, drop_keyspace, isolated_settings
from covidtech import kafka_clients, processes
from covidtech.processes import child_env, free_port
from covidtech.settings import Settings, with_overrides
from covidtech.topics import SOURCE_TOPICS
from infra.services import rss_mib
from schemas.codec import default_registry
from streams.rebuild import rebuild
from streams.replay import caught_up, group_lag, replay
from tests.scenarios import town


async def produce(s: Settings, people: int) -> int:
    registry = default_registry()
    events = town(42, people=people, venues=max(20, people // 40))
    producer = kafka_clients.producer(
        s,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                s.topic(e.topic), registry.encode(e.name, e.record), key=e.key.encode()
            )
            for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(events)


async def raw_consume(s: Settings, total: int) -> float:
    consumer = kafka_clients.consumer(
        s,
        *(s.topic(t.name) for t in SOURCE_TOPICS),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


def raw_cassandra_writes(s: Settings, rows: int) -> float:
    from datetime import UTC, datetime

    from cassandra.concurrent import execute_concurrent_with_args

    from projections.cassandra import connect

    session: Any = connect(s)
    try:
        stmt = session.prepare(
            f"INSERT INTO {s.keyspace}.visits_by_person (person_id, visit_start, venue_id, "
            "visit_end, venue_province) VALUES (?, ?, ?, ?, ?)"
        )
        now = datetime.now(UTC)
        params = [
            (f"p{i % 5000}", now + timedelta(seconds=i), f"v{i % 97}", now, "79")
            for i in range(rows)
        ]
        started = time.perf_counter()
        execute_concurrent_with_args(session, stmt, params, concurrency=100)
        return rows / (time.perf_counter() - started)
    finally:
        session.cluster.shutdown()


def store_writes(s: Settings, rows: int, chunk: int = 2000, concurrent: int = 4) -> float:
    """Rows/s through the worker's own write path and nothing else: ``CassandraStore.apply``
    (replica-set batches of 10, 256 requests in flight) of ``chunk`` rows at a time, with
    ``concurrent`` chunks in flight as the lanes of one agent are. The ceiling of what a
    worker can write on this node, whatever its CPU."""
    from datetime import UTC, datetime

    from projections.cassandra import CassandraStore
    from projections.model import Upsert

    store = CassandraStore.from_settings(s)
    now = datetime.now(UTC)
    mutations = [
        Upsert(
            "visits_by_person",
            {
                "person_id": f"q{i % 5000}",
                "visit_start": now + timedelta(seconds=i),
                "venue_id": f"v{i % 97}",
                "visit_end": now,
                "venue_province": "79",
            },
        )
        for i in range(rows)
    ]
    chunks = [mutations[i : i + chunk] for i in range(0, rows, chunk)]

    async def write() -> float:
        pending = list(chunks)

        async def lane() -> None:
            while pending:
                await store.apply(pending.pop())

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrent)))
        return rows / (time.perf_counter() - started)

    try:
        return asyncio.run(write())
    finally:
        store.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process so far (``/proc/PID/stat``)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def progress(s: Settings) -> tuple[int, int]:
    """(lag of every partition the agents read, committed offsets of the source topics)."""
    sources = {s.topic(t.name) for t in SOURCE_TOPICS}
    partitions = await group_lag(s)
    return (
        sum(p.lag for p in partitions.values()),
        sum(min(p.committed, p.end) for tp, p in partitions.items() if tp.topic in sources),
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    import os

    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def service_cpu(s: Settings) -> dict[str, float]:
    """CPU seconds so far of each Kafka and Cassandra node of ``s`` (by label)."""
    from infra import services

    out = {}
    for svc in (*services.kafka_nodes(s), *services.cassandra_nodes(s)):
        pid = services.running_pid(svc, s)
        if pid is not None:
            out[svc.label] = cpu_seconds(pid)
    return out


def run_worker(
    s: Settings, total: int, report: Report, workers: int = 1, label: str = "worker"
) -> None:
    procs = [
        processes.spawn(
            ["cli", "worker"],
            s.home / f"bench-worker-{i}.log",
            child_env(with_overrides(s, worker_web_port=free_port())),
        )
        for i in range(workers)
    ]
    started = time.monotonic()
    max_lag, rss = 0, 0.0
    # The steady phase: from the first sample with committed source offsets (the workers
    # have started, recovered and processed a first batch) until caught up.
    steady: tuple[float, int, float, dict[str, float], tuple[float, float]] | None = None
    try:
        while True:
            try:
                current, done = asyncio.run(progress(s))
            except KafkaError:  # a fresh broker has no group coordinator yet
                time.sleep(1.0)
                continue
            if steady is None and done > 0:
                steady = (
                    time.monotonic(),
                    done,
                    sum(cpu_seconds(p.pid) for p in procs),
                    service_cpu(s),
                    machine_busy(),
                )
            max_lag = max(max_lag, current)
            rss = max(rss, sum(rss_mib(p.pid) or 0.0 for p in procs))
            if current == 0 and asyncio.run(caught_up(s)):
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited")
            time.sleep(0.5)
        ended = time.monotonic()
        elapsed = ended - started
        cpu = sum(cpu_seconds(p.pid) for p in procs)
        services_after, busy_after = service_cpu(s), machine_busy()
    finally:
        processes.stop(*procs, grace=60)
    report.add(
        f"{label}: source events/s, {workers} worker(s), start to caught up",
        total / elapsed,
        "events/s",
        f"{total} events in {elapsed:.1f}s incl. ~5s start",
    )
    report.add(
        f"{label}: CPU per source event (user+system, all workers, start included)",
        cpu / total * 1e6,
        "us",
        f"{cpu:.1f} s of CPU",
    )
    if steady is not None and ended > steady[0]:
        t0, done0, cpu0, services0, busy0 = steady
        span = ended - t0
        events = total - done0
        report.add(
            f"{label}: source events/s, steady (first commit to caught up)",
            events / span,
            "events/s",
            f"{events} events in {span:.1f}s",
        )
        report.add(
            f"{label}: CPU per source event, steady",
            (cpu - cpu0) / events * 1e6 if events else 0.0,
            "us",
            f"workers {(cpu - cpu0) / span:.2f} cores",
        )
        others = ", ".join(
            f"{name} {(services_after.get(name, c) - c) / span:.2f}"
            for name, c in sorted(services0.items())
        )
        busy, capacity = busy_after[0] - busy0[0], busy_after[1] - busy0[1]
        report.add(
            f"{label}: ceiling: machine CPU busy while steady (all cores)",
            100 * busy / capacity if capacity else 0.0,
            "%",
            f"{busy / span:.2f} of {capacity / span:.0f} cores; cores used by {others}",
        )
    report.add(f"{label}: largest consumer lag sampled (source+derived)", max_lag, "messages")
    report.add(f"{label}: peak RSS (all workers)", rss, "MiB")


def compare_periodic(s: Settings, total: int, report: Report, workers: int) -> None:
    """The same workers and log against a node of its own whose commit log is periodic."""
    import shutil
    import tempfile

    from infra import services
    from infra.cassandra_schema import migrate
    from infra.kafka_topics import delete_topics
    from infra.lifecycle import cassandra_answers, cassandra_session

    home = Path(tempfile.mkdtemp(prefix="covidtech-bench-periodic-"))
    p = with_overrides(
        s,
        home=home,
        cassandra_port=free_port(),
        cassandra_storage_port=free_port(),
        app_id=f"{s.app_id}-periodic",
    )
    pid = services.start_cassandra(p, log=lambda _m: None, commitlog=services.PERIODIC_COMMITLOG)
    try:
        services.wait_until(
            lambda: cassandra_answers(p),
            240,
            "Cassandra (periodic)",
            lambda: services._alive(pid),
            services.cassandra(p).log_file(p),
        )
        session: Any = cassandra_session(p)
        try:
            migrate(session, p.keyspace, p.replication_factor, lambda _m: None)
        finally:
            session.cluster.shutdown()
        run_worker(p, total, report, workers, label="worker on a periodic commit log")
    finally:
        services.stop(services.cassandra(p), p)
        shutil.rmtree(home, ignore_errors=True)
        asyncio.run(delete_topics(s, [f"{p.app_id}-"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument(
        "--replay-trials", type=int, default=3, help="replays timed (the median is reported)"
    )
    parser.add_argument(
        "--via-worker", action="store_true", help="also time `covidtech replay --via-worker`"
    )
    parser.add_argument(
        "--compare-commitlog",
        action="store_true",
        help="also run the worker(s) over the same log against a Cassandra node started with "
        "the old `commitlog_sync: periodic` (not durable), for the same-run comparison",
    )
    args = parser.parse_args()
    report = Report("streams")
    s = isolated_settings("s")
    try:
        print(f"producing a town of {args.people} people ...", flush=True)
        total = asyncio.run(produce(s, args.people))
        report.add("source events produced", total, "events")
        report.add(
            "ceiling: raw aiokafka consume of the same events",
            asyncio.run(raw_consume(s, total)),
            "events/s",
        )
        report.add(
            "ceiling: raw cassandra-driver writes (concurrency 100)",
            raw_cassandra_writes(s, 50_000),
            "rows/s",
        )
        report.add(
            "ceiling: the worker's write path alone (store batches of 10, 4 lanes)",
            store_writes(s, 50_000),
            "rows/s",
        )
        run_worker(s, total, report, args.workers)
        if args.compare_commitlog:
            compare_periodic(s, total, report, args.workers)
        if args.no_replay:
            return
        replays = []
        for trial in range(args.replay_trials):
            folded = with_overrides(s, keyspace=f"{s.keyspace}f{trial}")
            try:
                replays.append(rebuild(s, folded.keyspace, log=lambda _m: None))
            finally:
                drop_keyspace(folded)
        f = sorted(replays, key=lambda r: r.seconds)[len(replays) // 2]
        report.add(
            f"replay (staged fold, final rows): source events/s, median of {len(replays)}",
            f.events_per_second,
            "events/s",
            f"{f.source_events} events, {f.rows} rows in {f.seconds:.2f}s (last stage folded "
            f"after {f.fold_seconds:.2f}s); all trials: "
            + ", ".join(f"{r.events_per_second:,.0f}" for r in replays),
        )
        if args.via_worker:
            rebuilt = with_overrides(s, keyspace=f"{s.keyspace}r")
            try:
                r = replay(s, rebuilt.keyspace, log=lambda _m: None)
                report.add(
                    "replay --via-worker: source events/s into a fresh keyspace",
                    r.events_per_second,
                    "events/s",
                    f"{r.source_events} events in {r.seconds:.1f}s",
                )
            finally:
                drop_keyspace(rebuilt)
    finally:
        drop_isolated(s)
    print(f"saved {report.save()}")


if __name__ == "__main__":
    main()
