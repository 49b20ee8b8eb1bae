"""The vaccination programme: registrations, appointments, stock and plans (pure rules).

DESIGN.md "Vaccination programme". People register themselves or in bulk through an
institution, with a :class:`PriorityGroup`; sites schedule and cancel appointments; MOH
allocates doses per province and product; sites report discarded doses; provinces set plans.

**A person's registration.** A person may be registered more than once (by themselves and by
their employer, say). The registration that counts is the one with the highest priority group,
then the earliest ``registered_at``, then the smallest registration id
(:func:`effective_registration`): a function of the set of registrations, so any arrival order
gives the same answer. The current appointment is the active (not cancelled) one with the
latest ``appointment_at`` (ties by id), so a rescheduled appointment replaces a missed one and
a cancellation that arrives before its appointment still cancels it.

**Status.** :func:`registration_status`: ``VACCINATED`` once the person has a dose (any dose,
whenever it was given: "a registration counts as vaccinated once the person has a dose");
else ``SCHEDULED`` while the current appointment's no-show deadline is ahead; ``NO_SHOW`` once
it has passed without a dose; ``REGISTERED`` without an appointment. The deadline is the end of
the appointment's local day plus :attr:`ProgrammeRules.no_show_grace` (default: none).

**Which clock.** "No-show" depends on time, but a projection must be a function of the events,
never of the wall clock, or a replay would give other rows. The status is therefore evaluated
*as of* a watermark: the latest event time seen in the province (the stream layer keeps it; see
``streams/programme.py`` for which events move it). A replay that has read the same events has
the same watermark and so the same statuses. Between events nothing changes: an appointment
whose day ended becomes a no-show when the province's next event arrives. The read API may
also evaluate :func:`registration_status` at read time with the wall clock, from the stored
``appointment_at``.

**Stock** per province and product is ``allocated - administered - discarded``
(:class:`StockLevel`); days of stock left divide what is in stock by the average daily doses
administered over the last :attr:`ProgrammeRules.stock_rate_days` local days up to the as-of
day (:func:`stock_outlook`). Discards are not part of the rate: they are irregular losses,
not consumption.

**Plans.** The latest plan wins (by ``set_at``, then plan id: :func:`latest_plan`). Progress of
a priority group is the number of registered people of the group with at least one dose / with
a complete primary series, against the targets; the projected completion date extends the
average daily gain of the last :attr:`ProgrammeRules.plan_rate_days` days
(:func:`project_completion`). A target already reached reports the day it was reached.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from domain import reference
from domain.coverage import Dose, person_status
from domain.rules import LocalZone, field_problems, refuse

__all__ = [
    "DEFAULT_PROGRAMME_RULES",
    "Appointment",
    "DiscardReason",
    "InvalidProgrammeEvent",
    "PersonProgramme",
    "PlanTarget",
    "PriorityGroup",
    "ProgrammeRules",
    "Projection",
    "Registration",
    "RegistrationStatus",
    "StockLevel",
    "StockOutlook",
    "VaccinationPlan",
    "appointment_day",
    "current_appointment",
    "day_deadline",
    "effective_registration",
    "latest_plan",
    "no_show_deadline",
    "person_programme",
    "project_completion",
    "rate_window",
    "registration_status",
    "status_as_of",
    "stock_outlook",
    "waiting_list",
]


class InvalidProgrammeEvent(ValueError):
    """A registration, appointment, movement of stock or plan that breaks a rule."""


class PriorityGroup(StrEnum):
    """Priority groups of the programme, declared from the highest priority to the lowest."""

    HEALTH_WORKER = "HEALTH_WORKER"
    FRONTLINE = "FRONTLINE"
    AGE_65_PLUS = "AGE_65_PLUS"
    CHRONIC_CONDITION = "CHRONIC_CONDITION"
    ESSENTIAL_SERVICE = "ESSENTIAL_SERVICE"
    GENERAL = "GENERAL"
    AGE_12_17 = "AGE_12_17"

    @property
    def rank(self) -> int:
        """Position in the priority order: 0 is served first."""
        return _RANKS[self]


_RANKS = {g: i for i, g in enumerate(PriorityGroup)}


class RegistrationStatus(StrEnum):
    """Where a registration stands (the views count registrations by these)."""

    REGISTERED = "REGISTERED"
    SCHEDULED = "SCHEDULED"
    VACCINATED = "VACCINATED"
    NO_SHOW = "NO_SHOW"


class DiscardReason(StrEnum):
    """Why doses were discarded (WHO/DHIS2 wastage categories, closed vials and open)."""

    EXPIRED = "EXPIRED"
    COLD_CHAIN_FAILURE = "COLD_CHAIN_FAILURE"
    BROKEN_VIAL = "BROKEN_VIAL"
    OPENED_VIAL_UNUSED = "OPENED_VIAL_UNUSED"
    CONTAMINATED = "CONTAMINATED"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class ProgrammeRules(LocalZone):
    """The numbers of the programme rules; defaults are the decisions in docs/design.md."""

    no_show_grace: timedelta = timedelta(0)
    """An appointment is a no-show this long after the end of its local day without a dose."""
    stock_rate_days: int = 7
    """Days of stock left are computed at the average rate of this many last local days."""
    plan_rate_days: int = 7
    """Projected completion extends the average daily gain of this many last local days."""
    max_bulk_registrations: int = 1000
    """At most this many people in one institution registration request."""
    timezone: str = "Asia/Ho_Chi_Minh"
    """IANA zone of local days."""

    def __post_init__(self) -> None:
        problems = field_problems(
            self,
            non_negative=("no_show_grace",),
            at_least_one=("stock_rate_days", "plan_rate_days", "max_bulk_registrations"),
            timezone=self.timezone,
        )
        refuse("programme", problems)


DEFAULT_PROGRAMME_RULES = ProgrammeRules()
"""The defaults of docs/design.md."""


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidProgrammeEvent(f"{what} must be timezone-aware (UTC), got {moment!r}")
    return moment.astimezone(UTC)


def _required(value: str, what: str) -> None:
    if not value:
        raise InvalidProgrammeEvent(f"{what} is required")


def _province(code: str) -> None:
    if not reference.is_province(code):
        raise InvalidProgrammeEvent(f"unknown province {code!r}")


# --------------------------------------------------------------------------- registrations


@dataclass(frozen=True, slots=True)
class Registration:
    """One VaccinationRegistered: a person asks to be vaccinated, in a priority group."""

    registration_id: str
    person_id: str
    province: str
    district: str
    priority_group: PriorityGroup
    registered_at: datetime
    institution_id: str | None = None
    birth_year: int | None = None

    def __post_init__(self) -> None:
        for name in ("registration_id", "person_id", "district"):
            _required(getattr(self, name), name)
        _province(self.province)
        try:
            group = PriorityGroup(self.priority_group)
        except ValueError as e:
            raise InvalidProgrammeEvent(f"unknown priority group {self.priority_group!r}") from e
        object.__setattr__(self, "priority_group", group)
        object.__setattr__(self, "registered_at", _utc(self.registered_at, "registered_at"))
        if self.birth_year is not None and self.birth_year > self.registered_at.year:
            raise InvalidProgrammeEvent(f"birth year {self.birth_year} is after registration")

    @property
    def queue_position(self) -> tuple[int, datetime, str]:
        """Waiting-list order: priority group, then registration time, then person id."""
        return (self.priority_group.rank, self.registered_at, self.person_id)

    def _precedence(self) -> tuple[int, datetime, str, str, str, str, str]:
        # Total order over every field, so even two differing copies of one registration id
        # resolve the same way whatever their arrival order.
        return (
            self.priority_group.rank,
            self.registered_at,
            self.registration_id,
            self.province,
            self.district,
            self.institution_id or "",
            str(self.birth_year),
        )


def effective_registration(registrations: Iterable[Registration]) -> Registration | None:
    """The registration that counts for a person: highest priority, earliest, smallest id.

    Why: a person may be registered by themselves and by an institution; the programme
    serves them once, in the best group they qualify for, keeping the earliest place in the
    queue of that group. A function of the set, so any delivery order agrees.
    """
    return min(registrations, key=Registration._precedence, default=None)


# --------------------------------------------------------------------------- appointments


@dataclass(frozen=True, slots=True)
class Appointment:
    """One AppointmentScheduled: a site expects the person at ``appointment_at``."""

    appointment_id: str
    person_id: str
    site_id: str
    appointment_at: datetime
    scheduled_at: datetime

    def __post_init__(self) -> None:
        for name in ("appointment_id", "person_id", "site_id"):
            _required(getattr(self, name), name)
        object.__setattr__(self, "appointment_at", _utc(self.appointment_at, "appointment_at"))
        object.__setattr__(self, "scheduled_at", _utc(self.scheduled_at, "scheduled_at"))

    def _precedence(self) -> tuple[datetime, str, str, datetime]:
        return (self.appointment_at, self.appointment_id, self.site_id, self.scheduled_at)


def current_appointment(
    appointments: Iterable[Appointment], cancelled: Collection[str]
) -> Appointment | None:
    """The appointment a person is expected at: the active one with the latest time.

    Why: sites reschedule by cancelling and booking again, or by booking again after a
    missed appointment; the latest active booking is the one that matters. ``cancelled``
    holds appointment ids (a cancellation may arrive before its appointment).
    """
    active = [a for a in appointments if a.appointment_id not in cancelled]
    return max(active, key=Appointment._precedence, default=None)


def appointment_day(appointment_at: datetime, rules: ProgrammeRules) -> date:
    """The local day of an appointment."""
    return _utc(appointment_at, "appointment_at").astimezone(rules.zone).date()


def day_deadline(day: date, rules: ProgrammeRules) -> datetime:
    """When appointments of local ``day`` become no-shows: the next local midnight + grace."""
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=rules.zone)
    return (midnight + rules.no_show_grace).astimezone(UTC)


def no_show_deadline(appointment_at: datetime, rules: ProgrammeRules) -> datetime:
    """When an appointment without a dose becomes a no-show (end of its local day + grace)."""
    return day_deadline(appointment_day(appointment_at, rules), rules)


# --------------------------------------------------------------------------- a person


@dataclass(frozen=True, slots=True)
class PersonProgramme:
    """What the programme knows of a registered person: the facts behind the status.

    ``first_dose_date`` and ``completed_date`` are local days as "Dose coverage" defines them
    (the primary series completes at a single-dose product's dose or at the second dose).
    """

    registration: Registration
    appointment: Appointment | None = None
    doses: int = 0
    first_dose_date: date | None = None
    completed_date: date | None = None

    def __post_init__(self) -> None:
        if self.doses < 0 or (self.doses > 0) != (self.first_dose_date is not None):
            raise ValueError("first_dose_date must be given exactly when there are doses")
        if self.completed_date is not None and (
            self.first_dose_date is None or self.completed_date < self.first_dose_date
        ):
            raise ValueError("completed_date needs a first dose on or before it")

    @property
    def vaccinated(self) -> bool:
        """Whether the person has at least one dose."""
        return self.doses > 0


def person_programme(
    registrations: Iterable[Registration],
    appointments: Iterable[Appointment] = (),
    cancelled: Collection[str] = (),
    doses: Iterable[Dose] = (),
) -> PersonProgramme | None:
    """A person's facts from all their events (any order, repeats allowed); None if unregistered.

    Doses are deduplicated by dose id and placed in the primary series by
    :func:`domain.coverage.person_status`, so "vaccinated" here and coverage agree.
    """
    registration = effective_registration(registrations)
    if registration is None:
        return None
    doses = tuple(doses)
    first = completed = None
    count = 0
    if doses:
        status = person_status(registration.person_id, doses)
        count = len(status.dose_dates)
        first, completed = status.first_dose_date, status.completed_date
    return PersonProgramme(
        registration,
        current_appointment(appointments, cancelled),
        count,
        first,
        completed,
    )


def registration_status(
    person: PersonProgramme, as_of: datetime | None, rules: ProgrammeRules
) -> RegistrationStatus:
    """The status of a registration as of a time (a watermark, or the wall clock at read time).

    Why: "vaccinated once the person has a dose"; "no-show: an appointment passed without a
    dose". ``as_of=None`` means no clock yet (nothing has happened in the province): an
    appointment then counts as scheduled. Monotonic in ``as_of``: a later clock can only turn
    SCHEDULED into NO_SHOW, never back.
    """
    appointment_at = person.appointment.appointment_at if person.appointment else None
    return status_as_of(person.vaccinated, appointment_at, as_of, rules)


def status_as_of(
    vaccinated: bool, appointment_at: datetime | None, as_of: datetime | None, rules: ProgrammeRules
) -> RegistrationStatus:
    """:func:`registration_status` from the two facts it depends on (what the views store)."""
    if vaccinated:
        return RegistrationStatus.VACCINATED
    if appointment_at is None:
        return RegistrationStatus.REGISTERED
    if as_of is not None and _utc(as_of, "as_of") >= no_show_deadline(appointment_at, rules):
        return RegistrationStatus.NO_SHOW
    return RegistrationStatus.SCHEDULED


def waiting_list(people: Iterable[PersonProgramme]) -> list[PersonProgramme]:
    """People not yet vaccinated, by priority group then registration time (then person id).

    Why: "a waiting list per district ordered by priority then registration time". The
    stream layer keeps the same order as the clustering order of its table; this is the
    reference it must equal. No-shows stay on the list (they still need a dose).
    """
    return sorted(
        (p for p in people if not p.vaccinated), key=lambda p: p.registration.queue_position
    )


# --------------------------------------------------------------------------- stock


@dataclass(frozen=True, slots=True)
class StockLevel:
    """Doses of one product in one province: allocated, administered and discarded so far."""

    allocated: int = 0
    administered: int = 0
    discarded: int = 0

    def __post_init__(self) -> None:
        if min(self.allocated, self.administered, self.discarded) < 0:
            raise ValueError(f"stock movements must not be negative: {self}")

    @property
    def in_stock(self) -> int:
        """``allocated - administered - discarded``; negative when sites report more doses
        than were allocated (late allocations, data errors): shown, never hidden."""
        return self.allocated - self.administered - self.discarded

    def __add__(self, other: StockLevel) -> StockLevel:
        return StockLevel(
            self.allocated + other.allocated,
            self.administered + other.administered,
            self.discarded + other.discarded,
        )


def rate_window(as_of: date, days: int) -> tuple[date, date]:
    """The local days a rate is averaged over: ``days`` days ending with ``as_of``."""
    if days < 1:
        raise ValueError(f"a rate window needs at least one day, got {days}")
    return as_of - timedelta(days=days - 1), as_of


def _window_sum(daily: Mapping[date, int], as_of: date, days: int) -> int:
    first, last = rate_window(as_of, days)
    return sum(n for d, n in daily.items() if first <= d <= last)


@dataclass(frozen=True, slots=True)
class StockOutlook:
    """A stock level with the recent rate of use and how long the stock lasts at it."""

    level: StockLevel
    administered_in_window: int
    daily_rate: float
    days_left: float | None
    """None when nothing was administered in the window (no rate to divide by)."""


def stock_outlook(
    level: StockLevel,
    daily_administered: Mapping[date, int],
    as_of: date | None,
    rules: ProgrammeRules,
) -> StockOutlook:
    """Days of stock left at the last ``stock_rate_days`` days' average daily rate.

    Why: "stock per province and product = allocated - administered - discarded, with days
    of stock left at the last 7 days' rate". ``daily_administered`` maps local days to doses
    given (days outside the window are ignored). Without an as-of day there is no window.
    Stock at or below zero has zero days left.
    """
    window = rules.stock_rate_days
    used = _window_sum(daily_administered, as_of, window) if as_of is not None else 0
    if used == 0:
        return StockOutlook(level, 0, 0.0, None)
    days_left = max(level.in_stock, 0) * window / used
    return StockOutlook(level, used, used / window, days_left)


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class PlanTarget:
    """Targets of one priority group: people with at least one dose, fully vaccinated."""

    people_vaccinated: int
    people_fully_vaccinated: int

    def __post_init__(self) -> None:
        if self.people_vaccinated < 0 or self.people_fully_vaccinated < 0:
            raise InvalidProgrammeEvent("plan targets must not be negative")
        if self.people_fully_vaccinated > self.people_vaccinated:
            raise InvalidProgrammeEvent(
                "the fully vaccinated target cannot exceed the target of people with a dose"
            )


@dataclass(frozen=True, slots=True)
class VaccinationPlan:
    """One VaccinationPlanSet: a province's targets per priority group, by a date."""

    plan_id: str
    province: str
    target_date: date
    targets: Mapping[PriorityGroup, PlanTarget]
    set_at: datetime

    def __post_init__(self) -> None:
        _required(self.plan_id, "plan_id")
        _province(self.province)
        object.__setattr__(self, "set_at", _utc(self.set_at, "set_at"))
        if not self.targets:
            raise InvalidProgrammeEvent("a plan needs a target for at least one priority group")


def latest_plan(held: VaccinationPlan | None, incoming: VaccinationPlan) -> VaccinationPlan:
    """Which of two plans of a province is in force: the later ``set_at``, then plan id.

    Why: "the latest plan wins", decided by event time rather than arrival, so a plan
    delivered late never replaces a newer one.
    """
    if held is None:
        return incoming
    return max(held, incoming, key=lambda p: (p.set_at, p.plan_id))


@dataclass(frozen=True, slots=True)
class Projection:
    """Progress towards one target and when it is (or was) reached."""

    target: int
    achieved: int
    daily_rate: float
    completion_date: date | None
    """The day the target was reached; else the projected day at the current rate; None
    with no rate (or a zero target, which needs no day)."""

    @property
    def reached(self) -> bool:
        return self.achieved >= self.target


def project_completion(
    target: int, daily: Mapping[date, int], as_of: date | None, window_days: int
) -> Projection:
    """Achieved vs target, and the completion date at the last ``window_days`` days' rate.

    Why: "plan progress with a projected completion date at the current rate". ``daily``
    maps local days to people who reached the measure that day (first dose, or completion).
    A reached target reports the first day the running total got there. Otherwise the
    remaining people are divided by the window's average, rounded up to whole days after
    ``as_of`` (exact integer arithmetic).
    """
    achieved = sum(daily.values())
    used = _window_sum(daily, as_of, window_days) if as_of is not None else 0
    rate = used / window_days
    if target <= 0:
        return Projection(target, achieved, rate, None)
    if achieved >= target:
        running = 0
        for day in sorted(daily):
            running += daily[day]
            if running >= target:
                return Projection(target, achieved, rate, day)
    if used == 0 or as_of is None:
        return Projection(target, achieved, rate, None)
    days = -(-(target - achieved) * window_days // used)  # ceiling, in integers
    return Projection(target, achieved, rate, as_of + timedelta(days=days))
