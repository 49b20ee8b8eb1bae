"""Read-side queries over the in-memory store: percentiles, coverage sums, newest-first pages."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.coverage import CoverageCounts
from projections import queries
from projections.memory import InMemoryStore
from projections.model import Query, Upsert
from projections.queries import Cursor, Segment

T0 = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)
D0 = date(2021, 8, 1)


# ------------------------------------------------------------------------------ percentiles


def test_nearest_rank_percentiles() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert queries.percentile(values, 30) == 20.0
    assert queries.percentile(values, 40) == 20.0
    assert queries.percentile(values, 50) == 35.0
    assert queries.percentile(values, 100) == 50.0
    assert queries.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        queries.percentile([], 50)
    with pytest.raises(ValueError):
        queries.percentile(values, 0)


@given(st.lists(st.integers(0, 10**6), min_size=1), st.floats(0.01, 100))
def test_a_percentile_is_an_observed_value_with_enough_values_at_or_below(
    values: list[int], q: float
) -> None:
    ordered = sorted(float(v) for v in values)
    p = queries.percentile(ordered, q)
    assert p in ordered
    assert sum(v <= p for v in ordered) >= math.ceil(q / 100 * len(ordered))
    assert sum(v < p for v in ordered) < math.ceil(q / 100 * len(ordered))


def test_stats_of_no_values_are_empty() -> None:
    assert queries.turnaround_stats([]).count == 0
    stats = queries.turnaround_stats([3.0, 1.0, 2.0])
    assert (stats.count, stats.p50, stats.max, stats.mean) == (3, 2.0, 3.0, 2.0)


# ------------------------------------------------------------------------------ coverage


def coverage(province: str, band: str, day: date, pv: int) -> Upsert:
    return Upsert(
        "coverage_daily",
        {
            "province": province,
            "age_band": band,
            "day": day,
            "first_doses": 1,
            "completions": 0,
            "boosters": 0,
            "doses": 1,
            "people_vaccinated": pv,
            "people_fully_vaccinated": 0,
            "total_boosters": 0,
            "total_doses": pv,
        },
    )


async def test_the_nation_is_the_sum_of_provinces_as_of_a_day() -> None:
    store = InMemoryStore()
    await store.apply(
        [
            coverage("79", "18-49", D0, 10),
            coverage("79", "18-49", D0 + timedelta(days=3), 25),
            coverage("01", "18-49", D0 + timedelta(days=1), 4),
            coverage("01", "65+", D0 + timedelta(days=5), 2),
        ]
    )
    on = await queries.coverage_as_of(store, "VN", D0 + timedelta(days=2))
    assert on["18-49"] == CoverageCounts(14, 0, 0, 14)
    assert on["65+"] == CoverageCounts()
    later = await queries.coverage_as_of(store, "VN", D0 + timedelta(days=9))
    assert (later["18-49"].people_vaccinated, later["65+"].people_vaccinated) == (29, 2)
    series = await queries.coverage_series(
        store, "79", D0 - timedelta(days=1), D0 + timedelta(days=4)
    )
    assert [s["18-49"].people_vaccinated for _, s in sorted(series.items())] == [
        0,
        10,
        10,
        10,
        25,
        25,
    ]
    daily = await queries.doses_daily(store, "VN", D0, D0 + timedelta(days=1))
    assert [d.doses for _, d in sorted(daily.items())] == [1, 1]


# ------------------------------------------------------------------------------ pages


def alert(province: str, minutes: int, alert_id: str, risk: str = "HIGH") -> Upsert:
    start = T0 + timedelta(minutes=minutes)
    return Upsert(
        "alerts_by_province",
        {
            "province": province,
            "day": start.date(),
            "contact_visit_start": start,
            "alert_id": alert_id,
            "case_person_id": "c",
            "contact_person_id": alert_id,
            "venue_id": "v",
            "contact_visit_end": start,
            "overlap_seconds": 1,
            "risk": risk,
            "status": "ACTIVE",
        },
    )


def segments(provinces: tuple[str, ...], days: list[date]) -> list[Segment]:
    return [
        Segment(
            d.isoformat(),
            tuple(Query("alerts_by_province", {"province": p, "day": d}) for p in provinces),
        )
        for d in days
    ]


async def all_pages(
    store: InMemoryStore, segs: list[Segment], limit: int, **kw: object
) -> list[str]:
    out: list[str] = []
    after: Cursor | None = None
    for _ in range(1000):
        rows, after = await queries.newest_first(
            store,
            segs,
            time_col="contact_visit_start",
            id_col="alert_id",
            limit=limit,
            after=after,
            **kw,  # type: ignore[arg-type]
        )
        out += [r["alert_id"] for r in rows]
        if after is None:
            return out
    raise AssertionError("no end")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["79", "01"]),
            st.integers(0, (3 * 24 - 3) * 2 - 1),  # T0 is 03:00: stay within 3 days
            st.sampled_from(["HIGH", "LOW"]),
        ),
        max_size=40,
    ),
    st.integers(1, 7),
)
async def test_pages_cover_every_row_once_newest_first_whatever_the_page_size(
    spec: list[tuple[str, int, str]], limit: int
) -> None:
    store = InMemoryStore()
    # ties on the same start are frequent: half-hour slots over three days
    await store.apply([alert(p, slot * 30, f"a{i:03d}", r) for i, (p, slot, r) in enumerate(spec)])
    days = [D0 + timedelta(days=2), D0 + timedelta(days=1), D0]
    expected = sorted(
        ((-(slot * 30), f"a{i:03d}") for i, (_, slot, _) in enumerate(spec)),
    )
    got = await all_pages(store, segments(("79", "01"), days), limit)
    assert got == [ident for _, ident in expected]
    high = await all_pages(
        store, segments(("79", "01"), days), limit, keep=lambda r: r["risk"] == "HIGH"
    )
    assert high == [i for i in got if spec[int(i[1:])][2] == "HIGH"]
    only_79 = await all_pages(store, segments(("79",), days), limit)
    assert only_79 == [i for i in got if spec[int(i[1:])][0] == "79"]


async def test_a_cursor_naming_no_segment_is_refused() -> None:
    with pytest.raises(ValueError):
        await queries.newest_first(
            InMemoryStore(),
            segments(("79",), [D0]),
            time_col="contact_visit_start",
            id_col="alert_id",
            limit=5,
            after=Cursor("1999-01-01", T0, "x"),
        )


async def test_exposure_sites_group_windows_by_venue_and_page_by_day() -> None:
    store = InMemoryStore()
    rows = []
    for day_offset, venue, case, start_min, end_min in (
        (0, "va", "c1", 0, 60),
        (0, "va", "c2", 30, 90),
        (0, "vb", "c1", 0, 10),
        (1, "va", "c3", 0, 5),
    ):
        day = D0 + timedelta(days=day_offset)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        rows.append(
            Upsert(
                "exposure_sites_by_province",
                {
                    "province": "79",
                    "day": day,
                    "venue_id": venue,
                    "case_person_id": case,
                    "visit_start": start,
                    "window_start": start + timedelta(minutes=start_min),
                    "window_end": start + timedelta(minutes=end_min),
                },
            )
        )
    await store.apply(rows)
    days = [D0 + timedelta(days=1), D0]
    first, nxt = await queries.exposure_sites_page(store, ("79",), days, limit=2)
    assert [(i["day"], i["venue_id"], i["cases"]) for i in first] == [
        (D0 + timedelta(days=1), "va", 1),
        (D0, "va", 2),
    ]
    assert len(first[1]["windows"]) == 1  # two overlapping windows merged
    second, end = await queries.exposure_sites_page(store, ("79",), days, limit=2, after=nxt)
    assert [i["venue_id"] for i in second] == ["vb"] and end is None
