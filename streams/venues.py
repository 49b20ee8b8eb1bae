"""Per-venue agent: visits and exposure windows of one venue, and the alerts they make.

DESIGN "Data flow" 2. ``visits`` and ``exposure-windows`` are both keyed by venue and
co-partitioned. State per venue: its province, the exposure windows per case, the alerts last
published (for in-place updates and withdrawals) and the cluster last published. Visits
themselves are rows of ``visits_by_venue`` (written here, read back when a window changes: a
busy venue's visits would make the state too large to changelog on every scan).

A changed visit is matched against the venue's windows (``alerts_for_visit``); a changed window
against the visits it can overlap (``alerts_for_case``, reading the day partitions that cover
the case's windows minus the longest visit). Either way only the affected alerts are
recomputed and reconciled: new, changed (risk raised or lowered, overlap moved) and WITHDRAWN
alerts are published with a version one higher than before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from domain.exposure import (
    Alert,
    AlertStatus,
    Interval,
    Risk,
    alerts_for_case,
    alerts_for_visit,
    alerts_of_case,
    alerts_of_contact_visit,
    detect_cluster,
    reconcile_alerts,
)
from domain.presence import Visit
from domain.rules import DEFAULT_RULES, PresenceRules
from domain.status import DEFAULT_RULES as STATUS_RULES
from domain.status import StatusRules
from projections.model import Delete, Query, Upsert
from streams import status as facts
from streams.context import BatchContext, Message
from streams.ids import derived_id, duration_ms, from_ms, to_ms

TABLE = "venue_exposure"
VISIT = "covidtech.exposure.VisitChanged"
WINDOW = "covidtech.exposure.ExposureWindowChanged"
#: How long a cluster row lives after its last window start (the ``clusters`` topic's 90
#: days), and so how long a cluster outlives its pruned windows in the venue's state.
CLUSTER_RETENTION = timedelta(days=90)


class VenueHandler:
    """Alerts and clusters of one venue (see the module docstring)."""

    topics = ("visits", "exposure-windows")
    tables = (TABLE,)

    def __init__(
        self, rules: PresenceRules = DEFAULT_RULES, status: StatusRules = STATUS_RULES
    ) -> None:
        self.rules = rules
        self.status = status
        self._windows_ms = duration_ms(rules.presence_retention + rules.lateness)
        self._alerts_ms = duration_ms(rules.presence_retention)
        self._cluster_ms = duration_ms(CLUSTER_RETENTION)

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """The venue's state without what is past retention at ``now_ms`` (wall clock):
        windows whose visit started more than retention + lateness ago, alerts whose contact
        visit started more than retention ago (their rows' TTL), a cluster whose last window
        started more than ``CLUSTER_RETENTION`` ago. ``value`` itself when nothing is; None
        when nothing is left (the key is deleted)."""
        return prune_venue(
            value,
            windows_before=now_ms - self._windows_ms,
            alerts_before=now_ms - self._alerts_ms,
            cluster_before=now_ms - self._cluster_ms,
        )

    def _day(self, t: datetime) -> date:
        return t.astimezone(self.rules.zone).date()

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        venue = rec["venue_id"]
        committed = ctx.state(TABLE, venue)
        st = (
            _copy(committed)
            if committed
            else {
                "province": rec["venue_province"],
                "windows": {},
                "alerts": {},
                "cluster": None,
            }
        )
        if msg.event.name == VISIT:
            changed = self._on_visit(ctx, venue, st, rec)
        elif msg.event.name == WINDOW:
            changed = await self._on_window(ctx, venue, st, rec)
        else:
            ctx.dead_letter(msg, f"unexpected event {msg.event.name} on {msg.topic}")
            return
        if changed:
            ctx.set_state(TABLE, venue, st, msg)

    # ------------------------------------------------------------------ visits

    def _on_visit(
        self, ctx: BatchContext, venue: str, st: dict[str, Any], rec: dict[str, Any]
    ) -> bool:
        person, start, end = rec["person_id"], rec["visit_start"], rec["visit_end"]
        key = {
            "venue_id": venue,
            "day": self._day(start),
            "visit_start": start,
            "person_id": person,
        }
        if rec["removed"]:
            ctx.write([Delete("visits_by_venue", key)])
        else:
            ctx.write(
                [
                    Upsert(
                        "visits_by_venue",
                        {**key, "visit_end": end},
                        expires_at=start + self.rules.presence_retention,
                    )
                ]
            )
        if not st["windows"]:
            return False
        previous = alerts_of_contact_visit(
            _alerts(st, venue, contact=(person, to_ms(start))).values(), person, start
        )
        current: tuple[Alert, ...] = ()
        if not rec["removed"]:
            current = alerts_for_visit(
                person, Visit(start, end), _windows(st), venue_id=venue, rules=self.rules
            )
        return self._publish(ctx, venue, st, reconcile_alerts(previous, current))

    # ------------------------------------------------------------------ windows

    async def _on_window(
        self, ctx: BatchContext, venue: str, st: dict[str, Any], rec: dict[str, Any]
    ) -> bool:
        case, vs = rec["case_person_id"], rec["visit_start"]
        mine = st["windows"].get(case, [])
        old = next((w for w in mine if w[0] == to_ms(vs)), None)
        new = (
            None
            if rec["removed"]
            else [to_ms(vs), to_ms(rec["window_start"]), to_ms(rec["window_end"])]
        )
        if old == new:
            return False  # a duplicate
        touched = [w for w in (old, new) if w is not None]
        mine = sorted([w for w in mine if w[0] != to_ms(vs)] + ([new] if new else []))
        if mine:
            st["windows"][case] = mine
        else:
            st["windows"].pop(case, None)
        self._write_window(ctx, venue, st["province"], case, vs, old, new)

        # The visits this case's windows (old and new) can overlap: starts from the earliest
        # window start minus the longest visit, up to the latest window end.
        spans = [*touched, *st["windows"].get(case, [])]
        lo = from_ms(min(w[1] for w in spans)) - self.rules.max_dwell
        hi = from_ms(max(w[2] for w in spans))
        visits_by_person = await self._visits_between(ctx, venue, lo, hi, exclude=case)
        previous = {
            aid: a
            for aid, a in alerts_of_case(_alerts(st, venue).values(), case).items()
            if lo <= a.contact_visit.start <= hi
        }
        windows = [Interval(from_ms(w[1]), from_ms(w[2])) for w in st["windows"].get(case, [])]
        current = alerts_for_case(case, windows, visits_by_person, venue_id=venue, rules=self.rules)
        self._publish(ctx, venue, st, reconcile_alerts(previous, current))
        self._check_cluster(ctx, venue, st)
        return True

    def _write_window(
        self,
        ctx: BatchContext,
        venue: str,
        province: str,
        case: str,
        vs: datetime,
        old: list[int] | None,
        new: list[int] | None,
    ) -> None:
        key = {"venue_id": venue, "case_person_id": case, "visit_start": vs}
        if old is not None:
            ctx.write(
                [
                    Delete(
                        "exposure_sites_by_province",
                        {**key, "province": province, "day": self._day(from_ms(old[1]))},
                    )
                ]
            )
        if new is None:
            ctx.write([Delete("exposure_windows_by_venue", key)])
            return
        ws, we = from_ms(new[1]), from_ms(new[2])
        expires = ws + self.rules.presence_retention
        ctx.write(
            [
                Upsert(
                    "exposure_windows_by_venue",
                    {**key, "window_start": ws, "window_end": we, "venue_province": province},
                    expires_at=expires,
                ),
                Upsert(
                    "exposure_sites_by_province",
                    {
                        **key,
                        "province": province,
                        "day": self._day(ws),
                        "window_start": ws,
                        "window_end": we,
                    },
                    expires_at=expires,
                ),
            ]
        )

    async def _visits_between(
        self, ctx: BatchContext, venue: str, lo: datetime, hi: datetime, exclude: str
    ) -> dict[str, list[Visit]]:
        store = await ctx.read_your_writes()
        out: dict[str, list[Visit]] = {}
        day, last = self._day(lo), self._day(hi)
        while day <= last:
            rows = await store.select(
                Query(
                    "visits_by_venue",
                    {"venue_id": venue, "day": day},
                    clustering_from=lo,
                    clustering_to=hi,
                )
            )
            for r in rows:
                if r["person_id"] != exclude:
                    out.setdefault(r["person_id"], []).append(
                        Visit(r["visit_start"], r["visit_end"])
                    )
            day += timedelta(days=1)
        return out

    # ------------------------------------------------------------------ alerts

    def _publish(
        self, ctx: BatchContext, venue: str, st: dict[str, Any], alerts: Iterable[Alert]
    ) -> bool:
        changed = False
        for a in alerts:
            held = st["alerts"].get(a.alert_id, [None] * 8)
            version = (held[7] or 0) + 1
            was_high = held[5] == Risk.HIGH.value and held[6] == AlertStatus.ACTIVE.value
            is_high = a.risk is Risk.HIGH and a.status is AlertStatus.ACTIVE
            if is_high or was_high:  # the contact's check-in status fact (streams/status.py)
                ctx.write(
                    [
                        facts.exposure(
                            a.contact_person_id,
                            a.alert_id,
                            a.contact_visit.end,
                            is_high,
                            self.status,
                        )
                    ]
                )
            st["alerts"][a.alert_id] = _alert_to_state(a, version)
            province = st["province"]
            start, end = a.contact_visit.start, a.contact_visit.end
            overlap = int(a.overlap.total_seconds())
            common = {
                "alert_id": a.alert_id,
                "case_person_id": a.case_person_id,
                "venue_id": venue,
                "contact_visit_end": end,
                "overlap_seconds": overlap,
                "risk": a.risk.value,
                "status": a.status.value,
            }
            expires = start + self.rules.presence_retention
            ctx.write(
                [
                    Upsert(
                        "alerts_by_province",
                        {
                            **common,
                            "province": province,
                            "day": self._day(start),
                            "contact_visit_start": start,
                            "contact_person_id": a.contact_person_id,
                        },
                        expires_at=expires,
                    ),
                    Upsert(
                        "alerts_by_person",
                        {
                            **common,
                            "province": province,
                            "contact_person_id": a.contact_person_id,
                            "contact_visit_start": start,
                        },
                        expires_at=expires,
                    ),
                ]
            )
            ctx.emit(
                "exposure-alerts",
                province,
                "covidtech.exposure.ExposureAlertRaised",
                {
                    "event_id": derived_id("alert", a.alert_id, version),
                    "alert_id": a.alert_id,
                    "case_person_id": a.case_person_id,
                    "contact_person_id": a.contact_person_id,
                    "venue_id": venue,
                    "province": province,
                    "contact_visit_start": start,
                    "contact_visit_end": end,
                    "overlap_seconds": overlap,
                    "risk": a.risk.value,
                    "status": a.status.value,
                    "version": version,
                },
            )
            changed = True
        return changed

    def _check_cluster(self, ctx: BatchContext, venue: str, st: dict[str, Any]) -> None:
        if st.get("frozen"):
            return  # its windows were pruned: it stands as published until its retention
        starts = {case: [from_ms(w[1]) for w in ws] for case, ws in st["windows"].items()}
        cluster = detect_cluster(starts, self.rules)
        now = (
            [
                list(cluster.case_ids),
                to_ms(cluster.first_window_start),
                to_ms(cluster.last_window_start),
            ]
            if cluster
            else None
        )
        if now == st["cluster"]:
            return
        st["cluster"] = now
        key = {"province": st["province"], "venue_id": venue}
        if cluster is None:
            ctx.write([Delete("clusters_by_province", key)])
            return
        ctx.write(
            [
                Upsert(
                    "clusters_by_province",
                    {
                        **key,
                        "case_person_ids": list(cluster.case_ids),
                        "first_window_start": cluster.first_window_start,
                        "last_window_start": cluster.last_window_start,
                    },
                    expires_at=cluster.last_window_start + CLUSTER_RETENTION,
                )
            ]
        )
        ctx.emit(
            "clusters",
            st["province"],
            "covidtech.exposure.ClusterDetected",
            {
                "event_id": derived_id("cluster", venue, *cluster.case_ids),
                "venue_id": venue,
                "province": st["province"],
                "case_person_ids": list(cluster.case_ids),
                "first_window_start": cluster.first_window_start,
                "last_window_start": cluster.last_window_start,
            },
        )


def _alert_to_state(a: Alert, version: int) -> list[Any]:
    return [
        a.case_person_id,
        a.contact_person_id,
        to_ms(a.contact_visit.start),
        to_ms(a.contact_visit.end),
        int(a.overlap.total_seconds()),
        a.risk.value,
        a.status.value,
        version,
    ]


def _alerts(
    st: dict[str, Any], venue: str, contact: tuple[str, int] | None = None
) -> dict[str, Alert]:
    """The venue's alerts, or only those of one ``contact`` visit (person, start in ms):
    a busy venue holds many, and a visit concerns a few."""
    if contact is not None:
        person, start = contact
        entries = {aid: v for aid, v in st["alerts"].items() if v[1] == person and v[2] == start}
    else:
        entries = st["alerts"]
    return {
        aid: Alert(
            aid,
            v[0],
            v[1],
            venue,
            Visit(from_ms(v[2]), from_ms(v[3])),
            timedelta(seconds=v[4]),
            Risk(v[5]),
            AlertStatus(v[6]),
        )
        for aid, v in entries.items()
    }


def _windows(st: dict[str, Any]) -> dict[str, list[Interval]]:
    return {
        case: [Interval(from_ms(w[1]), from_ms(w[2])) for w in ws]
        for case, ws in st["windows"].items()
    }


def _copy(st: dict[str, Any]) -> dict[str, Any]:
    """A copy the handler may change: its lists are replaced, never changed in place, so
    copying the dicts that hold them is enough (committed state stays as it was)."""
    return {
        "province": st["province"],
        "windows": dict(st["windows"]),
        "alerts": dict(st["alerts"]),
        "cluster": st["cluster"],
        **({"frozen": True} if st.get("frozen") else {}),
    }


def prune_venue(
    st: dict[str, Any], *, windows_before: int, alerts_before: int, cluster_before: int
) -> dict[str, Any] | None:
    """A venue's state without windows whose visit started before ``windows_before``,
    alerts whose contact visit started at or before ``alerts_before`` and a cluster whose
    last window started at or before ``cluster_before`` (all ms): ``st`` itself when nothing
    is past them, None when nothing is left. Pure; ``st`` is not changed.

    A cluster that loses a window of its span is **frozen**: it stays as published (its row
    lives ``CLUSTER_RETENTION`` after its last window start) instead of being re-decided
    from the windows left at the venue's next window change, which would delete its row
    early or report a later group in its place. Once it expires, clusters are decided from
    the windows again."""
    windows: dict[str, list[list[int]]] = {}
    lost: list[list[int]] = []
    for case, ws in st["windows"].items():
        kept = [w for w in ws if w[0] >= windows_before]
        if len(kept) < len(ws):
            lost += [w for w in ws if w[0] < windows_before]
        if kept:
            windows[case] = kept
    alerts = {aid: a for aid, a in st["alerts"].items() if a[2] > alerts_before}
    cluster, frozen = st["cluster"], bool(st.get("frozen"))
    if cluster is not None and cluster[2] <= cluster_before:
        cluster, frozen = None, False
    elif cluster is not None and any(w[1] >= cluster[1] for w in lost):
        frozen = True
    unchanged = cluster is st["cluster"] and frozen == bool(st.get("frozen"))
    if unchanged and not lost and len(alerts) == len(st["alerts"]):
        return st
    if not windows and not alerts and cluster is None:
        return None
    out: dict[str, Any] = {
        "province": st["province"],
        "windows": windows,
        "alerts": alerts,
        "cluster": cluster,
    }
    if frozen:
        out["frozen"] = True
    return out
