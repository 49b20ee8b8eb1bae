"""Samples, test results, lookup codes and case confirmation (pure domain logic).

DESIGN.md rules kept here:

- "Test results": a sample is ``PENDING`` when collected, then ``NEGATIVE``, ``POSITIVE`` or
  ``INVALID``; members of a positive pool are ``POOL_POSITIVE_RETEST``. Each person gets a
  random lookup code; only its SHA-256 travels in events. Results live 90 days.
- "Confirmed case": a POSITIVE single-person sample confirms that person; one case per person
  per 90 days, anchored on their earliest positive sample. A positive pool confirms nobody.
- "Order independence": the cases of a person are a function of the *set* of their positive
  samples, whatever order those arrive in.

Ordering guarantees. The ``samples`` topic is keyed by sample id, so one sample's collection
and results arrive in log order; :func:`apply_result` keeps the *first* result it sees and
treats a repeat as a no-op, so a replay of the log gives the same sample. Case confirmation
needs every positive of one person, which spans sample partitions: the per-sample agent turns
an individual positive into a candidate with :func:`positive_of`, and an agent keyed by person
folds candidates with :func:`record_positive`, whose outcome does not depend on their order.

No I/O here: randomness for lookup codes is injected.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from domain.errors import UnknownKey

__all__ = [
    "DEFAULT_RULES",
    "LOOKUP_CODE_ALPHABET",
    "LOOKUP_CODE_BITS",
    "LOOKUP_CODE_LENGTH",
    "CaseDecision",
    "CaseRecord",
    "ConflictingResult",
    "InvalidLookupCode",
    "InvalidResult",
    "InvalidSample",
    "PersonCases",
    "ResultDecision",
    "ResultOutcome",
    "ResultRules",
    "Sample",
    "SampleMember",
    "SampleState",
    "TestResult",
    "TestType",
    "UnknownMember",
    "apply_result",
    "case_id",
    "cases",
    "collect",
    "confirm_case",
    "current_case",
    "is_pending_too_long",
    "lookup_code_hash",
    "new_lookup_code",
    "normalize_lookup_code",
    "positive_of",
    "record_positive",
    "result_expires_at",
    "validate_members",
    "validate_pool_size",
]


# --------------------------------------------------------------------------- vocabulary


class SampleState(StrEnum):
    """What a person reads for one sample ("Test results")."""

    PENDING = "PENDING"
    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"
    INVALID = "INVALID"
    POOL_POSITIVE_RETEST = "POOL_POSITIVE_RETEST"


class TestType(StrEnum):
    """Kind of test; both kinds confirm a case when positive ("Confirmed case")."""

    __test__ = False  # not a pytest test class despite the name

    PCR = "PCR"
    RAPID_ANTIGEN = "RAPID_ANTIGEN"


class TestResult(StrEnum):
    """What a lab reports for a whole sample (tube)."""

    __test__ = False  # not a pytest test class despite the name

    POSITIVE = "POSITIVE"
    NEGATIVE = "NEGATIVE"
    INVALID = "INVALID"


@dataclass(frozen=True)
class ResultRules:
    """Numbers of the "Test results" and "Confirmed case" rules, DESIGN's defaults
    (overridden by the ``COVIDTECH_RULES`` setting)."""

    case_dedup: timedelta = timedelta(days=90)
    pool_min: int = 2
    pool_max: int = 10
    result_retention: timedelta = timedelta(days=90)
    pending_too_long: timedelta = timedelta(hours=48)
    #: How far a lab's ``resulted_at`` may precede ``collected_at`` (device clocks differ).
    clock_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.pool_min < 2 or self.pool_max < self.pool_min:
            raise ValueError(f"pool size must satisfy 2 <= {self.pool_min} <= {self.pool_max}")
        for name in ("case_dedup", "result_retention", "pending_too_long"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.clock_skew < timedelta(0):
            raise ValueError("clock_skew must not be negative")


DEFAULT_RULES = ResultRules()


class InvalidSample(ValueError):
    """A sample the ingest API must refuse (422): bad pool size, duplicate member, bad field."""


class InvalidResult(ValueError):
    """A result the ingest API must refuse (422), e.g. resulted before it was collected."""


class ConflictingResult(ValueError):
    """A different result for a sample that already has one (the ingest API answers 409)."""

    def __init__(self, sample_id: str, recorded: TestResult, received: TestResult) -> None:
        super().__init__(f"sample {sample_id} already resulted {recorded}; refusing {received}")
        self.sample_id = sample_id
        self.recorded = recorded
        self.received = received


class UnknownMember(UnknownKey):
    """A person who is not a member of the sample asked about."""

    unnamed = "not a member of the sample"


def _require_aware(name: str, value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are refused (DESIGN: all stored times are UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(UTC)


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleMember:
    """One person in a tube, with their lookup-code hash and optional symptom onset date."""

    person_id: str
    lookup_code_sha256: str
    symptom_onset: date | None = None


@dataclass(frozen=True)
class Sample:
    """A tube: one person, or a pool of several; ``result`` is None while pending."""

    sample_id: str
    site_id: str
    province: str
    test_type: TestType
    collected_at: datetime
    members: tuple[SampleMember, ...]
    result: TestResult | None = None
    resulted_at: datetime | None = None
    lab_id: str | None = None

    def __post_init__(self) -> None:
        resulted = (self.result is not None, self.resulted_at is not None, self.lab_id is not None)
        if len(set(resulted)) != 1:
            raise ValueError("result, resulted_at and lab_id are set together or not at all")

    @property
    def pooled(self) -> bool:
        """Whether the tube holds more than one person (a pool confirms nobody)."""
        return len(self.members) > 1

    @property
    def turnaround(self) -> timedelta | None:
        """Collection to result (None while pending); never negative (clock skew is clamped)."""
        if self.resulted_at is None:
            return None
        return max(self.resulted_at - self.collected_at, timedelta(0))

    def member(self, person_id: str) -> SampleMember:
        """The member entry of ``person_id``; raises :class:`UnknownMember`."""
        for m in self.members:
            if m.person_id == person_id:
                return m
        raise UnknownMember(f"person {person_id} is not in sample {self.sample_id}")

    def state_of(self, person_id: str) -> SampleState:
        """What ``person_id`` reads for this sample ("Test results", "Confirmed case").

        Pending before a result. A single-person sample reads as its result. A pool reads
        ``POOL_POSITIVE_RETEST`` for every member when positive (not a case until an
        individual sample is positive), ``NEGATIVE`` when negative, ``INVALID`` when invalid.
        """
        self.member(person_id)
        if self.result is None:
            return SampleState.PENDING
        if self.pooled and self.result is TestResult.POSITIVE:
            return SampleState.POOL_POSITIVE_RETEST
        return SampleState(self.result.value)

    def member_states(self) -> Mapping[str, SampleState]:
        """State of every member, by person id (one result row per person)."""
        return {m.person_id: self.state_of(m.person_id) for m in self.members}


def validate_pool_size(n: int, rules: ResultRules = DEFAULT_RULES) -> None:
    """Refuse a tube that is neither one person nor a pool of 2-10 (rules.pool_min..pool_max).

    Why: "Confirmed case" defines a pool as 2-10 people in one tube; larger pools dilute the
    sample beyond what the labs validated.
    """
    if n == 1 or rules.pool_min <= n <= rules.pool_max:
        return
    if n < 1:
        raise InvalidSample("a sample needs at least one person")
    raise InvalidSample(f"a pool holds {rules.pool_min} to {rules.pool_max} people, got {n}")


def validate_members(
    members: Iterable[SampleMember], rules: ResultRules = DEFAULT_RULES
) -> tuple[SampleMember, ...]:
    """Check a tube's members for the ingest API; return them as a tuple.

    Why: each member reads their own result with their own code ("Test results"), so a
    person may appear once per tube, and the code must be a SHA-256 hex digest (the code
    itself never travels). Raises :class:`InvalidSample` with a message for the client.
    """
    members = tuple(members)
    validate_pool_size(len(members), rules)
    seen: set[str] = set()
    for m in members:
        if not m.person_id:
            raise InvalidSample("every member needs a person_id")
        if m.person_id in seen:
            raise InvalidSample(f"person {m.person_id} appears twice in one sample")
        seen.add(m.person_id)
        if not _SHA256_HEX.fullmatch(m.lookup_code_sha256):
            raise InvalidSample(
                f"lookup_code_sha256 of {m.person_id} must be 64 lower-case hex digits"
            )
    return members


def collect(
    sample_id: str,
    site_id: str,
    province: str,
    test_type: TestType,
    collected_at: datetime,
    members: Iterable[SampleMember],
    rules: ResultRules = DEFAULT_RULES,
) -> Sample:
    """A newly collected, pending sample (the state after SampleCollected).

    Why: "Test results" starts every sample ``PENDING``; validation here is the single place
    the ingest API and the stream agree on what a valid tube is. Raises
    :class:`InvalidSample`.
    """
    if not sample_id or not site_id or not province:
        raise InvalidSample("sample_id, site_id and province are required")
    try:
        collected_at = _require_aware("collected_at", collected_at)
    except ValueError as e:
        raise InvalidSample(str(e)) from e
    return Sample(
        sample_id=sample_id,
        site_id=site_id,
        province=province,
        test_type=TestType(test_type),
        collected_at=collected_at,
        members=validate_members(members, rules),
    )


class ResultOutcome(StrEnum):
    """What :func:`apply_result` did."""

    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"


@dataclass(frozen=True)
class ResultDecision:
    """The sample after a result, and whether the result was new or a repeat."""

    sample: Sample
    outcome: ResultOutcome

    @property
    def accepted(self) -> bool:
        """A new result: project it and, for an individual positive, emit a case candidate."""
        return self.outcome is ResultOutcome.ACCEPTED

    @property
    def duplicate(self) -> bool:
        """The same result again (retry or redelivery): nothing to do."""
        return self.outcome is ResultOutcome.DUPLICATE


def apply_result(
    sample: Sample,
    result: TestResult,
    resulted_at: datetime,
    lab_id: str,
    rules: ResultRules = DEFAULT_RULES,
) -> ResultDecision:
    """Record a lab's result on ``sample`` (evolve on SampleResulted).

    Why: "Test results" moves a sample once from PENDING to its result; at-least-once
    delivery means the same result may come again, which must be a no-op (the first
    ``resulted_at``/``lab_id`` stay). A *different* result for a resulted sample is a
    conflict the ingest API answers with 409: results are never silently overwritten.
    Raises :class:`ConflictingResult`, or :class:`InvalidResult` for a naive timestamp, an
    empty lab id, or a result dated before collection (beyond ``rules.clock_skew``).
    """
    result = TestResult(result)
    if sample.result is not None:
        if sample.result is result:
            return ResultDecision(sample, ResultOutcome.DUPLICATE)
        raise ConflictingResult(sample.sample_id, sample.result, result)
    if not lab_id:
        raise InvalidResult("lab_id is required")
    try:
        resulted_at = _require_aware("resulted_at", resulted_at)
    except ValueError as e:
        raise InvalidResult(str(e)) from e
    if resulted_at < sample.collected_at - rules.clock_skew:
        raise InvalidResult(
            f"sample {sample.sample_id} resulted at {resulted_at.isoformat()}, before it was "
            f"collected at {sample.collected_at.isoformat()}"
        )
    resulted = replace(sample, result=result, resulted_at=resulted_at, lab_id=lab_id)
    return ResultDecision(resulted, ResultOutcome.ACCEPTED)


def is_pending_too_long(sample: Sample, now: datetime, rules: ResultRules = DEFAULT_RULES) -> bool:
    """Whether the sample still has no result ``rules.pending_too_long`` after collection.

    Why: a citizen must not wait forever on ``PENDING``; operators follow up on late labs.
    ``now`` is injected (no wall clock in the domain).
    """
    now = _require_aware("now", now)
    return sample.result is None and now - sample.collected_at > rules.pending_too_long


def result_expires_at(sample: Sample, rules: ResultRules = DEFAULT_RULES) -> datetime:
    """When the sample's rows expire: ``collected_at`` + 90 days ("Results live 90 days").

    Anchored on collection, an event time, so a replay computes the same expiry.
    """
    return sample.collected_at + rules.result_retention


# --------------------------------------------------------------------------- lookup codes

#: Crockford base32: digits and upper-case letters without I, L, O, U.
LOOKUP_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Characters of a code (without the dashes): 16 x 5 bits = 80 bits of entropy.
LOOKUP_CODE_LENGTH = 16
LOOKUP_CODE_BITS = 5 * LOOKUP_CODE_LENGTH
_GROUP = 4
# Crockford decoding: letters people confuse with digits read as those digits.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—]+")

_SYSTEM_RANDOM = secrets.SystemRandom()


class InvalidLookupCode(ValueError):
    """Text that cannot be a lookup code (wrong length or character): the API answers 404."""


def new_lookup_code(rng: random.Random | None = None) -> str:
    """A fresh random lookup code, grouped for reading, e.g. ``7KQ2-M9XD-3RTB-0HVA``.

    Why: "Test results": a citizen reads their result with the code alone, so the code is
    the only secret and enumeration must be infeasible. 80 bits: even with 30 million live
    codes and 500 guesses a second for the 90 days a result lives, the expected number of
    hits is below 1e-6. Crockford base32 avoids I/L/O/U so the code can be typed from an
    SMS. ``rng`` is injected for seeded tests; the default is the OS CSPRNG.
    """
    source = _SYSTEM_RANDOM if rng is None else rng
    bits = source.getrandbits(LOOKUP_CODE_BITS)
    chars = [LOOKUP_CODE_ALPHABET[(bits >> (5 * i)) & 0b11111] for i in range(LOOKUP_CODE_LENGTH)]
    groups = ("".join(chars[i : i + _GROUP]) for i in range(0, LOOKUP_CODE_LENGTH, _GROUP))
    return "-".join(groups)


def normalize_lookup_code(code: str) -> str:
    """The canonical form of a typed code: separators removed, upper-cased, O->0, I/L->1.

    Why: people type codes from a receipt or an SMS with spaces, dashes or lower case; the
    hash must not depend on that. Raises :class:`InvalidLookupCode` for text that cannot be
    a code, so the read API refuses it without a database read.
    """
    canonical = _SEPARATORS.sub("", code).upper().translate(_ALIASES)
    if len(canonical) != LOOKUP_CODE_LENGTH or any(
        c not in LOOKUP_CODE_ALPHABET for c in canonical
    ):
        raise InvalidLookupCode(
            f"a lookup code has {LOOKUP_CODE_LENGTH} characters of {LOOKUP_CODE_ALPHABET}"
        )
    return canonical


def lookup_code_hash(code: str) -> str:
    """SHA-256 (hex) of the normalized code: the only form that travels and is stored.

    Why: "Test results": only the code's SHA-256 travels in events, so a leaked event or
    row does not let anyone read a result. Raises :class:`InvalidLookupCode`.
    """
    return hashlib.sha256(normalize_lookup_code(code).encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- cases

_CASE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "covidtech:v1:case")


def case_id(person_id: str, anchor_sample_id: str) -> str:
    """Deterministic id (a UUID string) of the case of ``person_id`` anchored on a sample.

    Why: "Confirmed case" anchors a case on the earliest positive sample, and derived events
    need ids computed from their inputs only, so a replay yields the same id. Length-prefixed
    so no two (person, sample) pairs share an input.
    """
    return str(uuid.uuid5(_CASE_NAMESPACE, f"{len(person_id)}:{person_id}{anchor_sample_id}"))


@dataclass(frozen=True)
class CaseRecord:
    """A case, or a candidate for one: the positive sample that anchors it.

    ``province`` is the province of the sample (where it was collected).
    """

    person_id: str
    sample_id: str
    collected_at: datetime
    symptom_onset: date | None
    province: str
    resulted_at: datetime | None = None  # of the sample (None in events before it was carried)

    @property
    def case_id(self) -> str:
        """See :func:`case_id`."""
        return case_id(self.person_id, self.sample_id)


def _order(record: CaseRecord) -> tuple[datetime, str]:
    # Earliest sample first; ties by sample id ("anchored on their earliest positive sample").
    return (record.collected_at, record.sample_id)


def _total_order(record: CaseRecord) -> tuple[datetime, str, str, int, float]:
    # Picks one record among conflicting copies of a sample id, whatever their arrival order.
    onset = record.symptom_onset.toordinal() if record.symptom_onset else 0
    resulted = record.resulted_at.timestamp() if record.resulted_at else 0.0
    return (record.collected_at, record.sample_id, record.province, onset, resulted)


def positive_of(sample: Sample) -> CaseRecord | None:
    """The case candidate of an individual POSITIVE sample; None for any other sample.

    Why: "Confirmed case": only a positive single-person sample (PCR or rapid antigen)
    confirms a person; a positive pool puts its members in POOL_POSITIVE_RETEST instead.
    The per-sample agent emits the candidate keyed by person (data flow item 3).
    """
    if sample.pooled or sample.result is not TestResult.POSITIVE:
        return None
    (member,) = sample.members
    return CaseRecord(
        person_id=member.person_id,
        sample_id=sample.sample_id,
        collected_at=sample.collected_at,
        symptom_onset=member.symptom_onset,
        province=sample.province,
        resulted_at=sample.resulted_at,
    )


@dataclass(frozen=True)
class PersonCases:
    """Per-person state of case confirmation: every individual positive sample of the person.

    ``positives`` is sorted by (collected_at, sample_id) with one entry per sample id. The
    whole set is kept (a person has few positives) because a late, earlier positive can
    re-anchor a case and, in a chain, move the anchor of the cases after it.
    """

    person_id: str
    positives: tuple[CaseRecord, ...] = field(default=())

    def __post_init__(self) -> None:
        if any(p.person_id != self.person_id for p in self.positives):
            raise ValueError(f"positives of another person in the state of {self.person_id}")
        if list(self.positives) != sorted(self.positives, key=_order):
            raise ValueError("positives must be sorted by (collected_at, sample_id)")
        if len({p.sample_id for p in self.positives}) != len(self.positives):
            raise ValueError("one positive per sample id")


def cases(state: PersonCases, rules: ResultRules = DEFAULT_RULES) -> tuple[CaseRecord, ...]:
    """The person's cases, oldest first, as a function of the set of their positives.

    Why: "Confirmed case": one case per person per 90 days, anchored on the earliest
    positive sample. Walking the positives in (collected_at, sample_id) order, the first is
    an anchor; a positive at most ``rules.case_dedup`` after the current anchor belongs to
    its case; one more than that after it anchors a new case. Being a function of the sorted
    set, the result does not depend on arrival order.
    """
    anchors: list[CaseRecord] = []
    for positive in state.positives:
        if not anchors or positive.collected_at - anchors[-1].collected_at > rules.case_dedup:
            anchors.append(positive)
    return tuple(anchors)


def current_case(state: PersonCases, rules: ResultRules = DEFAULT_RULES) -> CaseRecord | None:
    """The person's latest case (the one whose infectious window matters now), if any."""
    found = cases(state, rules)
    return found[-1] if found else None


