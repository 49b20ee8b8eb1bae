"""Epidemic curves and the time-varying reproduction number (Cori et al. 2013).

Pure functions, no I/O: the read API gives them the daily confirmed cases of a province (as
the stream processor counted them) and the rules below (``COVIDTECH_RULES`` overrides them,
``covidtech.settings.parse_rule_sets``).

Method (Cori, Ferguson, Fraser, Cauchemez, Am J Epidemiol 2013; EpiEstim's ``estimate_R``):

- the serial interval is a gamma distribution of mean ``si_mean`` and standard deviation
  ``si_sd`` (days), discretised as EpiEstim's ``discr_si`` does (a gamma on ``SI - 1`` whose
  daily probabilities keep the mean; day 0 has probability 0);
- the infectiousness on day ``s`` is ``Lambda_s = sum_k I_{s-k} w_k``;
- with a Gamma(shape ``a``, scale ``b``) prior on R over a window of ``window_days`` days
  ending on day ``t``, the posterior is Gamma(shape ``a + sum I_s``, scale
  ``1 / (1/b + sum Lambda_s)``), sums over the window;
- the report is the posterior mean and its 2.5% and 97.5% quantiles, on days whose window
  holds at least ``min_cases`` cases (fewer give a wide, prior-driven interval).

The gamma quantiles come from the regularized lower incomplete gamma function (series and
continued fraction, Numerical Recipes 6.2) inverted by bisection: Wilson-Hilferty's
approximation is off by several percent at the small shapes a window of few cases gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from domain.rules import refuse

__all__ = [
    "DEFAULT_RULES",
    "EpidemiologyRules",
    "RtEstimate",
    "discretised_serial_interval",
    "estimate_rt",
    "gamma_cdf",
    "gamma_quantile",
    "positivity",
    "regularized_gamma_p",
]


@dataclass(frozen=True, slots=True)
class EpidemiologyRules:
    """Settings of the Rt estimate; defaults as issue 15 and Cori's EpiEstim give them."""

    si_mean: float = 4.7
    """Mean of the serial interval (days)."""
    si_sd: float = 2.9
    """Standard deviation of the serial interval (days)."""
    rt_window_days: int = 7
    """Days of the sliding window each estimate pools."""
    rt_prior_shape: float = 1.0
    """Shape of the Gamma prior on R (EpiEstim's default: mean 5, sd 5)."""
    rt_prior_scale: float = 5.0
    """Scale of the Gamma prior on R."""
    rt_min_cases: int = 12
    """Cases a window must hold for its estimate to be reported (posterior CV below 0.3)."""
    si_max_days: int = 30
    """Support of the discretised serial interval (days 0 .. this), renormalised."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.si_mean > 1:
            problems.append(f"si_mean={self.si_mean} must exceed 1 day (gamma on SI - 1)")
        if not self.si_sd > 0:
            problems.append(f"si_sd={self.si_sd} must be positive")
        if self.rt_window_days < 1:
            problems.append(f"rt_window_days={self.rt_window_days} must be at least 1")
        if not (self.rt_prior_shape > 0 and self.rt_prior_scale > 0):
            problems.append("rt_prior_shape and rt_prior_scale must be positive")
        if self.rt_min_cases < 0:
            problems.append(f"rt_min_cases={self.rt_min_cases} must not be negative")
        if self.si_max_days < 2:
            problems.append(f"si_max_days={self.si_max_days} must be at least 2")
        refuse("epidemiology", problems)


DEFAULT_RULES = EpidemiologyRules()

_EPS = 1e-15
_ITMAX = 10_000


def regularized_gamma_p(a: float, x: float) -> float:
    """P(a, x) = gamma(a, x) / Gamma(a), the regularized lower incomplete gamma function."""
    if a <= 0:
        raise ValueError(f"shape {a} must be positive")
    if x <= 0:
        return 0.0
    if math.isinf(x):
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        # Series: P = e^-x x^a / Gamma(a+1) * sum x^n / ((a+1)...(a+n)).
        term = total = 1.0 / a
        ap = a
        for _ in range(_ITMAX):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return min(1.0, total * math.exp(log_front))
    # Continued fraction for Q = 1 - P (modified Lentz).
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, _ITMAX):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPS:
            break
    return max(0.0, 1.0 - math.exp(log_front) * h)


def gamma_cdf(x: float, shape: float, scale: float) -> float:
    """P(X <= x) for X ~ Gamma(shape, scale); 0 for x <= 0."""
    return regularized_gamma_p(shape, x / scale) if x > 0 else 0.0


def gamma_quantile(p: float, shape: float, scale: float) -> float:
    """The ``p`` quantile of Gamma(shape, scale), by bisection on :func:`gamma_cdf` to a
    relative precision of 1e-12."""
    if not 0 <= p <= 1:
        raise ValueError(f"probability {p} is not in [0, 1]")
    if shape <= 0 or scale <= 0:
        raise ValueError("shape and scale must be positive")
    if p == 0:
        return 0.0
    if p == 1:
        return math.inf
    # Bracket [lo, 2 lo] by doubling or halving (small shapes put low quantiles near 1e-60).
    lo = hi = max(1.0, shape)
    if regularized_gamma_p(shape, hi) < p:
        while regularized_gamma_p(shape, hi) < p:
            lo, hi = hi, hi * 2
    else:
        while lo > 1e-300 and regularized_gamma_p(shape, lo) >= p:
            lo, hi = lo / 2, lo
    for _ in range(200):
        mid = (lo + hi) / 2
        if regularized_gamma_p(shape, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2 * scale


def discretised_serial_interval(
    mean: float, sd: float, max_days: int = DEFAULT_RULES.si_max_days
) -> tuple[float, ...]:
    """Probabilities ``w_0 .. w_max_days`` of a serial interval of ``mean`` and ``sd`` days,
    discretised as EpiEstim's ``discr_si`` (a gamma on ``SI - 1``; ``w_0 = 0``) and
    renormalised to sum to 1 over the support."""
    if not mean > 1 or not sd > 0:
        raise ValueError("the serial interval needs mean > 1 and sd > 0")
    a = ((mean - 1) / sd) ** 2
    b = sd**2 / (mean - 1)

    def f(k: float, shape: float) -> float:
        return gamma_cdf(k, shape, b)

    raw = []
    for k in range(max_days + 1):
        w = (
            k * f(k, a)
            + (k - 2) * f(k - 2, a)
            - 2 * (k - 1) * f(k - 1, a)
            + a * b * (2 * f(k - 1, a + 1) - f(k - 2, a + 1) - f(k, a + 1))
        )
        raw.append(max(0.0, w))
    total = sum(raw)
    return tuple(w / total for w in raw)


@dataclass(frozen=True, slots=True)
class RtEstimate:
    """The estimate for the window ending on day index ``end`` (inclusive)."""

    end: int
    cases: int  # cases in the window
    mean: float
    lower: float  # 2.5% quantile
    upper: float  # 97.5% quantile
    shape: float  # of the posterior
    scale: float


def estimate_rt(
    incidence: Sequence[int],
    rules: EpidemiologyRules = DEFAULT_RULES,
    serial_interval: Sequence[float] | None = None,
) -> list[RtEstimate | None]:
    """Cori's Rt for each day of ``incidence`` (cases per consecutive day, oldest first): the
    estimate of the window ending that day, or None when the window starts before day 1 (day
    0 has no infectiousness behind it), holds fewer than ``rules.rt_min_cases`` cases or has
    no infectiousness (nothing happened before it).

    ``serial_interval`` (``w_0, w_1, ...``) replaces the discretised gamma of the rules."""
    w = (
        tuple(serial_interval)
        if serial_interval is not None
        else discretised_serial_interval(rules.si_mean, rules.si_sd, rules.si_max_days)
    )
    n = len(incidence)
    if any(i < 0 for i in incidence):
        raise ValueError("incidence must not be negative")
    infectiousness = [
        sum(incidence[s - k] * w[k] for k in range(1, min(s, len(w) - 1) + 1)) for s in range(n)
    ]
    tau = rules.rt_window_days
    out: list[RtEstimate | None] = []
    for t in range(n):
        start = t - tau + 1
        if start < 1:
            out.append(None)
            continue
        cases = sum(incidence[start : t + 1])
        load = sum(infectiousness[start : t + 1])
        if cases < rules.rt_min_cases or load <= 0:
            out.append(None)
            continue
        shape = rules.rt_prior_shape + cases
        scale = 1 / (1 / rules.rt_prior_scale + load)
        out.append(
            RtEstimate(
                end=t,
                cases=cases,
                mean=shape * scale,
                lower=gamma_quantile(0.025, shape, scale),
                upper=gamma_quantile(0.975, shape, scale),
                shape=shape,
                scale=scale,
            )
        )
    return out


def positivity(tests: int, positives: int) -> float | None:
    """The share of tests that were positive; None without tests."""
    return positives / tests if tests > 0 else None
