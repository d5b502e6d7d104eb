"""Estimates with 95% confidence intervals, and the closed-form ones (scipy.stats).

Every fitted parameter is an `Estimate`: the scenario key it sets, its value, a 95% interval,
how many observations are behind it and how it was obtained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sim.stats import CONFIDENCE

Z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


@dataclass(frozen=True)
class Estimate:
    """One fitted scenario key."""

    key: str
    """Dotted scenario key it sets, e.g. `audience.segments[0].base_conversion`."""
    value: float
    ci_low: float
    ci_high: float
    n: int
    """Observations behind it (events, users or groups, as `method` says)."""
    method: str
    base: float | None = None
    """The base scenario's value (None: the base left it to a default)."""

    def covers(self, x: float) -> bool:
        return self.ci_low - 1e-12 <= x <= self.ci_high + 1e-12


def poisson_rate(count: int, exposure: float) -> tuple[float, float, float]:
    """Maximum-likelihood rate count/exposure and its exact (Garwood) 95% interval."""
    a = 1 - CONFIDENCE
    lo = stats.chi2.ppf(a / 2, 2 * count) / 2 if count else 0.0
    hi = stats.chi2.ppf(1 - a / 2, 2 * count + 2) / 2
    return count / exposure, lo / exposure, hi / exposure


def proportion(k: int, n: int) -> tuple[float, float, float]:
    """k/n and its Wilson 95% interval (scipy.stats.binomtest)."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(CONFIDENCE, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def exponential_mean(total: float, events: int) -> tuple[float, float, float]:
    """Mean of an exponential from `events` observed durations and `total` time at risk
    (censored durations included): total/events, with the chi-square 95% interval."""
    a = 1 - CONFIDENCE
    return (total / events, 2 * total / stats.chi2.ppf(1 - a / 2, 2 * events),
            2 * total / stats.chi2.ppf(a / 2, 2 * events))


def log_normal_ci(value: float, var_log: float) -> tuple[float, float, float]:
    """A positive estimate with the variance of its log: value × exp(±z·sd)."""
    sd = math.sqrt(max(var_log, 0.0))
    return value, value * math.exp(-Z * sd), value * math.exp(Z * sd)


def logit_ci(value: float, var_logit: float) -> tuple[float, float, float]:
    """A probability with the variance of its logit: the interval mapped back from logits."""
    v = min(max(value, 1e-12), 1 - 1e-12)
    mid, sd = math.log(v / (1 - v)), math.sqrt(max(var_logit, 0.0))
    return value, _expit(mid - Z * sd), _expit(mid + Z * sd)


def _expit(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))
