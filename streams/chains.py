"""Chains of transmission: links between cases through venues (``domain/chains.py``).

A link needs two people's facts: the infected person's case and HIGH alert (known where that
person's events meet) and the source person's case (known where theirs meet). One agent keyed
by person holds both sides of every person and passes a **claim** from one to the other:

1. ``exposure-alerts`` (keyed by province) is forwarded to ``transmission`` keyed by the
   contact person (stateless). An alert that is LOW at its first version is left out: it
   never qualified, and absent means the same to the contact's side.
2. An alert on ``transmission`` or a case candidate on ``cases`` (both keyed by the person)
   updates the person's exposures (the latest version of each alert) or positives, and the
   person's claims are recomputed (``domain.chains.claims``); each new, changed or vanished
   claim goes to ``transmission`` keyed by the source person (``TransmissionClaimChanged``).
3. A claim on ``transmission`` or a case candidate updates the source person's claims (the
   latest version of each) or positives, the links out of the person are recomputed
   (``domain.chains.links``) and the difference written to
   ``transmission_links_by_province``: upserts under the alert's key, deletes of links that
   no longer hold (alert withdrawn or lowered, a case moved by a late earlier positive).

Every row is written from the source person's partition. State per person: ``positives`` (as
the person agent keeps them), ``exposures`` and ``claimed`` (the contact's side),
``claims`` and ``links`` (the source's side). Everything is a function of the sets of alerts
and positives, so order and duplicates do not matter; versions only order the updates of one
alert or claim, and are never written to a row. Data of an exposure leaves the state when its
rows expire (exposure + presence retention), positives with their case (result retention).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain import chains
from domain.exposure import AlertStatus, Risk
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import CaseRecord, ResultRules, cases, record_positive
from domain.rules import DEFAULT_RULES, PresenceRules
from projections.model import Delete, Upsert
from streams.context import BatchContext, Message
from streams.ids import derived_id, duration_ms, from_ms, to_days, to_ms
from streams.people import expired_positives, person_cases

TABLE = "chains"
ALERT = "covidtech.exposure.ExposureAlertRaised"
CASE = "covidtech.testing.CaseConfirmed"
CLAIM = "covidtech.exposure.TransmissionClaimChanged"
LINKS = "transmission_links_by_province"

# State layouts (lists, JSON-friendly, times in epoch ms):
# exposures[alert_id] = [source, venue, province, at, risk, status, version]
# claimed[alert_id] = [source, case_sample, case_collected, venue, province, at, version, removed]
# claims[alert_id] = [case_person, case_sample, case_collected, venue, province, at, version,
#                     removed]
# links[alert_id] = [province, case_collected]   (the key of the row written)


def _empty() -> dict[str, Any]:
    return {"positives": [], "exposures": {}, "claimed": {}, "claims": {}, "links": {}}


class ChainHandler:
    """Claims and links of one person (see the module docstring)."""

    topics = ("cases", "exposure-alerts", "transmission")
    tables = (TABLE,)
    # ``cases`` is the person agent's to report; this one reports its own topics.
    reports_bad_input = ("exposure-alerts", "transmission")

    def __init__(
        self, rules: PresenceRules = DEFAULT_RULES, results: ResultRules = RESULT_RULES
    ) -> None:
        self.rules = rules
        self.results = results
        self._presence_ms = duration_ms(rules.presence_retention)
        self._results_ms = duration_ms(results.result_retention)

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec, name = msg.event.record, msg.event.name
        if msg.topic == "exposure-alerts":
            if name != ALERT:
                ctx.dead_letter(msg, f"unexpected event {name} on {msg.topic}")
            elif not (rec["risk"] == Risk.LOW.value and rec["version"] <= 1):
                ctx.emit("transmission", rec["contact_person_id"], ALERT, rec)
            return
        if name == CASE:
            person = rec["person_id"]
        elif name == ALERT and msg.topic == "transmission":
            person = rec["contact_person_id"]
        elif name == CLAIM:
            person = rec["source_person_id"]
        else:
            ctx.dead_letter(msg, f"unexpected event {name} on {msg.topic}")
            return
        committed = ctx.state(TABLE, person)
        st = _copy(committed) if committed else _empty()
        if name == CASE:
            changed = self._on_case(st, person, rec)
            if changed:
                self._reclaim(ctx, person, st)
                self._relink(ctx, person, st)
        elif name == ALERT:
            changed = _on_alert(st, rec)
            if changed:
                self._reclaim(ctx, person, st)
        else:
            changed = _on_claim(st, rec)
            if changed:
                self._relink(ctx, person, st)
        if changed:
            ctx.set_state(TABLE, person, st, msg)

    # ------------------------------------------------------------------ inputs

    def _on_case(self, st: dict[str, Any], person: str, rec: dict[str, Any]) -> bool:
        candidate = CaseRecord(
            person, rec["sample_id"], rec["collected_at"], rec["symptom_onset"], rec["province"]
        )
        decision = record_positive(person_cases(person, st), candidate, self.results)
        if decision.state is None or not decision.changed:
            return False
        st["positives"] = [
            [
                p.sample_id,
                to_ms(p.collected_at),
                to_days(p.symptom_onset) if p.symptom_onset else None,
                p.province,
            ]
            for p in decision.state.positives
        ]
        return True

    def _cases(self, person: str, st: dict[str, Any]) -> list[chains.CaseRef]:
        return [
            chains.CaseRef(c.collected_at, person, c.sample_id)
            for c in cases(person_cases(person, st), self.results)
        ]

    # ------------------------------------------------------------------ contact side

    def _reclaim(self, ctx: BatchContext, person: str, st: dict[str, Any]) -> None:
        exposures = [
            chains.Exposure(
                aid, e[0], person, e[1], e[2], from_ms(e[3]), Risk(e[4]), AlertStatus(e[5])
            )
            for aid, e in st["exposures"].items()
        ]
        new = {
            aid: [
                c.source_person_id,
                c.case.sample_id,
                to_ms(c.case.collected_at),
                c.venue_id,
                c.province,
                to_ms(c.exposure_at),
            ]
            for aid, c in chains.claims(self._cases(person, st), exposures, self.rules).items()
        }
        old = {aid: c[:6] for aid, c in st["claimed"].items() if not c[7]}
        upserted, removed = chains.diff(old, new)
        claimed = dict(st["claimed"])
        for aid, c in upserted:
            claimed[aid] = [*c, _version(claimed.get(aid)) + 1, False]
        for aid in removed:
            claimed[aid] = [*claimed[aid][:6], claimed[aid][6] + 1, True]
        for aid in sorted({a for a, _ in upserted} | set(removed)):
            c = claimed[aid]
            ctx.emit(
                "transmission",
                c[0],
                CLAIM,
                {
                    "event_id": derived_id("claim", aid, c[6]),
                    "alert_id": aid,
                    "source_person_id": c[0],
                    "case_person_id": person,
                    "case_sample_id": c[1],
                    "case_collected_at": from_ms(c[2]),
                    "venue_id": c[3],
                    "province": c[4],
                    "exposure_at": from_ms(c[5]),
                    "removed": c[7],
                    "version": c[6],
                },
            )
        st["claimed"] = claimed

    # ------------------------------------------------------------------ source side

    def _relink(self, ctx: BatchContext, person: str, st: dict[str, Any]) -> None:
        claims = [
            chains.Claim(
                aid, chains.CaseRef(from_ms(c[2]), c[0], c[1]), person, c[3], c[4], from_ms(c[5])
            )
            for aid, c in st["claims"].items()
            if not c[7]
        ]
        new = {
            aid: [
                k.province,
                to_ms(k.case.collected_at),
                k.case.person_id,
                k.case.sample_id,
                k.source.sample_id,
                to_ms(k.source.collected_at),
                k.venue_id,
                to_ms(k.exposure_at),
            ]
            for aid, k in chains.links(self._cases(person, st), claims).items()
        }
        old = st["links"]
        upserted, removed = chains.diff(old, new)
        for aid in removed:
            ctx.write([Delete(LINKS, self._key(old[aid][0], from_ms(old[aid][1]), aid))])
        for aid, k in upserted:
            was = old.get(aid)
            if was is not None and was[:2] != k[:2]:  # the row moved (the case re-anchored)
                ctx.write([Delete(LINKS, self._key(was[0], from_ms(was[1]), aid))])
            exposure_at = from_ms(k[7])
            ctx.write(
                [
                    Upsert(
                        LINKS,
                        {
                            **self._key(k[0], from_ms(k[1]), aid),
                            "case_person_id": k[2],
                            "case_sample_id": k[3],
                            "source_person_id": person,
                            "source_sample_id": k[4],
                            "source_collected_at": from_ms(k[5]),
                            "venue_id": k[6],
                            "exposure_at": exposure_at,
                        },
                        expires_at=exposure_at + self.rules.presence_retention,
                    )
                ]
            )
        st["links"] = new

    # ------------------------------------------------------------------ retention

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """The person's state without what is past retention at ``now_ms`` (wall clock):
        exposures, claims and links whose exposure is older than the presence retention
        (their rows' TTL), and the positives of cases past the result retention. ``value``
        itself when nothing is; None when nothing is left."""
        return prune_chains(value, now_ms - self._presence_ms, now_ms - self._results_ms)

    def _key(self, province: str, case_collected: datetime, alert_id: str) -> dict[str, Any]:
        return {
            "province": province,
            "day": self._day(case_collected),
            "case_collected_at": case_collected,
            "alert_id": alert_id,
        }

    def _day(self, t: datetime) -> date:
        return t.astimezone(self.rules.zone).date()


def _version(entry: list[Any] | None) -> int:
    return int(entry[6]) if entry is not None else 0


def _keep_latest(st: dict[str, Any], part: str, rec: dict[str, Any], entry: list[Any]) -> bool:
    """Keep ``entry`` as ``part``'s copy of ``rec``'s alert unless the one held is as new
    (both kinds of entry hold the version at index 6); False if not newer."""
    aid = rec["alert_id"]
    held = st[part].get(aid)
    if held is not None and held[6] >= rec["version"]:
        return False
    st[part] = {**st[part], aid: entry}
    return True


def _on_alert(st: dict[str, Any], rec: dict[str, Any]) -> bool:
    """Keep the latest version of an alert about this contact; False if not newer."""
    entry = [
        rec["case_person_id"],
        rec["venue_id"],
        rec["province"],
        to_ms(rec["contact_visit_start"]),
        rec["risk"],
        rec["status"],
        rec["version"],
    ]
    return _keep_latest(st, "exposures", rec, entry)


def _on_claim(st: dict[str, Any], rec: dict[str, Any]) -> bool:
    """Keep the latest version of a claim naming this source; False if not newer."""
    entry = [
        rec["case_person_id"],
        rec["case_sample_id"],
        to_ms(rec["case_collected_at"]),
        rec["venue_id"],
        rec["province"],
        to_ms(rec["exposure_at"]),
        rec["version"],
        rec["removed"],
    ]
    return _keep_latest(st, "claims", rec, entry)


def prune_chains(
    st: dict[str, Any], exposure_horizon: int, result_horizon: int
) -> dict[str, Any] | None:
    """A person's chain state without exposures, claims and links of exposures before
    ``exposure_horizon`` and cases whose positives are all before ``result_horizon`` (ms):
    ``st`` itself when nothing is past them, None when nothing is left. Pure."""
    at = {"exposures": 3, "claimed": 5, "claims": 5, "links": 7}
    stale = {
        part: [aid for aid, v in st[part].items() if v[i] < exposure_horizon]
        for part, i in at.items()
    }
    gone = expired_positives(st["positives"], result_horizon)
    if not gone and not any(stale.values()):
        return st
    out = _copy(st)
    for part, ids in stale.items():
        if ids:
            out[part] = {aid: v for aid, v in st[part].items() if aid not in set(ids)}
    if gone:
        out["positives"] = st["positives"][gone:]
    if not any(out[part] for part in ("positives", *at)):
        return None
    return out


def _copy(st: dict[str, Any]) -> dict[str, Any]:
    """A copy the handler may change: its dicts are replaced, never changed in place, and
    their lists are never changed either, so a shallow copy is enough."""
    return dict(st)
