"""The vaccination programme: registrations per person, stock and plans per province.

DESIGN.md "Vaccination programme"; the rules are in ``domain/programme.py``. Two agents:

**Per person** (:class:`RegistrationHandler`, over ``vaccination-registrations`` + ``doses``,
both keyed by person and co-partitioned): state holds the person's registrations,
appointments, cancellations and doses (deduplicated by their ids), so a dose and a
registration join whichever is processed first. After any change it writes the person's
``registrations_by_person`` row and, when the facts behind the status changed, publishes them
(PersonRegistrationStatus) to ``registration-status`` keyed by the registration's province.
When the registration that counts moves to another province, the same event also goes to the
old province, which takes it as a retraction (as the coverage agent does). Each *new* dose id
is published once as StockDrawn to ``stock-movements``, keyed by the dose's province.

**Per province** (:class:`ProvinceProgrammeHandler`, over ``vaccine-supply``,
``registration-status`` and ``stock-movements``, all keyed by province): state holds each
person's last facts and status, the province's stock movements and plan, the daily gains per
priority group, and the ids of allocations, discards and doses already counted (a
redelivered derived event may come back at a new offset, so offsets cannot deduplicate it).
Counts change by ``new - old`` of a person's contribution; every row is written with absolute
values, never incremented.

**The province's clock** (watermark, ``as_of``) is the latest event time among the
province's ``vaccine-supply`` events and its doses (StockDrawn). Status facts do not move it:
they can be transient (a person's registration that later moves to another province), and a
clock moved by them would depend on arrival order. So every row here is a function of the
set of source events, and a replay, whatever its interleaving, converges to the same rows.
No-shows are re-evaluated when the clock passes the end of an appointment day: scheduled
people are kept in one bucket per appointment day until then.

Retention: none of these rows expire (vaccination records are kept, like ``doses_by_person``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from domain.coverage import Dose, InvalidDose
from domain.programme import (
    DEFAULT_PROGRAMME_RULES,
    Appointment,
    PlanTarget,
    PriorityGroup,
    ProgrammeRules,
    Registration,
    RegistrationStatus,
    StockLevel,
    VaccinationPlan,
    current_appointment,
    day_deadline,
    effective_registration,
    latest_plan,
    person_programme,
    project_completion,
    rate_window,
    status_as_of,
    stock_outlook,
)
from domain.vaccines import UnknownVaccine, get_vaccine
from projections.model import Delete, Mutation, Upsert
from streams.context import BatchContext, Message
from streams.ids import derived_id, from_days, from_ms, to_days, to_ms
from streams.vaccination import dose_of

log = logging.getLogger(__name__)

PEOPLE = "programme_people"
REGISTRATIONS = "programme_registrations"
PROVINCES = "programme_provinces"
SEEN = "programme_seen"

REGISTERED = "covidtech.vaccination.VaccinationRegistered"
SCHEDULED = "covidtech.vaccination.AppointmentScheduled"
CANCELLED = "covidtech.vaccination.AppointmentCancelled"
DOSE = "covidtech.vaccination.DoseAdministered"
ALLOCATED = "covidtech.vaccination.VaccineAllocated"
DISCARDED = "covidtech.vaccination.DosesDiscarded"
PLAN_SET = "covidtech.vaccination.VaccinationPlanSet"
STATUS = "covidtech.vaccination.PersonRegistrationStatus"
DRAWN = "covidtech.vaccination.StockDrawn"

#: Partition of the public figures: every province's row in one small partition.
NATION_AREA = "VN"


class StatusFacts(NamedTuple):
    """The facts of a PersonRegistrationStatus, JSON-friendly (times in ms, days as ints)."""

    province: str
    registration_id: str
    district: str
    priority_group: str
    registered_at: int
    institution_id: str | None
    appointment_id: str | None
    appointment_at: int | None
    appointment_site_id: str | None
    doses: int
    first_dose_date: int | None
    completed_date: int | None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> StatusFacts:
        PriorityGroup(rec["priority_group"])  # refuse a group this code does not know
        return cls(
            rec["province"],
            rec["registration_id"],
            rec["district"],
            rec["priority_group"],
            to_ms(rec["registered_at"]),
            rec["institution_id"],
            rec["appointment_id"],
            to_ms(rec["appointment_at"]) if rec["appointment_at"] is not None else None,
            rec["appointment_site_id"],
            rec["doses"],
            to_days(rec["first_dose_date"]) if rec["first_dose_date"] is not None else None,
            to_days(rec["completed_date"]) if rec["completed_date"] is not None else None,
        )

    def record(self, person_id: str) -> dict[str, Any]:
        """The event's fields (without event_id)."""
        return {
            "person_id": person_id,
            "registration_id": self.registration_id,
            "province": self.province,
            "district": self.district,
            "priority_group": self.priority_group,
            "registered_at": from_ms(self.registered_at),
            "institution_id": self.institution_id,
            "appointment_id": self.appointment_id,
            "appointment_at": _dt(self.appointment_at),
            "appointment_site_id": self.appointment_site_id,
            "doses": self.doses,
            "first_dose_date": _day(self.first_dose_date),
            "completed_date": _day(self.completed_date),
        }

    @property
    def group(self) -> PriorityGroup:
        return PriorityGroup(self.priority_group)

    def status(self, as_of: int | None, rules: ProgrammeRules) -> RegistrationStatus:
        """The registration's status as of the province's clock."""
        return status_as_of(
            self.doses > 0,
            _dt(self.appointment_at),
            _dt(as_of),
            rules,
        )


