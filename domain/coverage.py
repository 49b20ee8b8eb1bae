"""Dose coverage: a person's vaccination status and the area x age band x day counts.

DESIGN.md "Dose coverage" (Our World in Data definitions plus DHIS2 drop-out):

- Per person, doses are deduplicated by dose id and ordered by ``administered_at`` (ties by
  dose id). The primary series completes at the first dose if it is a single-dose product,
  else at the second dose whatever its product; later doses are boosters.
- Counts are by area (the nation ``"VN"`` and the residence province) x age band (age = year
  of the first dose - birth year) x local day (``Asia/Ho_Chi_Minh``) of the dose, cumulative.

Data flow item 4: the per-person agent folds doses with :func:`record_dose` and publishes
:func:`person_status`; the aggregator keeps each person's last status and applies
:func:`status_delta` (new - old) to the *daily* counts with :func:`apply_delta`, then writes
:func:`cumulative` values as absolute numbers. No counter is incremented blindly: a
redelivered identical status has an empty delta, and :func:`latest_status` ignores a stale
redelivered one, so the counts equal :func:`aggregate` of the final statuses whatever the
delivery order.

Which province and birth year: a DoseAdministered carries both "as recorded at the site",
so they may differ between doses of one person. The status uses those of the person's
*first* dose (in dose order), a function of the dose set, so a replay is deterministic. A
late, earlier dose recorded elsewhere may move the person to another area or band;
:func:`status_delta` then removes the old contribution from the old area/band.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from domain import reference
from domain.vaccines import get_vaccine

__all__ = [
    "ADULT_BANDS",
    "AGE_BANDS",
    "LOCAL_TZ",
    "NATION",
    "CountsDelta",
    "CountsKey",
    "CoverageCounts",
    "CoverageMetrics",
    "Dose",
    "DoseHistory",
    "InvalidDose",
    "NegativeCount",
    "PersonCoverage",
    "adult_counts",
    "adult_metrics",
    "adult_population",
    "age_band",
    "aggregate",
    "apply_delta",
    "area_metrics",
    "as_of",
    "completed_at",
    "contributions",
    "cumulative",
    "cumulative_by_key",
    "latest_status",
    "local_date",
    "metrics",
    "person_status",
    "record_dose",
    "scaled_population",
    "series",
    "status_delta",
    "sum_bands",
]

#: Age bands of "Dose coverage", in order.
AGE_BANDS: tuple[str, ...] = ("0-11", "12-17", "18-49", "50-64", "65+")
#: Bands of adult (18+) coverage.
ADULT_BANDS: tuple[str, ...] = ("18-49", "50-64", "65+")
#: Lower age bound of each band.
_BAND_FLOORS: tuple[tuple[int, str], ...] = (
    (65, "65+"),
    (50, "50-64"),
    (18, "18-49"),
    (12, "12-17"),
    (0, "0-11"),
)
#: The area that stands for the whole country.
NATION = reference.NATION
#: Zone of "local dates" (DESIGN.md: a day is a day in Asia/Ho_Chi_Minh).
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

if reference.age_bands() != AGE_BANDS:  # the denominators must line up with the counts
    raise reference.ReferenceDataError(
        f"reference age bands {reference.age_bands()} differ from {AGE_BANDS}"
    )


class InvalidDose(ValueError):
    """A dose that cannot be counted (the ingest API answers 422; the stream dead-letters it)."""


class NegativeCount(ValueError):
    """Applying a delta would make a count negative: an old status was not the one applied."""


def age_band(birth_year: int, first_dose_year: int) -> str:
    """The age band of a person: age = year of the first dose - birth year.

    Why: "Dose coverage" bands people by their age at the first dose, in whole years of
    calendar difference, so a person stays in one band for all their doses. Raises
    :class:`InvalidDose` for a negative age (born after the first dose).
    """
    age = first_dose_year - birth_year
    if age < 0:
        raise InvalidDose(f"birth year {birth_year} is after the first dose ({first_dose_year})")
    return next(band for floor, band in _BAND_FLOORS if age >= floor)


def local_date(moment: datetime) -> date:
    """The local day (Asia/Ho_Chi_Minh) of a UTC instant: the day a dose is counted on."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidDose(f"time must be timezone-aware (UTC), got {moment!r}")
    return moment.astimezone(LOCAL_TZ).date()


