"""Requests of the vaccine supply: allocations to provinces, discarded doses, provincial plans."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from covidtech.web.models import (
    Context,
    RequestBody,
    choice,
    client_id,
    context_of,
    day,
    invalid,
    province,
    read,
    timestamp,
)
from covidtech.web.problems import FieldError
from domain import reference
from domain.programme import DiscardReason, PriorityGroup
from producers.requests.common import PROGRAMME_LIMITS, VaccinationLimits, between, site, vaccine

__all__ = [
    "AllocationBody",
    "AllocationRequest",
    "DiscardBody",
    "DiscardRequest",
    "PlanBody",
    "PlanRequest",
    "TargetBody",
    "parse_allocation",
    "parse_discard",
    "parse_plan",
]


@dataclass(frozen=True)
class AllocationRequest:
    """``POST /v1/vaccination/allocations``."""

    allocation_id: str
    province: str
    vaccine: str
    doses: int


@dataclass(frozen=True)
class DiscardRequest:
    """``POST /v1/vaccination/discards``; ``site_id`` None: the token's only site."""

    discard_id: str
    province: str
    vaccine: str
    doses: int
    reason: DiscardReason
    discarded_at: datetime
    site_id: str | None


@dataclass(frozen=True)
class PlanRequest:
    """``PUT /v1/vaccination/plans/{province}``; ``plan_id`` None: derived from the content."""

    plan_id: str | None
    target_date: date
    #: (group, people with a dose, fully vaccinated), in priority order.
    targets: tuple[tuple[PriorityGroup, int, int], ...] = field(default=())


@dataclass(frozen=True)
class _PlanLimits:
    """What a plan is read against: the programme's limits, the local day, the province's
    census population (None: an unknown province, refused by the route)."""

    limits: VaccinationLimits
    today: date
    population: int | None


def _limits(info: ValidationInfo) -> VaccinationLimits:
    limits = context_of(info).limits
    if isinstance(limits, _PlanLimits):
        return limits.limits
    return limits if isinstance(limits, VaccinationLimits) else PROGRAMME_LIMITS


def _at_most(limit: str) -> AfterValidator:
    """At most the limits' ``limit`` (a number of doses)."""

    def check(doses: int, info: ValidationInfo) -> int:
        most: int = getattr(_limits(info), limit)
        if doses > most:
            raise invalid("out-of-range", f"must be between 1 and {most}")
        return doses

    return AfterValidator(check)


def _discarded(at: datetime, info: ValidationInfo) -> datetime:
    now, limits = context_of(info).now, _limits(info)
    assert now is not None, "a discard is read at a time"
    return between(at, now - limits.discard_lateness, now + limits.future_tolerance)


class AllocationBody(RequestBody):
    """Doses of a product the ministry sends to a province."""

    allocation_id: Annotated[str, client_id()]
    province: Annotated[str, province()]
    vaccine: Annotated[str, vaccine()]
    doses: Annotated[int, Field(ge=1), _at_most("max_allocation_doses")] = Field(
        json_schema_extra={"maximum": PROGRAMME_LIMITS.max_allocation_doses}
    )


class DiscardBody(RequestBody):
    """Doses a site threw away, and why."""

    discard_id: Annotated[str, client_id()]
    province: Annotated[str, province()]
    vaccine: Annotated[str, vaccine()]
    doses: Annotated[int, Field(ge=1), _at_most("max_discard_doses")] = Field(
        json_schema_extra={"maximum": PROGRAMME_LIMITS.max_discard_doses}
    )
    reason: Annotated[DiscardReason, choice(DiscardReason)]
    discarded_at: Annotated[
        datetime,
        timestamp(),
        AfterValidator(_discarded),
        Field(description="At most 30 days old."),
    ]
    site_id: Annotated[str, site()] | None = None


def _plan(info: ValidationInfo) -> _PlanLimits:
    limits = context_of(info).limits
    assert isinstance(limits, _PlanLimits), "a plan is read with its _PlanLimits"
    return limits


def _census(people: int, info: ValidationInfo) -> int:
    """At most the province's census population."""
    population = _plan(info).population
    if population is not None and people > population:
        raise invalid("out-of-range", f"must be between 0 and {population}")
    return people


def _fully(people: int, info: ValidationInfo) -> int:
    first = info.data.get("people_vaccinated")
    if first is not None and people > first:
        raise invalid("invalid-value", "must not exceed people_vaccinated")
    return people


_PEOPLE = Annotated[int, Field(ge=0, le=10**9), AfterValidator(_census)]


class TargetBody(RequestBody):
    """A priority group's target: people with a dose, and fully vaccinated, each at most the
    province's census population."""

    people_vaccinated: _PEOPLE
    people_fully_vaccinated: Annotated[
        _PEOPLE, AfterValidator(_fully), Field(description="At most people_vaccinated.")
    ]


def _target_day(target: date, info: ValidationInfo) -> date:
    plan = _plan(info)
    latest = plan.today + plan.limits.plan_horizon
    if target < plan.today:
        raise invalid("time-too-old", f"must not be before today ({plan.today})")
    if target > latest:
        raise invalid("time-in-future", f"must not be after {latest}")
    return target


class PlanBody(RequestBody):
    """A province's targets per priority group by a date (the latest plan wins)."""

    plan_id: Annotated[str, client_id()] | None = Field(
        None, description="Optional; derived from the content when absent."
    )
    target_date: Annotated[
        date,
        day(),
        AfterValidator(_target_day),
        Field(description="From today to about three years ahead."),
    ]
    targets: dict[Annotated[PriorityGroup, choice(PriorityGroup)], TargetBody] = Field(
        min_length=1,
        json_schema_extra={"propertyNames": {"enum": [g.value for g in PriorityGroup]}},
        description="Keyed by priority group; at least one.",
    )


def parse_allocation(
    value: object, errors: list[FieldError], limits: VaccinationLimits = PROGRAMME_LIMITS
) -> AllocationRequest | None:
    """An :class:`AllocationBody`."""
    a = read(AllocationBody, value, errors, context=Context(limits=limits))
    if a is None:
        return None
    return AllocationRequest(a.allocation_id, a.province, a.vaccine, a.doses)


def parse_discard(
    value: object,
    errors: list[FieldError],
    now: datetime,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> DiscardRequest | None:
    """A :class:`DiscardBody`, its time within the lateness and the clock drift."""
    d = read(DiscardBody, value, errors, context=Context(now=now, limits=limits))
    if d is None:
        return None
    return DiscardRequest(
        d.discard_id, d.province, d.vaccine, d.doses, d.reason, d.discarded_at, d.site_id
    )


def parse_plan(
    value: object,
    province: str,
    errors: list[FieldError],
    today: date,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> PlanRequest | None:
    """A :class:`PlanBody` for ``province``, its targets in priority order."""
    population = reference.population(province) if reference.is_province(province) else None
    context = Context(limits=_PlanLimits(limits, today, population))
    plan = read(PlanBody, value, errors, context=context)
    if plan is None:
        return None
    targets = sorted(
        (
            (group, t.people_vaccinated, t.people_fully_vaccinated)
            for group, t in plan.targets.items()
        ),
        key=lambda t: t[0].rank,
    )
    return PlanRequest(plan.plan_id, plan.target_date, tuple(targets))
