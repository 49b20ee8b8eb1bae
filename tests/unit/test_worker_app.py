"""The worker's Faust app is assembled without a broker: one agent and one state table per
handler, the handlers' logical tables as views on it."""

from __future__ import annotations

from pathlib import Path

from covidtech.settings import load
from projections.model import StoreUnavailable
from streams.handlers import all_handlers
from streams.worker import RETRIABLE, TableView, build_app


def test_one_agent_and_one_state_table_per_handler(tmp_path: Path) -> None:
    s = load({"COVIDTECH_HOME": str(tmp_path), "COVIDTECH_APP_ID": "unit-worker"})
    app = build_app(s)
    names = sorted(type(h).__name__ for h in all_handlers())
    assert sorted(a.rsplit(".", 1)[-1] for a in app.agents) == names
    assert sorted(app.tables.keys()) == sorted(f"{n}-state" for n in names)
    assert StoreUnavailable in RETRIABLE  # a batch waits for Cassandra, never skips


def test_a_table_view_reads_its_prefix_only() -> None:
    from types import SimpleNamespace

    table = SimpleNamespace(data={"persons|p1": 1, "_commits|PersonHandler|0": {"o": {}}})
    view = TableView(table, "persons")
    assert view.get("p1") == 1
    assert view.get("_commits|PersonHandler|0") is None


def test_the_worker_logs_at_its_level_not_at_debug(tmp_path: Path) -> None:
    """Faust's start-up spinner would set the root logger to DEBUG for good, and every
    library's debug call would then build a record."""
    import asyncio
    import logging

    from streams.worker import QuietWorker

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        s = load({"COVIDTECH_HOME": str(tmp_path), "COVIDTECH_APP_ID": "unit-logging"})
        QuietWorker(build_app(s), loglevel="warning", loop=loop)._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        asyncio.set_event_loop(None)
        loop.close()


def test_the_group_commits_what_every_agent_reading_a_topic_has_applied(tmp_path: Path) -> None:
    """``doses`` is read by the dose and registration agents: its committable offset is one
    past the lower of their commit records; a partition without a record commits nothing
    new (0); Faust's acks above it are forgotten once covered, never used."""
    from faust.types import TP

    from streams.worker import AppliedOffsetsConsumer

    s = load({"COVIDTECH_HOME": str(tmp_path), "COVIDTECH_APP_ID": "unit-offsets"})
    app = build_app(s)
    consumer_class = app.transport.Consumer
    assert issubclass(consumer_class, AppliedOffsetsConsumer)
    rt = consumer_class.runtime
    doses = s.topic("doses")
    readers = rt.readers[doses]
    assert sorted(type(r.handler).__name__ for r in readers) == [
        "DoseHandler",
        "RegistrationHandler",
    ]
    for reader, applied in zip(readers, (41, 17), strict=True):
        name = type(reader.handler).__name__
        reader.tables["_commits"].table.data[f"_commits|{name}|2"] = {
            "o": {"doses": applied},
            "t": 1,
        }
    assert rt.next_offset(doses, 2) == 18
    assert rt.next_offset(doses, 3) == 0
    assert rt.next_offset("not-read-by-any-agent", 0) is None

    consumer = object.__new__(consumer_class)
    consumer._acked = {TP(doses, 2): [15, 16, 17, 30, 31]}
    consumer._acked_index = {TP(doses, 2): {15, 16, 17, 30, 31}}
    assert consumer._new_offset(TP(doses, 2)) == 18
    assert consumer._acked[TP(doses, 2)] == [30, 31]
    assert consumer._acked_index[TP(doses, 2)] == {30, 31}


async def test_an_inbox_takes_what_it_holds_up_to_the_limit_and_holds_the_fetcher_back() -> None:
    import asyncio

    from streams.context import Message
    from streams.worker import Inbox

    def batch(n: int) -> list[Message]:
        return [Message("checkins", 0, i, None, b"") for i in range(n)]

    inbox = Inbox(maxsize=2)
    await inbox.put(1, batch(3))
    await inbox.put(1, batch(4))
    blocked = asyncio.ensure_future(inbox.put(2, batch(5)))  # full: the fetcher waits
    await asyncio.sleep(0)
    assert not blocked.done()
    # Whole fetched batches, as many as fit under the limit (the first always goes).
    assert [len(ms) for _, ms in await inbox.take(8)] == [3, 4]
    await asyncio.wait_for(blocked, 1)
    assert [(g, len(ms)) for g, ms in await inbox.take(2)] == [(2, 5)]
    await inbox.put(3, batch(1))
    await inbox.clear()  # a revocation drops what waits
    late = asyncio.ensure_future(inbox.take(10))
    await asyncio.sleep(0)
    assert not late.done()
    await inbox.put(4, batch(2))
    assert [(g, len(ms)) for g, ms in await asyncio.wait_for(late, 1)] == [(4, 2)]
