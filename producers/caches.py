"""What the ingest API knows about venues and samples, folded from their topics (pure).

:class:`VenueDirectory` is fed by the ``venues`` topic (read from its beginning; it is
compacted) and by venues this instance registered, added after the broker acknowledged them.
Scans need a venue's province and dwell (copied into CheckInScanned), posters its name and
address. :class:`SampleBook` is fed by ``samples`` and tells the result route whether a sample
exists (404 otherwise) and whether it already has a result (same: idempotent 2xx; different:
409).

Ordering: each topic is keyed by the entity id, so one venue's or one sample's events arrive in
log order. A venue's later VenueUpdated replaces its entry. A sample keeps its *first*
collection and its *first* result (:func:`domain.results.apply_result`), which is also what the
stream agent does, so the API and the projections agree on which result counts. Entries added
locally after an ack are the same events the feed will deliver again; applying them twice is a
no-op.

Scale note: both are plain dicts in memory. Venues are few (hundreds of thousands); samples
over 90 days can be many millions, where a lookup in the results projection would replace
:class:`SampleBook`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from domain.results import (
    ConflictingResult,
    InvalidResult,
    Sample,
    TestResult,
    TestType,
    apply_result,
)
from schemas.codec import CodecError, Event, Registry

__all__ = ["KnownSample", "SampleBook", "VenueDirectory", "VenueEntry"]

log = logging.getLogger(__name__)

_VENUE_EVENTS = frozenset({"covidtech.checkin.VenueRegistered", "covidtech.checkin.VenueUpdated"})


E = TypeVar("E")


class _Book(Generic[E]):
    """Entries by id, folded from the records of ``topic`` and from local writes."""

    def __init__(self, registry: Registry, topic: str) -> None:
        self._registry = registry
        self._topic = topic
        self._entries: dict[str, E] = {}
        self.undecodable = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entry_id: str) -> E | None:
        """The entry, or None if this instance has not seen it (yet)."""
        return self._entries.get(entry_id)

    def _decode(self, value: bytes) -> Event | None:
        """The record's event; None if it cannot be decoded (counted and logged)."""
        try:
            return self._registry.decode(value)
        except CodecError as e:
            self.undecodable += 1
            log.warning("skipping undecodable record on %s: %s", self._topic, e)
            return None


@dataclass(frozen=True, slots=True)
class VenueEntry:
    """A venue as the ingest API needs it."""

    venue_id: str
    name: str
    address: str
    province: str
    district: str
    category: str
    default_dwell_minutes: int


class VenueDirectory(_Book[VenueEntry]):
    """Venues by id, from the ``venues`` topic and local registrations."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, "venues")

    def put(self, venue: VenueEntry) -> None:
        """Record a venue (after its VenueRegistered was acknowledged)."""
        self._entries[venue.venue_id] = venue

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of the ``venues`` topic; a tombstone removes the venue."""
        if value is None:
            if key is not None:
                self._entries.pop(key.decode("utf-8", "replace"), None)
            return
        event = self._decode(value)
        if event is None or event.name not in _VENUE_EVENTS:
            return
        r = event.record
        self.put(
            VenueEntry(
                venue_id=r["venue_id"],
                name=r["name"],
                address=r["address"],
                province=r["province"],
                district=r["district"],
                category=r["category"],
                default_dwell_minutes=r["default_dwell_minutes"],
            )
        )


@dataclass(frozen=True, slots=True)
class KnownSample:
    """A collected sample: its state (members are not kept), its size, and the lab it was
    sent to (None: any lab of its province)."""

    sample: Sample
    member_count: int
    addressed_to: str | None = None

    @property
    def result(self) -> TestResult | None:
        return self.sample.result


class SampleBook(_Book[KnownSample]):
    """Samples by id, from the ``samples`` topic and local writes."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry, "samples")

    def collected(
        self,
        sample_id: str,
        site_id: str,
        province: str,
        test_type: TestType,
        collected_at: datetime,
        member_count: int,
        addressed_to: str | None = None,
    ) -> None:
        """Record a collection; the first one of a sample id wins."""
        if sample_id in self._entries:
            return
        sample = Sample(
            sample_id=sample_id,
            site_id=site_id,
            province=province,
            test_type=test_type,
            collected_at=collected_at,
            members=(),
        )
        self._entries[sample_id] = KnownSample(sample, member_count, addressed_to)

    def resulted(
        self, sample_id: str, result: TestResult, resulted_at: datetime, lab_id: str
    ) -> None:
        """Record a result; the first one wins, a result of an unknown sample is dropped."""
        known = self._entries.get(sample_id)
        if known is None:
            return
        try:
            decision = apply_result(known.sample, result, resulted_at, lab_id)
        except (ConflictingResult, InvalidResult):
            return
        if decision.accepted:
            self._entries[sample_id] = KnownSample(
                decision.sample, known.member_count, known.addressed_to
            )

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of the ``samples`` topic."""
        event = None if value is None else self._decode(value)
        if event is None:
            return
        r = event.record
        if event.name == "covidtech.testing.SampleCollected":
            self.collected(
                r["sample_id"],
                r["site_id"],
                r["province"],
                TestType(r["test_type"]),
                r["collected_at"],
                len(r["members"]),
                r.get("lab_id"),
            )
        elif event.name == "covidtech.testing.SampleResulted":
            self.resulted(r["sample_id"], TestResult(r["result"]), r["resulted_at"], r["lab_id"])
