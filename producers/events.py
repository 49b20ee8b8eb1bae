"""Ids and Avro records of the events the ingest API writes (pure; see docs/events.md).

``event_id`` conventions: the client's id where the client has one (``scan_id``, ``dose_id``,
``declaration_id``), otherwise derived from the event's identity so that a retry of the same
write carries the same id: ``<venue_id>.registered``, ``<person_id>.registered``,
``<sample_id>.collected``, ``<sample_id>.resulted`` (a sample has one result; a different second
result is refused with 409, the same one again is answered without a new event). The
programme's events carry the client's id (``registration_id``, ``appointment_id``,
``allocation_id``, ``discard_id``), ``<appointment_id>.cancelled``, and a plan's
:func:`plan_id_of`.

Each builder returns an :class:`Outgoing`: the topic (a :class:`~covidtech.topics.TopicSpec`,
unprefixed), the partition key DESIGN.md gives for that topic, the record's full Avro name and
the record itself, ready for :meth:`schemas.codec.Registry.encode`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from covidtech import topics
from covidtech.topics import TopicSpec
from producers.requests.checkins import (
    DeclarationRequest,
    PersonRequest,
    ScanMethod,
    ScanRequest,
    VenueRequest,
)
from producers.requests.supply import AllocationRequest, DiscardRequest, PlanRequest
from producers.requests.testing import SampleRequest
from producers.requests.vaccination import (
    AppointmentRequest,
    CancellationRequest,
    DoseRequest,
    RegistrationRequest,
)

__all__ = [
    "Outgoing",
    "appointment_cancelled",
    "appointment_scheduled",
    "checkin_scanned",
    "declaration_submitted",
    "dose_administered",
    "doses_discarded",
    "new_id",
    "person_registered",
    "plan_id_of",
    "plan_set",
    "sample_collected",
    "sample_resulted",
    "vaccination_registered",
    "vaccine_allocated",
    "venue_registered",
]

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 20 random base32 characters (100 bits from the OS CSPRNG); no ``:``."""
    bits = secrets.randbits(100)
    return prefix + "_" + "".join(_BASE32[(bits >> (5 * i)) & 31] for i in range(20))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event ready to encode and produce."""

    topic: TopicSpec
    key: str
    record_name: str
    record: Mapping[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])


def venue_registered(venue_id: str, venue: VenueRequest, now: datetime) -> Outgoing:
    """VenueRegistered on ``venues``, keyed by venue id."""
    return Outgoing(
        topics.VENUES,
        venue_id,
        "covidtech.checkin.VenueRegistered",
        {
            "event_id": f"{venue_id}.registered",
            "occurred_at": now,
            "venue_id": venue_id,
            "name": venue.name,
            "address": venue.address,
            "province": venue.province,
            "district": venue.district,
            "category": venue.category,
            "default_dwell_minutes": venue.default_dwell_minutes,
        },
    )


def person_registered(person_id: str, person: PersonRequest, now: datetime) -> Outgoing:
    """PersonRegistered on ``people``, keyed by person id."""
    return Outgoing(
        topics.PEOPLE,
        person_id,
        "covidtech.people.PersonRegistered",
        {
            "event_id": f"{person_id}.registered",
            "occurred_at": now,
            "person_id": person_id,
            "province": person.province,
            "district": person.district,
            "birth_year": person.birth_year,
        },
    )


def checkin_scanned(
    scan: ScanRequest,
    method: ScanMethod,
    venue_province: str,
    venue_dwell_minutes: int,
    received_at: datetime,
) -> Outgoing:
    """CheckInScanned on ``checkins``, keyed by person id; event id = scan id.

    The venue's province and dwell are copied in as the API knows them now (DESIGN "Data
    flow" 1), so the per-person agent needs no venue lookup and a replay sees the same dwell.
    """
    return Outgoing(
        topics.CHECKINS,
        scan.person_id,
        "covidtech.checkin.CheckInScanned",
        {
            "event_id": scan.scan_id,
            "scanned_at": scan.scanned_at,
            "received_at": received_at,
            "person_id": scan.person_id,
            "venue_id": scan.venue_id,
            "direction": scan.direction.value,
            "method": method.value,
            "venue_province": venue_province,
            "venue_dwell_minutes": venue_dwell_minutes,
            "device_id": scan.device_id,
        },
    )


def declaration_submitted(
    declaration: DeclarationRequest, event_id: str, now: datetime
) -> Outgoing:
    """HealthDeclarationSubmitted on ``declarations``, keyed by person id."""
    return Outgoing(
        topics.DECLARATIONS,
        declaration.person_id,
        "covidtech.checkin.HealthDeclarationSubmitted",
        {
            "event_id": event_id,
            "submitted_at": now,
            "person_id": declaration.person_id,
            "province": declaration.province,
            "symptoms": [s.value for s in declaration.symptoms],
            "contact_with_case": declaration.contact_with_case,
            "travelled_from_province": declaration.travelled_from_province,
        },
    )


def sample_collected(sample: SampleRequest, site_id: str, code_hashes: Sequence[str]) -> Outgoing:
    """SampleCollected on ``samples``, keyed by sample id; members carry code hashes only."""
    if len(code_hashes) != len(sample.members):
        raise ValueError("one lookup code hash per member")
    return Outgoing(
        topics.SAMPLES,
        sample.sample_id,
        "covidtech.testing.SampleCollected",
        {
            "event_id": f"{sample.sample_id}.collected",
            "sample_id": sample.sample_id,
            "collected_at": sample.collected_at,
            "site_id": site_id,
            "province": sample.province,
            "lab_id": sample.lab_id,
            "test_type": sample.test_type.value,
            "members": [
                {
                    "person_id": m.person_id,
                    "lookup_code_sha256": h,
                    "symptom_onset": m.symptom_onset,
                }
                for m, h in zip(sample.members, code_hashes, strict=True)
            ],
        },
    )


def sample_resulted(sample_id: str, result: str, resulted_at: datetime, lab_id: str) -> Outgoing:
    """SampleResulted on ``samples``, keyed by sample id."""
    return Outgoing(
        topics.SAMPLES,
        sample_id,
        "covidtech.testing.SampleResulted",
        {
            "event_id": f"{sample_id}.resulted",
            "sample_id": sample_id,
            "resulted_at": resulted_at,
            "lab_id": lab_id,
            "result": result,
        },
    )


def dose_administered(dose: DoseRequest, site_id: str) -> Outgoing:
    """DoseAdministered on ``doses``, keyed by person id; event id = dose id."""
    return Outgoing(
        topics.DOSES,
        dose.person_id,
        "covidtech.vaccination.DoseAdministered",
        {
            "event_id": dose.dose_id,
            "dose_id": dose.dose_id,
            "person_id": dose.person_id,
            "administered_at": dose.administered_at,
            "site_id": site_id,
            "vaccine": dose.vaccine,
            "birth_year": dose.birth_year,
            "residence_province": dose.residence_province,
        },
    )


def vaccination_registered(
    r: RegistrationRequest, institution_id: str | None, now: datetime
) -> Outgoing:
    """VaccinationRegistered on ``vaccination-registrations``, keyed by person."""
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        r.person_id,
        "covidtech.vaccination.VaccinationRegistered",
        {
            "event_id": r.registration_id,
            "registration_id": r.registration_id,
            "person_id": r.person_id,
            "province": r.province,
            "district": r.district,
            "priority_group": r.priority_group.value,
            "registered_at": now,
            "institution_id": institution_id,
            "birth_year": r.birth_year,
        },
    )


def appointment_scheduled(a: AppointmentRequest, site_id: str, now: datetime) -> Outgoing:
    """AppointmentScheduled on ``vaccination-registrations``, keyed by person."""
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        a.person_id,
        "covidtech.vaccination.AppointmentScheduled",
        {
            "event_id": a.appointment_id,
            "appointment_id": a.appointment_id,
            "person_id": a.person_id,
            "site_id": site_id,
            "appointment_at": a.appointment_at,
            "scheduled_at": now,
        },
    )


def appointment_cancelled(
    appointment_id: str, c: CancellationRequest, site_id: str, now: datetime
) -> Outgoing:
    """AppointmentCancelled on ``vaccination-registrations``, keyed by person."""
    return Outgoing(
        topics.VACCINATION_REGISTRATIONS,
        c.person_id,
        "covidtech.vaccination.AppointmentCancelled",
        {
            "event_id": f"{appointment_id}.cancelled",
            "appointment_id": appointment_id,
            "person_id": c.person_id,
            "site_id": site_id,
            "cancelled_at": now,
            "reason": c.reason,
        },
    )


def vaccine_allocated(a: AllocationRequest, now: datetime) -> Outgoing:
    """VaccineAllocated on ``vaccine-supply``, keyed by province."""
    return Outgoing(
        topics.VACCINE_SUPPLY,
        a.province,
        "covidtech.vaccination.VaccineAllocated",
        {
            "event_id": a.allocation_id,
            "allocation_id": a.allocation_id,
            "province": a.province,
            "vaccine": a.vaccine,
            "doses": a.doses,
            "allocated_at": now,
        },
    )


def doses_discarded(d: DiscardRequest, site_id: str) -> Outgoing:
    """DosesDiscarded on ``vaccine-supply``, keyed by province."""
    return Outgoing(
        topics.VACCINE_SUPPLY,
        d.province,
        "covidtech.vaccination.DosesDiscarded",
        {
            "event_id": d.discard_id,
            "discard_id": d.discard_id,
            "province": d.province,
            "site_id": site_id,
            "vaccine": d.vaccine,
            "doses": d.doses,
            "reason": d.reason.value,
            "discarded_at": d.discarded_at,
        },
    )


def plan_id_of(province: str, p: PlanRequest) -> str:
    """The client's plan id, else one derived from the plan's content (a retry repeats it)."""
    if p.plan_id:
        return p.plan_id
    content = repr(
        (province, p.target_date.isoformat(), [(g.value, a, b) for g, a, b in p.targets])
    )
    return f"plan-{province}-{hashlib.sha256(content.encode()).hexdigest()[:20]}"


def plan_set(province: str, p: PlanRequest, now: datetime) -> Outgoing:
    """VaccinationPlanSet on ``vaccine-supply``, keyed by province; the latest plan wins."""
    return Outgoing(
        topics.VACCINE_SUPPLY,
        province,
        "covidtech.vaccination.VaccinationPlanSet",
        {
            "event_id": plan_id_of(province, p),
            "plan_id": plan_id_of(province, p),
            "province": province,
            "target_date": p.target_date,
            "targets": [
                {
                    "priority_group": g.value,
                    "people_vaccinated": first,
                    "people_fully_vaccinated": full,
                }
                for g, first, full in p.targets
            ],
            "set_at": now,
        },
    )
