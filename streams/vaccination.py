"""Dose histories per person and dose coverage per province (DESIGN "Data flow" 4).

The per-person handler over ``doses`` keeps each person's doses (deduplicated by dose id)
and publishes the person's whole coverage status to ``coverage-status`` keyed by the province
of residence recorded on the first dose. The per-province aggregator keeps each person's
last status and applies ``new - old`` to the daily counts of (province, age band, day), then
writes absolute daily and cumulative values from the first changed day on. A redelivered
status is a no-op; no counter is ever incremented blindly.

National figures are the sum over provinces, computed by the read side: no two partitions
ever write the same row. When a late, earlier dose moves a person to another province, the
person handler also sends a retraction (the new status, keyed by the *old* province) so the
old province's aggregator removes the person's old contribution.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.coverage import (
    NATION,
    CountsKey,
    CoverageCounts,
    Dose,
    InvalidDose,
    PersonCoverage,
    completed_at,
    contributions,
    person_status,
    status_delta,
)
from projections.model import Delete, Upsert
from streams import status as facts
from streams.context import BatchContext, Message
from streams.ids import derived_id, from_days, from_ms, to_days, to_ms

HISTORIES = "dose_histories"
LAST_STATUS = "coverage_people"
SERIES = "coverage_series"
STATUS = "covidtech.vaccination.PersonCoverageStatus"


def dose_of(rec: dict[str, Any]) -> Dose:
    """The dose of a DoseAdministered record; raises InvalidDose or UnknownVaccine."""
    return Dose(
        rec["dose_id"],
        rec["administered_at"],
        rec["vaccine"],
        rec["birth_year"],
        rec["residence_province"],
    )


class DoseHandler:
    """A person's doses and coverage status."""

    topics = ("doses",)
    tables = (HISTORIES,)

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        person = rec["person_id"]
        st = ctx.state(HISTORIES, person) or {"doses": [], "status": None}
        if any(d[0] == rec["dose_id"] for d in st["doses"]):
            return  # dose ids are idempotency keys
        try:
            dose = dose_of(rec)
        except InvalidDose as e:
            ctx.dead_letter(msg, f"InvalidDose: {e}")
            return
        doses = [
            *st["doses"],
            [
                dose.dose_id,
                to_ms(dose.administered_at),
                dose.vaccine,
                dose.birth_year,
                dose.province,
            ],
        ]
        history = [Dose(d[0], from_ms(d[1]), d[2], d[3], d[4]) for d in doses]
        status = person_status(person, history)
        completed = completed_at(history)
        if completed is not None:  # the check-in status fact (streams/status.py)
            ctx.write([facts.vaccinated(person, completed)])
        old = _status_from_state(person, st["status"]) if st["status"] else None
        if status != old:
            self._emit(ctx, status.province, status)
            if old is not None and old.province != status.province:
                self._emit(ctx, old.province, status)  # retraction for the old province
        ctx.write(
            [
                Upsert(
                    "doses_by_person",
                    {
                        "person_id": person,
                        "administered_at": dose.administered_at,
                        "dose_id": dose.dose_id,
                        "vaccine": dose.vaccine,
                        "site_id": rec["site_id"],
                        "residence_province": dose.province,
                        "birth_year": dose.birth_year,
                    },
                )
            ]
        )
        ctx.set_state(HISTORIES, person, {"doses": doses, "status": _status_to_state(status)}, msg)

    @staticmethod
    def _emit(ctx: BatchContext, key: str, s: PersonCoverage) -> None:
        ctx.emit(
            "coverage-status",
            key,
            STATUS,
            {
                "event_id": derived_id("coverage", key, *_status_to_state(s), s.person_id),
                "person_id": s.person_id,
                "province": s.province,
                "age_band": s.age_band,
                "dose_dates": list(s.dose_dates),
                "first_dose_date": s.first_dose_date,
                "completed_date": s.completed_date,
                "booster_dates": list(s.booster_dates),
            },
        )


