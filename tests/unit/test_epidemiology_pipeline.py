"""Daily case and test counts through the real handlers (streams/epidemiology.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from projections.epidemiology_queries import daily_counts
from tests.scenarios import Ev, result, sample
from tests.unit.pipeline_support import rows, run

# 09:00 local (UTC+7) ten days ago (rows of days past their retention are not written);
# results 23 h later, the next local day
T0 = (datetime.now(UTC) - timedelta(days=10)).replace(hour=2, minute=0, second=0, microsecond=0)
D1 = T0.date()


def day(n: int, hours: float = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hours)


def swabbed(sample_id: str, people: list[str], at: datetime, outcome: str) -> list[Ev]:
    return [sample(sample_id, people, at), result(sample_id, outcome, at + timedelta(hours=23))]


def events() -> list[Ev]:
    return [
        *swabbed("a1", ["a"], day(0), "POSITIVE"),
        *swabbed("a2", ["a"], day(3), "POSITIVE"),  # within a's 90 days: no new case
        *swabbed("b1", ["b"], day(3), "POSITIVE"),
        *swabbed("pool", ["c", "d", "e"], day(3), "NEGATIVE"),  # one test, no case
        *swabbed("f1", ["f"], day(3), "NEGATIVE"),
    ]


async def test_cases_count_once_per_person_by_sampling_and_result_day() -> None:
    _, store = await run(events())
    cases = await daily_counts(store, "cases_by_province", ["79"], D1, D1 + timedelta(days=9))
    # a sampled day 0 (resulted day 1); b sampled day 3 (resulted day 4); a's second
    # positive is inside its case's 90 days
    assert cases == {
        "79": {
            D1: (1, 0),
            D1 + timedelta(days=1): (0, 1),
            D1 + timedelta(days=3): (1, 0),
            D1 + timedelta(days=4): (0, 1),
        }
    }
    tests = await daily_counts(store, "tests_by_province", ["79"], D1, D1 + timedelta(days=9))
    # day 1: a1; day 4: a2, b1 (positive), the pool and f1 (negative): 4 tests, 2 positive
    assert tests == {"79": {D1 + timedelta(days=1): (1, 1), D1 + timedelta(days=4): (4, 2)}}
    assert await daily_counts(store, "tests_by_province", ["01"], D1, D1) == {}


async def test_a_late_earlier_positive_moves_the_case_to_its_days() -> None:
    late = [*events(), *swabbed("a0", ["a"], day(-2), "POSITIVE")]
    _, store = await run(late)
    cases = await daily_counts(
        store, "cases_by_province", ["79"], D1 - timedelta(days=5), D1 + timedelta(days=9)
    )
    # a's case is now anchored on day -2 (resulted day -1): day 0 and day 1 count nothing
    assert cases["79"][D1 - timedelta(days=2)] == (1, 0)
    assert cases["79"][D1 - timedelta(days=1)] == (0, 1)
    assert cases["79"].get(D1, (0, 0)) == (0, 0)
    assert cases["79"].get(D1 + timedelta(days=1), (0, 0)) == (0, 0)
    assert sum(v[0] for v in cases["79"].values()) == 2  # a and b


async def test_counts_are_the_same_in_any_order_and_with_redeliveries() -> None:
    evs = [*events(), *swabbed("a0", ["a"], day(-2), "POSITIVE")]
    _, once = await run(evs)
    first = await rows(once)
    for seed in range(5):
        rng = random.Random(seed)
        again = evs + rng.sample(evs, len(evs) // 2)  # repeated deliveries
        rng.shuffle(again)
        # a result before its collection is refused (dead letter) and repeated later
        again = [e for e in again if e.name.endswith("Collected")] + [
            e for e in again if not e.name.endswith("Collected")
        ]
        _, store = await run(again, seed=seed)
        snap = await rows(store)
        for table in ("cases_by_province", "tests_by_province"):
            assert snap[table] == first[table], (seed, table)
