"""Retention in the stream handlers' state: what each handler's ``prune`` keeps and drops at a
wall-clock time (pure), and the same through the in-process pipeline (the worker applies it on
a timer: tests/integration/test_state_retention.py)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.results import CaseRecord, PersonCases, cases
from projections.memory import InMemoryStore
from streams.ids import to_days, to_ms
from streams.people import PersonHandler, expired_positives
from streams.testing import DeclarationHandler, SampleHandler
from streams.venues import CLUSTER_RETENTION, prune_venue
from tests.scenarios import T0, Ev, dose, m, outbreak_at_venue, result, sample, stay
from tests.unit.pipeline_support import feed, run

DAY = 24 * 3600 * 1000
NOW = to_ms(datetime(2021, 9, 30, tzinfo=UTC))
KEEP = (21 + 3) * DAY  # presence_retention + lateness


def person_state(scans: dict[str, list[int]], positives: list[int] | None = None) -> dict[str, Any]:
    """A person's state with scans (ms) per venue, a visit and a window per scan."""
    return {
        "scans": {v: [[f"s{v}{t}", t, "IN", 60, "79"] for t in ts] for v, ts in scans.items()},
        "visits": {v: [[t, t + 3600_000] for t in ts] for v, ts in scans.items()},
        "windows": {v: [[t, t, t + 3600_000] for t in ts] for v, ts in scans.items()},
        "positives": [[f"tube{t}", t, None, "79"] for t in positives or []],
        "newest": max((t for ts in scans.values() for t in ts), default=0),
    }


# ---------------------------------------------------------------------------- per person


def test_a_person_with_nothing_past_retention_is_left_as_it_is() -> None:
    st = person_state({"v1": [NOW - DAY]}, positives=[NOW - 80 * DAY])
    assert PersonHandler().prune("persons", "p", st, NOW) is st


def test_presence_past_retention_and_lateness_is_trimmed_without_changing_the_state() -> None:
    st = person_state({"old": [NOW - KEEP - 1], "both": [NOW - KEEP - 1, NOW - KEEP]})
    before = copy.deepcopy(st)
    pruned = PersonHandler().prune("persons", "p", st, NOW)
    assert st == before  # committed state is never changed in place
    assert set(pruned["scans"]) == {"both"}  # a venue without scans goes whole
    assert [s[1] for s in pruned["scans"]["both"]] == [NOW - KEEP]
    assert pruned["visits"] == {"both": [[NOW - KEEP, NOW - KEEP + 3600_000]]}
    assert [w[0] for w in pruned["windows"]["both"]] == [NOW - KEEP]


def test_a_person_with_nothing_left_is_deleted() -> None:
    st = person_state({"v1": [NOW - KEEP - 1]})
    assert PersonHandler().prune("persons", "p", st, NOW) is None
    st = person_state({"v1": [NOW - KEEP - 1]}, positives=[NOW - 91 * DAY])
    assert PersonHandler().prune("persons", "p", st, NOW) is None


def test_positives_are_kept_while_presence_goes() -> None:
    st = person_state({"v1": [NOW - KEEP - 1]}, positives=[NOW - 30 * DAY])
    pruned = PersonHandler().prune("persons", "p", st, NOW)
    assert pruned["scans"] == {} and pruned["positives"] == st["positives"]


def test_positives_go_by_whole_cases_so_no_case_moves() -> None:
    # A case anchored on day 0 holds the positive of day 60; day 100 anchors a second case.
    # Dropping day 0 alone would make day 60 an anchor, and day 100 part of its case.
    day0, day60, day100 = NOW - 100 * DAY, NOW - 40 * DAY, NOW
    positives = [[f"t{t}", t, None, "79"] for t in (day0, day60, day100)]
    assert expired_positives(positives, day60) == 0  # day 60's case is still live
    assert expired_positives(positives, day60 + 1) == 2  # day 0 and day 60 go together
    assert expired_positives(positives, day100 + 1) == 3
    assert expired_positives([], NOW) == 0


def test_pruning_positives_never_changes_the_cases_left() -> None:
    rng = random.Random(7)
    for _ in range(300):
        times = sorted(rng.sample(range(0, 400 * DAY, DAY), rng.randint(1, 8)))
        positives: list[list[Any]] = [[f"t{i}", t, None, "79"] for i, t in enumerate(times)]
        horizon = rng.randrange(0, 420 * DAY, DAY)
        gone = expired_positives(positives, horizon)
        assert all(p[1] < horizon for p in positives[:gone])
        before = anchors(positives)
        after = anchors(positives[gone:])
        assert after == [a for a in before if a not in {p[0] for p in positives[:gone]}]
        if gone < len(positives):  # the case of the first positive kept has a live one
            assert any(p[1] >= horizon for p in positives[gone:])


