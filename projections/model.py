"""What a projection writes and reads, independent of the database.

Projections are rows with deterministic primary keys: every change is an :class:`Upsert` of
absolute values or a :class:`Delete` of one row, so applying a change twice is the same as
applying it once, and a replay of the log writes the same rows. ``TABLES`` mirrors the CQL
migrations (a contract test compares it with Cassandra's own schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol

Row = dict[str, Any]


@dataclass(frozen=True)
class TableSpec:
    name: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # regular columns
    descending: frozenset[str] = frozenset()  # clustering columns in DESC order

    @cached_property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering

    @cached_property
    def all_columns(self) -> tuple[str, ...]:
        return self.primary_key + self.columns


@dataclass(frozen=True)
class Upsert:
    """Write these column values to the row named by the primary key columns in ``row``.

    ``expires_at`` (event time + retention) becomes a per-row TTL, so data expires by the
    age of the event, not of the write; a row already past it is not written."""

    table: str
    row: Mapping[str, Any]
    expires_at: datetime | None = None
    timestamp: int | None = None  # write time in microseconds (CQL USING TIMESTAMP)


@dataclass(frozen=True)
class Delete:
    """Delete the row named by its full primary key."""

    table: str
    key: Mapping[str, Any]
    timestamp: int | None = None


def stamped(m: Mutation, timestamp: int) -> Mutation:
    """``m`` with a write timestamp. The stream runtime stamps every mutation with a logical
    time that only grows per Kafka partition (``streams.context``), so a late write of an
    older state (a revoked worker's last batch) loses to the newer one, as CQL keeps the cell
    with the highest timestamp."""
    if isinstance(m, Upsert):
        return Upsert(m.table, m.row, m.expires_at, timestamp)
    return Delete(m.table, m.key, timestamp)


Mutation = Upsert | Delete


@dataclass(frozen=True)
class Query:
    """Rows of one partition, optionally bounded on the first clustering column."""

    table: str
    partition: Mapping[str, Any]
    clustering_from: Any = None  # inclusive lower bound of the first clustering column
    clustering_to: Any = None  # inclusive upper bound
    limit: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # further clustering equalities


class StoreUnavailable(RuntimeError):
    """The database could not be reached or did not acknowledge a write in time."""


class ProjectionStore(Protocol):
    """What projections need from storage. Implemented on Cassandra and in memory."""

    async def apply(self, mutations: Sequence[Mutation]) -> None:
        """Apply every mutation; raise StoreUnavailable if any was not acknowledged."""

    async def select(self, query: Query) -> list[Row]:
        """The rows of one partition in clustering order."""

    async def scan(self, table: str) -> list[Row]:
        """Every row of a table (tests, digests and small reference tables only)."""


def _t(
    name: str,
    pk: tuple[str, ...],
    ck: tuple[str, ...],
    cols: tuple[str, ...],
    desc: tuple[str, ...] = (),
) -> TableSpec:
    return TableSpec(name, pk, ck, cols, frozenset(desc))


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        _t(
            "venues",
            ("venue_id",),
            (),
            (
                "name",
                "address",
                "province",
                "district",
                "category",
                "default_dwell_minutes",
                "updated_at",
            ),
        ),
        _t("people", ("person_id",), (), ("province", "district", "birth_year", "registered_at")),
        _t(
            "visits_by_person",
            ("person_id",),
            ("visit_start", "venue_id"),
            ("visit_end", "venue_province"),
            ("visit_start",),
        ),
        _t("visits_by_venue", ("venue_id", "day"), ("visit_start", "person_id"), ("visit_end",)),
        _t(
            "cases_by_person",
            ("person_id",),
            ("case_id",),
            (
                "sample_id",
                "province",
                "collected_at",
                "symptom_onset",
                "infectious_from",
                "infectious_until",
            ),
        ),
        _t(
            "exposure_windows_by_venue",
            ("venue_id",),
            ("case_person_id", "visit_start"),
            ("window_start", "window_end", "venue_province"),
        ),
        _t(
            "exposure_sites_by_province",
            ("province", "day"),
            ("venue_id", "case_person_id", "visit_start"),
            ("window_start", "window_end"),
        ),
        _t(
            "alerts_by_province",
            ("province", "day"),
            ("contact_visit_start", "alert_id"),
            (
                "case_person_id",
                "contact_person_id",
                "venue_id",
                "contact_visit_end",
                "overlap_seconds",
                "risk",
                "status",
            ),
            ("contact_visit_start",),
        ),
        _t(
            "alerts_by_person",
            ("contact_person_id",),
            ("contact_visit_start", "alert_id"),
            (
                "case_person_id",
                "venue_id",
                "province",
                "contact_visit_end",
                "overlap_seconds",
                "risk",
                "status",
            ),
            ("contact_visit_start",),
        ),
        _t(
            "clusters_by_province",
            ("province",),
            ("venue_id",),
            ("case_person_ids", "first_window_start", "last_window_start"),
        ),
        # V009: chains of transmission (streams/chains.py).
        _t(
            "transmission_links_by_province",
            ("province", "day"),
            ("case_collected_at", "alert_id"),
            (
                "case_person_id",
                "case_sample_id",
                "source_person_id",
                "source_sample_id",
                "source_collected_at",
                "venue_id",
                "exposure_at",
            ),
        ),
        _t(
            "samples_by_id",
            ("sample_id",),
            (),
            (
                "site_id",
                "province",
                "test_type",
                "collected_at",
                "member_count",
                "result",
                "resulted_at",
                "lab_id",
                "turnaround_seconds",
            ),
        ),
        _t(
            "results_by_lookup",
            ("lookup_code_sha256",),
            (),
            ("sample_id", "person_id", "state", "test_type", "collected_at", "resulted_at"),
        ),
        _t(
            "results_by_person",
            ("person_id",),
            ("collected_at", "sample_id"),
            ("state", "test_type", "province", "resulted_at"),
            ("collected_at",),
        ),
        _t(
            "turnaround_by_province",
            ("province", "day"),
            ("sample_id",),
            ("lab_id", "site_id", "turnaround_seconds"),
        ),
        _t(
            "pending_samples_by_province",
            ("province",),
            ("collected_at", "sample_id"),
            ("site_id",),
        ),
        _t(
            "syndromic_by_province",
            ("province",),
            ("day", "source_partition"),
            ("declarations", "symptomatic"),
        ),
        # V008: epidemic curve (streams/epidemiology.py).
        _t(
            "cases_by_province",
            ("province",),
            ("day", "source_partition"),
            ("by_sampling_date", "by_result_date"),
        ),
        _t(
            "tests_by_province",
            ("province",),
            ("day", "source_partition"),
            ("tests", "positives"),
        ),
        _t(
            "doses_by_person",
            ("person_id",),
            ("administered_at", "dose_id"),
            ("vaccine", "site_id", "residence_province", "birth_year"),
        ),
        _t(
            "coverage_daily",
            ("province", "age_band"),
            ("day",),
            (
                "first_doses",
                "completions",
                "boosters",
                "doses",
                "people_vaccinated",
                "people_fully_vaccinated",
                "total_boosters",
                "total_doses",
            ),
            ("day",),
        ),
        # V006: vaccination programme (streams/programme.py).
        _t(
            "registrations_by_person",
            ("person_id",),
            (),
            (
                "registration_id",
                "province",
                "district",
                "priority_group",
                "registered_at",
                "institution_id",
                "birth_year",
                "appointment_id",
                "appointment_at",
                "appointment_site_id",
                "doses",
                "first_dose_date",
                "completed_date",
            ),
        ),
        _t("registration_counts", ("province",), ("priority_group", "status"), ("people",)),
        _t(
            "registrations_by_status",
            ("province", "priority_group", "status"),
            ("registered_at", "person_id"),
            (
                "registration_id",
                "district",
                "institution_id",
                "appointment_at",
                "appointment_site_id",
                "doses",
                "first_dose_date",
                "completed_date",
            ),
        ),
        _t(
            "waiting_list_by_district",
            ("province", "district"),
            ("priority_rank", "registered_at", "person_id"),
            (
                "registration_id",
                "priority_group",
                "status",
                "appointment_at",
                "appointment_site_id",
                "institution_id",
            ),
        ),
        _t(
            "vaccine_stock",
            ("province",),
            ("vaccine",),
            (
                "allocated",
                "administered",
                "discarded",
                "in_stock",
                "rate_days",
                "administered_in_window",
                "daily_rate",
                "days_of_stock_left",
                "as_of",
            ),
        ),
        _t(
            "plan_progress",
            ("province",),
            ("priority_group",),
            (
                "plan_id",
                "target_date",
                "set_at",
                "target_people_vaccinated",
                "target_people_fully_vaccinated",
                "people_vaccinated",
                "people_fully_vaccinated",
                "vaccinated_daily_rate",
                "fully_vaccinated_daily_rate",
                "projected_vaccinated_date",
                "projected_fully_vaccinated_date",
                "as_of",
            ),
        ),
        _t(
            "vaccination_totals",
            ("area",),
            ("province",),
            ("allocated", "administered", "discarded", "registered", "as_of"),
        ),
        # V005: access control of the read API (written by the read API itself).
        _t(
            "grants",
            ("grant_id",),
            (),
            (
                "token_id",
                "agency",
                "scopes",
                "purpose",
                "granted_by",
                "granted_by_grant_id",
                "granted_at",
                "expires_at",
                "revoked_at",
                "revoked_by",
                "revoke_reason",
            ),
        ),
        _t(
            "audit_log",
            ("day",),
            ("read_at", "audit_id"),
            (
                "actor",
                "grant_id",
                "token_id",
                "scopes",
                "method",
                "route",
                "subject",
                "person_ids",
                "client_address",
                "status",
            ),
            ("read_at",),
        ),
        # V007: the facts of the check-in status (streams/status.py, projections/status.py).
        _t("status_facts_by_person", ("person_id",), ("kind", "ref"), ("at",)),
    )
}


def collapse_by_key(mutations: Sequence[Mutation]) -> dict[tuple[Any, ...], Mutation]:
    """One mutation per row with the same effect as applying ``mutations`` in order, keyed
    by ``(table, *primary key values normalized)``.

    Statements sent together may be applied in any order (parallel requests) or with one
    timestamp (a batch, where a tombstone beats an insert), so several changes of one row
    must become one: upserts merge (later values win), a delete then an upsert becomes an
    upsert that also clears the columns it does not set, an upsert then a delete a delete."""
    last: dict[tuple[Any, ...], Mutation] = {}
    for m in mutations:
        spec = TABLES[m.table]
        values = m.row if isinstance(m, Upsert) else m.key
        key = (m.table, *[normalize(values[c]) for c in spec.primary_key])
        prev = last.pop(key, None)
        if isinstance(m, Upsert) and prev is not None:
            if isinstance(prev, Upsert):
                m = Upsert(m.table, {**prev.row, **m.row}, m.expires_at, m.timestamp)
            else:
                cleared = {c: None for c in spec.columns if c not in m.row}
                m = Upsert(m.table, {**cleared, **m.row}, m.expires_at, m.timestamp)
        last[key] = m
    return last


def normalize(value: Any) -> Any:
    """The value as Cassandra returns it: times to the millisecond, aware UTC."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value  # the common case, first
    if isinstance(value, datetime):
        if value.tzinfo is not UTC:  # most are UTC already: no new object for them
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value.microsecond % 1000:
            value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        return value
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def ttl_seconds(expires_at: datetime | None, now: datetime) -> int | None:
    """Seconds left until ``expires_at`` (None: no TTL; 0 or less: already expired)."""
    if expires_at is None:
        return None
    return int((expires_at - now) / timedelta(seconds=1))


__all__ = [
    "TABLES",
    "Delete",
    "Mutation",
    "ProjectionStore",
    "Query",
    "Row",
    "StoreUnavailable",
    "TableSpec",
    "Upsert",
    "date",
    "normalize",
    "ttl_seconds",
]
