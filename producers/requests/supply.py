"""Requests of the vaccine supply: allocations to provinces, discarded doses, provincial plans."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from domain import reference
from domain.programme import DiscardReason, PriorityGroup
from producers.requests.common import (
    PROGRAMME_LIMITS,
    VaccinationLimits,
    client_id_field,
    ok,
    province_field,
    site_field,
    time_between,
    vaccine_field,
)
from producers.validation import FieldError, Fields, field_path

__all__ = [
    "AllocationRequest",
    "DiscardRequest",
    "PlanRequest",
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


def parse_allocation(
    value: object, errors: list[FieldError], limits: VaccinationLimits = PROGRAMME_LIMITS
) -> AllocationRequest | None:
    """``{allocation_id, province, vaccine, doses}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    allocation_id = client_id_field(f, "allocation_id")
    province = province_field(f, "province")
    vaccine = vaccine_field(f)
    doses = f.integer("doses", minimum=1, maximum=limits.max_allocation_doses)
    f.finish()
    if not ok(errors, before):
        return None
    assert allocation_id and province and vaccine and doses
    return AllocationRequest(allocation_id, province, vaccine, doses)


def parse_discard(
    value: object,
    errors: list[FieldError],
    now: datetime,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> DiscardRequest | None:
    """``{discard_id, province, vaccine, doses, reason, discarded_at, site_id?}``."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    discard_id = client_id_field(f, "discard_id")
    province = province_field(f, "province")
    vaccine = vaccine_field(f)
    doses = f.integer("doses", minimum=1, maximum=limits.max_discard_doses)
    reason = f.choice("reason", DiscardReason)
    at = time_between(
        f, "discarded_at", now - limits.discard_lateness, now + limits.future_tolerance
    )
    site_id = site_field(f)
    f.finish()
    if not ok(errors, before):
        return None
    assert discard_id and province and vaccine and doses and reason and at
    return DiscardRequest(discard_id, province, vaccine, doses, reason, at, site_id)


def parse_plan(
    value: object,
    province: str,
    errors: list[FieldError],
    today: date,
    limits: VaccinationLimits = PROGRAMME_LIMITS,
) -> PlanRequest | None:
    """``{plan_id?, target_date, targets: {<GROUP>: {people_vaccinated,
    people_fully_vaccinated}}}``: at least one group; a target at most the province's census
    population; fully vaccinated at most people with a dose."""
    before = len(errors)
    f = Fields.of(value, "", errors)
    if f is None:
        return None
    plan_id = client_id_field(f, "plan_id", required=False)
    target_date = f.day("target_date")
    if target_date is not None:
        latest = today + limits.plan_horizon
        if target_date < today:
            f.error("target_date", "time-too-old", f"must not be before today ({today})")
        elif target_date > latest:
            f.error("target_date", "time-in-future", f"must not be after {latest}")
    targets: list[tuple[PriorityGroup, int, int]] = []
    raw = value.get("targets") if isinstance(value, dict) else None
    f.ignore("targets")  # read here: an object keyed by group, which Fields has no getter for
    if raw is None:
        f.error("targets", "missing", "must not be null" if f.has("targets") else "is required")
    elif not isinstance(raw, dict):
        f.error("targets", "wrong-type", "must be an object keyed by priority group")
    else:
        base = f.at("targets")
        if not raw:
            errors.append(FieldError(base, "too-few-items", "must name at least one group"))
        population = reference.population(province) if reference.is_province(province) else None
        for name in sorted(raw, key=lambda g: (g not in PriorityGroup.__members__, g)):
            path = field_path(base, name)
            try:
                group = PriorityGroup(name)
            except ValueError:
                symbols = ", ".join(g.value for g in PriorityGroup)
                errors.append(FieldError(path, "unknown-enum", f"must be one of {symbols}"))
                continue
            t = Fields.of(raw[name], path, errors)
            if t is None:
                continue
            bound = population if population is not None else 10**9
            first = t.integer("people_vaccinated", minimum=0, maximum=bound)
            full = t.integer("people_fully_vaccinated", minimum=0, maximum=bound)
            t.finish()
            if first is not None and full is not None:
                if full > first:
                    t.error(
                        "people_fully_vaccinated",
                        "invalid-value",
                        "must not exceed people_vaccinated",
                    )
                else:
                    targets.append((group, first, full))
    f.finish()
    if not ok(errors, before):
        return None
    assert target_date is not None
    targets.sort(key=lambda t: t[0].rank)
    return PlanRequest(plan_id, target_date, tuple(targets))
