"""The ProjectionStore on Cassandra: the only module that runs CQL at run time.

Writes are prepared once per (table, columns) shape and sent with ``execute_async`` at
LOCAL_QUORUM, bounded in flight; the driver's futures are bridged into asyncio. Any driver
error becomes :class:`StoreUnavailable`: callers retry the whole batch (every mutation is an
idempotent upsert or delete) and never acknowledge the source events before it succeeded.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cassandra import ConsistencyLevel, DriverException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.cqltypes import DateType
from cassandra.marshal import int64_pack
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    TokenAwarePolicy,
    WhiteListRoundRobinPolicy,
)
from cassandra.query import (
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    Statement,
    tuple_factory,
)
from cassandra.util import Date

from covidtech.settings import Settings
from projections.model import (
    TABLES,
    Delete,
    Query,
    Row,
    StoreUnavailable,
    Upsert,
    collapse_by_key,
    normalize,
    ttl_seconds,
)

# An unlogged batch carries at most this many statements and bytes of bound values; the
# cluster's batch_size_warn_threshold must be above BATCH_BYTES (infra/cassandra: 64 KiB).
# With a durable commit log (``commitlog_sync: batch``) the coordinator applies a batch's
# local mutations one after another, each waiting for its sync, while separate requests
# share syncs: 100 rows in one batch took 106 ms, in ten requests of 10 about 20 ms. Ten
# per batch measured best for the worker (2,500 events/s, against 1,709 with one per
# request and 673 with 100; docs/streams.md, Durability).
BATCH_STATEMENTS = 10
# One partition's mutations stay in one batch up to this many (applied atomically on each
# replica); a larger partition is split.
PARTITION_STATEMENTS = 100
BATCH_BYTES = 32 * 1024


def build_cluster(
    s: Settings,
    *,
    request_timeout: float = 10.0,
    only: str | None = None,
    consistency: int = ConsistencyLevel.LOCAL_QUORUM,
    row_factory: Callable[..., Any] = tuple_factory,
) -> Cluster:
    """The driver cluster of every process (the store, migrations, readiness probes): protocol
    v5, token-aware routing in the local data centre, ``consistency`` (LOCAL_QUORUM) and
    ``row_factory`` for every statement. ``only`` talks to that one node alone (a probe).
    With ``cassandra_username`` set it logs in as that role (PasswordAuthenticator).

    The default row factory gives plain tuples in the SELECT's column order: the driver's
    named_tuple_factory builds a namedtuple class per result (0.37 ms of CPU per query
    against 0.14 ms, measured)."""
    policy: Any = (
        WhiteListRoundRobinPolicy([only])
        if only
        else TokenAwarePolicy(DCAwareRoundRobinPolicy(s.cassandra_local_dc))
    )
    profile = ExecutionProfile(
        load_balancing_policy=policy,
        consistency_level=consistency,
        request_timeout=request_timeout,
        row_factory=row_factory,
    )
    return Cluster(
        [only] if only else list(s.cassandra_contact_points),
        port=s.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=5,
        # After a DDL statement the driver waits until every node has the new schema; a
        # loaded cluster took longer than the default 10 s, and a read of the new table on a
        # node without it failed (INCOMPATIBLE_SCHEMA).
        max_schema_agreement_wait=120,
        auth_provider=(
            PlainTextAuthProvider(s.cassandra_username, s.cassandra_password)
            if s.cassandra_username
            else None
        ),
    )


def connect(
    s: Settings,
    *,
    request_timeout: float = 10.0,
    consistency: int = ConsistencyLevel.LOCAL_QUORUM,
) -> Any:
    """A driver session (token-aware, local DC, ``consistency``: LOCAL_QUORUM); statements
    name keyspaces."""
    cluster = build_cluster(s, request_timeout=request_timeout, consistency=consistency)
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


Encoder = Callable[[Any, int], bytes]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _timestamp(value: Any, protocol_version: int) -> bytes:
    """The driver's timestamp encoding (``DateType.serialize``: whole seconds from
    ``timegm`` times 1,000 plus the microseconds / 1,000, truncated), without building a
    time tuple for each UTC datetime."""
    if type(value) is datetime and value.tzinfo is UTC:
        seconds = (value - _EPOCH) // _SECOND
        return int64_pack(int(seconds * 1e3 + value.microsecond / 1e3))  # type: ignore[no-any-return]
    return DateType.serialize(value, protocol_version)  # type: ignore[no-any-return]


def _encoder(cql_type: Any) -> Encoder:
    if isinstance(cql_type, type) and issubclass(cql_type, DateType):
        return _timestamp
    return cql_type.serialize  # type: ignore[no-any-return]


class _Binder:
    """Binds values to one prepared write, as ``PreparedStatement.bind`` does.

    The driver's bind builds a column descriptor per value and asks for a column
    encryption policy this store never sets, which made it most of a write's CPU in a
    rebuild; here each column's encoder is looked up once per statement. Values are given
    positionally, one per bind marker."""

    __slots__ = ("_encoders", "_protocol", "statement")

    def __init__(self, statement: PreparedStatement) -> None:
        if statement.column_encryption_policy is not None:
            raise ValueError("column encryption is not supported by the projection store")
        self.statement = statement
        self._protocol = statement.protocol_version
        self._encoders = tuple(_encoder(c.type) for c in statement.column_metadata)

    def bind(self, values: list[Any]) -> BoundStatement:
        if len(values) != len(self._encoders):
            raise ValueError(f"{len(values)} values for {len(self._encoders)} bind markers")
        protocol = self._protocol
        try:
            encoded = [
                None if v is None else encode(v, protocol)
                for v, encode in zip(values, self._encoders, strict=True)
            ]
        except (TypeError, ValueError, struct.error):
            return self.statement.bind(values)  # the driver's bind names the bad column
        bound = BoundStatement(self.statement)
        bound.raw_values = values
        bound.values = encoded
        return bound


class CassandraStore:
    """ProjectionStore on a cassandra-driver session (libev reactor, futures bridged)."""

    def __init__(self, session: Any, keyspace: str, *, max_in_flight: int = 256) -> None:
        self._session = session
        self._ks = keyspace  # statements name keyspace.table (no reliance on USE)
        self._prepared: dict[tuple[Any, ...], PreparedStatement] = {}
        self._binders: dict[tuple[Any, ...], _Binder] = {}  # writes, by shape
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

    def _upsert_statement(
        self, table: str, cols: tuple[str, ...], ttl: bool, timestamp: bool
    ) -> _Binder:
        shape = ("u", table, cols, ttl, timestamp)
        binder = self._binders.get(shape)  # the CQL text is built on a miss only
        if binder is None:
            options = [o for o, wanted in (("TTL ?", ttl), ("TIMESTAMP ?", timestamp)) if wanted]
            using = " USING " + " AND ".join(options) if options else ""
            binder = self._binders[shape] = _Binder(
                self._prepare(
                    shape,
                    f"INSERT INTO {self._ks}.{table} ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)}){using}",
                )
            )
        return binder

    def _delete_statement(self, table: str, timestamp: bool) -> _Binder:
        shape = ("d", table, timestamp)
        binder = self._binders.get(shape)
        if binder is None:
            binder = self._binders[shape] = _Binder(
                self._prepare(
                    shape,
                    f"DELETE FROM {self._ks}.{table}"
                    + (" USING TIMESTAMP ?" if timestamp else "")
                    + " WHERE "
                    + " AND ".join(f"{c} = ?" for c in TABLES[table].primary_key),
                )
            )
        return binder

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
        """Write every mutation, as few requests as the replicas allow.

        Mutations of one partition always travel in one UNLOGGED batch, so each partition's
        change is applied atomically on its replicas. Partitions owned by the same replicas
        share batches (``_replica_batches``): one request per replica set instead of one per
        partition, which is what Cassandra's CPU goes to when rows are small."""
        now = datetime.now(UTC)
        groups: dict[tuple[Any, ...], list[BoundStatement]] = {}
        for key, m in collapse_by_key(mutations).items():
            spec = TABLES[m.table]
            if isinstance(m, Upsert):
                ttl = ttl_seconds(m.expires_at, now)
                if ttl is not None and ttl <= 0:
                    continue
                cols = tuple(m.row)
                binder = self._upsert_statement(
                    m.table, cols, ttl is not None, m.timestamp is not None
                )
                params = [m.row[c] for c in cols]
                if ttl is not None:
                    params.append(ttl)
                if m.timestamp is not None:
                    params.append(m.timestamp)
            else:
                binder = self._delete_statement(m.table, m.timestamp is not None)
                params = [m.key[c] for c in spec.primary_key]
                if m.timestamp is not None:
                    params.insert(0, m.timestamp)
            groups.setdefault(key[: 1 + len(spec.partition_key)], []).append(binder.bind(params))
        calls = [self._execute(request, ()) for request in self._replica_batches(groups)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, StoreUnavailable):
                    raise r
                raise StoreUnavailable(f"{type(r).__name__}: {r}") from r

    def _replica_batches(
        self, partitions: dict[tuple[Any, ...], list[BoundStatement]]
    ) -> Iterator[Statement]:
        """The requests that carry ``partitions``: per replica set (from the driver's token
        map), whole partitions packed into UNLOGGED batches of at most ``BATCH_STATEMENTS``
        statements and ``BATCH_BYTES`` of values, a lone statement sent as itself. A
        partition of more than ``PARTITION_STATEMENTS`` is split (its parts are then not
        applied together).
        Like DSBulk's replica-set batching: the coordinator is a replica of every row it
        receives, so a batch costs one request and no forwarding."""
        metadata = self._session.cluster.metadata
        by_replicas: dict[tuple[Any, ...], list[list[BoundStatement]]] = {}
        for statements in partitions.values():
            key = statements[0].routing_key
            owners = metadata.get_replicas(self._ks, key) if key is not None else ()
            by_replicas.setdefault(tuple(sorted(map(str, owners))), []).append(statements)
        for parts in by_replicas.values():
            pending: list[BoundStatement] = []
            size = 0
            for statements in parts:
                weight = sum(_bytes(s) for s in statements)
                if pending and (
                    len(pending) + len(statements) > BATCH_STATEMENTS or size + weight > BATCH_BYTES
                ):
                    yield _request(pending)
                    pending, size = [], 0
                if len(statements) > PARTITION_STATEMENTS:
                    for i in range(0, len(statements), PARTITION_STATEMENTS):
                        yield _request(statements[i : i + PARTITION_STATEMENTS])
                    continue
                pending.extend(statements)
                size += weight
            if pending:
                yield _request(pending)

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
        return [dict(zip(spec.all_columns, map(_from_db, r), strict=True)) for r in rows]

    async def select_partitions(self, table: str, column: str, values: Sequence[Any]) -> list[Row]:
        """Every row of the partitions ``column IN values`` of a table with a one-column
        partition key, in one request: cheaper than a request a partition when a caller
        needs a few small partitions at once (the check-in statuses of a batch of scans)."""
        spec = TABLES[table]
        if spec.partition_key != (column,):
            raise ValueError(f"{table} is not partitioned by {column} alone")
        stmt = self._prepare(
            ("in", table),
            f"SELECT {', '.join(spec.all_columns)} FROM {self._ks}.{table} WHERE {column} IN ?",
        )
        rows = await self._execute(stmt, [list(values)])
        return [dict(zip(spec.all_columns, map(_from_db, r), strict=True)) for r in rows]

    async def scan(self, table: str) -> list[Row]:
        spec = TABLES[table]
        stmt = self._prepare(
            ("scan", table), f"SELECT {', '.join(spec.all_columns)} FROM {self._ks}.{table}"
        )
        rows = await self._execute(stmt, [])
        return [
            {c: normalize(_from_db(v)) for c, v in zip(spec.all_columns, r, strict=True)}
            for r in rows
        ]


def _bytes(statement: BoundStatement) -> int:
    return sum(len(v) for v in statement.values if v)


def _request(statements: list[BoundStatement]) -> Statement:
    if len(statements) == 1:
        return statements[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for statement in statements:
        batch.add(statement)
    return batch


def _settle(
    fut: asyncio.Future[list[Any]], result: list[Any] | None, exc: BaseException | None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result or [])
