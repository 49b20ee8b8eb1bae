"""A seeded, deterministic outbreak over Vietnam's 63 provinces, as ingest requests.

The generator is pure: given a seed, a start time and sizes it yields the same requests in
the same order (``Request``: method, path, the scope whose token sends it, JSON body, and the
time it is due). The clock and the random generator are injected (bytewax-style), so tests can
check the shape of the output without a network.

What it models (numbers are parameters with plausible defaults):
- provinces weighted by their 2019 census population (a subset for a small run);
- venues by category with their usual dwell (markets 45 min, restaurants 60, offices 8 h ...);
- people with birth years drawn from the census age structure, 1-3 visits a day with IN and
  (mostly) OUT scans, some repeated INs, some OUTs missing, some scans delivered late by
  offline scanners in batches;
- health declarations, a few with symptoms;
- an outbreak seeded in a few people that spreads through overlapping visits; the infected
  develop symptoms, are tested (alone, or in pooled campaign tubes of 5) and the lab posts
  results hours later;
- or, with ``reproduction_number`` set, a branching process of known R: each infected person
  infects Poisson(R) others of their province (while any are left), each after a generation
  interval drawn from the serial interval's gamma (mean 4.7 d, sd 2.9 d: the estimator's),
  so the estimated Rt can be checked against R (``tests/integration/test_simulated_rt.py``);
- a vaccination campaign with Vietnam's 2021 product mix and primary-series schedules.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.reference import AGE_SHARES, PROVINCES, Province

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

CATEGORIES: dict[str, tuple[int, float]] = {
    # category: (default dwell in minutes, relative popularity)
    "market": (45, 5.0),
    "supermarket": (40, 4.0),
    "restaurant": (60, 5.0),
    "cafe": (50, 4.0),
    "office": (480, 2.0),
    "school": (300, 1.5),
    "hospital": (90, 1.0),
    "pagoda": (60, 0.8),
    "bus-station": (30, 1.0),
    "gym": (90, 0.7),
}
VACCINE_MIX = (
    ("AZ", 0.40),
    ("PFIZER", 0.27),
    ("SINOPHARM", 0.20),
    ("MODERNA", 0.10),
    ("JANSSEN", 0.03),
)
SYMPTOMS = ("FEVER", "COUGH", "SORE_THROAT", "FATIGUE", "LOSS_OF_TASTE_OR_SMELL")


@dataclass(frozen=True)
class Request:
    """One ingest request, due at ``due`` (simulated event time)."""

    due: datetime
    method: str
    path: str
    scope: str
    body: dict[str, Any]


def own_token(person_id: str) -> str:
    """The scopes of a person's own app token (``app person:<id>``, space-separated): a self
    check-in places that person only (docs/security.md, "Citizens")."""
    return f"app person:{person_id}"


@dataclass(frozen=True)
class Person:
    ref: str  # the simulator's own name; the API issues the person_id
    province: str
    birth_year: int
    district: str = "001"

    def registration(self) -> Request:
        return Request(
            datetime.min,
            "POST",
            "/v1/people",
            "app",
            {"province": self.province, "district": self.district, "birth_year": self.birth_year},
        )


@dataclass(frozen=True)
class Venue:
    ref: str
    province: str
    category: str
    dwell: int

    def registration(self, index: int) -> Request:
        return Request(
            datetime.min,
            "POST",
            "/v1/venues",
            f"venue-admin:{self.province}",
            {
                "name": f"{self.category.replace('-', ' ').title()} {index}",
                "address": f"{index} Đường Lê Lợi",
                "province": self.province,
                "district": f"{index % 12 + 1:03d}",
                "category": self.category,
                "default_dwell_minutes": self.dwell,
            },
        )


@dataclass(frozen=True)
class Issued:
    """What the ingest API answered to a registration: the id and its signed QR payload."""

    id: str
    qr: str


@dataclass
class Outbreak:
    """Parameters of the simulated population and epidemic."""

    people: int = 2000
    venues: int = 120
    provinces: int = 8
    days: float = 2.0
    visits_per_day: tuple[int, int] = (1, 3)
    seed_cases: int = 4
    transmission: float = 0.12  # chance per overlapping visit with an infectious person
    missing_out: float = 0.25
    repeated_in: float = 0.08
    offline_share: float = 0.15  # scans delivered late in batches by offline scanners
    symptomatic_declaration: float = 0.03
    campaign_pool_share: float = 0.05  # people swabbed in pooled campaign tubes
    vaccinated_share: float = 0.5
    #: R of a branching-process epidemic (None: spread through overlapping visits instead).
    reproduction_number: float | None = None
    generation_mean_days: float = 4.7
    generation_sd_days: float = 2.9
    extra: dict[str, Any] = field(default_factory=dict)


def simulated_provinces(params: Outbreak) -> list[Province]:
    """The provinces a run populates: the ``params.provinces`` most populous ones."""
    return sorted(PROVINCES.values(), key=lambda pr: -pr.population)[: params.provinces]


def population_scale(params: Outbreak) -> float:
    """The ``population_scale`` setting that makes per-hundred figures of a run read as they
    would for real provinces: simulated people over the census population of the provinces
    they live in (provinces outside the run scale alike and stay empty)."""
    return params.people / sum(pr.population for pr in simulated_provinces(params))


def site_scope(province: str) -> str:
    """The sampling and vaccination site of a province: one per province, bound to it."""
    return f"site:sim-site-{province}@{province}"


def lab_scope(province: str) -> str:
    """The lab of a province, which results that province's samples."""
    return f"lab:sim-lab-{province}@{province}"


