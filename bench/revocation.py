"""Revocation latency: how long a revoked grant keeps working, on requests and open streams.

Each round, an MOH token issues a ``tracer:79`` grant (``POST /v1/grants``), the grantee opens
``GET /v1/alerts/stream`` and starts polling ``GET /v1/alerts``; then MOH revokes the grant
(``DELETE /v1/grants/{id}``, acknowledged by Kafka). Measured from the DELETE's answer:

- **requests**: until ``GET /v1/alerts`` with the grant's token answers 401 (polled every
  5 ms), on the instance that took the DELETE (it applies its own revocation at once) and on
  a second instance, which learns it from the ``grants`` topic like every other process;
- **streams**: until the open stream sends ``event: end`` with ``{"reason": "token-revoked"}``
  (a stream re-checks its token every ``stream_recheck_seconds``, 1 s by default).

Ceilings from the same run: the Kafka round trip a revocation cannot beat (a record produced
with acks=all on a scratch topic until a consumer following it receives it), and the stream's
designed bound (the recheck interval). The read API runs in this process against the local
Kafka and Cassandra (``covidtech infra up``), in a topic prefix and keyspace of its own.

    .venv/bin/python -m bench.revocation                 # 20 rounds
    .venv/bin/python -m bench.revocation --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from api.app import create_app
from api.config import ReadApiConfig
from api.testing import EventStreamClient, bearer, client, running
from bench.common import drop_isolated, isolated_settings, percentile
from covidtech import kafka_clients
from covidtech.settings import Settings
from projections.cassandra import CassandraStore

RESULTS = Path(__file__).resolve().parent / "results" / "revocation.json"


async def kafka_round_trip(s: Settings, rounds: int) -> list[float]:
    """Milliseconds from a produce call (acks=all) until a following consumer has the record."""
    topic = s.topic("grants")  # the revocations' own topic: same partitions, same broker path
    consumer = kafka_clients.consumer(s)
    producer = kafka_clients.producer(s, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        partitions = await kafka_clients.partitions_of(consumer, topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_end()
        out = []
        for _ in range(rounds):
            marker = uuid.uuid4().bytes
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, b"bench-probe-not-an-event", key=marker)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if any(r.key == marker for records in batch.values() for r in records):
                    break
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await producer.stop()
        await consumer.stop()


async def one_round(app: Any, other: Any, moh: dict[str, str]) -> tuple[float, float, float]:
    expires = (datetime.now(UTC) + timedelta(minutes=50)).isoformat().replace("+00:00", "Z")
    async with client(app) as http, client(other) as other_http:
        r = await http.post(
            "/v1/grants",
            json={
                "agency": "bench",
                "scopes": ["tracer:79"],
                "purpose": "bench",
                "expires_at": expires,
            },
            headers=moh,
        )
        assert r.status_code == 201, r.text
        grant = r.json()
        granted = {"Authorization": f"Bearer {grant['token']}"}
        stream = EventStreamClient(app, "/v1/alerts/stream", granted)
        await stream.open()
        await stream.connected()
        assert (await http.get("/v1/alerts", headers=granted)).status_code == 200

        async def refused(on: Any) -> float:
            while True:
                answer = await on.get("/v1/alerts?limit=1", headers=granted)
                if answer.status_code == 401:
                    return time.perf_counter()
                await asyncio.sleep(0.005)

        async def ended() -> float:
            end = await stream.next_event(within=10)
            assert end is not None and end.event == "end", end
            assert json.loads(end.data) == {"reason": "token-revoked"}
            return time.perf_counter()

        revoked = await http.delete(f"/v1/grants/{grant['grant_id']}", headers=moh)
        t0 = time.perf_counter()
        assert revoked.status_code == 200, revoked.text
        same_at, other_at, stream_at = await asyncio.gather(
            refused(http), refused(other_http), ended()
        )
        await stream.finished(within=5)
        return (same_at - t0) * 1000, (other_at - t0) * 1000, (stream_at - t0) * 1000


async def main(args: argparse.Namespace, s: Settings) -> dict[str, Any]:
    config = ReadApiConfig()
    store = CassandraStore.from_settings(s)
    try:
        app = create_app(s, config=config, store=store)
        other = create_app(s, config=config, store=store)
        moh = bearer(s, ["moh"], subject="bench MOH")
        same: list[float] = []
        elsewhere: list[float] = []
        streams: list[float] = []
        async with running(app), running(other):
            for _ in range(args.rounds):
                same_ms, other_ms, stream_ms = await one_round(app, other, moh)
                same.append(same_ms)
                elsewhere.append(other_ms)
                streams.append(stream_ms)
        ceiling = await kafka_round_trip(s, args.rounds)
    finally:
        store.close()

    def figures(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(values, 50), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1),
        }

    report = {
        "rounds": args.rounds,
        "requests_refused_same_instance": figures(same),
        "requests_refused_other_instance": figures(elsewhere),
        "stream_ended": figures(streams),
        "ceiling_kafka_round_trip": figures(ceiling),
        "ceiling_stream_recheck_ms": config.stream_recheck_seconds * 1000,
    }
    print(f"revocation latency over {args.rounds} rounds (ms, from the DELETE's answer):")
    for name in (
        "requests_refused_same_instance",
        "requests_refused_other_instance",
        "stream_ended",
        "ceiling_kafka_round_trip",
    ):
        f = report[name]
        print(f"  {name:32} p50 {f['p50_ms']:7.1f}  p99 {f['p99_ms']:7.1f}  max {f['max_ms']:7.1f}")
    recheck = report["ceiling_stream_recheck_ms"]
    print(f"  {'ceiling_stream_recheck':32} {recheck:.0f} (designed bound)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=20)
    return p.parse_args()


if __name__ == "__main__":
    arguments = _args()
    isolated = isolated_settings("revoke")
    try:
        asyncio.run(main(arguments, isolated))
    finally:
        drop_isolated(isolated)
