"""Vaccination-programme events for unit and integration tests (see tests/scenarios.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from tests.scenarios import T0, Ev, dose

__all__ = [
    "P0",
    "allocation",
    "appointment",
    "cancellation",
    "day_at",
    "discard",
    "dose",
    "plan",
    "registration",
]


#: 10:00 in Ho Chi Minh City two weeks before T0: every scenario day is in the past.
P0 = T0 - timedelta(days=14)


def day_at(days: int, hour_local: int = 10) -> datetime:
    """``hour_local`` o'clock (Asia/Ho_Chi_Minh) ``days`` local days after P0's day."""
    return P0 + timedelta(days=days, hours=hour_local - 10)


def registration(
    person: str,
    at: datetime,
    *,
    group: str = "GENERAL",
    province: str = "79",
    district: str = "760",
    registration_id: str | None = None,
    institution: str | None = None,
    birth_year: int | None = 1980,
) -> Ev:
    rid = registration_id or f"reg-{person}"
    return Ev(
        "vaccination-registrations",
        person,
        "covidtech.vaccination.VaccinationRegistered",
        {
            "event_id": rid,
            "registration_id": rid,
            "person_id": person,
            "province": province,
            "district": district,
            "priority_group": group,
            "registered_at": at,
            "institution_id": institution,
            "birth_year": birth_year,
        },
    )


def appointment(
    person: str, appointment_id: str, at: datetime, *, scheduled_at: datetime | None = None
) -> Ev:
    return Ev(
        "vaccination-registrations",
        person,
        "covidtech.vaccination.AppointmentScheduled",
        {
            "event_id": appointment_id,
            "appointment_id": appointment_id,
            "person_id": person,
            "site_id": "site-1",
            "appointment_at": at,
            "scheduled_at": scheduled_at or at - timedelta(days=2),
        },
    )


def cancellation(person: str, appointment_id: str, at: datetime) -> Ev:
    return Ev(
        "vaccination-registrations",
        person,
        "covidtech.vaccination.AppointmentCancelled",
        {
            "event_id": f"cancel:{appointment_id}",
            "appointment_id": appointment_id,
            "person_id": person,
            "site_id": "site-1",
            "cancelled_at": at,
            "reason": None,
        },
    )


def allocation(
    allocation_id: str, doses: int, at: datetime, *, vaccine: str = "AZ", province: str = "79"
) -> Ev:
    return Ev(
        "vaccine-supply",
        province,
        "covidtech.vaccination.VaccineAllocated",
        {
            "event_id": allocation_id,
            "allocation_id": allocation_id,
            "province": province,
            "vaccine": vaccine,
            "doses": doses,
            "allocated_at": at,
        },
    )


def discard(
    discard_id: str,
    doses: int,
    at: datetime,
    *,
    vaccine: str = "AZ",
    province: str = "79",
    reason: str = "BROKEN_VIAL",
) -> Ev:
    return Ev(
        "vaccine-supply",
        province,
        "covidtech.vaccination.DosesDiscarded",
        {
            "event_id": discard_id,
            "discard_id": discard_id,
            "province": province,
            "site_id": "site-1",
            "vaccine": vaccine,
            "doses": doses,
            "reason": reason,
            "discarded_at": at,
        },
    )


def plan(
    plan_id: str,
    at: datetime,
    target_date: date,
    targets: dict[str, tuple[int, int]],
    *,
    province: str = "79",
) -> Ev:
    return Ev(
        "vaccine-supply",
        province,
        "covidtech.vaccination.VaccinationPlanSet",
        {
            "event_id": plan_id,
            "plan_id": plan_id,
            "province": province,
            "target_date": target_date,
            "targets": [
                {
                    "priority_group": group,
                    "people_vaccinated": first,
                    "people_fully_vaccinated": full,
                }
                for group, (first, full) in targets.items()
            ],
            "set_at": at,
        },
    )


def programme_town(seed: int, people: int = 120, days: int = 12) -> list[Ev]:
    """A deterministic busy programme in two provinces: self- and institution registrations
    (some people twice, some moving province), appointments kept, missed, rescheduled and
    cancelled, doses before and after registration, allocations, discards and plans."""
    import random

    rng = random.Random(seed)
    groups = ["HEALTH_WORKER", "FRONTLINE", "AGE_65_PLUS", "GENERAL", "AGE_12_17"]
    districts = {"79": ["760", "761", "769"], "01": ["001", "002"]}
    out: list[Ev] = []
    for province in districts:
        for vaccine in ("AZ", "PFIZER", "JANSSEN"):
            out.append(
                allocation(
                    f"alloc-{province}-{vaccine}",
                    400,
                    day_at(0, 8),
                    vaccine=vaccine,
                    province=province,
                )
            )
        for n, set_day, target_day, targets in (
            (1, 0, 40, {"HEALTH_WORKER": (10, 5), "GENERAL": (30, 10)}),
            (2, 5, 30, {"GENERAL": (40, 20), "AGE_65_PLUS": (8, 4)}),
        ):
            out.append(
                plan(
                    f"plan-{province}-{n}",
                    day_at(set_day, 9),
                    day_at(target_day).date(),
                    targets,
                    province=province,
                )
            )
        out.append(
            discard(
                f"disc-{province}",
                rng.randint(1, 9),
                day_at(days // 2, 16),
                vaccine="PFIZER",
                province=province,
            )
        )
    for i in range(people):
        person = f"t{seed}-{i}"
        province = rng.choice(list(districts))
        registered = day_at(rng.randint(0, 3), rng.randint(7, 20))
        out.append(
            registration(
                person,
                registered,
                group=rng.choice(groups),
                province=province,
                district=rng.choice(districts[province]),
                institution=rng.choice([None, "inst-1", "inst-2"]),
            )
        )
        if rng.random() < 0.1:  # registered a second time, elsewhere or in another group
            other = rng.choice(list(districts))
            out.append(
                registration(
                    person,
                    registered + timedelta(hours=rng.randint(-5, 5)),
                    group=rng.choice(groups),
                    province=other,
                    district=rng.choice(districts[other]),
                    registration_id=f"reg2-{person}",
                )
            )
        fate = rng.random()
        appt_day = rng.randint(2, days - 2)
        if fate < 0.75:
            out.append(appointment(person, f"a-{person}", day_at(appt_day, rng.randint(7, 17))))
        if fate < 0.45:  # kept: one or two doses
            vaccine = rng.choice(["AZ", "PFIZER", "JANSSEN"])
            out.append(
                dose(person, f"d-{person}-1", day_at(appt_day, 18), vaccine, province=province)
            )
            if vaccine != "JANSSEN" and rng.random() < 0.5:
                out.append(
                    dose(
                        person,
                        f"d-{person}-2",
                        day_at(min(appt_day + 3, days), 9),
                        "PFIZER",
                        province=province,
                    )
                )
        elif fate < 0.55:  # cancelled, sometimes rebooked
            out.append(cancellation(person, f"a-{person}", day_at(appt_day - 1, 12)))
            if rng.random() < 0.5:
                out.append(
                    appointment(
                        person, f"b-{person}", day_at(days + 1, 9), scheduled_at=day_at(appt_day, 8)
                    )
                )
        if rng.random() < 0.05:  # vaccinated before registering (a walk-in)
            out.append(
                dose(person, f"w-{person}", registered - timedelta(days=1), "AZ", province=province)
            )
    # Doses of unregistered people keep every province's clock moving to the last day.
    for province in districts:
        out.append(
            dose(f"walkin-{province}", f"wd-{province}", day_at(days, 12), "AZ", province=province)
        )
    return out


def programme_scenario() -> list[Ev]:
    """Every kind of programme event: a bulk registration with a person registered twice, an
    appointment missed, one cancelled, one kept, doses, supply and a plan."""
    return [
        allocation("alloc-1", 1000, day_at(0, 8)),
        allocation("alloc-2", 500, day_at(0, 8), vaccine="PFIZER"),
        plan(
            "plan-1",
            day_at(0, 9),
            (day_at(30)).date(),
            {"HEALTH_WORKER": (3, 2), "GENERAL": (4, 1)},
        ),
        # An institution's list: three health workers, one of them also self-registered.
        registration("hw1", day_at(0, 9), group="HEALTH_WORKER", institution="hospital-7"),
        registration("hw2", day_at(0, 9), group="HEALTH_WORKER", institution="hospital-7"),
        registration("hw3", day_at(0, 9), group="HEALTH_WORKER", institution="hospital-7"),
        registration("hw3", day_at(0, 8), registration_id="self-hw3"),
        registration("g1", day_at(0, 11)),
        registration("g2", day_at(0, 12), district="761"),
        registration("old", day_at(0, 13), group="AGE_65_PLUS", birth_year=1950),
        # hw1 is vaccinated at the appointment; hw2 misses theirs; g1's is cancelled.
        appointment("hw1", "a-hw1", day_at(1, 9)),
        dose("hw1", "d-hw1-1", day_at(1, 9), "AZ", province="79"),
        appointment("hw2", "a-hw2", day_at(1, 10)),
        appointment("g1", "a-g1", day_at(1, 11)),
        cancellation("g1", "a-g1", day_at(0, 15)),
        # Later doses move the province's clock past day 1.
        dose("hw3", "d-hw3-1", day_at(2, 9), "JANSSEN", province="79"),
        dose("hw1", "d-hw1-2", day_at(3, 9), "AZ", province="79"),
        discard("disc-1", 5, day_at(3, 17)),
    ]