def _dt(ms: int | None) -> datetime | None:
    return from_ms(ms) if ms is not None else None


def _day(n: int | None) -> date | None:
    return from_days(n) if n is not None else None


# ------------------------------------------------------------------------------ per person


def _empty_person() -> dict[str, Any]:
    return {"regs": {}, "appts": {}, "cancelled": {}, "doses": {}, "sent": None}


def _copy_person(st: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in st.items()}


class RegistrationHandler:
    """A person's registrations, appointments and doses (see the module docstring)."""

    topics = ("vaccination-registrations", "doses")
    tables = (PEOPLE,)
    # Undecodable doses are dead-lettered by DoseHandler, the topic's primary reader.
    reports_bad_input = ("vaccination-registrations",)

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        person = rec["person_id"]
        held = ctx.state(PEOPLE, person)
        st = _copy_person(held) if held else _empty_person()
        name = msg.event.name
        if name == REGISTERED:
            changed = self._on_registration(st, person, rec)
        elif name == SCHEDULED:
            changed = self._on_appointment(st, person, rec)
        elif name == CANCELLED:
            changed = rec["appointment_id"] not in st["cancelled"]
            st["cancelled"][rec["appointment_id"]] = to_ms(rec["cancelled_at"])
        elif name == DOSE:
            changed = self._on_dose(ctx, st, rec)
        else:
            ctx.dead_letter(msg, f"unexpected event {name} on {msg.topic}")
            return
        if not changed:
            return  # a redelivery or a repeated post: ids are idempotency keys
        self._publish(ctx, st, person)
        ctx.set_state(PEOPLE, person, st, msg)

    @staticmethod
    def _on_registration(st: dict[str, Any], person: str, rec: dict[str, Any]) -> bool:
        reg = Registration(
            rec["registration_id"],
            person,
            rec["province"],
            rec["district"],
            PriorityGroup(rec["priority_group"]),
            rec["registered_at"],
            rec["institution_id"],
            rec["birth_year"],
        )
        held = st["regs"].get(reg.registration_id)
        if held is not None:
            # Two differing copies of one id: keep the same one whatever the arrival order.
            kept = effective_registration([_registration(person, reg.registration_id, held), reg])
            assert kept is not None
            reg = kept
        value = _registration_state(reg)
        if held == value:
            return False
        st["regs"][reg.registration_id] = value
        return True

    @staticmethod
    def _on_appointment(st: dict[str, Any], person: str, rec: dict[str, Any]) -> bool:
        appt = Appointment(
            rec["appointment_id"],
            person,
            rec["site_id"],
            rec["appointment_at"],
            rec["scheduled_at"],
        )
        held = st["appts"].get(appt.appointment_id)
        if held is not None:
            kept = current_appointment([_appointment(person, appt.appointment_id, held), appt], ())
            assert kept is not None
            appt = kept
        value = [appt.site_id, to_ms(appt.appointment_at), to_ms(appt.scheduled_at)]
        if held == value:
            return False
        st["appts"][appt.appointment_id] = value
        return True

    @staticmethod
    def _on_dose(ctx: BatchContext, st: dict[str, Any], rec: dict[str, Any]) -> bool:
        if rec["dose_id"] in st["doses"]:
            return False
        try:
            dose = dose_of(rec)
        except (InvalidDose, UnknownVaccine) as e:
            # The coverage agent dead-letters this dose; it counts nowhere, here neither.
            log.info("dose %s not counted by the programme: %s", rec["dose_id"], e)
            return False
        st["doses"][dose.dose_id] = [
            to_ms(dose.administered_at),
            dose.vaccine,
            dose.birth_year,
            dose.province,
        ]
        ctx.emit(
            "stock-movements",
            dose.province,
            DRAWN,
            {
                "event_id": derived_id("drawn", dose.dose_id),
                "dose_id": dose.dose_id,
                "province": dose.province,
                "vaccine": dose.vaccine,
                "administered_at": dose.administered_at,
            },
        )
        return True

    @staticmethod
    def _publish(ctx: BatchContext, st: dict[str, Any], person: str) -> None:
        facts = person_programme(
            (_registration(person, rid, v) for rid, v in st["regs"].items()),
            (_appointment(person, aid, v) for aid, v in st["appts"].items()),
            st["cancelled"].keys(),
            (Dose(did, from_ms(v[0]), v[1], v[2], v[3]) for did, v in st["doses"].items()),
        )
        if facts is None:
            return  # not registered (yet): doses and appointments wait in the state
        reg, appt = facts.registration, facts.appointment
        new = StatusFacts(
            reg.province,
            reg.registration_id,
            reg.district,
            reg.priority_group.value,
            to_ms(reg.registered_at),
            reg.institution_id,
            appt.appointment_id if appt else None,
            to_ms(appt.appointment_at) if appt else None,
            appt.site_id if appt else None,
            facts.doses,
            to_days(facts.first_dose_date) if facts.first_dose_date else None,
            to_days(facts.completed_date) if facts.completed_date else None,
        )
        old = StatusFacts(*st["sent"]) if st["sent"] else None
        if new == old:
            return
        keys = [new.province] + ([old.province] if old and old.province != new.province else [])
        for key in keys:  # the second one retracts the person from the old province
            ctx.emit(
                "registration-status",
                key,
                STATUS,
                {"event_id": derived_id("regstatus", key, person, *new), **new.record(person)},
            )
        row = new.record(person)
        row["birth_year"] = reg.birth_year
        ctx.write([Upsert("registrations_by_person", row)])
        st["sent"] = list(new)