# --------------------------------------------------------------------------- a person


@dataclass(frozen=True)
class Dose:
    """One DoseAdministered, as far as coverage needs it.

    ``birth_year`` and ``province`` are those recorded at the site for this dose; the
    person's status takes them from the first dose.
    """

    dose_id: str
    administered_at: datetime
    vaccine: str
    birth_year: int
    province: str

    def __post_init__(self) -> None:
        if not self.dose_id:
            raise InvalidDose("dose_id is required")
        day = local_date(self.administered_at)
        object.__setattr__(self, "administered_at", self.administered_at.astimezone(UTC))
        get_vaccine(self.vaccine)  # raises UnknownVaccine
        if not reference.is_province(self.province):
            raise InvalidDose(f"unknown residence province {self.province!r}")
        age_band(self.birth_year, day.year)  # refuses a birth after the dose

    @property
    def local_date(self) -> date:
        """The local day the dose is counted on."""
        return local_date(self.administered_at)


def _dose_order(dose: Dose) -> tuple[datetime, str]:
    return (dose.administered_at, dose.dose_id)


def _dose_total_order(dose: Dose) -> tuple[datetime, str, str, int, str]:
    # Chooses one copy among differing copies of one dose id, whatever the arrival order.
    return (dose.administered_at, dose.dose_id, dose.vaccine, dose.birth_year, dose.province)


def _ordered(doses: Iterable[Dose]) -> tuple[Dose, ...]:
    """Doses deduplicated by dose id and ordered by (administered_at, dose_id)."""
    by_id: dict[str, Dose] = {}
    for dose in doses:
        held = by_id.get(dose.dose_id)
        if held is None or _dose_total_order(dose) < _dose_total_order(held):
            by_id[dose.dose_id] = dose
    return tuple(sorted(by_id.values(), key=_dose_order))


@dataclass(frozen=True)
class DoseHistory:
    """Per-person state of the doses agent: the person's doses, deduplicated and in order."""

    person_id: str
    doses: tuple[Dose, ...] = field(default=())

    def __post_init__(self) -> None:
        if _ordered(self.doses) != self.doses:
            raise ValueError("doses must be unique by dose_id and ordered by administered_at")


def record_dose(history: DoseHistory, dose: Dose) -> DoseHistory:
    """The history with ``dose`` added (evolve on DoseAdministered).

    Why: "Dose coverage" deduplicates by dose id, so a redelivered dose returns an equal
    history (the caller may then skip publishing); order of arrival does not matter.
    """
    doses = _ordered((*history.doses, dose))
    return history if doses == history.doses else DoseHistory(history.person_id, doses)


@dataclass(frozen=True)
class PersonCoverage:
    """A person's whole coverage status (the PersonCoverageStatus event).

    Dates are local days, in dose order. ``completed_date`` is None while the primary
    series is incomplete; ``booster_dates`` are the doses after the completing dose.
    """

    person_id: str
    province: str
    age_band: str
    dose_dates: tuple[date, ...]
    first_dose_date: date
    completed_date: date | None
    booster_dates: tuple[date, ...]

    def __post_init__(self) -> None:
        # A decoded status is trusted by the aggregator, so check it is self-consistent.
        d = self.dose_dates
        problems = []
        if not d or list(d) != sorted(d):
            problems.append("dose_dates must be non-empty and in order")
        elif self.first_dose_date != d[0]:
            problems.append("first_dose_date must be the first dose date")
        elif self.completed_date is None:
            if len(d) != 1 or self.booster_dates:
                problems.append("only a single dose of a two-dose product is incomplete")
        else:
            primary = len(d) - len(self.booster_dates)
            if primary not in (1, 2) or self.completed_date != d[primary - 1]:
                problems.append("completed_date must be the first or second dose date")
            elif self.booster_dates != d[primary:]:
                problems.append("booster_dates must be the dose dates after completion")
        if self.age_band not in AGE_BANDS:
            problems.append(f"unknown age band {self.age_band!r}")
        if not reference.is_province(self.province):
            problems.append(f"unknown province {self.province!r}")
        if problems:
            raise ValueError(f"inconsistent status of {self.person_id}: {'; '.join(problems)}")


