"""Reusable event scenarios: the same events drive unit (in-process) and integration tests."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.results import lookup_code_hash

# 10:00 in Ho Chi Minh City two days ago: recent enough that rows are inside their
# event-time retention and scans inside the ingest API's lateness bound.
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=3, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Ev:
    topic: str
    key: str
    name: str
    record: dict[str, Any]


def scan(
    person: str,
    venue: str,
    at: datetime,
    direction: str,
    *,
    dwell: int = 60,
    province: str = "79",
    scan_id: str | None = None,
) -> Ev:
    return Ev(
        "checkins",
        person,
        "covidtech.checkin.CheckInScanned",
        {
            "event_id": scan_id or f"s-{person}-{venue}-{direction}-{at.isoformat()}",
            "scanned_at": at,
            "received_at": at,
            "person_id": person,
            "venue_id": venue,
            "direction": direction,
            "method": "PERSON_SCANNED_VENUE",
            "venue_province": province,
            "venue_dwell_minutes": dwell,
            "device_id": None,
        },
    )


def stay(person: str, venue: str, start: datetime, end: datetime, **scan_kw: Any) -> list[Ev]:
    """A visit as its two scans: IN at ``start``, OUT at ``end``."""
    return [scan(person, venue, start, "IN", **scan_kw), scan(person, venue, end, "OUT", **scan_kw)]


def sample(
    sample_id: str,
    people: list[str],
    at: datetime,
    *,
    onset: date | None = None,
    province: str = "79",
) -> Ev:
    return Ev(
        "samples",
        sample_id,
        "covidtech.testing.SampleCollected",
        {
            "event_id": f"collected-{sample_id}",
            "sample_id": sample_id,
            "collected_at": at,
            "site_id": "site-1",
            "province": province,
            "test_type": "PCR",
            "members": [
                {
                    "person_id": p,
                    "lookup_code_sha256": lookup_code_hash(code_for(sample_id, p)),
                    "symptom_onset": onset,
                }
                for p in people
            ],
        },
    )


def code_for(sample_id: str, person: str) -> str:
    """A valid, deterministic lookup code for a test sample member."""
    digest = hashlib.sha256(f"{sample_id}/{person}".encode()).digest()
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[b % 32] for b in digest[:16])


def result(sample_id: str, outcome: str, at: datetime) -> Ev:
    return Ev(
        "samples",
        sample_id,
        "covidtech.testing.SampleResulted",
        {
            "event_id": f"resulted-{sample_id}",
            "sample_id": sample_id,
            "resulted_at": at,
            "lab_id": "lab-1",
            "result": outcome,
        },
    )


def dose(
    person: str,
    dose_id: str,
    at: datetime,
    vaccine: str,
    *,
    birth_year: int = 1980,
    province: str = "01",
) -> Ev:
    return Ev(
        "doses",
        person,
        "covidtech.vaccination.DoseAdministered",
        {
            "event_id": dose_id,
            "dose_id": dose_id,
            "person_id": person,
            "administered_at": at,
            "site_id": "site-1",
            "vaccine": vaccine,
            "birth_year": birth_year,
            "residence_province": province,
        },
    )


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def outbreak_at_venue(prefix: str = "") -> list[Ev]:
    """A case visits 10:00-11:00 (window to 11:30 with the aerosol tail); contact A overlaps
    30 min (HIGH), B 10 min (LOW), D not at all; the case tests positive the next day."""
    c, a, b, d, v = (f"{prefix}case", f"{prefix}a", f"{prefix}b", f"{prefix}d", f"{prefix}venue")
    return [
        *stay(c, v, m(0), m(60)),
        *stay(a, v, m(0), m(30)),
        *stay(b, v, m(80), m(100)),
        *stay(d, v, m(180), m(240)),
        sample(f"{prefix}tube", [c], m(24 * 60)),
        result(f"{prefix}tube", "POSITIVE", m(30 * 60)),
    ]


def pooled_retests() -> list[Ev]:
    """A pool of p1, p2 and p3 tests positive; p1 retests negative, p2 positive (a case)."""
    return [
        sample("pool", ["p1", "p2", "p3"], m(0)),
        result("pool", "POSITIVE", m(600)),
        sample("r1", ["p1"], m(700)),
        result("r1", "NEGATIVE", m(900)),
        sample("r2", ["p2"], m(700)),
        result("r2", "POSITIVE", m(900)),
    ]


def venue_registered(venue: str, name: str) -> Ev:
    return Ev(
        "venues",
        venue,
        "covidtech.checkin.VenueRegistered",
        {
            "event_id": f"{venue}.registered",
            "occurred_at": T0,
            "venue_id": venue,
            "name": name,
            "address": "1 Lê Lợi",
            "province": "79",
            "district": "760",
            "category": "market",
            "default_dwell_minutes": 60,
        },
    )


def person_registered(person: str, at: datetime = T0, birth_year: int = 1985) -> Ev:
    return Ev(
        "people",
        person,
        "covidtech.people.PersonRegistered",
        {
            "event_id": f"{person}.registered",
            "occurred_at": at,
            "person_id": person,
            "province": "79",
            "district": "760",
            "birth_year": birth_year,
        },
    )


def citizen_outbreak() -> list[Ev]:
    """The outbreak at a named venue, from the citizens' side (my record, notices).

    outbreak_at_venue: the case 10:00-11:00, A overlaps 30 min (HIGH), D not at all; B is
    replaced by an IN at 11:25 without OUT (its dwell overlaps the case's tail: LOW), which a
    late ``scan("b", "venue", m(85), "OUT")`` withdraws. A has a dose."""
    return [
        venue_registered("venue", "Chợ Bến Thành"),
        person_registered("a"),
        *[e for e in outbreak_at_venue() if e.record.get("person_id") != "b"],
        scan("b", "venue", m(85), "IN"),
        dose("a", "a-1", m(-60 * 24), "AZ", province="79"),
    ]


def shuffled(events: list[Ev], seed: int) -> list[Ev]:
    """The same events in another order, keeping each sample's collection before its result
    (the ingest API refuses a result for an unknown sample)."""
    rng = random.Random(seed)
    out = events[:]
    rng.shuffle(out)
    collected = {
        e.record["sample_id"]: i for i, e in enumerate(out) if e.name.endswith("SampleCollected")
    }
    for i, e in enumerate(out):
        if e.name.endswith("SampleResulted"):
            j = collected[e.record["sample_id"]]
            if j > i:
                out[i], out[j] = out[j], out[i]
    return out


def town(seed: int, people: int = 200, venues: int = 15, days: int = 2) -> list[Ev]:
    """A deterministic busy town: daily visits with IN and (mostly) OUT scans, some repeated
    INs, a few cases (with and without onset dates), a pooled sample and doses."""
    rng = random.Random(seed)
    vs = [f"v{i}" for i in range(venues)]
    dwell = {v: rng.choice([30, 60, 60, 90, 120]) for v in vs}
    out: list[Ev] = []
    for day in range(days):
        for p in range(people):
            for _ in range(rng.randint(1, 3)):
                v = rng.choice(vs)
                start = m(day * 24 * 60 + rng.randint(0, 12 * 60))
                out.append(scan(f"p{p}", v, start, "IN", dwell=dwell[v]))
                if rng.random() < 0.1:
                    out.append(scan(f"p{p}", v, start + timedelta(minutes=2), "IN", dwell=dwell[v]))
                if rng.random() < 0.8:
                    out.append(
                        scan(
                            f"p{p}",
                            v,
                            start + timedelta(minutes=rng.randint(5, 150)),
                            "OUT",
                            dwell=dwell[v],
                        )
                    )
    for i, p in enumerate(rng.sample(range(people), 6)):
        onset = (T0 + timedelta(days=1)).date() if i % 2 else None
        out.append(sample(f"t{i}", [f"p{p}"], m(days * 24 * 60), onset=onset))
        out.append(result(f"t{i}", "POSITIVE", m(days * 24 * 60 + 300)))
    pool = [f"p{p}" for p in rng.sample(range(people), 5)]
    out += [sample("pool", pool, m(60)), result("pool", "POSITIVE", m(400))]
    for p in range(0, people, 3):
        out.append(
            dose(
                f"p{p}",
                f"d{p}-1",
                m(rng.randint(0, 600)),
                rng.choice(["AZ", "PFIZER", "JANSSEN"]),
                birth_year=1940 + p % 70,
                province=rng.choice(["01", "79", "48"]),
            )
        )
        if p % 2 == 0:
            out.append(
                dose(
                    f"p{p}",
                    f"d{p}-2",
                    m(24 * 60 + rng.randint(0, 600)),
                    "PFIZER",
                    birth_year=1940 + p % 70,
                    province="01",
                )
            )
    return out