@dataclass(frozen=True)
class CaseDecision:
    """State after a positive, and the case changes to publish.

    ``confirmed``: cases that are new or re-anchored (emit CaseConfirmed for each).
    ``retracted``: cases that no longer exist because an earlier positive took over their
    90 days (their case ids are gone; remove what was derived from them).
    A repeated positive gives no changes.
    """

    state: PersonCases | None
    confirmed: tuple[CaseRecord, ...] = ()
    retracted: tuple[CaseRecord, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything needs publishing."""
        return bool(self.confirmed or self.retracted)


def record_positive(
    state: PersonCases | None, positive: CaseRecord, rules: ResultRules = DEFAULT_RULES
) -> CaseDecision:
    """Fold one individual positive into the person's state (evolve + decide).

    Why: "Confirmed case" and "Order independence": the cases after any sequence of
    positives equal :func:`cases` of their set, so shuffled, late or repeated deliveries
    converge. A positive earlier than the current anchor (a late delivery) within 90 days
    re-anchors that case: the old case id is retracted and the new one confirmed; a chain
    of later cases may move as well. Two copies of one sample id that differ (should not
    happen) resolve to the smaller by a total order, again independent of arrival order.
    """
    if state is None:
        state = PersonCases(positive.person_id)
    elif state.person_id != positive.person_id:
        raise ValueError(f"positive of {positive.person_id} given to {state.person_id}")
    kept = [p for p in state.positives if p.sample_id != positive.sample_id]
    same = [p for p in state.positives if p.sample_id == positive.sample_id]
    chosen = min([*same, positive], key=_total_order)
    if same and same[0] == chosen:
        return CaseDecision(state)
    new_state = PersonCases(state.person_id, tuple(sorted([*kept, chosen], key=_order)))
    before, after = cases(state, rules), cases(new_state, rules)
    after_ids = {c.case_id for c in after}
    return CaseDecision(
        state=new_state,
        confirmed=tuple(c for c in after if c not in before),
        retracted=tuple(c for c in before if c.case_id not in after_ids),
    )


def confirm_case(
    state: PersonCases | None, sample: Sample, rules: ResultRules = DEFAULT_RULES
) -> CaseDecision:
    """Case confirmation from a resulted sample: :func:`positive_of` then :func:`record_positive`.

    Why: "Confirmed case". A sample that is not an individual POSITIVE changes nothing
    (the returned state is ``state`` itself, possibly None).
    """
    positive = positive_of(sample)
    if positive is None:
        return CaseDecision(state)
    return record_positive(state, positive, rules)