def person_status(person_id: str, doses: Iterable[Dose]) -> PersonCoverage:
    """A person's coverage status from their doses (any order, repeats allowed).

    Why: "Dose coverage": dedupe by dose id, order by ``administered_at`` then dose id; the
    primary series completes at the first dose if that is a single-dose product, else at
    the second dose whatever its product; doses after the completing dose are boosters.
    Province and birth year come from the first dose (module docstring). Raises
    :class:`InvalidDose` when there is no dose.
    """
    ordered = _ordered(doses)
    if not ordered:
        raise InvalidDose(f"person {person_id} has no dose")
    first = ordered[0]
    dates = tuple(d.local_date for d in ordered)
    primary = 1 if get_vaccine(first.vaccine).single_dose else 2
    completed = len(ordered) >= primary
    return PersonCoverage(
        person_id=person_id,
        province=first.province,
        age_band=age_band(first.birth_year, dates[0].year),
        dose_dates=dates,
        first_dose_date=dates[0],
        completed_date=dates[primary - 1] if completed else None,
        booster_dates=dates[primary:] if completed else (),
    )


def completed_at(doses: Iterable[Dose]) -> datetime | None:
    """When the dose completing the primary series was administered (None: incomplete).

    Why: the check-in status (``domain.status``) counts a person fully vaccinated from that
    dose on; it is the dose :func:`person_status` dates ``completed_date`` by (same order,
    same single-dose rule), so the two never disagree.
    """
    ordered = _ordered(doses)
    if not ordered:
        return None
    primary = 1 if get_vaccine(ordered[0].vaccine).single_dose else 2
    return ordered[primary - 1].administered_at if len(ordered) >= primary else None


def latest_status(held: PersonCoverage | None, incoming: PersonCoverage) -> PersonCoverage:
    """Which of two statuses of one person the aggregator keeps.

    Why: the aggregator must never apply an older status after a newer one (a redelivery
    after a newer status would undo doses). Doses are only ever added, so a status with
    more doses is newer; with as many doses the incoming one wins (log order).
    """
    if held is not None and held.person_id != incoming.person_id:
        raise ValueError(f"status of {incoming.person_id} compared with {held.person_id}")
    if held is not None and len(held.dose_dates) > len(incoming.dose_dates):
        return held
    return incoming


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class CoverageCounts:
    """The four counts of one (area, age band, day).

    As *daily* counts: people whose first dose / completion fell on the day, boosters and
    doses given that day. As *cumulative* counts: the same up to and including the day,
    i.e. people_vaccinated, people_fully_vaccinated, total_boosters, total_doses. As a
    delta: the change of daily counts (may be negative).
    """

    people_vaccinated: int = 0
    people_fully_vaccinated: int = 0
    total_boosters: int = 0
    total_doses: int = 0

    def __add__(self, other: CoverageCounts) -> CoverageCounts:
        return CoverageCounts(*(getattr(self, f) + getattr(other, f) for f in _COUNT_FIELDS))

    def __sub__(self, other: CoverageCounts) -> CoverageCounts:
        return CoverageCounts(*(getattr(self, f) - getattr(other, f) for f in _COUNT_FIELDS))

    def __neg__(self) -> CoverageCounts:
        return CoverageCounts() - self

    @property
    def is_zero(self) -> bool:
        """Whether every count is zero (such an entry carries no information)."""
        return self == _ZERO

    @property
    def is_negative(self) -> bool:
        """Whether any count is below zero (never true of daily or cumulative counts)."""
        return any(getattr(self, f) < 0 for f in _COUNT_FIELDS)


_COUNT_FIELDS = tuple(f.name for f in fields(CoverageCounts))
_ZERO = CoverageCounts()

#: A change of daily counts (same shape as the counts themselves).
CountsDelta = CoverageCounts


class CountsKey(NamedTuple):
    """Where a count belongs: area ("VN" or province code), age band, local day."""

    area: str
    age_band: str
    day: date


def _daily_entries(status: PersonCoverage) -> list[tuple[date, CoverageCounts]]:
    """One person's daily contributions, by local day (before choosing areas)."""
    entries = [(status.first_dose_date, CoverageCounts(people_vaccinated=1))]
    if status.completed_date is not None:
        entries.append((status.completed_date, CoverageCounts(people_fully_vaccinated=1)))
    entries += [(day, CoverageCounts(total_boosters=1)) for day in status.booster_dates]
    entries += [(day, CoverageCounts(total_doses=1)) for day in status.dose_dates]
    return entries


