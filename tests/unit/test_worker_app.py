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
