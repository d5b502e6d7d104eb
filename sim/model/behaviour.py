"""How shoppers respond: demand shapes, the expected price of a group, the joiners a group can
expect, and how hard a sharer shares.

Pure functions and small frozen objects; the SimPy processes in `campaign.py` call them, and
calibration (`sim.calibrate.fit`) calls the same ones to undo them. All discounts are shares of
the list price (0..1), as `campaign.pricing.price_order` gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from campaign.audience import GroupBehaviour, Segment
from campaign.scenario import Scenario


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

    def completion_chance(self, members: int, joiners: float) -> float:
        """P(N ≥ the smallest tier's size), N = members + Poisson(`joiners`): the chance the
        group completes (the same chance `expected_discount` weighs the first rung with)."""
        return poisson_tail(self.sizes[0] - members, joiners)

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


def expected_joiners(tau: float, pending: float, own: float, conversion: float,
                     mean_delay: float, stranger_rate: float, n_groups: int) -> float:
    """Λ = q·F(τ)·(P + own) + σ·τ / G: the joiners a group expects in the τ hours it has left,
    from the P invites on their way plus `own` more (q the invitee conversion, F the chance an
    invite arrives in time) and from strangers looking on the product page at σ an hour,
    spread over the G open groups of the SKU."""
    friends = conversion * arrive_within(tau, mean_delay) * (pending + own)
    return friends + stranger_rate * tau / n_groups


def stranger_rates(scenario: Scenario) -> tuple[list[float], list[float]]:
    """Per arrival-rate piece (its start hour, and σ): shoppers an hour per SKU who would look
    for an open group on the product page and join it at their list-price conversion."""
    aud = scenario.audience
    assert aud is not None
    pieces = scenario.arrival_rate_pieces()
    per_arrival = sum(s.share * s.group_propensity * s.base_conversion for s in aud.segments)
    look = (aud.groups or GroupBehaviour()).look_share / len(scenario.campaign.skus)
    return [lo for lo, _, _ in pieces], [rate * per_arrival * look for _, _, rate in pieces]


@dataclass(frozen=True, slots=True)
class Sharing:
    """How many invites a sharer sends on average (docs/simulation.md, "Sharing effort"):

        mean = μ · (1 + e · (g + w · ρ)),   ρ = (R + B · φ + c · R_lead) / L

    μ = `invites_per_sharer`, e = `share_effort`, g = the share of the list price still to be
    won at the group's next tier (`Ladder.gain_to_next`; 0 for a product link), w =
    `reward_weight`, and ρ what the sharer stands to earn in rewards, as a share of L, the list
    price of its own order (yuan), so ρ and g are in the same units: R = `inviter_reward` per
    friend who buys; B = `bonus_per_invite` times φ = P(Poisson(q · μ · (1 + e · g)) ≥ n), the
    chance its friends (q = `invitee_conversion`) already make it a fission master after
    n = `bonus_after_invites`, so that one more friend earns the bonus too; and, for a leader,
    R_lead = `leader_reward` times c, the chance its group completes. w = 0, or no rewards, is
    the formula before rewards moved anybody: μ · (1 + e · g)."""

    invites: float
    effort: float
    weight: float = 0.0
    inviter_reward: float = 0.0
    bonus: float = 0.0
    bonus_after: int | None = None
    conversion: float = 0.0
    leader_reward: float = 0.0

    @classmethod
    def of(cls, scenario: Scenario) -> Sharing | None:
        """The scenario's sharing (None without `[audience.referral]`: nobody shares)."""
        aud = scenario.audience
        ref = None if aud is None else aud.referral
        if ref is None:
            return None
        groups = scenario.campaign.groups
        return cls(ref.invites_per_sharer, (aud.groups or GroupBehaviour()).share_effort,
                   ref.reward_weight, ref.inviter_reward,
                   ref.bonus_per_invite if ref.bonus_after_invites is not None else 0.0,
                   ref.bonus_after_invites, ref.invitee_conversion,
                   0.0 if groups is None else groups.leader_reward)

    @property
    def weighs_completion(self) -> bool:
        """True when a leader's chance of completing its group moves its effort (then the
        caller computes it; it needs the state of the open groups)."""
        return bool(self.leader_reward and self.weight and self.effort)

    def before_rewards(self, gain: float) -> float:
        """μ · (1 + e · g): the invites the discount alone gets out of a sharer."""
        return self.invites * (1.0 + self.effort * gain)

    def fission_chance(self, gain: float) -> float:
        """φ: the chance the sharer's friends make it a fission master (0 without a bonus)."""
        if not self.bonus or self.bonus_after is None:
            return 0.0
        return poisson_tail(self.bonus_after, self.conversion * self.before_rewards(gain))

    def stake(self, gain: float, list_yuan: float, completion: float = 0.0) -> float:
        """ρ: the rewards a sharer stands to earn, as a share of its order's list price."""
        if list_yuan <= 0:
            return 0.0
        yuan = self.inviter_reward + self.bonus * self.fission_chance(gain) \
            + completion * self.leader_reward
        return yuan / list_yuan

    def exposure(self, gain: float, list_yuan: float, completion: float = 0.0) -> float:
        """1 + e · (g + w · ρ): the sharer's invites as a multiple of μ (what calibration
        divides the logged invites by)."""
        rho = self.stake(gain, list_yuan, completion) if self.weight else 0.0
        return 1.0 + self.effort * (gain + self.weight * rho)

    def mean(self, gain: float, list_yuan: float, completion: float = 0.0) -> float:
        """The mean of the sharer's Poisson invite count."""
        return self.invites * self.exposure(gain, list_yuan, completion)


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


def poisson_tail(n: int, mean: float) -> float:
    """P(Poisson(mean) ≥ n), 1 for n ≤ 0: the direct sum (a leader asks it once per share, at
    a mean that varies, so it must be cheap), scipy where that sum would underflow."""
    if n <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if mean > POISSON_DIRECT_MAX or n > 10 * POISSON_DIRECT_MAX:
        return float(stats.poisson.sf(n - 1, mean))
    term = math.exp(-mean)
    below = 0.0
    for k in range(n):
        below += term
        term *= mean / (k + 1)
    return max(0.0, 1.0 - below)
