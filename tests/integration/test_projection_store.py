"""One contract, two stores: the Cassandra store and its in-memory twin behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from covidtech.settings import Settings
from projections.cassandra import CassandraStore
from projections.memory import InMemoryStore
from projections.model import TABLES, Delete, ProjectionStore, Query, Upsert, stamped

T0 = datetime(2021, 8, 1, 3, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "cassandra"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProjectionStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    s: Settings = request.getfixturevalue("isolated")
    cs = CassandraStore.from_settings(s)
    try:
        yield cs
    finally:
        cs.close()


def visit(person: str, minutes: int, venue: str = "v1", end_minutes: int = 30) -> Upsert:
    start = T0 + timedelta(minutes=minutes)
    return Upsert(
        "visits_by_venue",
        {
            "venue_id": venue,
            "day": date(2021, 8, 1),
            "visit_start": start,
            "person_id": person,
            "visit_end": start + timedelta(minutes=end_minutes),
        },
    )


@pytest.mark.integration
class TestProjectionStoreContract:
    async def test_upsert_is_idempotent_and_select_orders_by_clustering(
        self, store: ProjectionStore
    ) -> None:
        await store.apply([visit("b", 10), visit("a", 5), visit("c", 20)])
        await store.apply([visit("b", 10)])
        rows = await store.select(
            Query("visits_by_venue", {"venue_id": "v1", "day": date(2021, 8, 1)})
        )
        assert [r["person_id"] for r in rows] == ["a", "b", "c"]
        # times come back as aware UTC, truncated to the millisecond
        assert rows[0]["visit_start"] == T0.replace(microsecond=123000) + timedelta(minutes=5)
        assert rows[0]["visit_start"].tzinfo is not None

    async def test_upsert_merges_columns_and_delete_removes(self, store: ProjectionStore) -> None:
        await store.apply([visit("a", 5)])
        row = {
            "venue_id": "v1",
            "day": date(2021, 8, 1),
            "visit_start": T0 + timedelta(minutes=5),
            "person_id": "a",
        }
        await store.apply([Upsert("visits_by_venue", {**row, "visit_end": T0})])
        (got,) = await store.select(
            Query("visits_by_venue", {"venue_id": "v1", "day": date(2021, 8, 1)})
        )
        assert got["visit_end"] == T0.replace(microsecond=123000)
        await store.apply([Delete("visits_by_venue", row)])
        assert (
            await store.select(
                Query("visits_by_venue", {"venue_id": "v1", "day": date(2021, 8, 1)})
            )
            == []
        )

    async def test_clustering_range_limit_and_descending_order(
        self, store: ProjectionStore
    ) -> None:
        await store.apply(
            [
                Upsert(
                    "visits_by_person",
                    {
                        "person_id": "p",
                        "visit_start": T0 + timedelta(hours=h),
                        "venue_id": f"v{h}",
                        "visit_end": T0,
                    },
                )
                for h in range(6)
            ]
        )
        rows = await store.select(
            Query(
                "visits_by_person",
                {"person_id": "p"},
                clustering_from=T0 + timedelta(hours=1),
                clustering_to=T0 + timedelta(hours=4),
                limit=3,
            )
        )
        assert [r["venue_id"] for r in rows] == ["v4", "v3", "v2"]  # visit_start DESC

    async def test_expired_rows_are_not_written(self, store: ProjectionStore) -> None:
        old = Upsert(
            "people",
            {"person_id": "old", "province": "01"},
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        fresh = Upsert(
            "people",
            {"person_id": "new", "province": "01"},
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
        await store.apply([old, fresh])
        assert [r["person_id"] for r in await store.scan("people")] == ["new"]

    async def test_a_write_older_than_the_rows_is_ignored(self, store: ProjectionStore) -> None:
        """Write timestamps: a late write of an older state (a revoked worker's last batch)
        never overwrites a newer one; a delete wins a tie and buries older writes."""
        day = {"venue_id": "v1", "day": date(2021, 8, 1)}

        def ends(rows: list[dict[str, object]]) -> dict[object, object]:
            return {r["person_id"]: r["visit_end"] for r in rows}

        newer = stamped(visit("a", 5, end_minutes=40), 2_000)
        older = stamped(visit("a", 5, end_minutes=10), 1_000)
        await store.apply([newer])
        await store.apply([older])
        rows = await store.select(Query("visits_by_venue", day))
        assert ends(rows) == {"a": T0.replace(microsecond=123000) + timedelta(minutes=45)}

        await store.apply([stamped(Delete("visits_by_venue", visit("a", 5).row), 1_500)])
        assert len(await store.select(Query("visits_by_venue", day))) == 1  # older delete
        await store.apply([stamped(Delete("visits_by_venue", visit("a", 5).row), 3_000)])
        await store.apply([stamped(visit("a", 5), 2_500), stamped(visit("a", 5), 3_000)])
        assert await store.select(Query("visits_by_venue", day)) == []  # buried
        await store.apply([stamped(visit("a", 5, end_minutes=20), 3_001)])
        rows = await store.select(Query("visits_by_venue", day))
        assert ends(rows) == {"a": T0.replace(microsecond=123000) + timedelta(minutes=25)}


@pytest.mark.integration
async def test_tables_spec_matches_the_migrations(isolated: Settings) -> None:
    cs = CassandraStore.from_settings(isolated)
    try:
        session = cs._session
        rows = session.execute(
            "SELECT table_name, column_name, kind, clustering_order FROM system_schema.columns "
            "WHERE keyspace_name = %s",
            (isolated.keyspace,),
        )
        actual: dict[str, dict[str, tuple[str, str]]] = {}
        for table, column, kind, order in rows:  # the store's sessions return plain tuples
            actual.setdefault(table, {})[column] = (kind, order)
    finally:
        cs.close()
    for name, spec in TABLES.items():
        cols = actual[name]
        assert set(cols) == set(spec.all_columns), name
        assert {c for c, (k, _) in cols.items() if k == "partition_key"} == set(spec.partition_key)
        assert {c for c, (k, _) in cols.items() if k == "clustering"} == set(spec.clustering)
        assert {c for c, (_, o) in cols.items() if o == "desc"} == set(spec.descending), name


@pytest.mark.integration
async def test_changes_of_one_row_in_one_apply_take_effect_in_order(
    store: ProjectionStore,
) -> None:
    row = {"venue_id": "v1", "day": date(2021, 8, 1), "visit_start": T0, "person_id": "a"}
    part = {"venue_id": "v1", "day": date(2021, 8, 1)}
    # delete then re-insert (a window moved within its day): the row must survive
    await store.apply([Upsert("visits_by_venue", {**row, "visit_end": T0})])
    await store.apply(
        [
            Delete("visits_by_venue", row),
            Upsert("visits_by_venue", {**row, "visit_end": T0 + timedelta(hours=1)}),
        ]
    )
    (got,) = await store.select(Query("visits_by_venue", part))
    assert got["visit_end"] == (T0 + timedelta(hours=1)).replace(microsecond=123000)
    # insert then delete: gone
    await store.apply(
        [Upsert("visits_by_venue", {**row, "visit_end": T0}), Delete("visits_by_venue", row)]
    )
    assert await store.select(Query("visits_by_venue", part)) == []


@pytest.mark.integration
async def test_one_apply_over_many_partitions_and_a_partition_larger_than_a_batch(
    store: ProjectionStore,
) -> None:
    """The Cassandra store packs partitions into replica-set batches and splits a partition
    with more statements than a batch holds; every row lands either way."""
    from projections.cassandra import PARTITION_STATEMENTS

    spread = [visit(f"p{i}", i % 50, venue=f"v{i}") for i in range(700)]
    crowded = [
        visit(f"q{i:04d}", i % 600, venue="crowded") for i in range(PARTITION_STATEMENTS * 2 + 7)
    ]
    await store.apply(spread + crowded)
    for i in (0, 351, 699):
        (got,) = await store.select(
            Query("visits_by_venue", {"venue_id": f"v{i}", "day": date(2021, 8, 1)})
        )
        assert got["person_id"] == f"p{i}"
    rows = await store.select(
        Query("visits_by_venue", {"venue_id": "crowded", "day": date(2021, 8, 1)})
    )
    assert len(rows) == len(crowded)
    assert len(await store.scan("visits_by_venue")) == len(spread) + len(crowded)


@pytest.mark.integration
async def test_writes_are_bound_as_the_driver_binds_them(isolated: Settings) -> None:
    """The store encodes a write's values itself (``projections.cassandra._Binder``, for
    speed); for every table and every CQL type in the schema the bytes and the routing key
    are the driver's own."""
    samples: dict[str, list[Any]] = {
        "varchar": ["v1", "Hà Nội", ""],
        "timestamp": [
            T0,
            datetime(1969, 12, 31, 23, 59, 59, 500, tzinfo=UTC),  # truncated towards zero
            datetime(2021, 8, 1, 10, 0, 0, 999),  # naive: the driver reads it as UTC
            T0.astimezone(timezone(timedelta(hours=7))),
        ],
        "date": [date(2021, 8, 1), date(1960, 1, 1)],
        "simple_date": [date(2021, 8, 1), date(1960, 1, 1)],
        "int": [0, -7, 2**31 - 1],
        "bigint": [0, -(2**40), 2**62],
        "double": [0.0, 0.1, -3.5e300],
    }

    def value(cql_type: Any, i: int) -> Any:
        if cql_type.typename == "list":
            return [value(cql_type.subtypes[0], j) for j in range(i + 1)]
        return samples[cql_type.typename][i % len(samples[cql_type.typename])]

    cs = CassandraStore.from_settings(isolated)
    try:
        for name, spec in TABLES.items():
            for i in range(4):
                binder = cs._upsert_statement(name, spec.all_columns, ttl=True, timestamp=True)
                values = [value(c.type, i) for c in binder.statement.column_metadata]
                ours, drivers = binder.bind(values), binder.statement.bind(values)
                assert ours.values == drivers.values, (name, values)
                assert ours.routing_key == drivers.routing_key, name
                binder = cs._delete_statement(name, timestamp=False)
                key = [value(c.type, i) for c in binder.statement.column_metadata]
                assert binder.bind(key).values == binder.statement.bind(key).values, name
        with pytest.raises(TypeError, match="visit_end"):  # the driver's message, naming it
            binder = cs._upsert_statement(
                "visits_by_venue",
                ("venue_id", "day", "visit_start", "person_id", "visit_end"),
                ttl=False,
                timestamp=False,
            )
            binder.bind(["v", date(2021, 8, 1), T0, "p", "not a time"])
    finally:
        cs.close()