def _registration_state(r: Registration) -> list[Any]:
    return [
        r.province,
        r.district,
        r.priority_group.value,
        to_ms(r.registered_at),
        r.institution_id,
        r.birth_year,
    ]


def _registration(person: str, registration_id: str, v: list[Any]) -> Registration:
    return Registration(
        registration_id, person, v[0], v[1], PriorityGroup(v[2]), from_ms(v[3]), v[4], v[5]
    )


def _appointment(person: str, appointment_id: str, v: list[Any]) -> Appointment:
    return Appointment(appointment_id, person, v[0], from_ms(v[1]), from_ms(v[2]))


# ---------------------------------------------------------------------------- per province


@dataclass
class _Change:
    """One message's work on a province: the batch, the message, the province and its state
    being changed, and what the message changed, so each affected row is written once."""

    ctx: BatchContext
    msg: Message
    province: str
    pv: dict[str, Any]
    counts: set[tuple[str, str]] = field(default_factory=set)  # (group, status)
    stock: set[str] = field(default_factory=set)  # vaccines
    plan: set[str] = field(default_factory=set)  # groups
    totals: bool = False


def _empty_province() -> dict[str, Any]:
    return {
        "wm": None,  # the province's clock, epoch ms
        "stock": {},  # vaccine -> [allocated, administered, discarded]
        "daily": {},  # vaccine -> {day: administered}, days of the rate window only
        "counts": {},  # group -> {status: people}
        "due": [],  # appointment days with a bucket of scheduled people
        "plan": None,  # [plan_id, target_date days, set_at ms, {group: [first, full]}]
    }


