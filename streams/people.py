"""Per-person agent: check-ins and case candidates of one person, in one place.

DESIGN "Data flow" 1. ``checkins`` and ``cases`` are both keyed by person and co-partitioned,
so one handler sees every scan and every positive of a person in log order. Its state holds the
person's scans of the last 21 days (plus the lateness bound), the visits and exposure windows it
last published, and every individual positive (for the one-case-per-90-days rule).

Each scan re-pairs the person's visits at that venue from all their scans there and publishes
the difference (``visits``, keyed by venue). When the person is a case, the changed exposure
windows go to ``exposure-windows``. A case candidate recomputes the windows at every venue.
Because the visits and the case of a person are decided here, a late visit of a case and a
case confirmed after its visits both land, whatever the arrival order.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from domain.exposure import Interval, diff_windows, exposure_windows, infectious_window
from domain.presence import Direction, Scan, Visit, diff_visits, pair_visits
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import CaseRecord, PersonCases, ResultRules, cases, record_positive
from domain.rules import DEFAULT_RULES, PresenceRules
from domain.status import DEFAULT_RULES as STATUS_RULES
from domain.status import StatusRules
from projections.model import Delete, Upsert
from streams import status as facts
from streams.context import BatchContext, Message
from streams.epidemiology import CASE_COUNTS, add_to_day_count, prune_day_count
from streams.ids import derived_id, duration_ms, from_days, from_ms, to_days, to_ms

TABLE = "persons"
SCAN = "covidtech.checkin.CheckInScanned"
CASE = "covidtech.testing.CaseConfirmed"


def _empty() -> dict[str, Any]:
    return {"scans": {}, "visits": {}, "windows": {}, "positives": [], "newest": 0}


class PersonHandler:
    """Visits, cases and exposure windows of one person (see the module docstring)."""

    topics = ("checkins", "cases")
    tables = (TABLE, CASE_COUNTS)

    def __init__(
        self,
        rules: PresenceRules = DEFAULT_RULES,
        results: ResultRules = RESULT_RULES,
        status: StatusRules = STATUS_RULES,
    ) -> None:
        self.rules = rules
        self.results = results
        self.status = status
        self.keep = rules.presence_retention + rules.lateness
        self._keep_ms = duration_ms(self.keep)
        self._results_ms = duration_ms(results.result_retention)

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        person = rec["person_id"]
        state = ctx.state(TABLE, person)
        state = _copy(state) if state else _empty()
        if msg.event.name == SCAN:
            changed = self._on_scan(ctx, person, state, rec)
        elif msg.event.name == CASE:
            changed = self._on_case(ctx, person, state, rec, msg)
        else:
            ctx.dead_letter(msg, f"unexpected event {msg.event.name} on {msg.topic}")
            return
        if changed:
            ctx.set_state(TABLE, person, state, msg)

    # ------------------------------------------------------------------ scans

    def _on_scan(
        self, ctx: BatchContext, person: str, st: dict[str, Any], rec: dict[str, Any]
    ) -> bool:
        venue = rec["venue_id"]
        scans = st["scans"].get(venue, ())
        if any(s[0] == rec["event_id"] for s in scans):
            return False  # a redelivered or retried scan changes nothing
        at = to_ms(rec["scanned_at"])
        st["scans"][venue] = [
            *scans,
            [
                rec["event_id"],
                at,
                rec["direction"],
                rec["venue_dwell_minutes"],
                rec["venue_province"],
            ],
        ]
        if at > st["newest"]:
            st["newest"] = at
            _prune_presence(st, at - self._keep_ms)
        if venue in st["scans"]:
            self._republish_venue(ctx, person, st, venue)
        return True

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """The person's state without what is past retention at ``now_ms`` (wall clock):
        presence (scans, visits, windows) older than retention + lateness, and the
        positives of cases whose every positive is older than the result retention. The
        same ``value`` when nothing is; None when nothing is left (the key is deleted).
        Case counts: their day's retention (``streams.epidemiology``)."""
        if table == CASE_COUNTS:
            return prune_day_count(key, value, now_ms, self.rules.zone)
        return prune_person(value, now_ms - self._keep_ms, now_ms - self._results_ms)

    def _republish_venue(
        self, ctx: BatchContext, person: str, st: dict[str, Any], venue: str
    ) -> None:
        scans = st["scans"][venue]
        # The venue's dwell and province as the latest scan (by event time) carried them,
        # so a replay in any order picks the same values.
        latest = max(scans, key=lambda s: (s[1], s[0]))
        dwell, province = timedelta(minutes=latest[3]), latest[4]
        visits = pair_visits(
            (Scan(s[0], from_ms(s[1]), Direction(s[2])) for s in scans), dwell, self.rules
        )
        old = [Visit(from_ms(a), from_ms(b)) for a, b in st["visits"].get(venue, [])]
        diff = diff_visits(old, visits)
        for v in diff.removed:
            ctx.write(
                [
                    Delete(
                        "visits_by_person",
                        {"person_id": person, "visit_start": v.start, "venue_id": venue},
                    )
                ]
            )
            self._emit_visit(ctx, person, venue, province, v, removed=True)
        for v in diff.upserted:
            ctx.write(
                [
                    Upsert(
                        "visits_by_person",
                        {
                            "person_id": person,
                            "visit_start": v.start,
                            "venue_id": venue,
                            "visit_end": v.end,
                            "venue_province": province,
                        },
                        expires_at=v.start + self.rules.presence_retention,
                    )
                ]
            )
            self._emit_visit(ctx, person, venue, province, v, removed=False)
        st["visits"][venue] = [[to_ms(v.start), to_ms(v.end)] for v in visits]
        if st["positives"]:
            self._republish_windows(ctx, person, st, venue, province)

    def _emit_visit(
        self, ctx: BatchContext, person: str, venue: str, province: str, v: Visit, removed: bool
    ) -> None:
        ctx.emit(
            "visits",
            venue,
            "covidtech.exposure.VisitChanged",
            {
                "event_id": derived_id(
                    "visit", person, venue, to_ms(v.start), to_ms(v.end), removed
                ),
                "venue_id": venue,
                "venue_province": province,
                "person_id": person,
                "visit_start": v.start,
                "visit_end": v.end,
                "removed": removed,
            },
        )

    # ------------------------------------------------------------------ cases

    def _on_case(
        self,
        ctx: BatchContext,
        person: str,
        st: dict[str, Any],
        rec: dict[str, Any],
        msg: Message,
    ) -> bool:
        candidate = CaseRecord(
            person,
            rec["sample_id"],
            rec["collected_at"],
            rec["symptom_onset"],
            rec["province"],
            rec.get("resulted_at"),
        )
        known = person_cases(person, st)
        decision = record_positive(known, candidate)
        assert decision.state is not None
        # The positive as the person's cases keep it (of two copies of one sample id, the
        # same one whatever their order): a fact of the check-in status, written even when it
        # confirms no case, since RED and recovery count positive samples, not cases.
        kept = next(p for p in decision.state.positives if p.sample_id == candidate.sample_id)
        ctx.write([facts.positive(person, kept.sample_id, kept.collected_at, self.status)])
        if not decision.confirmed and not decision.retracted:
            return False  # a positive already known, or inside an existing case's 90 days
        self._count_cases(ctx, msg, cases(known), cases(decision.state))
        for case in decision.retracted:
            ctx.write([Delete("cases_by_person", {"person_id": person, "case_id": case.case_id})])
        for case in decision.confirmed:
            window = infectious_window(case.collected_at, case.symptom_onset, self.rules)
            ctx.write(
                [
                    Upsert(
                        "cases_by_person",
                        {
                            "person_id": person,
                            "case_id": case.case_id,
                            "sample_id": case.sample_id,
                            "province": case.province,
                            "collected_at": case.collected_at,
                            "symptom_onset": case.symptom_onset,
                            "infectious_from": window.start,
                            "infectious_until": window.end,
                        },
                        expires_at=case.collected_at + self.results.result_retention,
                    )
                ]
            )
        st["positives"] = [
            [
                p.sample_id,
                to_ms(p.collected_at),
                to_days(p.symptom_onset) if p.symptom_onset else None,
                p.province,
                to_ms(p.resulted_at) if p.resulted_at else None,
            ]
            for p in decision.state.positives
        ]
        for venue in list(st["visits"]):
            province = max(st["scans"][venue], key=lambda s: (s[1], s[0]))[4]
            self._republish_windows(ctx, person, st, venue, province)
        return True

    def _count_cases(
        self,
        ctx: BatchContext,
        msg: Message,
        before: tuple[CaseRecord, ...],
        after: tuple[CaseRecord, ...],
    ) -> None:
        """Move the person's cases in the daily counts from ``before`` to ``after``: a case
        counts on its sampling day and, when known, on its result day."""
        zone = self.rules.zone
        changes = [(c, -1) for c in before if c not in after]
        changes += [(c, 1) for c in after if c not in before]
        for case, delta in changes:
            days = [(case.collected_at, 0)]
            if case.resulted_at is not None:
                days.append((case.resulted_at, 1))
            for at, column in days:
                day = at.astimezone(zone).date()
                add_to_day_count(ctx, msg, CASE_COUNTS, case.province, day, column, delta, zone)

    def _republish_windows(
        self, ctx: BatchContext, person: str, st: dict[str, Any], venue: str, province: str
    ) -> None:
        visits = [Visit(from_ms(a), from_ms(b)) for a, b in st["visits"].get(venue, [])]
        new: dict[datetime, Interval] = {}
        for case in cases(person_cases(person, st)):
            iw = infectious_window(case.collected_at, case.symptom_onset, self.rules)
            for start, window in exposure_windows(visits, iw, self.rules).items():
                new.setdefault(start, window)
        old = {
            from_ms(w[0]): Interval(from_ms(w[1]), from_ms(w[2]))
            for w in st["windows"].get(venue, [])
        }
        diff = diff_windows(old, new)
        for start in diff.removed:
            self._emit_window(ctx, person, venue, province, start, old[start], removed=True)
        for start, window in diff.upserted:
            self._emit_window(ctx, person, venue, province, start, window, removed=False)
        st["windows"][venue] = [
            [to_ms(s), to_ms(w.start), to_ms(w.end)] for s, w in sorted(new.items())
        ]

    def _emit_window(
        self,
        ctx: BatchContext,
        person: str,
        venue: str,
        province: str,
        visit_start: datetime,
        window: Interval,
        removed: bool,
    ) -> None:
        ctx.emit(
            "exposure-windows",
            venue,
            "covidtech.exposure.ExposureWindowChanged",
            {
                "event_id": derived_id(
                    "window",
                    person,
                    venue,
                    to_ms(visit_start),
                    to_ms(window.start),
                    to_ms(window.end),
                    removed,
                ),
                "venue_id": venue,
                "venue_province": province,
                "case_person_id": person,
                "visit_start": visit_start,
                "window_start": window.start,
                "window_end": window.end,
                "removed": removed,
            },
        )


