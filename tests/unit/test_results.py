"""Samples, results, lookup codes and case confirmation (DESIGN.md "Test results",
"Confirmed case", "Order independence")."""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import results as r
from domain.results import (
    CaseRecord,
    ConflictingResult,
    InvalidLookupCode,
    InvalidResult,
    InvalidSample,
    PersonCases,
    ResultRules,
    Sample,
    SampleMember,
    SampleState,
    TestResult,
    TestType,
)

T0 = datetime(2021, 7, 1, 8, 0, tzinfo=UTC)
RULES = ResultRules()


def member(person_id: str, onset: date | None = None) -> SampleMember:
    digest = hashlib.sha256(person_id.encode()).hexdigest()
    return SampleMember(person_id=person_id, lookup_code_sha256=digest, symptom_onset=onset)


def single(
    sample_id: str = "s1",
    person_id: str = "p1",
    at: datetime = T0,
    province: str = "79",
    onset: date | None = None,
) -> Sample:
    return r.collect(sample_id, "site-1", province, TestType.PCR, at, [member(person_id, onset)])


def pool(n: int, sample_id: str = "pool-1") -> Sample:
    members = [member(f"p{i}") for i in range(n)]
    return r.collect(sample_id, "site-1", "01", TestType.RAPID_ANTIGEN, T0, members)


def resulted(sample: Sample, result: TestResult, hours: float = 6) -> Sample:
    decision = r.apply_result(sample, result, sample.collected_at + timedelta(hours=hours), "lab")
    assert decision.accepted
    return decision.sample


# --------------------------------------------------------------------------- collection


def test_collected_sample_is_pending_for_every_member() -> None:
    sample = pool(3)
    assert sample.pooled
    assert sample.result is None and sample.turnaround is None
    assert sample.member_states() == dict.fromkeys(("p0", "p1", "p2"), SampleState.PENDING)
    assert not single().pooled


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_pool_sizes_accepted(n: int) -> None:
    r.validate_pool_size(n, RULES)


@pytest.mark.parametrize(("n", "message"), [(0, "at least one"), (11, "2 to 10"), (-1, "at least")])
def test_pool_sizes_refused(n: int, message: str) -> None:
    with pytest.raises(InvalidSample, match=message):
        r.validate_pool_size(n, RULES)


def test_pool_size_follows_the_rules() -> None:
    r.validate_pool_size(4, ResultRules(pool_max=4))
    with pytest.raises(InvalidSample):
        r.validate_pool_size(5, ResultRules(pool_max=4))
    with pytest.raises(ValueError):
        ResultRules(pool_min=1)


def test_duplicate_person_in_a_pool_is_refused() -> None:
    with pytest.raises(InvalidSample, match="twice"):
        r.collect("s", "site", "01", TestType.PCR, T0, [member("a"), member("b"), member("a")])


def test_eleven_people_in_one_tube_are_refused() -> None:
    with pytest.raises(InvalidSample, match="2 to 10"):
        pool(11)


@pytest.mark.parametrize("digest", ["", "ABC", "A" * 64, "g" * 64, "0" * 63])
def test_lookup_hash_must_be_sha256_hex(digest: str) -> None:
    with pytest.raises(InvalidSample, match="lookup_code_sha256"):
        r.collect("s", "site", "01", TestType.PCR, T0, [SampleMember("p", digest)])


def test_naive_collection_time_is_refused() -> None:
    with pytest.raises(InvalidSample, match="timezone"):
        r.collect("s", "site", "01", TestType.PCR, datetime(2021, 7, 1), [member("p")])