class CoverageHandler:
    """Daily and cumulative coverage counts per (province, age band, day)."""

    topics = ("coverage-status",)
    tables = (LAST_STATUS, SERIES)

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None and msg.key is not None
        rec = msg.event.record
        province = msg.key.decode()
        person = rec["person_id"]
        incoming = PersonCoverage(
            person,
            rec["province"],
            rec["age_band"],
            tuple(rec["dose_dates"]),
            rec["first_dose_date"],
            rec["completed_date"],
            tuple(rec["booster_dates"]),
        )
        new = incoming if incoming.province == province else None  # None: a retraction
        # Keyed by province too: during a move, the person's status is held by both the old
        # province (until the retraction) and the new one.
        status_key = f"{province}|{person}"
        held = ctx.state(LAST_STATUS, status_key)
        old = _status_from_state(person, held) if held else None
        if old == new:
            return
        if new is not None:
            delta = status_delta(old, new)
        else:
            assert old is not None
            delta = {k: -v for k, v in contributions(old).items()}
        by_series: dict[tuple[str, str], dict[date, CoverageCounts]] = {}
        for key, change in delta.items():
            if key.area == NATION or key.area != province:
                continue  # the nation is the sum of provinces (read side)
            by_series.setdefault((key.area, key.age_band), {})[key.day] = change
        for (area, band), changes in by_series.items():
            self._apply(ctx, msg, area, band, changes)
        ctx.set_state(LAST_STATUS, status_key, _status_to_state(new) if new else None, msg)

    @staticmethod
    def _apply(
        ctx: BatchContext, msg: Message, area: str, band: str, changes: dict[date, CoverageCounts]
    ) -> None:
        series_key = f"{area}|{band}"
        series: dict[str, list[int]] = dict(ctx.state(SERIES, series_key) or {})
        rows: list[Upsert | Delete] = []
        for day, change in changes.items():
            k = str(to_days(day))
            now = CoverageCounts(*series.get(k, [0, 0, 0, 0])) + change
            if now.is_negative:
                raise ValueError(f"{CountsKey(area, band, day)} would become {now}")
            if now.is_zero:
                # A day left without doses (an earlier dose arrived late and took its place)
                # has no row: "as of" reads fall back to the previous day, whose cumulative
                # values are the same, and the rows stay independent of arrival order.
                series.pop(k, None)
                rows.append(
                    Delete("coverage_daily", {"province": area, "age_band": band, "day": day})
                )
            else:
                series[k] = [
                    now.people_vaccinated,
                    now.people_fully_vaccinated,
                    now.total_boosters,
                    now.total_doses,
                ]
        first_changed = min(to_days(d) for d in changes)
        running = CoverageCounts()
        for k in sorted(series, key=int):
            daily = CoverageCounts(*series[k])
            running = running + daily
            if int(k) < first_changed:
                continue
            rows.append(
                Upsert(
                    "coverage_daily",
                    {
                        "province": area,
                        "age_band": band,
                        "day": from_days(int(k)),
                        "first_doses": daily.people_vaccinated,
                        "completions": daily.people_fully_vaccinated,
                        "boosters": daily.total_boosters,
                        "doses": daily.total_doses,
                        "people_vaccinated": running.people_vaccinated,
                        "people_fully_vaccinated": running.people_fully_vaccinated,
                        "total_boosters": running.total_boosters,
                        "total_doses": running.total_doses,
                    },
                )
            )
        ctx.write(rows)
        ctx.set_state(SERIES, series_key, series, msg)


def _status_to_state(s: PersonCoverage) -> list[Any]:
    return [
        s.province,
        s.age_band,
        [to_days(d) for d in s.dose_dates],
        to_days(s.first_dose_date),
        to_days(s.completed_date) if s.completed_date else None,
        [to_days(d) for d in s.booster_dates],
    ]


def _status_from_state(person: str, v: list[Any]) -> PersonCoverage:
    return PersonCoverage(
        person,
        v[0],
        v[1],
        tuple(from_days(d) for d in v[2]),
        from_days(v[3]),
        from_days(v[4]) if v[4] is not None else None,
        tuple(from_days(d) for d in v[5]),
    )