def _tally(into: dict[CountsKey, CoverageCounts], status: PersonCoverage, sign: int) -> None:
    """Add (sign +1) or remove (sign -1) one person's contribution, nation and province."""
    entries = _daily_entries(status)
    for area in (NATION, status.province):
        for day, counts in entries:
            key = CountsKey(area, status.age_band, day)
            into[key] = into.get(key, _ZERO) + (counts if sign > 0 else -counts)


def _without_zeros(counts: Mapping[CountsKey, CoverageCounts]) -> dict[CountsKey, CoverageCounts]:
    return {k: v for k, v in counts.items() if not v.is_zero}


def contributions(status: PersonCoverage) -> dict[CountsKey, CoverageCounts]:
    """What one person adds to the daily counts, for the nation and for their province."""
    out: dict[CountsKey, CoverageCounts] = {}
    _tally(out, status, +1)
    return _without_zeros(out)


def status_delta(
    old: PersonCoverage | None, new: PersonCoverage
) -> dict[CountsKey, CoverageCounts]:
    """Change of the daily counts when a person's status goes from ``old`` to ``new``.

    Why: data flow item 4: the aggregator applies ``new - old`` so that counts are a
    function of the statuses, never of how many times they were delivered. An identical
    status gives an empty delta; a move to another province or age band removes the old
    contribution from the old area/band. Only non-zero entries are returned.
    """
    if old is not None and old.person_id != new.person_id:
        raise ValueError(f"delta between statuses of {old.person_id} and {new.person_id}")
    if old == new:
        return {}
    out: dict[CountsKey, CoverageCounts] = {}
    _tally(out, new, +1)
    if old is not None:
        _tally(out, old, -1)
    return _without_zeros(out)


def apply_delta(
    daily: Mapping[CountsKey, CoverageCounts], delta: Mapping[CountsKey, CountsDelta]
) -> dict[CountsKey, CoverageCounts]:
    """The new absolute daily counts of the keys ``delta`` touches (the rows to upsert).

    Why: "Aggregates are written as absolute values, never as Cassandra counters": the
    caller stores the returned values (``daily.update(result)``); a key that drops to zero
    is returned as zero so its row is overwritten. Only touched keys are returned, so the
    cost is the size of the delta. Raises :class:`NegativeCount` if a count would go below
    zero, which means the ``old`` status of the delta was never applied (a bug upstream).
    """
    out: dict[CountsKey, CoverageCounts] = {}
    for key, change in delta.items():
        value = daily.get(key, _ZERO) + change
        if value.is_negative:
            raise NegativeCount(f"{key} would become {value}")
        out[key] = value
    return out


def aggregate(statuses: Iterable[PersonCoverage]) -> dict[CountsKey, CoverageCounts]:
    """Daily counts of a whole batch of statuses (one per person), without zero entries.

    Why: the reference the incremental path must equal (rebuild, tests). Raises ValueError
    when one person has two different statuses in the batch.
    """
    seen: dict[str, PersonCoverage] = {}
    out: dict[CountsKey, CoverageCounts] = {}
    for status in statuses:
        held = seen.get(status.person_id)
        if held is not None:
            if held != status:
                raise ValueError(f"two different statuses of {status.person_id} in one batch")
            continue
        seen[status.person_id] = status
        _tally(out, status, +1)
    return _without_zeros(out)


def series(
    daily: Mapping[CountsKey, CoverageCounts], area: str, age_band: str
) -> dict[date, CoverageCounts]:
    """The daily counts of one (area, age band), by day."""
    return {k.day: v for k, v in daily.items() if k.area == area and k.age_band == age_band}


def cumulative(daily_by_date: Mapping[date, CoverageCounts]) -> dict[date, CoverageCounts]:
    """Running totals of a daily series, at each day it has (in day order).

    Why: "Dose coverage" figures are cumulative; the aggregator writes these absolute values.
    A change on day ``d`` changes the cumulative values of ``d`` and every later day.
    """
    out: dict[date, CoverageCounts] = {}
    running = _ZERO
    for day in sorted(daily_by_date):
        running = running + daily_by_date[day]
        out[day] = running
    return out