def test_collection_time_is_stored_in_utc() -> None:
    local = datetime(2021, 7, 1, 22, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    sample = r.collect("s", "site", "01", TestType.PCR, local, [member("p")])
    assert sample.collected_at == datetime(2021, 7, 1, 15, 0, tzinfo=UTC)
    assert sample.collected_at.utcoffset() == timedelta(0)


def test_state_of_a_stranger_raises() -> None:
    with pytest.raises(r.UnknownMember):
        single().state_of("someone-else")


# --------------------------------------------------------------------------- results


@pytest.mark.parametrize(
    ("result", "state"),
    [
        (TestResult.POSITIVE, SampleState.POSITIVE),
        (TestResult.NEGATIVE, SampleState.NEGATIVE),
        (TestResult.INVALID, SampleState.INVALID),
    ],
)
def test_single_sample_reads_as_its_result(result: TestResult, state: SampleState) -> None:
    assert resulted(single(), result).state_of("p1") is state


@pytest.mark.parametrize(
    ("result", "state"),
    [
        (TestResult.POSITIVE, SampleState.POOL_POSITIVE_RETEST),
        (TestResult.NEGATIVE, SampleState.NEGATIVE),
        (TestResult.INVALID, SampleState.INVALID),
    ],
)
def test_pool_members_read_the_pool_state(result: TestResult, state: SampleState) -> None:
    sample = resulted(pool(4), result)
    assert set(sample.member_states().values()) == {state}


def test_turnaround() -> None:
    sample = resulted(single(), TestResult.NEGATIVE, hours=30)
    assert sample.turnaround == timedelta(hours=30)
    assert sample.lab_id == "lab"


def test_same_result_again_is_an_idempotent_no_op() -> None:
    first = resulted(single(), TestResult.POSITIVE)
    again = r.apply_result(first, TestResult.POSITIVE, T0 + timedelta(days=1), "other-lab")
    assert again.duplicate and not again.accepted
    assert again.sample is first  # first resulted_at and lab are kept


@pytest.mark.parametrize("second", [TestResult.NEGATIVE, TestResult.INVALID])
def test_a_different_result_conflicts(second: TestResult) -> None:
    first = resulted(single(), TestResult.POSITIVE)
    with pytest.raises(ConflictingResult) as info:
        r.apply_result(first, second, T0 + timedelta(hours=9), "lab")
    assert info.value.recorded is TestResult.POSITIVE
    assert info.value.received is second
    assert isinstance(info.value, ValueError)


def test_result_before_collection_is_refused_beyond_clock_skew() -> None:
    sample = single()
    with pytest.raises(InvalidResult, match="before"):
        r.apply_result(sample, TestResult.NEGATIVE, T0 - timedelta(minutes=6), "lab")
    skewed = r.apply_result(sample, TestResult.NEGATIVE, T0 - timedelta(minutes=4), "lab")
    assert skewed.accepted
    assert skewed.sample.turnaround == timedelta(0)


def test_result_needs_aware_time_and_lab() -> None:
    with pytest.raises(InvalidResult):
        r.apply_result(single(), TestResult.NEGATIVE, datetime(2021, 7, 2), "lab")
    with pytest.raises(InvalidResult):
        r.apply_result(single(), TestResult.NEGATIVE, T0, "")


def test_result_fields_are_set_together() -> None:
    with pytest.raises(ValueError):
        Sample("s", "site", "01", TestType.PCR, T0, (member("p"),), result=TestResult.POSITIVE)


def test_pending_too_long_and_expiry() -> None:
    sample = single()
    assert not r.is_pending_too_long(sample, T0 + timedelta(hours=48), RULES)
    assert r.is_pending_too_long(sample, T0 + timedelta(hours=48, seconds=1), RULES)
    done = resulted(sample, TestResult.NEGATIVE)
    assert not r.is_pending_too_long(done, T0 + timedelta(days=5), RULES)
    assert r.result_expires_at(sample, RULES) == T0 + timedelta(days=90)


def test_enum_classes_are_not_collected_as_tests() -> None:
    assert TestType.__test__ is False
    assert TestResult.__test__ is False
    assert [t.value for t in TestType] == ["PCR", "RAPID_ANTIGEN"]
    assert [t.value for t in TestResult] == ["POSITIVE", "NEGATIVE", "INVALID"]


# --------------------------------------------------------------------------- lookup codes

CODE_FORMAT = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}")


def test_lookup_code_format_and_entropy() -> None:
    assert len(r.LOOKUP_CODE_ALPHABET) == 32 == len(set(r.LOOKUP_CODE_ALPHABET))
    assert not set("ILOU") & set(r.LOOKUP_CODE_ALPHABET)
    assert r.LOOKUP_CODE_BITS == r.LOOKUP_CODE_LENGTH * 5 >= 60
    code = r.new_lookup_code()  # the OS CSPRNG
    assert CODE_FORMAT.fullmatch(code), code


