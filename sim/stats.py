"""Across replications: KPI means with 95% Student-t confidence intervals, paired differences."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class KpiSummary:
    """Mean of one KPI over n replications with its 95% confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    std: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize_values(values: list[float] | np.ndarray) -> KpiSummary:
    """Mean and 95% Student-t interval of one sample; n = 1 (or no spread) gives a point."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = float(x.mean())
    if n == 1:
        return KpiSummary(mean, mean, mean, 0.0, 1)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return KpiSummary(mean, mean - half, mean + half, std, n)


def summarize(rows: list[dict[str, float]]) -> dict[str, KpiSummary]:
    """Per KPI (the keys of the first row, in order): mean and 95% CI across the rows."""
    if not rows:
        raise ValueError("no replications to summarize")
    return {k: summarize_values([r[k] for r in rows]) for k in rows[0]}


def paired_differences(rows_a: list[dict[str, float]],
                       rows_b: list[dict[str, float]]) -> dict[str, KpiSummary]:
    """Per KPI, the mean of B - A replication by replication (common random numbers) and its
    95% CI. Pairing removes the noise both scenarios share, so the interval is narrower than
    the difference of two independent means."""
    if len(rows_a) != len(rows_b):
        raise ValueError("paired differences need the same number of replications")
    return summarize([{k: b[k] - a[k] for k in a} for a, b in zip(rows_a, rows_b, strict=True)])