class ProvinceProgrammeHandler:
    """Registration counts, waiting lists, stock and plan progress of a province."""

    topics = ("vaccine-supply", "registration-status", "stock-movements")
    tables = (REGISTRATIONS, PROVINCES, SEEN)

    def __init__(self, rules: ProgrammeRules = DEFAULT_PROGRAMME_RULES) -> None:
        self.rules = rules

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None and msg.key is not None
        rec = msg.event.record
        name = msg.event.name
        province = msg.key.decode()
        if name != STATUS and rec["province"] != province:
            raise ValueError(f"{name} for province {rec['province']} keyed by {province}")
        held = ctx.state(PROVINCES, province)
        pv = _copy_province(held) if held else _empty_province()
        ch = _Change(ctx, msg, province, pv)
        if name == STATUS:
            self._on_status(ch, rec)
        elif name in (ALLOCATED, DISCARDED, DRAWN):
            if not self._on_movement(ch, name, rec):
                return
        elif name == PLAN_SET:
            self._on_plan(ch, rec)
        else:
            ctx.dead_letter(msg, f"unexpected event {name} on {msg.topic}")
            return
        self._write(ch)
        ctx.set_state(PROVINCES, province, pv, msg)

    # ---------------------------------------------------------------- events

    def _on_status(
        self,
        ch: _Change,
        rec: dict[str, Any],
    ) -> None:
        incoming = StatusFacts.from_record(rec)
        new = incoming if incoming.province == ch.province else None  # None: a retraction
        self._apply_person(ch, rec["person_id"], new)

    def _on_movement(
        self,
        ch: _Change,
        name: str,
        rec: dict[str, Any],
    ) -> bool:
        if name == ALLOCATED:
            kind, movement_id, at, column = "alloc", rec["allocation_id"], "allocated_at", 0
        elif name == DISCARDED:
            kind, movement_id, at, column = "discard", rec["discard_id"], "discarded_at", 2
        else:
            kind, movement_id, at, column = "dose", rec["dose_id"], "administered_at", 1
        doses = rec.get("doses", 1)
        vaccine = rec["vaccine"]
        get_vaccine(vaccine)  # an unknown product is dead-lettered (UnknownVaccine)
        if doses <= 0:
            raise ValueError(f"{name} {movement_id}: doses must be positive, got {doses}")
        seen_key = f"{ch.province}|{kind}|{movement_id}"
        if ch.ctx.state(SEEN, seen_key) is not None:
            return False  # counted already (a redelivery, possibly at a new offset)
        ch.ctx.set_state(SEEN, seen_key, 1, ch.msg)
        self._advance_clock(ch, to_ms(rec[at]))
        level = ch.pv["stock"].setdefault(vaccine, [0, 0, 0])
        level[column] += doses
        if kind == "dose":
            day = to_days(self._local_day(rec[at]))
            first, _ = rate_window(from_days(self._as_of_day(ch.pv)), self.rules.stock_rate_days)
            if day >= to_days(first):
                daily = ch.pv["daily"].setdefault(vaccine, {})
                daily[str(day)] = daily.get(str(day), 0) + 1
        ch.stock.add(vaccine)
        ch.totals = True
        return True

    def _on_plan(
        self,
        ch: _Change,
        rec: dict[str, Any],
    ) -> None:
        targets: dict[PriorityGroup, PlanTarget] = {}
        for t in rec["targets"]:
            group = PriorityGroup(t["priority_group"])
            if group in targets:
                raise ValueError(f"plan {rec['plan_id']} has two targets for {group}")
            targets[group] = PlanTarget(t["people_vaccinated"], t["people_fully_vaccinated"])
        incoming = VaccinationPlan(
            rec["plan_id"], ch.province, rec["target_date"], targets, rec["set_at"]
        )
        held = _plan_from_state(ch.province, ch.pv["plan"]) if ch.pv["plan"] else None
        winner = latest_plan(held, incoming)
        self._advance_clock(ch, to_ms(incoming.set_at))
        if winner != held:
            old_groups = set(held.targets) if held else set()
            for group in old_groups - set(winner.targets):
                ch.ctx.write(
                    [Delete("plan_progress", {"province": ch.province, "priority_group": group})]
                )
            ch.pv["plan"] = _plan_to_state(winner)
            ch.plan |= {g.value for g in winner.targets}

    # ---------------------------------------------------------------- the clock

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.rules.zone).date()

    def _as_of_day(self, pv: dict[str, Any]) -> int:
        assert pv["wm"] is not None
        return to_days(self._local_day(from_ms(pv["wm"])))

    def _advance_clock(
        self,
        ch: _Change,
        t: int,
    ) -> None:
        """Move the province's clock to ``t`` if later: no-shows, rate windows, as-of days."""
        old = ch.pv["wm"]
        if old is not None and t <= old:
            return
        old_day = self._as_of_day(ch.pv) if old is not None else None
        ch.pv["wm"] = t
        ch.totals = True
        new_day = self._as_of_day(ch.pv)
        if new_day != old_day:
            first, _ = rate_window(from_days(new_day), self.rules.stock_rate_days)
            for vaccine, daily in ch.pv["daily"].items():
                ch.pv["daily"][vaccine] = {
                    d: n for d, n in daily.items() if int(d) >= to_days(first)
                }
            ch.stock |= set(ch.pv["stock"])
            if ch.pv["plan"]:
                ch.plan |= set(ch.pv["plan"][3])
        due_now = [d for d in ch.pv["due"] if to_ms(day_deadline(from_days(d), self.rules)) <= t]
        if not due_now:
            return
        ch.pv["due"] = [d for d in ch.pv["due"] if d not in due_now]
        for day in due_now:
            bucket_key = f"{ch.province}|due|{day}"
            for person in sorted(ch.ctx.state(PROVINCES, bucket_key) or {}):
                entry = ch.ctx.state(REGISTRATIONS, f"{ch.province}|{person}")
                if entry is not None and entry["s"] == RegistrationStatus.SCHEDULED:
                    facts = StatusFacts(*entry["f"])
                    self._apply_person(ch, person, facts)
            ch.ctx.set_state(PROVINCES, bucket_key, None, ch.msg)

    # ---------------------------------------------------------------- a person

    def _apply_person(
        self,
        ch: _Change,
        person: str,
        new: StatusFacts | None,
    ) -> None:
        """Replace a person's contribution to the province: rows, counts and daily gains."""
        key = f"{ch.province}|{person}"
        entry = ch.ctx.state(REGISTRATIONS, key)
        old = StatusFacts(*entry["f"]) if entry else None
        old_status = RegistrationStatus(entry["s"]) if entry else None
        new_status = new.status(ch.pv["wm"], self.rules) if new else None
        if old == new and old_status == new_status:
            return
        if old is not None and old_status is not None:
            self._count(ch, old.priority_group, old_status, -1)
            if new is None:
                ch.totals = True
        elif new is not None:
            ch.totals = True
        if new is not None and new_status is not None:
            self._count(ch, new.priority_group, new_status, +1)
        if old != new:
            self._move_gains(ch, old, new)
        ch.ctx.write(self._person_rows(ch.province, person, old, old_status, new, new_status))
        if new is not None and new_status == RegistrationStatus.SCHEDULED:
            assert new.appointment_at is not None
            day = to_days(self._local_day(from_ms(new.appointment_at)))
            bucket_key = f"{ch.province}|due|{day}"
            bucket = ch.ctx.state(PROVINCES, bucket_key) or {}
            if person not in bucket:
                ch.ctx.set_state(PROVINCES, bucket_key, {**bucket, person: 1}, ch.msg)
            if day not in ch.pv["due"]:
                ch.pv["due"] = sorted([*ch.pv["due"], day])
        if new is None:
            ch.ctx.set_state(REGISTRATIONS, key, None, ch.msg)
        else:
            assert new_status is not None
            ch.ctx.set_state(REGISTRATIONS, key, {"f": list(new), "s": new_status.value}, ch.msg)

    @staticmethod
    def _count(ch: _Change, group: str, status: RegistrationStatus, sign: int) -> None:
        by_status = ch.pv["counts"].setdefault(group, {})
        n = by_status.get(status.value, 0) + sign
        if n < 0:
            raise ValueError(f"registration count {group}/{status} would become {n}")
        by_status[status.value] = n
        ch.counts.add((group, status.value))

    def _move_gains(
        self,
        ch: _Change,
        old: StatusFacts | None,
        new: StatusFacts | None,
    ) -> None:
        """Daily gains per group: people reaching a first dose / completion on each day."""
        changes: dict[tuple[str, int, int], int] = {}
        for facts, sign in ((old, -1), (new, +1)):
            if facts is None:
                continue
            for column, day in ((0, facts.first_dose_date), (1, facts.completed_date)):
                if day is not None:
                    k = (facts.priority_group, day, column)
                    changes[k] = changes.get(k, 0) + sign
        for (group, day, column), change in changes.items():
            if change == 0:
                continue
            series_key = f"{ch.province}|series|{group}"
            series = dict(ch.ctx.state(PROVINCES, series_key) or {})
            counts = list(series.get(str(day), [0, 0]))
            counts[column] += change
            if counts[column] < 0:
                raise ValueError(f"daily gain of {group} on day {day} would become negative")
            if counts == [0, 0]:
                series.pop(str(day), None)
            else:
                series[str(day)] = counts
            ch.ctx.set_state(PROVINCES, series_key, series, ch.msg)
            ch.plan.add(group)

    @staticmethod
    def _person_rows(
        province: str,
        person: str,
        old: StatusFacts | None,
        old_status: RegistrationStatus | None,
        new: StatusFacts | None,
        new_status: RegistrationStatus | None,
    ) -> list[Mutation]:
        rows: list[Mutation] = []

        def by_status_key(f: StatusFacts, s: RegistrationStatus) -> dict[str, Any]:
            return {
                "province": province,
                "priority_group": f.priority_group,
                "status": s.value,
                "registered_at": from_ms(f.registered_at),
                "person_id": person,
            }

        def waiting_key(f: StatusFacts) -> dict[str, Any]:
            return {
                "province": province,
                "district": f.district,
                "priority_rank": f.group.rank,
                "registered_at": from_ms(f.registered_at),
                "person_id": person,
            }

        if old is not None and old_status is not None:
            old_key = by_status_key(old, old_status)
            if new is None or new_status is None or by_status_key(new, new_status) != old_key:
                rows.append(Delete("registrations_by_status", old_key))
            if old_status != RegistrationStatus.VACCINATED and (
                new is None
                or new_status == RegistrationStatus.VACCINATED
                or waiting_key(new) != waiting_key(old)
            ):
                rows.append(Delete("waiting_list_by_district", waiting_key(old)))
        if new is not None and new_status is not None:
            rows.append(
                Upsert(
                    "registrations_by_status",
                    {
                        **by_status_key(new, new_status),
                        "registration_id": new.registration_id,
                        "district": new.district,
                        "institution_id": new.institution_id,
                        "appointment_at": _dt(new.appointment_at),
                        "appointment_site_id": new.appointment_site_id,
                        "doses": new.doses,
                        "first_dose_date": _day(new.first_dose_date),
                        "completed_date": _day(new.completed_date),
                    },
                )
            )
            if new_status != RegistrationStatus.VACCINATED:
                rows.append(
                    Upsert(
                        "waiting_list_by_district",
                        {
                            **waiting_key(new),
                            "registration_id": new.registration_id,
                            "priority_group": new.priority_group,
                            "status": new_status.value,
                            "appointment_at": _dt(new.appointment_at),
                            "appointment_site_id": new.appointment_site_id,
                            "institution_id": new.institution_id,
                        },
                    )
                )
        return rows

    # ---------------------------------------------------------------- rows

    def _write(self, ch: _Change) -> None:
        rows: list[Mutation] = []
        for group, status in sorted(ch.counts):
            n = ch.pv["counts"].get(group, {}).get(status, 0)
            key = {"province": ch.province, "priority_group": group, "status": status}
            rows.append(
                Upsert("registration_counts", {**key, "people": n})
                if n
                else Delete("registration_counts", key)
            )
        as_of = from_days(self._as_of_day(ch.pv)) if ch.pv["wm"] is not None else None
        for vaccine in sorted(ch.stock):
            level = StockLevel(*ch.pv["stock"][vaccine])
            daily = {from_days(int(d)): n for d, n in ch.pv["daily"].get(vaccine, {}).items()}
            outlook = stock_outlook(level, daily, as_of, self.rules)
            rows.append(
                Upsert(
                    "vaccine_stock",
                    {
                        "province": ch.province,
                        "vaccine": vaccine,
                        "allocated": level.allocated,
                        "administered": level.administered,
                        "discarded": level.discarded,
                        "in_stock": level.in_stock,
                        "rate_days": self.rules.stock_rate_days,
                        "administered_in_window": outlook.administered_in_window,
                        "daily_rate": outlook.daily_rate,
                        "days_of_stock_left": outlook.days_left,
                        "as_of": as_of,
                    },
                )
            )
        if ch.pv["plan"] is not None:
            plan = _plan_from_state(ch.province, ch.pv["plan"])
            for group in sorted(ch.plan):
                target = plan.targets.get(PriorityGroup(group))
                if target is not None:
                    series = ch.ctx.state(PROVINCES, f"{ch.province}|series|{group}") or {}
                    rows.append(self._progress_row(plan, group, target, series, as_of))
        if ch.totals:
            rows.append(self._totals_row(ch.province, ch.pv))
        ch.ctx.write(rows)

    def _progress_row(
        self,
        plan: VaccinationPlan,
        group: str,
        target: PlanTarget,
        series: dict[str, list[int]],
        as_of: date | None,
    ) -> Upsert:
        window = self.rules.plan_rate_days
        first = {from_days(int(d)): v[0] for d, v in series.items() if v[0]}
        full = {from_days(int(d)): v[1] for d, v in series.items() if v[1]}
        vaccinated = project_completion(target.people_vaccinated, first, as_of, window)
        fully = project_completion(target.people_fully_vaccinated, full, as_of, window)
        return Upsert(
            "plan_progress",
            {
                "province": plan.province,
                "priority_group": group,
                "plan_id": plan.plan_id,
                "target_date": plan.target_date,
                "set_at": plan.set_at,
                "target_people_vaccinated": target.people_vaccinated,
                "target_people_fully_vaccinated": target.people_fully_vaccinated,
                "people_vaccinated": vaccinated.achieved,
                "people_fully_vaccinated": fully.achieved,
                "vaccinated_daily_rate": vaccinated.daily_rate,
                "fully_vaccinated_daily_rate": fully.daily_rate,
                "projected_vaccinated_date": vaccinated.completion_date,
                "projected_fully_vaccinated_date": fully.completion_date,
                "as_of": as_of,
            },
        )

    @staticmethod
    def _totals_row(province: str, pv: dict[str, Any]) -> Mutation:
        key = {"area": NATION_AREA, "province": province}
        registered = sum(n for by_status in pv["counts"].values() for n in by_status.values())
        if pv["wm"] is None and registered == 0:
            # Only transient registrations were seen here: no row, as if none had come.
            return Delete("vaccination_totals", key)
        total = StockLevel()
        for level in pv["stock"].values():
            total = total + StockLevel(*level)
        return Upsert(
            "vaccination_totals",
            {
                **key,
                "allocated": total.allocated,
                "administered": total.administered,
                "discarded": total.discarded,
                "registered": registered,
                "as_of": _dt(pv["wm"]),
            },
        )


def _copy_province(pv: dict[str, Any]) -> dict[str, Any]:
    return {
        "wm": pv["wm"],
        "stock": {v: list(level) for v, level in pv["stock"].items()},
        "daily": {v: dict(days) for v, days in pv["daily"].items()},
        "counts": {g: dict(s) for g, s in pv["counts"].items()},
        "due": list(pv["due"]),
        "plan": pv["plan"],
    }


def _plan_to_state(p: VaccinationPlan) -> list[Any]:
    return [
        p.plan_id,
        to_days(p.target_date),
        to_ms(p.set_at),
        {
            g.value: [t.people_vaccinated, t.people_fully_vaccinated]
            for g, t in sorted(p.targets.items(), key=lambda kv: kv[0].rank)
        },
    ]


def _plan_from_state(province: str, v: list[Any]) -> VaccinationPlan:
    return VaccinationPlan(
        v[0],
        province,
        from_days(v[1]),
        {PriorityGroup(g): PlanTarget(a, b) for g, a_b in v[3].items() for a, b in [a_b]},
        from_ms(v[2]),
    )