def test_lookup_codes_are_random_and_reproducible_when_seeded() -> None:
    rng = random.Random(7)
    codes = [r.new_lookup_code(rng) for _ in range(2000)]
    assert len(set(codes)) == len(codes)
    assert all(CODE_FORMAT.fullmatch(c) for c in codes)
    again = random.Random(7)
    assert [r.new_lookup_code(again) for _ in range(3)] == codes[:3]
    # every symbol is used in every position: no position is stuck
    for position in range(19):
        if position % 5 == 4:
            continue
        assert {c[position] for c in codes} == set(r.LOOKUP_CODE_ALPHABET)


def test_normalization_tolerates_how_people_type() -> None:
    code = r.new_lookup_code(random.Random(1))
    plain = code.replace("-", "")
    variants = [code, plain, plain.lower(), " ".join(code.split("-")), f"  {code.lower()}\n"]
    assert {r.normalize_lookup_code(v) for v in variants} == {plain}
    assert len({r.lookup_code_hash(v) for v in variants}) == 1
    assert r.lookup_code_hash(code) == hashlib.sha256(plain.encode()).hexdigest()


def test_crockford_aliases_read_as_digits() -> None:
    assert r.normalize_lookup_code("oOiI-lL00-1111-0000") == "0011110011110000"


@pytest.mark.parametrize(
    "text", ["", "ABCD-EFGH-JKMN", "ABCD-EFGH-JKMN-PQRS-T", "ABCD-EFGH-JKMN-PQR!"]
)
def test_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(InvalidLookupCode):
        r.lookup_code_hash(text)


def test_u_is_not_a_code_symbol() -> None:
    with pytest.raises(InvalidLookupCode):
        r.normalize_lookup_code("UUUU-0000-0000-0000")


# --------------------------------------------------------------------------- cases


def positive(sample_id: str, at: datetime, person_id: str = "p1") -> Sample:
    return resulted(single(sample_id, person_id, at), TestResult.POSITIVE)


def fold(samples: list[Sample]) -> tuple[PersonCases | None, dict[str, CaseRecord]]:
    """Run confirmation over arrivals; replay the published changes into a live view."""
    state: PersonCases | None = None
    live: dict[str, CaseRecord] = {}
    for sample in samples:
        decision = r.confirm_case(state, sample, RULES)
        state = decision.state
        for gone in decision.retracted:
            del live[gone.case_id]
        for case in decision.confirmed:
            live[case.case_id] = case
    return state, live


def anchors(state: PersonCases | None) -> list[str]:
    return [c.sample_id for c in r.cases(state, RULES)] if state else []


def test_an_individual_positive_confirms_the_person() -> None:
    sample = positive("s1", T0)
    decision = r.confirm_case(None, sample, RULES)
    (case,) = decision.confirmed
    assert case == CaseRecord("p1", "s1", T0, None, "79", sample.resulted_at)
    assert case.case_id == r.case_id("p1", "s1")
    assert decision.retracted == ()
    assert r.current_case(decision.state, RULES) == case  # type: ignore[arg-type]


def test_onset_and_province_travel_with_the_case() -> None:
    sample = resulted(single(onset=date(2021, 6, 29), province="01"), TestResult.POSITIVE)
    (case,) = r.confirm_case(None, sample, RULES).confirmed
    assert case.symptom_onset == date(2021, 6, 29)
    assert case.province == "01"


@pytest.mark.parametrize("result", [TestResult.NEGATIVE, TestResult.INVALID])
def test_negative_or_invalid_confirms_nobody(result: TestResult) -> None:
    decision = r.confirm_case(None, resulted(single(), result), RULES)
    assert decision.state is None and not decision.changed


def test_pending_sample_confirms_nobody() -> None:
    assert r.positive_of(single()) is None


def test_positive_pool_confirms_nobody() -> None:
    sample = resulted(pool(5), TestResult.POSITIVE)
    assert r.positive_of(sample) is None
    existing = r.confirm_case(None, positive("s0", T0), RULES).state
    decision = r.confirm_case(existing, sample, RULES)
    assert decision.state is existing and not decision.changed


def test_repeated_positive_is_a_no_op() -> None:
    first = r.confirm_case(None, positive("s1", T0), RULES)
    again = r.confirm_case(first.state, positive("s1", T0), RULES)
    assert again.state is first.state and not again.changed


