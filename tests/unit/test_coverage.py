"""Dose coverage: person status, idempotent aggregation and metrics (DESIGN.md "Dose coverage")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import coverage as c
from domain import reference
from domain.coverage import (
    NATION,
    CountsKey,
    CoverageCounts,
    Dose,
    DoseHistory,
    InvalidDose,
    PersonCoverage,
)
from domain.vaccines import VACCINES, UnknownVaccine, get_vaccine

T0 = datetime(2021, 7, 1, 2, 0, tzinfo=UTC)  # 09:00 local
AZ, PFIZER, JANSSEN = "AZ", "PFIZER", "JANSSEN"


def dose(
    dose_id: str,
    days: float,
    vaccine: str = AZ,
    birth_year: int = 1980,
    province: str = "79",
) -> Dose:
    return Dose(dose_id, T0 + timedelta(days=days), vaccine, birth_year, province)


def day(days: int) -> date:
    return (T0 + timedelta(days=days)).date()


# --------------------------------------------------------------------------- vaccines


def test_vaccine_products() -> None:
    assert get_vaccine(JANSSEN).single_dose
    assert [v.code for v in VACCINES.values() if v.single_dose] == [JANSSEN]
    assert {AZ, PFIZER, "MODERNA", "SINOPHARM", "SPUTNIK_V", "ABDALA", "HAYAT_VAX"} < set(VACCINES)
    with pytest.raises(UnknownVaccine, match="XYZ"):
        get_vaccine("XYZ")
    with pytest.raises(KeyError):
        get_vaccine("az")  # codes are exact contract values


# --------------------------------------------------------------------------- age and dates


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0, "0-11"),
        (11, "0-11"),
        (12, "12-17"),
        (17, "12-17"),
        (18, "18-49"),
        (49, "18-49"),
        (50, "50-64"),
        (64, "50-64"),
        (65, "65+"),
        (110, "65+"),
    ],
)
def test_age_band_boundaries(age: int, band: str) -> None:
    assert c.age_band(2021 - age, 2021) == band


def test_negative_age_is_invalid() -> None:
    with pytest.raises(InvalidDose):
        c.age_band(2022, 2021)


def test_doses_are_counted_on_the_local_day() -> None:
    late_evening_utc = datetime(2021, 12, 31, 17, 30, tzinfo=UTC)  # 00:30 on 1 Jan local
    assert c.local_date(late_evening_utc) == date(2022, 1, 1)
    with pytest.raises(InvalidDose):
        c.local_date(datetime(2021, 7, 1))


def test_age_band_uses_the_local_year_of_the_first_dose() -> None:
    # born 2004: 17 at a dose on 31 Dec 2021 local, 18 if the first dose is on 1 Jan 2022 local
    early = Dose("a", datetime(2021, 12, 31, 16, 0, tzinfo=UTC), AZ, 2004, "01")
    late = Dose("b", datetime(2021, 12, 31, 17, 30, tzinfo=UTC), AZ, 2004, "01")
    assert c.person_status("p", [early]).age_band == "12-17"
    assert c.person_status("p", [late]).age_band == "18-49"
    # a later dose does not change the band: the first dose fixes it
    assert c.person_status("p", [early, late]).age_band == "12-17"


# --------------------------------------------------------------------------- a person


def test_dose_validation() -> None:
    with pytest.raises(UnknownVaccine):
        dose("d", 0, vaccine="NOT_A_VACCINE")
    with pytest.raises(InvalidDose, match="timezone"):
        Dose("d", datetime(2021, 7, 1), AZ, 1980, "79")
    with pytest.raises(InvalidDose, match="province"):
        dose("d", 0, province="99")
    with pytest.raises(InvalidDose, match="birth year"):
        dose("d", 0, birth_year=2022)
    with pytest.raises(InvalidDose):
        dose("", 0)


def test_single_dose_of_a_two_dose_product_is_incomplete() -> None:
    status = c.person_status("p", [dose("d1", 0)])
    assert status.first_dose_date == day(0)
    assert status.completed_date is None
    assert status.booster_dates == ()


def test_janssen_completes_at_dose_one_and_a_later_dose_is_a_booster() -> None:
    status = c.person_status("p", [dose("d1", 0, JANSSEN), dose("d2", 60, PFIZER)])
    assert status.completed_date == day(0)
    assert status.booster_dates == (day(60),)


def test_two_doses_of_mixed_products_complete_at_dose_two() -> None:
    status = c.person_status("p", [dose("d1", 0, AZ), dose("d2", 28, PFIZER)])
    assert status.completed_date == day(28)
    assert status.booster_dates == ()
    with_booster = c.person_status(
        "p", [dose("d1", 0, AZ), dose("d2", 28, PFIZER), dose("d3", 150, "MODERNA")]
    )
    assert with_booster.completed_date == day(28)
    assert with_booster.booster_dates == (day(150),)


def test_janssen_as_second_dose_completes_at_dose_two() -> None:
    # "else at the second dose, whatever its product": only the first dose's product matters
    status = c.person_status("p", [dose("d1", 0, AZ), dose("d2", 30, JANSSEN), dose("d3", 90)])
    assert status.completed_date == day(30)
    assert status.booster_dates == (day(90),)


def test_duplicate_dose_id_is_ignored() -> None:
    doses = [dose("d1", 0), dose("d1", 0), dose("d2", 28), dose("d2", 28)]
    status = c.person_status("p", doses)
    assert status.dose_dates == (day(0), day(28))
    assert status == c.person_status("p", [dose("d2", 28), dose("d1", 0)])


def test_doses_at_the_same_time_are_ordered_by_dose_id() -> None:
    status = c.person_status("p", [dose("b", 0, AZ), dose("a", 0, JANSSEN)])
    assert status.completed_date == day(0)  # "a" (Janssen) is first
    assert status.booster_dates == (day(0),)
    status = c.person_status("p", [dose("a", 0, AZ), dose("b", 0, JANSSEN)])
    assert status.booster_dates == ()  # "a" (AZ) first, "b" completes


def test_province_and_birth_year_come_from_the_first_dose() -> None:
    status = c.person_status(
        "p", [dose("d2", 30, province="01", birth_year=1950), dose("d1", 0, province="79")]
    )
    assert (status.province, status.age_band) == ("79", "18-49")


def test_a_person_needs_a_dose() -> None:
    with pytest.raises(InvalidDose):
        c.person_status("p", [])


def test_record_dose_is_idempotent_and_order_free() -> None:
    h = DoseHistory("p")
    h = c.record_dose(h, dose("d2", 28))
    h = c.record_dose(h, dose("d1", 0))
    assert [d.dose_id for d in h.doses] == ["d1", "d2"]
    assert c.record_dose(h, dose("d1", 0)) is h
    with pytest.raises(ValueError):
        DoseHistory("p", (dose("d2", 28), dose("d1", 0)))


def test_inconsistent_status_is_refused() -> None:
    good = c.person_status("p", [dose("d1", 0), dose("d2", 28), dose("d3", 90)])
    with pytest.raises(ValueError, match="completed_date"):
        PersonCoverage("p", "79", "18-49", good.dose_dates, day(0), day(90), ())
    with pytest.raises(ValueError, match="first_dose_date"):
        PersonCoverage("p", "79", "18-49", good.dose_dates, day(1), day(28), (day(90),))
    with pytest.raises(ValueError, match="band"):
        PersonCoverage("p", "79", "18-64", (day(0),), day(0), None, ())
    with pytest.raises(ValueError, match="incomplete"):
        PersonCoverage("p", "79", "18-49", (day(0), day(28)), day(0), None, ())


# --------------------------------------------------------------------------- counts


def test_contributions_go_to_the_nation_and_the_province() -> None:
    status = c.person_status("p", [dose("d1", 0, JANSSEN), dose("d2", 60)])
    counts = c.contributions(status)
    for area in (NATION, "79"):
        assert counts[CountsKey(area, "18-49", day(0))] == CoverageCounts(1, 1, 0, 1)
        assert counts[CountsKey(area, "18-49", day(60))] == CoverageCounts(0, 0, 1, 1)
    assert len(counts) == 4


def test_redelivered_status_is_a_no_op() -> None:
    status = c.person_status("p", [dose("d1", 0), dose("d2", 28)])
    assert c.status_delta(status, status) == {}
    assert c.status_delta(None, status) == c.contributions(status)


def test_a_move_removes_the_old_contribution_from_the_old_area() -> None:
    old = c.person_status("p", [dose("d2", 30, province="01")])
    new = c.person_status("p", [dose("d2", 30, province="01"), dose("d1", 0, province="79")])
    daily = c.apply_delta({}, c.status_delta(None, old))
    daily.update(c.apply_delta(daily, c.status_delta(old, new)))
    daily = {k: v for k, v in daily.items() if not v.is_zero}
    assert daily == c.aggregate([new])
    assert not any(k.area == "01" for k in daily)


def test_stale_status_is_ignored() -> None:
    one = c.person_status("p", [dose("d1", 0)])
    two = c.person_status("p", [dose("d1", 0), dose("d2", 28)])
    assert c.latest_status(two, one) is two
    assert c.latest_status(one, two) is two
    assert c.latest_status(None, one) is one


def test_negative_counts_are_refused() -> None:
    status = c.person_status("p", [dose("d1", 0)])
    with pytest.raises(c.NegativeCount):
        c.apply_delta({}, c.status_delta(status, c.person_status("p", [dose("d1", 5)])))


def test_aggregate_refuses_two_statuses_of_one_person() -> None:
    a = c.person_status("p", [dose("d1", 0)])
    b = c.person_status("p", [dose("d1", 0), dose("d2", 28)])
    assert c.aggregate([a, a]) == c.aggregate([a])
    with pytest.raises(ValueError):
        c.aggregate([a, b])


def test_cumulative_and_as_of() -> None:
    daily = {
        day(0): CoverageCounts(2, 0, 0, 2),
        day(28): CoverageCounts(0, 2, 0, 2),
        day(90): CoverageCounts(1, 0, 1, 2),
    }
    cum = c.cumulative(daily)
    assert cum[day(90)] == CoverageCounts(3, 2, 1, 6)
    assert c.as_of(cum, day(-1)) == CoverageCounts()
    assert c.as_of(cum, day(50)) == CoverageCounts(2, 2, 0, 4)


# --------------------------------------------------------------------------- metrics


def test_metrics_per_hundred_and_drop_out() -> None:
    m = c.metrics(CoverageCounts(50, 40, 10, 100), 200)
    assert m.people_vaccinated_per_hundred == 25.0
    assert m.people_fully_vaccinated_per_hundred == 20.0
    assert m.total_boosters_per_hundred == 5.0
    assert m.total_doses_per_hundred == 50.0
    assert m.drop_out == pytest.approx(0.2)
    assert c.metrics(CoverageCounts(), 200).drop_out is None
    with pytest.raises(ValueError):
        c.metrics(CoverageCounts(), 0)


def test_adult_coverage_uses_adult_bands_only() -> None:
    by_band = {band: CoverageCounts(1000, 500, 0, 1500) for band in c.AGE_BANDS}
    adults = c.adult_metrics(by_band, "79")
    assert adults.people_vaccinated == 3000
    expected_population = sum(reference.population("79", b) for b in ("18-49", "50-64", "65+"))
    assert adults.population == c.adult_population("79") == expected_population
    assert c.area_metrics(by_band, NATION).population == reference.population(NATION)
    assert c.area_metrics(by_band, NATION).people_vaccinated == 5000


# --------------------------------------------------------------------------- properties

PROVINCES = ("01", "79", "48")
CODES = tuple(VACCINES)
# 17-hour steps cross local midnight and collide often enough to exercise ties.
_moments = st.integers(0, 700).map(
    lambda n: datetime(2021, 3, 1, tzinfo=UTC) + timedelta(hours=17 * n)
)


@st.composite
def _people(draw: st.DrawFn, fixed_attributes: bool = False) -> dict[str, list[Dose]]:
    people: dict[str, list[Dose]] = {}
    for p in range(draw(st.integers(1, 5))):
        person_id = f"person-{p}"
        birth_year = draw(st.integers(1930, 2015))
        province = draw(st.sampled_from(PROVINCES))
        doses = []
        for i in range(draw(st.integers(1, 5))):
            if not fixed_attributes:
                birth_year = draw(st.integers(1930, 2015))
                province = draw(st.sampled_from(PROVINCES))
            moment = draw(_moments)
            doses.append(
                Dose(f"{person_id}-{i}", moment, draw(st.sampled_from(CODES)), birth_year, province)
            )
        people[person_id] = doses
    return people


def _final(people: dict[str, list[Dose]]) -> dict[CountsKey, CoverageCounts]:
    return c.aggregate(c.person_status(pid, doses) for pid, doses in people.items())


@settings(max_examples=150, deadline=None)
@given(people=_people(), data=st.data())
def test_deltas_in_any_order_with_redeliveries_equal_the_batch(
    people: dict[str, list[Dose]], data: st.DataObject
) -> None:
    # per-person agent: doses arrive shuffled and repeated; a status is published each time
    published: dict[str, list[PersonCoverage]] = {}
    for pid, doses in people.items():
        arrivals = data.draw(st.permutations(doses))
        for again in data.draw(st.lists(st.sampled_from(doses), max_size=3)):
            arrivals.insert(data.draw(st.integers(0, len(arrivals))), again)
        history = DoseHistory(pid)
        published[pid] = []
        for d in arrivals:
            history = c.record_dose(history, d)
            published[pid].append(c.person_status(pid, history.doses))
    # the aggregator sees the people interleaved, each in publication order ...
    stream: list[PersonCoverage] = []
    queues = {pid: list(statuses) for pid, statuses in published.items()}
    while queues:
        pid = data.draw(st.sampled_from(sorted(queues)))
        stream.append(queues[pid].pop(0))
        if not queues[pid]:
            del queues[pid]
    # ... plus redeliveries of earlier statuses, possibly after newer ones
    for _ in range(data.draw(st.integers(0, 5))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream.insert(data.draw(st.integers(i + 1, len(stream))), stream[i])

    held: dict[str, PersonCoverage] = {}
    daily: dict[CountsKey, CoverageCounts] = {}
    for incoming in stream:
        old = held.get(incoming.person_id)
        new = c.latest_status(old, incoming)
        daily.update(c.apply_delta(daily, c.status_delta(old, new)))
        held[incoming.person_id] = new

    assert {k: v for k, v in daily.items() if not v.is_zero} == _final(people)
    assert all(not v.is_negative for v in daily.values())


def _cumulative_at(
    daily: dict[CountsKey, CoverageCounts], area: str, band: str, d: date
) -> CoverageCounts:
    return c.as_of(c.cumulative(c.series(daily, area, band)), d)


def _extra_dose(
    data: st.DataObject, people: dict[str, list[Dose]], fixed: bool
) -> dict[str, list[Dose]]:
    pid = data.draw(st.sampled_from(sorted(people)))
    template = people[pid][0]
    extra = Dose(
        f"{pid}-extra",
        data.draw(_moments),
        data.draw(st.sampled_from(CODES)),
        template.birth_year if fixed else data.draw(st.integers(1930, 2015)),
        template.province if fixed else data.draw(st.sampled_from(PROVINCES)),
    )
    return {**people, pid: [*people[pid], extra]}


@settings(max_examples=150, deadline=None)
@given(people=_people(), data=st.data())
def test_adding_a_dose_never_decreases_a_national_cumulative_metric(
    people: dict[str, list[Dose]], data: st.DataObject
) -> None:
    after_people = _extra_dose(data, people, fixed=False)
    before, after = _final(people), _final(after_people)
    population = reference.population(NATION)
    for d in sorted({k.day for k in (*before, *after)}):
        was = c.sum_bands({b: _cumulative_at(before, NATION, b, d) for b in c.AGE_BANDS})
        now = c.sum_bands({b: _cumulative_at(after, NATION, b, d) for b in c.AGE_BANDS})
        assert not (now - was).is_negative, (d, was, now)
        m_was, m_now = c.metrics(was, population), c.metrics(now, population)
        assert m_now.people_vaccinated_per_hundred >= m_was.people_vaccinated_per_hundred
        assert (
            m_now.people_fully_vaccinated_per_hundred >= m_was.people_fully_vaccinated_per_hundred
        )
        assert m_now.total_boosters_per_hundred >= m_was.total_boosters_per_hundred
        assert m_now.total_doses_per_hundred >= m_was.total_doses_per_hundred


@settings(max_examples=150, deadline=None)
@given(people=_people(fixed_attributes=True), data=st.data())
def test_adding_a_dose_never_decreases_any_area_band_cumulative_count(
    people: dict[str, list[Dose]], data: st.DataObject
) -> None:
    # Same province and birth year on every dose of a person: only then can no one change
    # area or band (a move legitimately lowers the old area's counts).
    after_people = _extra_dose(data, people, fixed=True)

    # the year of the first dose may still change the band; skip those rare draws
    def bands(ps: dict[str, list[Dose]]) -> dict[str, str]:
        return {pid: c.person_status(pid, ds).age_band for pid, ds in ps.items()}

    if bands(people) != bands(after_people):
        return
    before, after = _final(people), _final(after_people)
    series_keys = {(k.area, k.age_band) for k in (*before, *after)}
    for d in sorted({k.day for k in (*before, *after)}):
        for area, band in series_keys:
            was = _cumulative_at(before, area, band, d)
            now = _cumulative_at(after, area, band, d)
            assert not (now - was).is_negative, (area, band, d, was, now)
