"""Numbered CQL migrations (``infra/migrations/V###__name.cql``), applied idempotently.

Files are append-only: once applied, a file's checksum is recorded in
``<keyspace>.schema_migrations`` and a later edit is refused at start (add a new file
instead). Statements are separated by ``;`` at the end of a line; the keyspace is the
session's, so the same files build the production keyspace and each test's own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^V(\d{3})__([a-z0-9_]+)\.cql$")


class MigrationError(RuntimeError):
    """A migration file is malformed, was edited after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """Every migration file in version order; malformed names are an error."""
    out: list[Migration] = []
    for path in sorted(directory.glob("*.cql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration {path.name} is not named V###__name.cql")
        text = path.read_text()
        body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        statements = tuple(s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip())
        out.append(
            Migration(
                int(m.group(1)), m.group(2), statements, hashlib.sha256(text.encode()).hexdigest()
            )
        )
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return tuple(out)


def create_keyspace(
    session: Any, keyspace: str, replication_factor: int, datacenter: str = "datacenter1"
) -> None:
    """Create the keyspace if missing: NetworkTopologyStrategy, ``replication_factor``
    replicas in the local data centre (writes and reads use LOCAL_QUORUM)."""
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', '{datacenter}': {replication_factor}}}"
    )


def _agreed(session: Any, within: float = 120.0) -> None:
    """Wait until every node has the schema just changed (the driver waits only 10 s by
    itself, too short for nodes starting together on two cores); a statement sent before
    to a node without it fails with INCOMPATIBLE_SCHEMA. One node agrees with itself."""
    if not session.cluster.control_connection.wait_for_schema_agreement(wait_time=within):
        raise MigrationError(f"the Cassandra nodes did not agree on the schema within {within}s")


def migrate(
    session: Any,
    keyspace: str,
    replication_factor: int = 1,
    log: Callable[[str], None] = print,
    datacenter: str = "datacenter1",
) -> list[int]:
    """Apply pending migrations to ``keyspace``; return the versions applied now."""
    create_keyspace(session, keyspace, replication_factor, datacenter)
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )
    _agreed(session)
    applied = {
        row.version: row.checksum
        for row in session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
    }
    session.set_keyspace(keyspace)
    done: list[int] = []
    for mig in load_migrations():
        if mig.version in applied:
            if applied[mig.version] != mig.checksum:
                raise MigrationError(
                    f"V{mig.version:03d}__{mig.name}.cql was edited after it was applied to "
                    f"{keyspace}; migrations are append-only, add a new file instead"
                )
            continue
        for stmt in mig.statements:
            try:
                session.execute(stmt, timeout=60)
            except Exception as e:  # driver errors carry the server's message
                raise MigrationError(f"V{mig.version:03d} failed at: {stmt[:200]}: {e}") from e
        _agreed(session)
        session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, toTimestamp(now()))",
            (mig.version, mig.name, mig.checksum),
        )
        log(f"applied migration V{mig.version:03d}__{mig.name} to {keyspace}")
        done.append(mig.version)
    return done
