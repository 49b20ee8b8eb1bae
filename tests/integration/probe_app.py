"""A minimal faust-streaming app for the foundation test: topic -> Cassandra rows.

Run as a real worker process: ``python -m tests.integration.probe_app worker``. Settings come
from the usual COVIDTECH_* environment (topic prefix, keyspace, app id)."""

from __future__ import annotations

from typing import Any

import faust

from covidtech import kafka_clients
from covidtech import settings as settings_mod
from infra.lifecycle import cassandra_session

s = settings_mod.load()
app = faust.App(
    s.app_id,
    broker=kafka_clients.faust_broker(s),
    broker_credentials=kafka_clients.faust_credentials(s),
    store="memory://",
    topic_partitions=s.topic_partitions,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(
    s.topic("venues"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
_session: Any = None


@app.agent(source)  # type: ignore[untyped-decorator]  # Faust's decorators are untyped
async def write_rows(stream: Any) -> None:
    global _session
    if _session is None:
        _session = cassandra_session(s, keyspace=s.keyspace)
        _insert = _session.prepare("INSERT INTO venues (venue_id, name) VALUES (?, ?)")
    async for key, value in stream.items():
        _session.execute(_insert, (key.decode(), value.decode()))


if __name__ == "__main__":
    app.main()
