"""An in-memory ProjectionStore: the twin of the Cassandra store for unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from projections.model import TABLES, Delete, Query, Row, Upsert, normalize, ttl_seconds


class InMemoryStore:
    """Rows per table keyed by primary key; upserts merge columns like CQL does."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._rows: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in TABLES}
        self._clock = clock

    async def apply(self, mutations: Sequence[Upsert | Delete]) -> None:
        now = self._clock()
        for m in mutations:
            spec = TABLES[m.table]
            if isinstance(m, Upsert):
                ttl = ttl_seconds(m.expires_at, now)
                if ttl is not None and ttl <= 0:
                    continue
                key = tuple(normalize(m.row[c]) for c in spec.primary_key)
                row = self._rows[m.table].setdefault(
                    key, dict(zip(spec.primary_key, key, strict=True))
                )
                for c, v in m.row.items():
                    if c not in spec.primary_key:
                        row[c] = normalize(v)
            else:
                key = tuple(normalize(m.key[c]) for c in spec.primary_key)
                self._rows[m.table].pop(key, None)

    async def select(self, query: Query) -> list[Row]:
        spec = TABLES[query.table]
        pk = tuple(normalize(query.partition[c]) for c in spec.partition_key)
        rows = [
            self._full(spec.all_columns, r)
            for k, r in self._rows[query.table].items()
            if k[: len(pk)] == pk
        ]
        if spec.clustering:
            first = spec.clustering[0]
            lo, hi = normalize(query.clustering_from), normalize(query.clustering_to)
            rows = [
                r for r in rows if (lo is None or r[first] >= lo) and (hi is None or r[first] <= hi)
            ]
            for c, v in query.extra.items():
                rows = [r for r in rows if r[c] == normalize(v)]
            for c in reversed(spec.clustering):  # stable sorts, last key first
                rows.sort(key=itemgetter(c), reverse=c in spec.descending)
        return rows[: query.limit] if query.limit is not None else rows

    async def scan(self, table: str) -> list[Row]:
        spec = TABLES[table]
        return [self._full(spec.all_columns, r) for r in self._rows[table].values()]

    @staticmethod
    def _full(columns: tuple[str, ...], row: Row) -> Row:
        return {c: row.get(c) for c in columns}
