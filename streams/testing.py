"""Per-sample agent (results, case candidates) and syndromic surveillance of declarations.

DESIGN "Data flow" 3. ``samples`` is keyed by sample id, so a sample's collection and its
result are handled in log order by one handler. An individual POSITIVE emits CaseConfirmed (a
case *candidate* per positive sample) to ``cases``; the per-person agent folds candidates into
one case per person per 90 days. Pool members get POOL_POSITIVE_RETEST or NEGATIVE.

Declarations are counted per (province, local day) for syndromic surveillance. The counts of
one source partition are kept with the offset last applied to them: a redelivered declaration
has an offset at or below it and is skipped, so no counter is ever incremented twice, and the
rows written are absolute values (readers sum the partitions).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from domain.exposure import infectious_window
from domain.results import (
    DEFAULT_RULES as RESULT_RULES,
)
from domain.results import (
    ConflictingResult,
    InvalidResult,
    ResultRules,
    Sample,
    SampleMember,
    TestResult,
    TestType,
    apply_result,
    collect,
    positive_of,
)
from domain.rules import DEFAULT_RULES, PresenceRules
from projections.model import Delete, Upsert
from streams.context import BatchContext, Message
from streams.epidemiology import TEST_COUNTS, add_to_day_count, prune_day_count
from streams.ids import derived_id, duration_ms, from_days, from_ms, to_days, to_ms

SAMPLES = "samples_state"
SYNDROMIC = "syndromic_counts"
COLLECTED = "covidtech.testing.SampleCollected"
RESULTED = "covidtech.testing.SampleResulted"
#: How long a day's syndromic counts live after each declaration.
SYNDROMIC_RETENTION = timedelta(days=90)


class SampleHandler:
    """Result projections per sample and per person; case candidates."""

    topics = ("samples",)
    tables = (SAMPLES, TEST_COUNTS)

    def __init__(
        self, rules: PresenceRules = DEFAULT_RULES, results: ResultRules = RESULT_RULES
    ) -> None:
        self.rules = rules
        self.results = results
        self._retention_ms = duration_ms(results.result_retention)

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """None (delete the key) once the sample was collected more than the result
        retention before ``now_ms`` (wall clock): its rows have expired by then, and a
        result arriving later is dead-lettered as one for an unknown sample. Test counts: their
        day's retention (``streams.epidemiology``)."""
        if table == TEST_COUNTS:
            return prune_day_count(key, value, now_ms, self.rules.zone)
        return None if value[4] + self._retention_ms <= now_ms else value

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        sid = rec["sample_id"]
        st = ctx.state(SAMPLES, sid)
        if msg.event.name == COLLECTED:
            if st is not None:
                return  # the tube is already recorded: a redelivery or a repeated post
            sample = collect(
                sid,
                rec["site_id"],
                rec["province"],
                TestType(rec["test_type"]),
                rec["collected_at"],
                (
                    SampleMember(m["person_id"], m["lookup_code_sha256"], m["symptom_onset"])
                    for m in rec["members"]
                ),
                self.results,
            )
            self._write(ctx, sample, codes=[m["lookup_code_sha256"] for m in rec["members"]])
            ctx.set_state(SAMPLES, sid, _sample_to_state(sample), msg)
        elif msg.event.name == RESULTED:
            if st is None:
                ctx.dead_letter(msg, f"result for unknown sample {sid}")
                return
            sample = _sample_from_state(st)
            try:
                decision = apply_result(
                    sample,
                    TestResult(rec["result"]),
                    rec["resulted_at"],
                    rec["lab_id"],
                    self.results,
                )
            except (ConflictingResult, InvalidResult) as e:
                ctx.dead_letter(msg, f"{type(e).__name__}: {e}")
                return
            if not decision.accepted:
                return  # the same result again
            self._write(
                ctx, decision.sample, codes=[m.lookup_code_sha256 for m in decision.sample.members]
            )
            self._emit_case(ctx, decision.sample)
            self._count_test(ctx, msg, decision.sample)
            ctx.set_state(SAMPLES, sid, _sample_to_state(decision.sample), msg)
        else:
            ctx.dead_letter(msg, f"unexpected event {msg.event.name} on {msg.topic}")

    def _write(self, ctx: BatchContext, s: Sample, codes: list[str]) -> None:
        expires = s.collected_at + self.results.result_retention
        turnaround = s.turnaround
        row: dict[str, Any] = {
            "sample_id": s.sample_id,
            "site_id": s.site_id,
            "province": s.province,
            "test_type": s.test_type.value,
            "collected_at": s.collected_at,
            "member_count": len(s.members),
        }
        if s.result is not None:
            row |= {
                "result": s.result.value,
                "resulted_at": s.resulted_at,
                "lab_id": s.lab_id,
                "turnaround_seconds": int(turnaround.total_seconds())
                if turnaround is not None
                else None,
            }
        ctx.write([Upsert("samples_by_id", row, expires_at=expires)])
        for m, code in zip(s.members, codes, strict=True):
            state = s.state_of(m.person_id).value
            ctx.write(
                [
                    Upsert(
                        "results_by_lookup",
                        {
                            "lookup_code_sha256": code,
                            "sample_id": s.sample_id,
                            "person_id": m.person_id,
                            "state": state,
                            "test_type": s.test_type.value,
                            "collected_at": s.collected_at,
                            "resulted_at": s.resulted_at,
                        },
                        expires_at=expires,
                    ),
                    Upsert(
                        "results_by_person",
                        {
                            "person_id": m.person_id,
                            "collected_at": s.collected_at,
                            "sample_id": s.sample_id,
                            "state": state,
                            "test_type": s.test_type.value,
                            "province": s.province,
                            "resulted_at": s.resulted_at,
                        },
                        expires_at=expires,
                    ),
                ]
            )
        pending = {"province": s.province, "collected_at": s.collected_at, "sample_id": s.sample_id}
        if s.result is None:
            ctx.write(
                [
                    Upsert(
                        "pending_samples_by_province",
                        {**pending, "site_id": s.site_id},
                        expires_at=expires,
                    )
                ]
            )
        else:
            assert s.resulted_at is not None and turnaround is not None
            ctx.write(
                [
                    Delete("pending_samples_by_province", pending),
                    Upsert(
                        "turnaround_by_province",
                        {
                            "province": s.province,
                            "day": s.resulted_at.astimezone(self.rules.zone).date(),
                            "sample_id": s.sample_id,
                            "lab_id": s.lab_id,
                            "site_id": s.site_id,
                            "turnaround_seconds": int(turnaround.total_seconds()),
                        },
                        expires_at=expires,
                    ),
                ]
            )

    def _count_test(self, ctx: BatchContext, msg: Message, s: Sample) -> None:
        """One more test (and positive) on the result's local day (positivity)."""
        assert s.resulted_at is not None
        day = s.resulted_at.astimezone(self.rules.zone).date()
        for column in (0, 1) if s.result is TestResult.POSITIVE else (0,):
            add_to_day_count(ctx, msg, TEST_COUNTS, s.province, day, column, 1, self.rules.zone)

    def _emit_case(self, ctx: BatchContext, s: Sample) -> None:
        candidate = positive_of(s)
        if candidate is None:
            return
        window = infectious_window(candidate.collected_at, candidate.symptom_onset, self.rules)
        ctx.emit(
            "cases",
            candidate.person_id,
            "covidtech.testing.CaseConfirmed",
            {
                "event_id": derived_id("case", candidate.person_id, candidate.sample_id),
                "person_id": candidate.person_id,
                "sample_id": candidate.sample_id,
                "province": candidate.province,
                "collected_at": candidate.collected_at,
                "symptom_onset": candidate.symptom_onset,
                "infectious_from": window.start,
                "infectious_until": window.end,
                "resulted_at": candidate.resulted_at,
            },
        )