def _prune_presence(st: dict[str, Any], horizon: int) -> None:
    """Forget presence older than ``horizon`` (ms): scans by scan time, visits and windows
    by visit start; a venue without scans goes whole. Changes ``st`` (a copy) in place."""
    for venue in list(st["scans"]):
        st["scans"][venue] = [s for s in st["scans"][venue] if s[1] >= horizon]
        st["visits"][venue] = [v for v in st["visits"].get(venue, []) if v[0] >= horizon]
        st["windows"][venue] = [w for w in st["windows"].get(venue, []) if w[0] >= horizon]
        if not st["scans"][venue]:
            for part in ("scans", "visits", "windows"):
                st[part].pop(venue, None)


def _has_presence_before(st: dict[str, Any], horizon: int) -> bool:
    return (
        any(s[1] < horizon for scans in st["scans"].values() for s in scans)
        or any(v[0] < horizon for visits in st["visits"].values() for v in visits)
        or any(w[0] < horizon for windows in st["windows"].values() for w in windows)
    )


#: The default result rules' case_dedup in ms: the ``cases`` rule as this handler applies it.
_CASE_DEDUP_MS = duration_ms(RESULT_RULES.case_dedup)


def expired_positives(positives: list[list[Any]], horizon: int) -> int:
    """How many of ``positives`` (sorted, as the state holds them) are past retention: the
    leading cases whose every positive was collected before ``horizon`` (ms).

    Whole cases go, never part of one: the anchors of the cases left are then the same as
    before (a case's anchor depends only on the anchor before it), so pruning never moves
    or re-confirms a case."""
    gone = 0
    anchor: int | None = None
    for i, p in enumerate(positives):
        if anchor is None or p[1] - anchor > _CASE_DEDUP_MS:
            anchor = p[1]  # a new case starts here; every positive before it is one case
            gone = i
        if p[1] >= horizon:
            return gone
    return len(positives)