def cumulative_by_key(daily: Mapping[CountsKey, CoverageCounts]) -> dict[CountsKey, CoverageCounts]:
    """Running totals of every (area, age band) series of ``daily``, keyed like ``daily``."""
    by_series: dict[tuple[str, str], dict[date, CoverageCounts]] = defaultdict(dict)
    for key, counts in daily.items():
        by_series[(key.area, key.age_band)][key.day] = counts
    out: dict[CountsKey, CoverageCounts] = {}
    for (area, band), days in by_series.items():
        for day, counts in cumulative(days).items():
            out[CountsKey(area, band, day)] = counts
    return out


def as_of(cumulative_by_date: Mapping[date, CoverageCounts], day: date) -> CoverageCounts:
    """The cumulative counts on ``day``: the value of the latest day not after it (or zero)."""
    earlier = [d for d in cumulative_by_date if d <= day]
    return cumulative_by_date[max(earlier)] if earlier else _ZERO


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class CoverageMetrics:
    """Published figures of one area (and band set) on one day ("Dose coverage")."""

    population: int
    people_vaccinated: int
    people_fully_vaccinated: int
    total_boosters: int
    total_doses: int
    people_vaccinated_per_hundred: float
    people_fully_vaccinated_per_hundred: float
    total_boosters_per_hundred: float
    total_doses_per_hundred: float
    #: (people_vaccinated - people_fully_vaccinated) / people_vaccinated; None without doses.
    drop_out: float | None


def metrics(counts: CoverageCounts, population: int) -> CoverageMetrics:
    """OWID figures per hundred of ``population`` and the DHIS2 drop-out rate.

    Why: "Dose coverage" metrics. ``counts`` are cumulative. Per-hundred values are not
    rounded (presentation rounds) and may exceed 100 for doses and, with approximate
    denominators, for people. Drop-out is None when nobody is vaccinated (0/0).
    """
    if population <= 0:
        raise ValueError(f"population must be positive, got {population}")
    if counts.is_negative:
        raise ValueError(f"counts must not be negative: {counts}")

    def per_hundred(n: int) -> float:
        return 100.0 * n / population

    pv, pfv = counts.people_vaccinated, counts.people_fully_vaccinated
    return CoverageMetrics(
        population=population,
        people_vaccinated=pv,
        people_fully_vaccinated=pfv,
        total_boosters=counts.total_boosters,
        total_doses=counts.total_doses,
        people_vaccinated_per_hundred=per_hundred(pv),
        people_fully_vaccinated_per_hundred=per_hundred(pfv),
        total_boosters_per_hundred=per_hundred(counts.total_boosters),
        total_doses_per_hundred=per_hundred(counts.total_doses),
        drop_out=(pv - pfv) / pv if pv else None,
    )


def sum_bands(
    by_band: Mapping[str, CoverageCounts], bands: Iterable[str] = AGE_BANDS
) -> CoverageCounts:
    """Sum of the counts of ``bands`` (a missing band counts as zero)."""
    total = _ZERO
    for band in bands:
        total = total + by_band.get(band, _ZERO)
    return total


def adult_counts(by_band: Mapping[str, CoverageCounts]) -> CoverageCounts:
    """Counts of adults (18+): bands 18-49, 50-64 and 65+ ("adult (18+) coverage")."""
    return sum_bands(by_band, ADULT_BANDS)


def scaled_population(population: int, scale: float = 1.0) -> int:
    """The denominator of per-hundred figures: ``population`` times ``scale``, at least 1.

    Why: a simulation of a few thousand people over census populations of millions reads as
    "0.0013 per 100"; the setting ``population_scale`` brings the denominators to the size
    of the simulated population. Scale 1 (the default) is the population unchanged.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    if scale == 1.0:
        return population
    return max(1, round(population * scale))


def adult_population(area: str) -> int:
    """Adult (18+) population of ``area``: the sum of its adult band denominators."""
    return sum(reference.population(area, band) for band in ADULT_BANDS)


def adult_metrics(by_band: Mapping[str, CoverageCounts], area: str) -> CoverageMetrics:
    """Adult (18+) coverage of ``area`` from its cumulative counts by band.

    Why: "Dose coverage" reports adult coverage; numerator and denominator use the same
    bands (18-49, 50-64, 65+), so the share is consistent.
    """
    return metrics(adult_counts(by_band), adult_population(area))


def area_metrics(by_band: Mapping[str, CoverageCounts], area: str) -> CoverageMetrics:
    """Whole-population coverage of ``area`` from its cumulative counts by band."""
    return metrics(sum_bands(by_band), reference.population(area))
