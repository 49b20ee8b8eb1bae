"""Shared set-up of the read API integration tests: a data set.

Holds no tests itself; the other ``test_read_api*.py`` modules import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from covidtech.settings import Settings
from domain.results import lookup_code_hash, new_lookup_code
from projections.access import LOCAL_TZ
from projections.cassandra import CassandraStore
from projections.model import ProjectionStore, Upsert
from tests import support


@dataclass(frozen=True)
class DataSet:
    """Rows of two provinces (79 = Ho Chi Minh City, 01 = Ha Noi) relative to ``now``."""

    now: datetime
    today: date
    lookup_code: str
    pool_code: str
    grant_id: str = "g-fixture"


def alert_row(
    province: str,
    start: datetime,
    alert_id: str,
    contact: str,
    case: str = "case-1",
    risk: str = "HIGH",
    venue: str = "v79",
    status: str = "ACTIVE",
) -> list[Upsert]:
    day = start.astimezone(LOCAL_TZ).date()
    common = {
        "contact_visit_start": start,
        "alert_id": alert_id,
        "case_person_id": case,
        "venue_id": venue,
        "contact_visit_end": start + timedelta(minutes=30),
        "overlap_seconds": 1800 if risk == "HIGH" else 300,
        "risk": risk,
        "status": status,
    }
    return [
        Upsert(
            "alerts_by_province",
            {"province": province, "day": day, "contact_person_id": contact, **common},
        ),
        Upsert("alerts_by_person", {"contact_person_id": contact, "province": province, **common}),
    ]


async def populate(store: ProjectionStore) -> DataSet:
    """Write a small data set through the store, as the stream processor would."""
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.astimezone(LOCAL_TZ).date()
    code, pool_code = new_lookup_code(), new_lookup_code()
    rows: list[Upsert] = [
        Upsert(
            "people",
            {
                "person_id": "p79",
                "province": "79",
                "district": "760",
                "birth_year": 1980,
                "registered_at": now - timedelta(days=30),
            },
        ),
        Upsert(
            "people",
            {
                "person_id": "p01",
                "province": "01",
                "district": "001",
                "birth_year": 1990,
                "registered_at": now - timedelta(days=30),
            },
        ),
        Upsert(
            "venues",
            {
                "venue_id": "v79",
                "name": "Cho Ben Thanh",
                "address": "Q1",
                "province": "79",
                "district": "760",
                "category": "market",
                "default_dwell_minutes": 60,
                "updated_at": now,
            },
        ),
        Upsert(
            "venues",
            {
                "venue_id": "v01",
                "name": "Ho Guom",
                "address": "Hoan Kiem",
                "province": "01",
                "district": "001",
                "category": "park",
                "default_dwell_minutes": 60,
                "updated_at": now,
            },
        ),
        # samples and results
        Upsert(
            "samples_by_id",
            {
                "sample_id": "s79",
                "site_id": "site-79",
                "province": "79",
                "test_type": "PCR",
                "collected_at": now - timedelta(hours=20),
                "member_count": 1,
                "result": "NEGATIVE",
                "resulted_at": now - timedelta(hours=8),
                "lab_id": "lab-a",
                "turnaround_seconds": 12 * 3600,
            },
        ),
        Upsert(
            "samples_by_id",
            {
                "sample_id": "s01",
                "site_id": "site-01",
                "province": "01",
                "test_type": "RAPID_ANTIGEN",
                "collected_at": now,
                "member_count": 3,
                "result": None,
                "resulted_at": None,
                "lab_id": None,
                "turnaround_seconds": None,
            },
        ),
        *(
            Upsert(
                "results_by_lookup",
                {
                    "lookup_code_sha256": lookup_code_hash(lookup),
                    "sample_id": f"s{province}",
                    "person_id": f"p{province}",
                    "state": state,
                    "test_type": "PCR",
                    "collected_at": now - timedelta(hours=collected),
                    "resulted_at": now - timedelta(hours=resulted),
                },
            )
            for lookup, province, state, collected, resulted in (
                (code, "79", "NEGATIVE", 20, 8),
                (pool_code, "01", "POOL_POSITIVE_RETEST", 30, 2),
            )
        ),
        # vaccination
        *(
            Upsert(
                "doses_by_person",
                {
                    "person_id": "p79",
                    "administered_at": now - timedelta(days=days_ago),
                    "dose_id": dose_id,
                    "vaccine": vaccine,
                    "site_id": "vs-79",
                    "residence_province": "79",
                    "birth_year": 1980,
                },
            )
            for dose_id, vaccine, days_ago in (("d1", "AZ", 60), ("d2", "PFIZER", 5))
        ),
        # turnaround: three samples of lab-a, one of lab-b; one sample pending for 3 days
        *(
            Upsert(
                "turnaround_by_province",
                {
                    "province": "79",
                    "day": today,
                    "sample_id": f"t{i}",
                    "lab_id": lab,
                    "site_id": "site-79",
                    "turnaround_seconds": secs,
                },
            )
            for i, (lab, secs) in enumerate(
                [("lab-a", 3600), ("lab-a", 7200), ("lab-a", 10800), ("lab-b", 86400)]
            )
        ),
        *(
            Upsert(
                "pending_samples_by_province",
                {
                    "province": "79",
                    "collected_at": now - age,
                    "sample_id": sample_id,
                    "site_id": "site-79",
                },
            )
            for sample_id, age in (("late-1", timedelta(days=3)), ("fresh-1", timedelta(hours=1)))
        ),
        # presence and exposure
        *(
            Upsert(
                "visits_by_person",
                {
                    "person_id": "p79",
                    "visit_start": now - timedelta(hours=h),
                    "venue_id": f"v{h}",
                    "visit_end": now - timedelta(hours=h) + timedelta(minutes=20),
                    "venue_province": "79",
                },
            )
            for h in (1, 2, 3)
        ),
        Upsert(
            "exposure_windows_by_venue",
            {
                "venue_id": "v79",
                "case_person_id": "case-1",
                "visit_start": now - timedelta(hours=5),
                "window_start": now - timedelta(hours=5),
                "window_end": now - timedelta(hours=4),
                "venue_province": "79",
            },
        ),
        # in each province, an exposure site and a cluster of three cases
        *(
            Upsert(
                "exposure_sites_by_province",
                {
                    "province": province,
                    "day": today,
                    "venue_id": f"v{province}",
                    "case_person_id": case,
                    "visit_start": now - timedelta(hours=5),
                    "window_start": now - timedelta(hours=5),
                    "window_end": now - timedelta(hours=4),
                },
            )
            for province, case in (("79", "case-1"), ("01", "case-9"))
        ),
        *(
            Upsert(
                "clusters_by_province",
                {
                    "province": province,
                    "venue_id": f"v{province}",
                    "case_person_ids": cases,
                    "first_window_start": now - timedelta(days=3),
                    "last_window_start": now - timedelta(days=1),
                },
            )
            for province, cases in (
                ("79", ["case-1", "case-2", "case-3"]),
                ("01", ["case-7", "case-8", "case-9"]),
            )
        ),
        *alert_row("79", now - timedelta(hours=2), "a79-1", "p79"),
        *alert_row("01", now - timedelta(hours=2), "a01-1", "p01", case="case-9", venue="v01"),
    ]
    # coverage: province 79, band 18-49, two days with doses
    for day, cum in ((today - timedelta(days=10), 100), (today - timedelta(days=2), 150)):
        rows.append(
            Upsert(
                "coverage_daily",
                {
                    "province": "79",
                    "age_band": "18-49",
                    "day": day,
                    "first_doses": 50,
                    "completions": 20,
                    "boosters": 0,
                    "doses": 70,
                    "people_vaccinated": cum,
                    "people_fully_vaccinated": cum // 2,
                    "total_boosters": 0,
                    "total_doses": cum + cum // 2,
                },
            )
        )
    rows.append(
        Upsert(
            "coverage_daily",
            {
                "province": "01",
                "age_band": "65+",
                "day": today - timedelta(days=1),
                "first_doses": 7,
                "completions": 0,
                "boosters": 1,
                "doses": 8,
                "people_vaccinated": 7,
                "people_fully_vaccinated": 0,
                "total_boosters": 1,
                "total_doses": 8,
            },
        )
    )
    await store.apply(rows)
    return DataSet(now=now, today=today, lookup_code=code, pool_code=pool_code)


def populated(s: Settings) -> DataSet:
    """The data set written to the keyspace of ``s`` through a store of its own, for module
    fixtures (outside any event loop)."""

    async def fill() -> DataSet:
        store = CassandraStore.from_settings(s)
        try:
            return await populate(store)
        finally:
            store.close()

    return support.run_coroutine(fill())