def prune_person(
    st: dict[str, Any], presence_horizon: int, result_horizon: int
) -> dict[str, Any] | None:
    """A person's state without presence older than ``presence_horizon`` and the cases whose
    positives are all older than ``result_horizon`` (ms): ``st`` itself when nothing is
    past them, None when nothing is left. Pure; ``st`` is not changed."""
    stale_presence = _has_presence_before(st, presence_horizon)
    stale_positives = expired_positives(st["positives"], result_horizon)
    if not stale_presence and not stale_positives:
        return st
    out = _copy(st)
    if stale_presence:
        _prune_presence(out, presence_horizon)
    if stale_positives:
        out["positives"] = st["positives"][stale_positives:]
    if not out["scans"] and not out["positives"]:
        return None
    return out


def person_cases(person: str, st: dict[str, Any]) -> PersonCases:
    """The cases of a person's ``positives`` state (this agent's, or the chain agent's, which
    keeps no ``resulted_at``)."""
    return PersonCases(
        person,
        tuple(
            CaseRecord(
                person,
                p[0],
                from_ms(p[1]),
                from_days(p[2]) if p[2] is not None else None,
                p[3],
                from_ms(p[4]) if len(p) > 4 and p[4] is not None else None,
            )
            for p in st["positives"]
        ),
    )


def _copy(st: dict[str, Any]) -> dict[str, Any]:
    """A copy the handler may change: committed state is never changed in place. Its lists
    are replaced, never changed (a new scan makes a new list for its venue), so copying the
    dicts that hold them is enough."""
    return {
        "scans": dict(st["scans"]),
        "visits": dict(st["visits"]),
        "windows": dict(st["windows"]),
        "positives": st["positives"],
        "newest": st["newest"],
    }


__all__ = ["PersonHandler", "date"]
