"""An in-memory ProjectionStore: the twin of the Cassandra store.

Unit tests use it, and so does the in-process rebuild (``streams.rebuild``), which folds the
whole log into it and then writes its rows to Cassandra: so rows are indexed by partition
(a read touches one partition, as in CQL) and each row keeps the expiry it was written with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from projections.model import (
    TABLES,
    Delete,
    Query,
    Row,
    TableSpec,
    Upsert,
    collapse_by_key,
    normalize,
)

Key = tuple[Any, ...]


@functools.cache
def _key_columns(spec: TableSpec) -> frozenset[str]:
    return frozenset(spec.primary_key)


class InMemoryStore:
    """Rows per table, partition and clustering key; upserts merge columns like CQL does."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # table -> partition key -> clustering key -> (row, expires_at, write timestamp)
        self._rows: dict[str, dict[Key, dict[Key, tuple[Row, datetime | None, int | None]]]] = {
            name: {} for name in TABLES
        }
        # (table, partition key, clustering key) -> timestamp of the delete
        self._tombstones: dict[tuple[str, Key, Key], int] = {}
        self._clock = clock

    async def apply(self, mutations: Sequence[Upsert | Delete]) -> None:
        ttl_floor = self._clock() + timedelta(seconds=1)  # ttl_seconds(expires_at) >= 1
        for key, m in collapse_by_key(mutations).items():  # as the Cassandra store sends them
            spec = TABLES[m.table]
            split = 1 + len(spec.partition_key)
            pk, ck = key[1:split], key[split:]
            partition = self._rows[m.table].get(pk)
            found = partition.get(ck) if partition is not None else None
            # Write timestamps as in CQL, per row rather than per cell: an older write than
            # the row's (or than its delete) is ignored; a delete wins a tie; no timestamp
            # means "now", newer than any logical one.
            if m.timestamp is not None and found is not None and (found[2] or 0) > m.timestamp:
                continue
            if isinstance(m, Delete):
                if m.timestamp is not None:
                    self._tombstones[(m.table, pk, ck)] = m.timestamp
                if partition is not None and found is not None:
                    del partition[ck]
                    if not partition:
                        del self._rows[m.table][pk]
                continue
            buried = self._tombstones.get((m.table, pk, ck)) if self._tombstones else None
            if m.timestamp is not None and buried is not None and buried >= m.timestamp:
                continue
            if m.expires_at is not None and m.expires_at < ttl_floor:
                continue  # ttl_seconds() would be 0 or less: the Cassandra store skips it too
            if partition is None:
                partition = self._rows[m.table][pk] = {}
            if found is None:
                row, expires_at = dict(zip(spec.primary_key, pk + ck, strict=True)), None
            else:
                row, expires_at, _ = found
            keys = _key_columns(spec)
            for c, v in m.row.items():
                if c not in keys:
                    row[c] = normalize(v)
            # CQL keeps a TTL per cell; the row keeps the expiry of its latest write that had
            # one (handlers rewrite whole rows, so this is the expiry of every cell).
            partition[ck] = (row, m.expires_at or expires_at, m.timestamp)

    async def select(self, query: Query) -> list[Row]:
        spec = TABLES[query.table]
        pk = tuple(normalize(query.partition[c]) for c in spec.partition_key)
        partition = self._rows[query.table].get(pk, {})
        rows = [self._full(spec.all_columns, e[0]) for e in partition.values()]
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
        return [self._full(spec.all_columns, e[0]) for e in self._entries(table)]

    def upserts(self, share: int = 0, shares: int = 1) -> Iterator[Upsert]:
        """Every row as the upsert that recreates it in an empty store (with its expiry and
        write timestamp); with ``shares`` > 1, the rows of every ``shares``-th partition from
        the ``share``-th on (writers in parallel each take one share)."""
        for table in TABLES:
            for i, partition in enumerate(self._rows[table].values()):
                if i % shares == share:
                    for row, expires_at, timestamp in partition.values():
                        yield Upsert(table, dict(row), expires_at, timestamp)

    def __len__(self) -> int:
        return sum(len(p) for parts in self._rows.values() for p in parts.values())

    def _entries(self, table: str) -> Iterator[tuple[Row, datetime | None, int | None]]:
        for partition in self._rows[table].values():
            yield from partition.values()

    @staticmethod
    def _full(columns: tuple[str, ...], row: Row) -> Row:
        return {c: row.get(c) for c in columns}
