"""Gamma quantiles, the discretised serial interval and Cori's Rt (domain/epidemiology.py)."""

from __future__ import annotations

import math

import pytest

from covidtech.settings import SettingsError, parse_rule_sets, parse_rules
from domain.epidemiology import (
    DEFAULT_RULES,
    EpidemiologyRules,
    discretised_serial_interval,
    estimate_rt,
    gamma_cdf,
    gamma_quantile,
    positivity,
)


@pytest.mark.parametrize(
    ("p", "shape", "scale", "expected"),
    [
        # chi-square quantiles (shape df/2, scale 2) from the printed tables
        (0.975, 0.5, 2.0, 5.023886),
        (0.025, 0.5, 2.0, 0.000982069),
        (0.975, 5.0, 2.0, 20.48318),
        (0.025, 5.0, 2.0, 3.246973),
        (0.95, 15.0, 2.0, 43.77297),
        # the exponential (shape 1) in closed form: -scale ln(1 - p)
        (0.025, 1.0, 2.0, -2 * math.log(0.975)),
        (0.975, 1.0, 0.5, -0.5 * math.log(0.025)),
    ],
)
def test_gamma_quantile_matches_tables(
    p: float, shape: float, scale: float, expected: float
) -> None:
    assert gamma_quantile(p, shape, scale) == pytest.approx(expected, rel=2e-6)


def test_gamma_quantile_inverts_the_cdf_at_small_and_large_shapes() -> None:
    for shape in (0.05, 0.3, 1.0, 2.5, 13.0, 250.0, 5000.0):
        for p in (0.001, 0.025, 0.5, 0.975, 0.999):
            x = gamma_quantile(p, shape, 3.0)
            assert gamma_cdf(x, shape, 3.0) == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert gamma_quantile(0, 2, 1) == 0 and gamma_quantile(1, 2, 1) == math.inf
    with pytest.raises(ValueError):
        gamma_quantile(1.5, 2, 1)


def test_serial_interval_is_a_distribution_keeping_the_mean() -> None:
    w = discretised_serial_interval(4.7, 2.9)
    assert w[0] == 0
    assert sum(w) == pytest.approx(1)
    # EpiEstim's discretisation keeps the mean (the tail past day 30 is negligible)
    assert sum(k * p for k, p in enumerate(w)) == pytest.approx(4.7, abs=0.01)
    assert max(range(len(w)), key=lambda k: w[k]) == 3  # the mode of the 4.7/2.9 gamma


def test_rt_by_hand_on_a_tiny_series() -> None:
    # w = (0, .5, .5); window 1 day; prior Gamma(1, 5).
    # Day 2: Lambda = 10*.5 + 10*.5 = 10; posterior shape 1 + 20 = 21, scale 1/(1/5 + 10).
    rules = EpidemiologyRules(rt_window_days=1, rt_min_cases=0)
    out = estimate_rt([10, 10, 20], rules, serial_interval=(0, 0.5, 0.5))
    assert out[0] is None  # nothing before day 0
    day2 = out[2]
    assert day2 is not None
    assert day2.shape == 21 and day2.scale == pytest.approx(1 / 10.2)
    assert day2.mean == pytest.approx(21 / 10.2)
    assert day2.lower == pytest.approx(gamma_quantile(0.025, 21, 1 / 10.2))
    assert day2.lower < day2.mean < day2.upper


def test_rt_of_steady_exponential_growth_is_the_euler_lotka_value() -> None:
    w = discretised_serial_interval(4.7, 2.9)
    for growth in (0.9, 1.0, 1.1):
        incidence = [round(200 * growth ** (t - 44 if growth < 1 else t)) for t in range(45)]
        last = estimate_rt(incidence)[-1]
        assert last is not None
        expected = 1 / sum(p * growth**-k for k, p in enumerate(w))
        assert last.mean == pytest.approx(expected, rel=0.01)
        assert last.lower < expected < last.upper


def test_rt_is_not_reported_on_too_few_cases_or_before_a_full_window() -> None:
    incidence = [1] * 20
    out = estimate_rt(incidence)  # 7 cases a window, fewer than 12
    assert all(e is None for e in out)
    out = estimate_rt([5] * 20)
    assert out[: DEFAULT_RULES.rt_window_days] == [None] * DEFAULT_RULES.rt_window_days
    assert all(e is not None for e in out[DEFAULT_RULES.rt_window_days :])
    assert estimate_rt([]) == []
    with pytest.raises(ValueError):
        estimate_rt([1, -1])


def test_positivity() -> None:
    assert positivity(0, 0) is None
    assert positivity(8, 2) == 0.25


def test_rules_validate_and_override_from_settings() -> None:
    with pytest.raises(ValueError, match="si_mean"):
        EpidemiologyRules(si_mean=1.0)
    with pytest.raises(ValueError, match="rt_window_days"):
        EpidemiologyRules(rt_window_days=0)
    presence, _, epi, _ = parse_rule_sets("si_mean=5.2,rt_window_days=5,cluster_min_cases=4")
    assert epi == EpidemiologyRules(si_mean=5.2, rt_window_days=5)
    assert presence.cluster_min_cases == 4
    assert parse_rules("si_mean=5.2") == parse_rule_sets("")[:2]
    with pytest.raises(SettingsError, match="si_sd"):
        parse_rule_sets("si_sd=-1")
    with pytest.raises(SettingsError, match="rt_prior_shape"):
        parse_rule_sets("rt_prior_shpe=2")
