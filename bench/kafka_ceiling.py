"""Kafka's own producer benchmark (``org.apache.kafka.tools.ProducerPerformance``) as the
ceiling of anything that writes to the broker on this machine.

The tool comes from the ``kafka-tools`` artifact, resolved into its own lib folder (it drags in
connect-runtime) from ``infra/kafka-tools/pom.xml``.

    python -m bench.kafka_ceiling
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass

from covidtech import settings as settings_mod
from covidtech.settings import Settings, with_overrides
from covidtech.topics import TopicSpec
from infra import services
from infra.kafka_topics import create_topics, delete_topics

_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec .*?"
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


@dataclass(frozen=True)
class ProducerPerf:
    records: int
    records_per_s: float
    p50_ms: float
    p99_ms: float


def producer_performance(
    s: Settings, *, records: int, throughput: int, record_size: int = 120, topic: str | None = None
) -> ProducerPerf:
    """Run ProducerPerformance (acks=all, idempotent) against the settings' broker."""
    lib = services.resolve(services.kafka_tools(s), s, log=lambda _m: None)
    java = services.find_java17(s)
    name = topic or f"{s.topic_prefix}bench-ceiling"
    asyncio.run(
        create_topics(with_overrides(s, topic_prefix=""), [TopicSpec(name, "person_id", 3_600_000)])
    )
    try:
        out = subprocess.run(
            [
                java,
                "-Xmx512m",
                "-cp",
                f"{lib}/*",
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic",
                name,
                "--num-records",
                str(records),
                "--record-size",
                str(record_size),
                "--throughput",
                str(throughput),
                "--producer-props",
                f"bootstrap.servers={s.kafka_bootstrap}",
                "acks=all",
                "enable.idempotence=true",
                "linger.ms=5",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
    finally:
        asyncio.run(delete_topics(s, [name]))
    m = None
    for line in out.splitlines():
        m = _SUMMARY.search(line) or m
    if m is None:
        raise RuntimeError(f"no summary in ProducerPerformance output:\n{out[-2000:]}")
    return ProducerPerf(int(m["records"]), float(m["rate"]), float(m["p50"]), float(m["p99"]))


def main() -> None:
    s = settings_mod.load()
    top = producer_performance(s, records=300_000, throughput=-1)
    print(
        f"ProducerPerformance, unthrottled: {top.records_per_s:,.0f} records/s "
        f"(p50 {top.p50_ms:.0f} ms, p99 {top.p99_ms:.0f} ms)"
    )
    at = producer_performance(s, records=10_000, throughput=1000)
    print(f"ProducerPerformance at 1,000 records/s: p50 {at.p50_ms:.0f} ms, p99 {at.p99_ms:.0f} ms")


if __name__ == "__main__":
    main()