def anchors(positives: list[list[Any]]) -> list[str]:
    records = tuple(
        CaseRecord("p", p[0], datetime.fromtimestamp(p[1] / 1000, UTC), None, "79")
        for p in positives
    )
    return [c.sample_id for c in cases(PersonCases("p", records))]


# ---------------------------------------------------------------------------- per venue


def venue_state(
    windows: dict[str, list[int]], alerts: dict[str, int], cluster: list[Any] | None = None
) -> dict[str, Any]:
    """Windows (visit start = window start, ms) per case; alerts by contact visit start."""
    return {
        "province": "79",
        "windows": {c: [[t, t, t + 3600_000] for t in ts] for c, ts in windows.items()},
        "alerts": {
            aid: ["case", "contact", t, t + 60_000, 60, "LOW", "ACTIVE", 1]
            for aid, t in alerts.items()
        },
        "cluster": cluster,
    }


def prune(st: dict[str, Any], now: int = NOW) -> dict[str, Any] | None:
    return prune_venue(
        st,
        windows_before=now - KEEP,
        alerts_before=now - 21 * DAY,
        cluster_before=now - int(CLUSTER_RETENTION / timedelta(milliseconds=1)),
    )


def test_a_venue_keeps_what_is_live_and_loses_the_rest() -> None:
    st = venue_state(
        {"c1": [NOW - KEEP - 1, NOW - DAY], "c2": [NOW - KEEP - 1]},
        {"old": NOW - 21 * DAY, "live": NOW - 21 * DAY + 1},
    )
    assert prune(venue_state({"c1": [NOW]}, {"a": NOW})) is not None
    live = venue_state({"c1": [NOW]}, {"a": NOW})
    assert prune(live) is live
    before = copy.deepcopy(st)
    pruned = prune(st)
    assert st == before
    assert pruned is not None
    assert pruned["windows"] == {"c1": [[NOW - DAY, NOW - DAY, NOW - DAY + 3600_000]]}
    assert set(pruned["alerts"]) == {"live"}
    assert "frozen" not in pruned
    assert prune(venue_state({"c1": [NOW - KEEP - 1]}, {"a": NOW - 21 * DAY})) is None


def test_a_cluster_that_loses_windows_stands_frozen_until_its_retention() -> None:
    first, last = NOW - KEEP - 2 * DAY, NOW - KEEP - DAY
    cluster = [["c1", "c2", "c3"], first, last]
    st = venue_state({"c1": [first], "c2": [last], "c3": [last], "c4": [NOW]}, {}, cluster)
    pruned = prune(st)
    assert pruned is not None
    assert pruned["cluster"] == cluster and pruned["frozen"] is True
    assert set(pruned["windows"]) == {"c4"}
    assert prune(pruned) is pruned  # nothing more until the cluster's retention
    later = last + int(CLUSTER_RETENTION / timedelta(milliseconds=1))
    assert prune(pruned, later) is None  # c4's window is past by then too
    # windows before the cluster's span do not freeze it: the cluster is decided the same
    early = venue_state({"c0": [first - DAY], "c1": [NOW], "c2": [NOW], "c3": [NOW]}, {})
    early["cluster"] = [["c1", "c2", "c3"], NOW, NOW]
    pruned = prune(early, first - DAY + KEEP + 1)
    assert (
        pruned is not None
        and "frozen" not in pruned
        and set(pruned["windows"])
        == {
            "c1",
            "c2",
            "c3",
        }
    )


# ---------------------------------------------------------------------------- samples, counts


def test_a_sample_goes_with_its_result_retention() -> None:
    handler = SampleHandler()
    st = ["tube", "site", "79", "PCR", NOW - 90 * DAY + 1, [], None, None, None]
    assert handler.prune("samples_state", "tube", st, NOW) is st
    assert handler.prune("samples_state", "tube", st, NOW + 1) is None


def test_syndromic_counts_go_once_their_whole_day_is_past_retention() -> None:
    handler = DeclarationHandler()
    day = date(2021, 7, 1)
    key = f"79|{to_days(day)}|0"
    # the local day ends at 17:00 UTC (Asia/Ho_Chi_Minh is UTC+7)
    end = to_ms(datetime(2021, 7, 1, 17, tzinfo=UTC)) + 90 * DAY
    assert handler.prune("syndromic_counts", key, [3, 1, 7], end - 1) == [3, 1, 7]
    assert handler.prune("syndromic_counts", key, [3, 1, 7], end) is None


# ---------------------------------------------------------------------------- the pipeline