class DeclarationHandler:
    """Symptomatic declarations per province and local day (syndromic surveillance)."""

    topics = ("declarations",)
    tables = (SYNDROMIC,)

    def __init__(self, rules: PresenceRules = DEFAULT_RULES) -> None:
        self.rules = rules

    def prune(self, table: str, key: str, value: Any, now_ms: int) -> Any:
        """None (delete the key) once every declaration of its local day is past the
        ``SYNDROMIC_RETENTION`` of its row at ``now_ms`` (wall clock). Counts, not personal
        data: pruned so that the state stays bounded."""
        day = from_days(int(key.split("|")[1]))
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=self.rules.zone)
        return None if to_ms(end + SYNDROMIC_RETENTION) <= now_ms else value

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        day = rec["submitted_at"].astimezone(self.rules.zone).date()
        key = f"{rec['province']}|{to_days(day)}|{msg.partition}"
        declarations, symptomatic, last_offset = ctx.state(SYNDROMIC, key) or [0, 0, -1]
        if msg.offset <= last_offset:
            return  # already counted: this partition's offsets only grow
        declarations += 1
        symptomatic += 1 if rec["symptoms"] else 0
        ctx.set_state(SYNDROMIC, key, [declarations, symptomatic, msg.offset], msg)
        ctx.write(
            [
                Upsert(
                    "syndromic_by_province",
                    {
                        "province": rec["province"],
                        "day": day,
                        "source_partition": msg.partition,
                        "declarations": declarations,
                        "symptomatic": symptomatic,
                    },
                    expires_at=rec["submitted_at"] + SYNDROMIC_RETENTION,
                )
            ]
        )


def _sample_to_state(s: Sample) -> list[Any]:
    return [
        s.sample_id,
        s.site_id,
        s.province,
        s.test_type.value,
        to_ms(s.collected_at),
        [
            [
                m.person_id,
                m.lookup_code_sha256,
                to_days(m.symptom_onset) if m.symptom_onset else None,
            ]
            for m in s.members
        ],
        s.result.value if s.result else None,
        to_ms(s.resulted_at) if s.resulted_at else None,
        s.lab_id,
    ]


def _sample_from_state(v: list[Any]) -> Sample:
    return Sample(
        v[0],
        v[1],
        v[2],
        TestType(v[3]),
        from_ms(v[4]),
        tuple(
            SampleMember(m[0], m[1], from_days(m[2]) if m[2] is not None else None) for m in v[5]
        ),
        TestResult(v[6]) if v[6] else None,
        from_ms(v[7]) if v[7] is not None else None,
        v[8],
    )