def test_positives_within_90_days_are_one_case() -> None:
    state, live = fold([positive("s1", T0), positive("s2", T0 + timedelta(days=90))])
    assert anchors(state) == ["s1"]
    assert set(live) == {r.case_id("p1", "s1")}


def test_a_positive_more_than_90_days_later_is_a_new_case() -> None:
    later = T0 + timedelta(days=90, seconds=1)
    state, live = fold([positive("s1", T0), positive("s2", later)])
    assert anchors(state) == ["s1", "s2"]
    assert len(live) == 2


def test_a_late_earlier_positive_reanchors_the_case() -> None:
    first = r.confirm_case(None, positive("s-late", T0 + timedelta(days=10)), RULES)
    decision = r.confirm_case(first.state, positive("s-early", T0), RULES)
    assert [c.sample_id for c in decision.confirmed] == ["s-early"]
    assert [c.sample_id for c in decision.retracted] == ["s-late"]
    assert anchors(decision.state) == ["s-early"]


def test_a_late_positive_long_before_the_case_is_its_own_case() -> None:
    state, live = fold([positive("s2", T0 + timedelta(days=200)), positive("s1", T0)])
    assert anchors(state) == ["s1", "s2"]
    assert len(live) == 2


def test_reanchoring_moves_the_chain_of_later_cases() -> None:
    # Days 80 and 100 are one case (anchor 80); a late day 0 takes day 80 into its case and
    # leaves day 100 more than 90 days after the new anchor: it becomes a case of its own.
    state, live = fold(
        [
            positive("d080", T0 + timedelta(days=80)),
            positive("d100", T0 + timedelta(days=100)),
            positive("d000", T0),
        ]
    )
    assert anchors(state) == ["d000", "d100"]
    assert {c.sample_id for c in live.values()} == {"d000", "d100"}


def test_ties_on_collection_time_go_to_the_smaller_sample_id() -> None:
    state, _ = fold([positive("b", T0), positive("a", T0)])
    assert anchors(state) == ["a"]


def test_positives_of_another_person_are_refused() -> None:
    state = r.confirm_case(None, positive("s1", T0), RULES).state
    with pytest.raises(ValueError, match="p2"):
        r.confirm_case(state, positive("s2", T0, person_id="p2"), RULES)


def test_case_id_is_deterministic_and_unambiguous() -> None:
    assert r.case_id("p1", "s1") == r.case_id("p1", "s1")
    assert r.case_id("ab", "c") != r.case_id("a", "bc")
    assert r.case_id("p1", "s1") != r.case_id("p1", "s2")


# Collection times on a 12-hour grid give ties and exact 90-day distances often.
_positive_specs = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from([0, 12])),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(specs=_positive_specs, data=st.data())
def test_cases_do_not_depend_on_arrival_order(
    specs: list[tuple[int, int]], data: st.DataObject
) -> None:
    samples = [
        positive(f"s{i:02d}", T0 + timedelta(days=day, hours=hour))
        for i, (day, hour) in enumerate(specs)
    ]
    arrival = data.draw(st.permutations(samples))
    redelivered = data.draw(st.lists(st.sampled_from(samples), max_size=4))
    for sample in redelivered:  # redeliveries at random later positions
        arrival.insert(data.draw(st.integers(0, len(arrival))), sample)

    state, live = fold(arrival)
    in_order, _ = fold(sorted(samples, key=lambda s: (s.collected_at, s.sample_id)))
    assert state == in_order
    expected = r.cases(in_order, RULES)  # type: ignore[arg-type]
    # what was published (confirmed minus retracted) converges on the same cases
    assert live == {c.case_id: c for c in expected}
    # invariants of the rule: anchors > 90 days apart; every positive within 90 days of one
    for a, b in pairwise(expected):
        assert b.collected_at - a.collected_at > RULES.case_dedup
    for s in samples:
        key = (s.collected_at, s.sample_id)
        anchor = max(
            (c for c in expected if (c.collected_at, c.sample_id) <= key),
            key=lambda c: (c.collected_at, c.sample_id),
        )
        assert s.collected_at - anchor.collected_at <= RULES.case_dedup
