"""How shoppers respond: demand shapes, the expected price of a group, and invite counts.

Pure functions and small frozen objects; the SimPy processes in `campaign.py` call them.
All discounts are shares of the list price (0..1), as `campaign.pricing.price_order` gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from campaign.audience import Segment


@dataclass(frozen=True, slots=True)
class Demand:
    """A segment's conversion lift as a function of the discount d it expects to get:
    p = min(1, base * lift(d)). The three shapes are the `Segment` docstring's."""

    shape: str
    sensitivity: float
    reference: float
    penalty: float

    @classmethod
    def of(cls, seg: Segment) -> Demand:
        return cls(seg.demand_shape, seg.price_sensitivity, seg.reference_discount,
                   seg.deep_discount_penalty)

    def lift(self, d: float) -> float:
        s, r = self.sensitivity, self.reference
        if self.shape == "linear":
            return 1.0 + s * d
        if self.shape == "saturating":
            return 1.0 + s * r * (1.0 - math.exp(-d / r))
        return max(0.0, 1.0 + s * min(d, r) - self.penalty * s * max(0.0, d - r))

    def best_lift(self, d_max: float) -> float:
        """The largest lift over discounts in [0, d_max] (the exact-thinning bound): linear and
        saturating rise with d; the reference shape peaks at the reference depth."""
        if self.shape == "reference":
            return max(1.0, self.lift(min(d_max, self.reference)))
        return max(1.0, self.lift(d_max))

    def conversion(self, base: float, d: float) -> float:
        return min(1.0, base * self.lift(d))


@dataclass(frozen=True, slots=True)
class Ladder:
    """A group order's prices: tier sizes, the discount share at each tier, and the share a
    failed group gives (the fallback price's, or 0 when failed groups are refunded)."""

    sizes: tuple[int, ...]
    discounts: tuple[float, ...]
    fail: float

    def expected_discount(self, members: int, joiners: float) -> float:
        """E[d] for a group of `members` (the shopper included) that gains Poisson(`joiners`)
        more members before it closes: d_fail + Σ_i P(N ≥ s_i)·(d_i − d_{i−1}), d_0 = d_fail,
        N = members + J (see docs/simulation.md)."""
        total = prev = self.fail
        term, below, j = math.exp(-joiners), 0.0, 0  # P(J = j), P(J < j)
        for size, d in zip(self.sizes, self.discounts, strict=True):
            need = size - members
            while j < need:
                below += term
                j += 1
                term *= joiners / j
            total += (1.0 if need <= 0 else max(0.0, 1.0 - below)) * (d - prev)
            prev = d
        return total

    def gain_to_next(self, members: int) -> float:
        """The discount still to be won by reaching the next tier above `members` (0 at the
        top): what a sharer's effort responds to."""
        current = self.fail
        for size, d in zip(self.sizes, self.discounts, strict=True):
            if members < size:
                return max(0.0, d - current)
            current = d
        return 0.0

    def missing(self, members: int) -> int:
        """Members missing to the next tier (the product page shows 差N人); 0 at the top."""
        for size in self.sizes:
            if members < size:
                return size - members
        return 0


def arrive_within(hours: float, mean_delay: float) -> float:
    """F(τ): the chance an invite (exponential delay, mean `mean_delay` hours) arrives
    within `hours`."""
    return 1.0 - math.exp(-hours / mean_delay) if hours > 0 else 0.0


POISSON_DIRECT_MAX = 50.0
"""Above this mean, Poisson quantiles come from scipy (the direct sum would underflow)."""


def poisson_quantile(u: float, mean: float) -> int:
    """The smallest k with P(Poisson(mean) ≤ k) > u: one uniform gives a Poisson count whose
    mean may depend on the state (the share effort) without moving anybody else's luck."""
    if mean <= 0:
        return 0
    if mean > POISSON_DIRECT_MAX:
        return int(stats.poisson.ppf(u, mean))
    term = math.exp(-mean)
    cdf, k = term, 0
    while u >= cdf and term > 0:
        k += 1
        term *= mean / k
        cdf += term
    return k
