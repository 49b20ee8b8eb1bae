"""The ProjectionStore on Cassandra: the only module that runs CQL at run time.

Writes are prepared once per (table, columns) shape and sent with ``execute_async`` at
LOCAL_QUORUM, bounded in flight; the driver's futures are bridged into asyncio. Any driver
error becomes :class:`StoreUnavailable`: callers retry the whole batch (every mutation is an
idempotent upsert or delete) and never acknowledge the source events before it succeeded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from cassandra import ConsistencyLevel, DriverException
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from cassandra.util import Date

from covidtech.settings import Settings
from projections.model import (
    TABLES,
    Delete,
    Query,
    Row,
    StoreUnavailable,
    Upsert,
    collapse,
    normalize,
    ttl_seconds,
)

_MAX_BATCH = 50  # statements per unlogged batch (keeps batches under the size warning)


def connect(s: Settings, *, request_timeout: float = 10.0) -> Any:
    """A driver session (token-aware, local DC, LOCAL_QUORUM); statements name keyspaces."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(s.cassandra_local_dc)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=request_timeout,
    )
    cluster = Cluster(
        list(s.cassandra_contact_points),
        port=s.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=5,
    )
    try:
        return cluster.connect()
    except (NoHostAvailable, DriverException, OSError) as e:
        cluster.shutdown()
        raise StoreUnavailable(f"cannot connect to Cassandra: {e}") from e


def _from_db(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)
    if isinstance(value, Date):
        return date.fromordinal(date(1970, 1, 1).toordinal() + value.days_from_epoch)
    if isinstance(value, list):
        return [_from_db(v) for v in value]
    return value


class CassandraStore:
    """ProjectionStore on a cassandra-driver session (libev reactor, futures bridged)."""

    def __init__(self, session: Any, keyspace: str, *, max_in_flight: int = 256) -> None:
        self._session = session
        self._ks = keyspace  # statements name keyspace.table (no reliance on USE)
        self._prepared: dict[tuple[Any, ...], PreparedStatement] = {}
        self._in_flight = asyncio.Semaphore(max_in_flight)

    @classmethod
    def from_settings(cls, s: Settings) -> CassandraStore:
        return cls(connect(s), s.keyspace)

    def close(self) -> None:
        self._session.cluster.shutdown()

    def _prepare(self, shape: tuple[Any, ...], cql: str) -> PreparedStatement:
        stmt = self._prepared.get(shape)
        if stmt is None:
            try:
                stmt = self._session.prepare(cql)
            except (NoHostAvailable, DriverException, OSError) as e:
                raise StoreUnavailable(f"cannot prepare statement: {e}") from e
            self._prepared[shape] = stmt
        return stmt

    async def _execute(self, stmt: Any, params: Sequence[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        pages: list[Any] = []

        def ok(rows: Any) -> None:
            pages.extend(rows or ())
            if rf.has_more_pages:  # runs on the driver's thread; ask for the next page
                rf.start_fetching_next_page()
                return
            loop.call_soon_threadsafe(_settle, fut, pages, None)

        def err(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, fut, None, exc)

        async with self._in_flight:
            try:
                rf = self._session.execute_async(stmt, params)
            except (NoHostAvailable, DriverException, OSError) as e:
                raise StoreUnavailable(str(e)) from e
            rf.add_callbacks(ok, err)
            try:
                return await fut
            except (NoHostAvailable, DriverException, OSError) as e:
                raise StoreUnavailable(f"{type(e).__name__}: {e}") from e

    async def apply(self, mutations: Sequence[Upsert | Delete]) -> None:
        """Write every mutation. Mutations of one partition go as one UNLOGGED batch (one
        request, applied atomically on that partition's replicas); partitions in parallel."""
        now = datetime.now(UTC)
        groups: dict[tuple[Any, ...], list[tuple[PreparedStatement, list[Any]]]] = {}
        for m in collapse(mutations):
            spec = TABLES[m.table]
            if isinstance(m, Upsert):
                ttl = ttl_seconds(m.expires_at, now)
                if ttl is not None and ttl <= 0:
                    continue
                cols = tuple(m.row)
                options = [("TTL", ttl), ("TIMESTAMP", m.timestamp)]
                options = [(name, v) for name, v in options if v is not None]
                using = " USING " + " AND ".join(f"{n} ?" for n, _ in options) if options else ""
                stmt = self._prepare(
                    ("u", m.table, cols, *(n for n, _ in options)),
                    f"INSERT INTO {self._ks}.{m.table} ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)}){using}",
                )
                params = [m.row[c] for c in cols] + [v for _, v in options]
                values = m.row
            else:
                stamp = m.timestamp is not None
                stmt = self._prepare(
                    ("d", m.table, stamp),
                    f"DELETE FROM {self._ks}.{m.table}"
                    + (" USING TIMESTAMP ?" if stamp else "")
                    + " WHERE "
                    + " AND ".join(f"{c} = ?" for c in spec.primary_key),
                )
                params = ([m.timestamp] if stamp else []) + [m.key[c] for c in spec.primary_key]
                values = m.key
            partition = (m.table, *(normalize(values[c]) for c in spec.partition_key))
            groups.setdefault(partition, []).append((stmt, params))
        calls = []
        for statements in groups.values():
            if len(statements) == 1:
                calls.append(self._execute(*statements[0]))
            else:
                for i in range(0, len(statements), _MAX_BATCH):
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                    for stmt, params in statements[i : i + _MAX_BATCH]:
                        batch.add(stmt, params)
                    calls.append(self._execute(batch, ()))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, StoreUnavailable):
                    raise r
                raise StoreUnavailable(f"{type(r).__name__}: {r}") from r

    async def select(self, query: Query) -> list[Row]:
        spec = TABLES[query.table]
        where = [f"{c} = ?" for c in spec.partition_key]
        params: list[Any] = [query.partition[c] for c in spec.partition_key]
        shape: list[Any] = ["s", query.table]
        if spec.clustering:
            first = spec.clustering[0]
            if query.clustering_from is not None:
                where.append(f"{first} >= ?")
                params.append(query.clustering_from)
                shape.append("from")
            if query.clustering_to is not None:
                where.append(f"{first} <= ?")
                params.append(query.clustering_to)
                shape.append("to")
            for c, v in query.extra.items():
                where.append(f"{c} = ?")
                params.append(v)
                shape.append(c)
        limit = ""
        if query.limit is not None:
            limit = " LIMIT ?"
            params.append(query.limit)
            shape.append("limit")
        stmt = self._prepare(
            tuple(shape),
            f"SELECT {', '.join(spec.all_columns)} FROM {self._ks}.{query.table} "
            f"WHERE {' AND '.join(where)}{limit}",
        )
        rows = await self._execute(stmt, params)
        return [{c: _from_db(getattr(r, c)) for c in spec.all_columns} for r in rows]

    async def scan(self, table: str) -> list[Row]:
        spec = TABLES[table]
        stmt = self._prepare(
            ("scan", table), f"SELECT {', '.join(spec.all_columns)} FROM {self._ks}.{table}"
        )
        rows = await self._execute(stmt, [])
        return [{c: normalize(_from_db(getattr(r, c))) for c in spec.all_columns} for r in rows]


def _settle(
    fut: asyncio.Future[list[Any]], result: list[Any] | None, exc: BaseException | None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result or [])