async def test_the_pipeline_prunes_by_wall_clock_and_keeps_vaccination_records() -> None:
    events = [*outbreak_at_venue(), dose("a", "d1", m(0), "AZ")]
    p, _ = await run(events)
    kept = copy.deepcopy(p.tables)
    assert p.prune(to_ms(T0 + timedelta(days=1))) == {}
    assert p.tables == kept

    # Day 25: presence and alerts are past; the case's positive and the sample are not.
    assert p.prune(to_ms(T0 + timedelta(days=25))) == {
        "PersonHandler": (1, 3),  # the case keeps its positive; a, b and d go
        "VenueHandler": (0, 1),
        "ChainHandler": (0, 1),  # a's HIGH alert goes; the case's positive stays
    }
    assert set(p.tables["persons"]) == {"case"}
    assert set(p.tables["chains"]) == {"case"}
    assert p.tables["persons"]["case"]["scans"] == {}
    assert p.tables["venue_exposure"] == {}
    assert set(p.tables["samples_state"]) == {"tube"}

    # Day 100: results and the day's case and test counts are past as well; doses and
    # coverage are records, kept.
    assert p.prune(to_ms(T0 + timedelta(days=100))) == {
        "PersonHandler": (0, 2),
        "ChainHandler": (0, 1),
        "SampleHandler": (0, 2),
    }
    assert p.tables["persons"] == {} and p.tables["samples_state"] == {}
    assert p.tables["case_counts"] == {} and p.tables["test_counts"] == {}
    for table in ("dose_histories", "coverage_people", "coverage_series"):
        assert p.tables[table] == kept[table]
    assert p.prune(to_ms(T0 + timedelta(days=400))) == {}


async def test_a_pruned_person_starts_afresh() -> None:
    later = T0 + timedelta(days=30)
    p, _ = await run(outbreak_at_venue())
    p.prune(to_ms(later))
    fresh, _ = await run([])
    new = stay("a", "gym", later, later + timedelta(hours=1))
    for pipeline in (p, fresh):
        await feed(pipeline, new)
    assert p.tables["persons"]["a"] == fresh.tables["persons"]["a"]


async def test_a_frozen_cluster_keeps_its_row_when_a_later_case_comes() -> None:
    now = [datetime.now(UTC)]
    store = InMemoryStore(clock=lambda: now[0])
    cases_ = ["c1", "c2", "c3"]
    events: list[Ev] = []
    for i, c in enumerate(cases_):
        events += stay(c, "bar", m(i * 60), m(i * 60 + 30))
        events += [sample(f"t{c}", [c], m(24 * 60)), result(f"t{c}", "POSITIVE", m(25 * 60))]
    p, _ = await run(events, store=store)
    (cluster,) = await store.scan("clusters_by_province")
    assert cluster["case_person_ids"] == cases_

    later = T0 + timedelta(days=26)
    now[0] = later
    p.prune(to_ms(later))
    assert p.tables["venue_exposure"]["bar"]["frozen"] is True
    assert p.tables["venue_exposure"]["bar"]["windows"] == {}
    # A fourth case at the bar: the venue's windows alone would make no cluster, and the
    # row would be deleted 64 days before its time.
    c4 = [
        *stay("c4", "bar", later, later + timedelta(minutes=30)),
        sample("tc4", ["c4"], later + timedelta(hours=2)),
        result("tc4", "POSITIVE", later + timedelta(hours=3)),
    ]
    await feed(p, c4)
    assert set(p.tables["venue_exposure"]["bar"]["windows"]) == {"c4"}
    assert await store.scan("clusters_by_province") == [cluster]
    # Once the cluster's retention is past, it goes, and the venue is decided afresh.
    gone = cluster["last_window_start"] + CLUSTER_RETENTION
    p.prune(to_ms(gone))
    assert "bar" not in p.tables["venue_exposure"]


# ---------------------------------------------------------------------------- the worker


def test_the_worker_compacts_its_changelogs_within_a_day_and_prunes_every_ten_minutes(
    tmp_path: Path,
) -> None:
    from covidtech.settings import load
    from streams.worker import CHANGELOG_CONFIGS, build_app

    s = load({"COVIDTECH_HOME": str(tmp_path), "COVIDTECH_APP_ID": "unit-retention"})
    assert s.worker_prune_seconds == 600
    assert load({"COVIDTECH_WORKER_PRUNE_SECONDS": "1"}).worker_prune_seconds == 1
    app = build_app(s)
    assert {"max.compaction.lag.ms": str(DAY)} == CHANGELOG_CONFIGS
    for table in app.tables.values():
        assert table.extra_topic_configs == CHANGELOG_CONFIGS
        assert table.data._key_partition == {}  # the index the retention pass reads