def stable_id(prefix: str, *parts: object) -> str:
    return f"{prefix}-" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:20]


class Simulation:
    """Builds the population, venues and timeline of one seeded run."""

    def __init__(self, start: datetime, params: Outbreak, seed: int = 1) -> None:
        self.start = start
        self.p = params
        self.rng = random.Random(seed)
        self.seed = seed
        weights = simulated_provinces(params)
        self.provinces = [pr.code for pr in weights]
        self._weights = [pr.population for pr in weights]

    # ----------------------------------------------------------------- population

    def _birth_year(self) -> int:
        bands = list(AGE_SHARES.items())
        band = self.rng.choices([b for b, _ in bands], [s for _, s in bands])[0]
        lo, hi = {
            "0-11": (0, 11),
            "12-17": (12, 17),
            "18-49": (18, 49),
            "50-64": (50, 64),
            "65+": (65, 90),
        }[band]
        return self.start.year - self.rng.randint(lo, hi)

    def venues(self) -> list[Venue]:
        cats = list(CATEGORIES)
        out = []
        for i in range(self.p.venues):
            cat = self.rng.choices(cats, [CATEGORIES[c][1] for c in cats])[0]
            province = self.rng.choices(self.provinces, self._weights)[0]
            out.append(Venue(f"v{i}", province, cat, CATEGORIES[cat][0]))
        return out

    def people(self) -> list[Person]:
        return [
            Person(
                f"p{i}",
                self.rng.choices(self.provinces, self._weights)[0],
                self._birth_year(),
                f"{i % 12 + 1:03d}",
            )
            for i in range(self.p.people)
        ]

    # ----------------------------------------------------------------- timeline

    def requests(
        self, venues: list[Venue], people: list[Person], issued: dict[str, Issued]
    ) -> Iterator[Request]:
        """Every request of the run, ordered by due time; ``issued`` maps each venue's and
        person's ref to the id and QR the ingest API gave it."""
        self.issued = issued
        out: list[Request] = []
        out += self._declarations(people)
        visits = self._visits(venues, people)
        out += self._scans(visits)
        out += self._epidemic(visits, people)
        out += self._vaccination(people)
        out.sort(key=lambda r: (r.due, r.path, repr(r.body)))
        yield from out

    def _visits(
        self, venues: list[Venue], people: list[Person]
    ) -> list[tuple[Person, Venue, datetime, datetime]]:
        by_province: dict[str, list[Venue]] = {}
        for v in venues:
            by_province.setdefault(v.province, []).append(v)
        visits = []
        days = max(1, round(self.p.days))
        for person in people:
            local = by_province.get(person.province) or venues
            for day in range(days):
                for _ in range(self.rng.randint(*self.p.visits_per_day)):
                    v = self.rng.choice(local)
                    start = self.start + timedelta(days=day, minutes=self.rng.randint(0, 14 * 60))
                    stay = timedelta(minutes=max(5, int(self.rng.gauss(v.dwell, v.dwell / 3))))
                    visits.append((person, v, start, start + stay))
        return visits

    def _scans(self, visits: list[tuple[Person, Venue, datetime, datetime]]) -> list[Request]:
        out: list[Request] = []
        offline: dict[str, list[dict[str, Any]]] = {}
        for person, venue, start, end in visits:
            pq, pid = self.issued[person.ref].qr, self.issued[person.ref].id
            scans = [("IN", start)]
            if self.rng.random() < self.p.repeated_in:
                scans.append(("IN", start + timedelta(minutes=self.rng.randint(1, 5))))
            if self.rng.random() >= self.p.missing_out:
                scans.append(("OUT", end))
            for direction, at in scans:
                body = {
                    "scan_id": stable_id(
                        "sim-s", self.seed, person.ref, venue.ref, direction, at.isoformat()
                    ),
                    "venue_qr": self.issued[venue.ref].qr,
                    "person_qr": pq,
                    "scanned_at": at.isoformat(),
                    "direction": direction,
                }
                if self.rng.random() < self.p.offline_share:
                    offline.setdefault(venue.ref, []).append(body)
                else:
                    out.append(Request(at, "POST", "/v1/scans", own_token(pid), body))
        venue_of = {v.ref: v for _, v, _, _ in visits}
        for vid, bodies in offline.items():
            bodies.sort(key=lambda b: b["scanned_at"])
            for i in range(0, len(bodies), 200):
                chunk = bodies[i : i + 200]
                due = datetime.fromisoformat(chunk[-1]["scanned_at"]) + timedelta(hours=3)
                out.append(
                    Request(
                        due,
                        "POST",
                        "/v1/scans",
                        f"venue-admin:{venue_of[vid].province}",
                        {"scans": chunk},
                    )
                )
        return out

    def _declarations(self, people: list[Person]) -> list[Request]:
        out = []
        for person in people:
            if self.rng.random() < 0.3:
                symptomatic = self.rng.random() < self.p.symptomatic_declaration
                at = self.start + timedelta(minutes=self.rng.randint(0, int(self.p.days * 1440)))
                out.append(
                    Request(
                        at,
                        "POST",
                        "/v1/declarations",
                        own_token(self.issued[person.ref].id),
                        {
                            "declaration_id": stable_id(
                                "sim-d", self.seed, person.ref, at.isoformat()
                            ),
                            "person_qr": self.issued[person.ref].qr,
                            "province": person.province,
                            "symptoms": self.rng.sample(SYMPTOMS, 2) if symptomatic else [],
                            "contact_with_case": False,
                            "travelled_from_province": None,
                        },
                    )
                )
        return out

    def _epidemic(
        self, visits: list[tuple[Person, Venue, datetime, datetime]], people: list[Person]
    ) -> list[Request]:
        """Seed cases infect people whose visits overlap theirs (or, with a reproduction
        number, :meth:`_branching`); the infected are tested."""
        infected = (
            self._branching(people)
            if self.p.reproduction_number is not None
            else self._through_visits(visits, people)
        )
        return self._tested(infected, people)

    def _branching(self, people: list[Person]) -> dict[str, datetime]:
        """Infection times of a branching process with Poisson(R) offspring per case, each
        infected a gamma generation interval after their infector, within the run."""
        assert self.p.reproduction_number is not None
        r = self.p.reproduction_number
        mean, sd = self.p.generation_mean_days, self.p.generation_sd_days
        shape, scale = (mean / sd) ** 2, sd**2 / mean
        end = self.start + timedelta(days=self.p.days)
        susceptible: dict[str, list[Person]] = {}
        for person in people:
            susceptible.setdefault(person.province, []).append(person)
        for pool in susceptible.values():
            self.rng.shuffle(pool)
        infected: dict[str, datetime] = {}
        queue: list[tuple[datetime, str, str]] = []
        for p in self.rng.sample(people, self.p.seed_cases):
            # Seeds spread over one generation, not a single cohort that would make the
            # first generations' incidence oscillate.
            at = self.start + timedelta(days=self.rng.uniform(0, mean))
            infected[p.ref] = at
            susceptible[p.province].remove(p)
            queue.append((at, p.ref, p.province))
        while queue:
            queue.sort()
            since, _ref, province = queue.pop(0)
            for _ in range(_poisson(self.rng, r)):
                pool = susceptible[province]
                if not pool:
                    break
                at = since + timedelta(days=self.rng.gammavariate(shape, scale))
                if at >= end:
                    continue
                other = pool.pop()
                infected[other.ref] = at
                queue.append((at, other.ref, province))
        return infected

    def _through_visits(
        self, visits: list[tuple[Person, Venue, datetime, datetime]], people: list[Person]
    ) -> dict[str, datetime]:
        infected: dict[str, datetime] = {
            p.ref: self.start for p in self.rng.sample(people, self.p.seed_cases)
        }
        by_venue: dict[str, list[tuple[Person, datetime, datetime]]] = {}
        for person, venue, start, end in visits:
            by_venue.setdefault(venue.ref, []).append((person, start, end))
        for entries in by_venue.values():
            entries.sort(key=lambda e: e[1])
            for person, start, end in entries:
                if person.ref not in infected:
                    continue
                for other, s2, e2 in entries:
                    if other.ref in infected or e2 <= start or s2 >= end:
                        continue
                    if self.rng.random() < self.p.transmission:
                        infected[other.ref] = max(start, s2)
        return infected

    def _tested(self, infected: dict[str, datetime], people: list[Person]) -> list[Request]:
        out: list[Request] = []
        end_of_run = self.start + timedelta(days=self.p.days)
        by_ref = {p.ref: p for p in people}
        for i, (ref, since) in enumerate(sorted(infected.items())):
            collected = min(end_of_run, since + timedelta(hours=self.rng.randint(12, 30)))
            person = by_ref[ref]
            tube = stable_id("SIM-T", self.seed, i)
            onset = (collected - timedelta(days=1)).astimezone(LOCAL).date()
            out.append(
                Request(
                    collected,
                    "POST",
                    "/v1/samples",
                    site_scope(person.province),
                    {
                        "sample_id": tube,
                        "province": person.province,
                        "test_type": "PCR",
                        "collected_at": collected.isoformat(),
                        "members": [
                            {"person_qr": self.issued[ref].qr, "symptom_onset": onset.isoformat()}
                        ],
                    },
                )
            )
            out.append(
                Request(
                    collected + timedelta(hours=4),
                    "POST",
                    f"/v1/samples/{tube}/result",
                    lab_scope(person.province),
                    {"result": "POSITIVE"},
                )
            )
        campaign = [
            p
            for p in people
            if p.ref not in infected and self.rng.random() < self.p.campaign_pool_share
        ]
        for j in range(0, len(campaign) - 1, 5):
            pool = campaign[j : j + 5]
            if len(pool) < 2:
                break
            at = self.start + timedelta(hours=self.rng.randint(2, int(self.p.days * 20)))
            tube = stable_id("SIM-P", self.seed, j)
            out.append(
                Request(
                    at,
                    "POST",
                    "/v1/samples",
                    site_scope(pool[0].province),
                    {
                        "sample_id": tube,
                        "province": pool[0].province,
                        "test_type": "PCR",
                        "collected_at": at.isoformat(),
                        "members": [{"person_qr": self.issued[p.ref].qr} for p in pool],
                    },
                )
            )
            out.append(
                Request(
                    at + timedelta(hours=6),
                    "POST",
                    f"/v1/samples/{tube}/result",
                    lab_scope(pool[0].province),
                    {"result": "NEGATIVE"},
                )
            )
        return out

    def _vaccination(self, people: list[Person]) -> list[Request]:
        out = []
        products = [code for code, _ in VACCINE_MIX]
        weights = [share for _, share in VACCINE_MIX]
        for person in people:
            if (
                self.start.year - person.birth_year < 12
                or self.rng.random() >= self.p.vaccinated_share
            ):
                continue
            vaccine = self.rng.choices(products, weights)[0]
            first = self.start - timedelta(
                days=self.rng.randint(10, 25), minutes=self.rng.randint(0, 600)
            )
            doses = [(first, vaccine)]
            if vaccine != "JANSSEN" and self.rng.random() < 0.6:
                second = first + timedelta(days=self.rng.randint(21, 35))
                if second < self.start + timedelta(days=self.p.days):
                    doses.append(
                        (
                            max(second, self.start),
                            "PFIZER" if vaccine == "AZ" and self.rng.random() < 0.3 else vaccine,
                        )
                    )
            for n, (at, product) in enumerate(doses):
                out.append(
                    Request(
                        max(at, self.start),
                        "POST",
                        "/v1/doses",
                        site_scope(person.province),
                        {
                            "dose_id": stable_id("sim-dose", self.seed, person.ref, n),
                            "person_qr": self.issued[person.ref].qr,
                            "administered_at": at.isoformat(),
                            "vaccine": product,
                            "birth_year": person.birth_year,
                            "residence_province": person.province,
                        },
                    )
                )
        return out


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's product of uniforms; means here are small)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


__all__ = ["Issued", "Outbreak", "Person", "Request", "Simulation", "Venue"]
