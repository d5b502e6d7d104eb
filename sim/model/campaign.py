"""The SimPy processes of one campaign run (one replication).

Time is in hours from the sale start. The modelling choices (docs/simulation.md has them with
the formulas):

- Arrivals: a non-homogeneous Poisson process with the scenario's piecewise-constant rate,
  sampled exactly (per piece a Poisson count, then sorted uniform times). Each arrival is one
  shopper; segment by the segments' shares, SKU uniformly, group or single buyer by the
  segment's `group_propensity`.
- Price seen: a single buyer sees the best single-buyer price; a group buyer the *expected*
  price of the group it would join (`Ladder.expected_discount`: the tiers the group is likely
  to reach from its members, time left and expected joiners). Conversion is
  base_conversion × lift(d) with the segment's demand shape. Exact thinning: one conversion
  uniform per arrival is drawn up front, and only arrivals below the best conversion any
  state could give become SimPy events; they decide again against the live state.
- Groups: a group buyer who arrives by a group's link joins that group if it is still open;
  otherwise `look_share` of group buyers look for an open group on the product page and take
  one by the choice rule; the rest (and lookers who find none) open their own group and lead
  it. Members join when they pay. A group closes at its top tier or when its window ends, at
  the tier reached; below the smallest tier it fails (refund, or fallback price with take-up).
- Sharing: a paying leader (and members, if `members_share`) shares the group's link with the
  segment's share propensity; a single buyer shares the product's link. Invites are
  Poisson(invites_per_sharer × (1 + share_effort × g)), g the discount still to be won at the
  group's next tier; each friend arrives after an exponential delay and carries the group.
  Invitees deeper than `depth_cap` are not generated.
- Payment: with `pay_probability` a shopper pays after an exponential delay (mean the
  segment's `pay_delay_minutes`, default PAY_DELAY_MINUTES capped at a third of the timeout;
  always before the timeout), else the reservation lapses.
- Budget: a subsidised reservation holds the worst case it can still reach and gives back
  the rest when it settles; a shopper whose worst case does not fit is handled by
  `budget_policy`. So the subsidy spent never exceeds `subsidy_budget`.
- After the sale: the acquired buyers' repurchases, drawn at once with numpy (`after.py`).
- Event log (`events=True`): one row per visit, reservation, payment … (`sim.events`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import simpy

from campaign.audience import CHANNELS, GroupBehaviour
from campaign.pricing import to_cents
from campaign.scenario import Scenario
from sim.model.after import AFTER_KPIS, after_campaign
from sim.model.arrivals import Uniforms, sample_arrivals
from sim.model.behaviour import Demand, arrive_within, poisson_quantile
from sim.model.groups import Group, GroupBook
from sim.model.ledger import SubsidyLedger
from sim.model.perks import Perks
from sim.model.prices import PriceBook
from sim.model.recorder import Recorder
from sim.model.referrals import ReferralTrees
from sim.model.results import KPI_NAMES, EventLog, Recording, RunResult, sale_minutes
from sim.model.seeds import child_seeds
from sim.model.stock import Stock

PAY_DELAY_MINUTES = 3.0
"""Mean delay between reserving and paying, for shoppers who pay, unless the segment gives
`pay_delay_minutes` (then at most a third of the payment timeout)."""

NEW_SEGMENT = "new"
"""Buyers of the segment with this name count as acquired (invitees always do)."""

STREAMS = ("arrivals", "segments", "skus", "modes", "conversion", "payment", "referral",
           "fallback", "invitees", "looks", "after")
"""One random stream per stochastic process, spawned in this order. For common random numbers
every first-time arrival draws its payment, sharing, invite and fallback luck up front, by
arrival index, so a change that makes one more shopper convert does not shift everybody
else's luck."""


@dataclass(slots=True, eq=False)
class Order:
    """One shopper's order, from reservation to settlement."""

    pid: int
    user: int
    """The visitor's id in the event log (first-time arrival index, then invitees)."""
    sku: int
    seg: int
    qty: int
    group: bool
    interval: int
    discounted: bool
    u_pay: float
    u_delay: float
    u_share: float
    u_invites: float
    u_fallback: float
    hold: int = 0
    """Subsidy (fen) held for this order while it is open: the worst case it can reach."""
    depth: int = 0
    root: int = -1
    inviter: int = -1
    target: Group | None = None
    """The open group this shopper means to join when paying (None: open a new one)."""
    leader: bool = False


class _CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events (the benchmark reports them)."""

    def __init__(self) -> None:
        super().__init__()
        self.processed = 0

    def step(self) -> None:
        self.processed += 1
        super().step()


class _Campaign:
    """The SimPy processes of one run. State lives in the parts: `stock`, `ledger` (money and
    budget), `perks` (coupon pools, gifts), `groups`, `trees` (referrals) and `recorder`
    (everything observed)."""

    def __init__(self, scenario: Scenario, seed: int | np.random.SeedSequence,
                 record: bool, trace: bool, events: bool = False) -> None:
        if scenario.audience is None:
            raise ValueError("the scenario has no [audience] section, so it cannot be simulated")
        self.scenario = scenario
        rules = self.rules = scenario.campaign
        audience = scenario.audience
        self.env = env = _CountingEnvironment()
        self.rngs = {name: np.random.default_rng(s)
                     for name, s in zip(STREAMS, child_seeds(seed, len(STREAMS)), strict=True)}
        self.u_ref = Uniforms(self.rngs["referral"])
        self.u_inv = Uniforms(self.rngs["invitees"])
        self.prices = PriceBook(rules)
        self.recorder = Recorder(lambda: env.now, record, trace, events)
        self.stock = Stock([s.stock for s in rules.skus], lambda: env.now,
                           self.recorder.stock_moved)
        budget = rules.subsidy_budget
        self.ledger = SubsidyLedger(None if budget is None else to_cents(budget))
        self.ref = ref = audience.referral
        self.trees = ReferralTrees(ref.depth_cap if ref else None)
        behaviour = audience.groups or GroupBehaviour()
        self.behaviour = behaviour
        self.groups = None if rules.groups is None else GroupBook(
            len(rules.skus), tuple(t.size for t in rules.groups.tiers), behaviour.choice)
        self.duration = rules.duration_hours
        self.timeout = rules.payment_timeout_minutes / 60
        self.segs = audience.segments
        self.pay_mean = [min(PAY_DELAY_MINUTES / 60, self.timeout / 3)
                         if s.pay_delay_minutes is None else s.pay_delay_minutes / 60
                         for s in self.segs]
        self.demand = [Demand.of(s) for s in self.segs]
        self.qty = [min(s.quantity, rules.per_user_limit) for s in self.segs]
        names = [s.name for s in self.segs]
        self.invitee_seg = 0 if ref is None or ref.invitee_segment is None else \
            names.index(ref.invitee_segment)
        self.perks = Perks(rules)
        self.flash = [any(td.start_hour <= start < td.end_hour for td in rules.time_discounts)
                      for start in self.prices.interval_starts]
        self.next_user = 0
        self._worst: dict[tuple, int] = {}
        self.next_pid = 0
        self._stranger_rates()

    # -- what a shopper expects -------------------------------------------------------------

    def _stranger_rates(self) -> None:
        """Per rate piece: lookers per hour per SKU who would join a group at their base
        conversion (the stranger part of the joiners a shopper expects)."""
        pieces = self.scenario.arrival_rate_pieces()
        self._piece_starts = [lo for lo, _, _ in pieces]
        per_arrival = sum(s.share * s.group_propensity * s.base_conversion for s in self.segs)
        share = self.behaviour.look_share / len(self.rules.skus)
        self._stranger_rate = [rate * per_arrival * share for _, _, rate in pieces]

    def _propensity(self, seg: int, depth: int) -> float:
        ref = self.ref
        if depth > 0 and ref is not None and ref.invitee_share_propensity is not None:
            return ref.invitee_share_propensity
        return self.segs[seg].share_propensity

    def expected_joiners(self, target: Group | None, seg: int, depth: int,
                         shares_link: bool) -> float:
        """Λ: the joiners a shopper expects the group to gain before it closes. Friends by the
        link: q·F(τ)·(invites on their way + the shopper's own expected invites); strangers:
        the looking rate × τ, shared among the SKU's open groups."""
        now = self.env.now
        groups = self.groups
        assert groups is not None and self.rules.groups is not None
        if target is None:
            deadline, pending = now + self.rules.groups.window_hours, 0
            n_groups = groups.open_count(0 if target is None else target.sku) + 1
        else:
            deadline, pending = target.deadline, target.pending_invites
            n_groups = max(1, groups.open_count(target.sku))
        tau = max(0.0, min(deadline, self.duration) - now)
        lam = 0.0
        ref = self.ref
        if ref is not None:
            own = 0.0
            if shares_link and depth < ref.depth_cap:
                own = self._propensity(seg, depth) * ref.invites_per_sharer
            lam = (ref.invitee_conversion * arrive_within(tau, ref.invite_delay_minutes / 60)
                   * (pending + own))
        piece = max(0, bisect.bisect_right(self._piece_starts, now) - 1)
        return lam + self._stranger_rate[piece] * tau / n_groups

    def _worst_case(self, sku: int, qty: int, interval: int, tier: str, group: bool,
                    depth: int) -> int:
        """The most subsidy (fen) this order can still cost: its deepest price, its referral
        rewards and a leader reward (fixed per kind of order, cached), plus the biggest coupon
        left and a gift while gifts are left."""
        key = (sku, qty, interval, tier, group, depth > 0)
        fixed = self._worst.get(key)
        if fixed is None:
            rules, ref = self.rules, self.ref
            fixed = self.prices.worst_discount(sku, qty, interval, tier, group)
            if depth > 0 and ref is not None:
                fixed += to_cents(ref.inviter_reward + ref.invitee_reward)
                if ref.bonus_after_invites is not None:
                    fixed += to_cents(ref.bonus_per_invite)
            if group and rules.groups is not None:
                fixed += to_cents(rules.groups.leader_reward)
            self._worst[key] = fixed
        return fixed + self.perks.worst_fen()

    # -- arrivals ---------------------------------------------------------------------------

    def arrival_candidates(self) -> tuple[np.ndarray, list[tuple]]:
        """All first-time arrival times, and for the arrivals that could convert in some state
        (exact thinning): (time, segment, sku, group, interval, conversion and look uniforms,
        *their luck for `Order`)."""
        r = self.rngs
        times = sample_arrivals(self.scenario.arrival_rate_pieces(), r["arrivals"])
        n = len(times)
        shares = np.cumsum([s.share for s in self.segs])
        seg = np.minimum(np.searchsorted(shares, r["segments"].random(n), side="right"),
                         len(self.segs) - 1)
        n_sku = len(self.rules.skus)
        sku = np.minimum((r["skus"].random(n) * n_sku).astype(np.int64), n_sku - 1)
        u_mode = r["modes"].random(n)
        if self.rules.groups is not None:
            group = u_mode < np.array([s.group_propensity for s in self.segs])[seg]
        else:
            group = np.zeros(n, dtype=bool)
        starts = np.array(self.prices.interval_starts)
        interval = np.searchsorted(starts, times, side="right") - 1
        best = np.empty((n_sku, len(self.segs), 2, len(starts)))
        for k in range(n_sku):
            for j, s in enumerate(self.segs):
                for i in range(len(starts)):
                    d = self.prices.single_share(k, self.qty[j], i, s.member_tier)
                    best[k, j, 0, i] = min(1.0, s.base_conversion * self.demand[j].best_lift(d))
                    if self.rules.groups is not None:
                        ladder = self.prices.ladder(k, self.qty[j], i, s.member_tier)
                        d = max(ladder.fail, *ladder.discounts)
                        best[k, j, 1, i] = min(1.0, s.base_conversion
                                               * self.demand[j].best_lift(d))
        u = r["conversion"].random(n)
        keep = u < best[sku, seg, group.astype(np.int64), interval]
        u_look = r["looks"].random(n)
        u_pay, u_delay = r["payment"].random((2, n))
        u_share, u_invites = r["referral"].random((2, n))
        u_fallback = r["fallback"].random(n)
        cols = (times[keep], np.flatnonzero(keep), seg[keep], sku[keep], group[keep],
                interval[keep], u[keep], u_look[keep], u_pay[keep], u_delay[keep],
                u_share[keep], u_invites[keep], u_fallback[keep])
        self.next_user = n
        self.visits = (times, seg, sku)
        return times, list(zip(*(c.tolist() for c in cols), strict=True))

    def arrivals(self, candidates: list[tuple]):
        env = self.env
        for t, user, seg, sku, group, interval, u, u_look, *luck in candidates:
            yield env.timeout(t - env.now)
            self._decide(user, seg, sku, group, interval, u, u_look, luck,
                         self.segs[seg].base_conversion, None, None)

    def _decide(self, user: int, seg: int, sku: int, group: bool, interval: int,
                u_conv: float, u_look: float, luck: list[float], base: float,
                inviter: Order | None, link: Group | None) -> None:
        """A shopper looks at the price it would pay, converts or leaves, and reserves."""
        tier = self.segs[seg].member_tier
        qty = self.qty[seg]
        depth = 0 if inviter is None else inviter.depth + 1
        hold = self._worst_case(sku, qty, interval, tier, group, depth)
        discounted = self.ledger.fits(hold)
        if not discounted:
            if self.rules.budget_policy == "stop_selling":
                return
            group, hold = False, 0  # the list price: no group, no subsidy
        target = None
        if group:
            assert self.groups is not None
            if link is not None and link.open:
                target = link
            elif u_look < self.behaviour.look_share:
                target = self.groups.pick(sku)
            members = 1 if target is None else len(target.members) + 1
            shares_link = target is None or self.behaviour.members_share
            joiners = self.expected_joiners(target, seg, depth, shares_link)
            d = self.prices.ladder(sku, qty, interval, tier).expected_discount(members, joiners)
        elif discounted:
            d = self.prices.single_share(sku, qty, interval, tier)
        else:
            d = 0.0
        if u_conv >= self.demand[seg].conversion(base, d):
            return
        rec = self.recorder
        mode = "group" if group else "single"
        if not self.stock.reserve(sku, qty):
            rec.turned_away()
            rec.event("sold_out", user, seg, sku, detail=mode)
            return
        self.next_pid += 1
        o = Order(self.next_pid, user, sku, seg, qty, group, interval, discounted, *luck,
                  hold=hold, target=target)
        rec.event("reserve", user, seg, sku, -1 if target is None else target.seq,
                  detail=mode)
        if inviter is not None:
            o.depth, o.root, o.inviter = depth, inviter.root, inviter.pid
        else:
            o.root = o.pid
        self.ledger.hold(hold)
        self.recorder.reserved()
        self.env.process(self._pay_or_lapse(o))

    def _pay_or_lapse(self, o: Order):
        env = self.env
        if o.u_pay < self.segs[o.seg].pay_probability:
            delay = -self.pay_mean[o.seg] * math.log(1.0 - o.u_delay)
            yield env.timeout(min(delay, 0.999 * self.timeout))
            self.recorder.paid()
            self.recorder.event("pay", o.user, o.seg, o.sku)
            if o.group:
                self._join(o)
            else:
                self._settle(o)
                self._share(o, None)
        else:
            yield env.timeout(self.timeout)
            self.recorder.expired()
            self.recorder.event("expire", o.user, o.seg, o.sku)
            self._release(o)

    # -- groups -----------------------------------------------------------------------------

    def _join(self, o: Order) -> None:
        groups, rules = self.groups, self.rules.groups
        assert groups is not None and rules is not None
        g = o.target
        if g is not None and g.open:
            self.recorder.group_joined()
            self.recorder.event("group_join", o.user, o.seg, o.sku, g.seq)
            if groups.join(g, o):
                self._close(g)
            else:
                self._share(o, g)
            return
        g = groups.open(o.sku, self.env.now, rules.window_hours, o)
        o.leader = True
        self.recorder.group_opened()
        self.recorder.event("group_open", o.user, o.seg, o.sku, g.seq)
        self.env.process(self._deadline(g, rules.window_hours))
        self._share(o, g)

    def _deadline(self, g: Group, window: float):
        yield self.env.timeout(window)
        if g.open:
            self._close(g)

    def _close(self, g: Group) -> None:
        rules = self.rules.groups
        assert rules is not None and self.groups is not None
        self.groups.close(g)
        n = len(g.members)
        tier = rules.tier_reached(n)
        rec = self.recorder
        leader = g.members[0]
        if tier is not None:
            rec.event("group_complete", leader.user, leader.seg, g.sku, g.seq,
                      detail=str(tier.size))
        else:
            rec.event("group_fail", leader.user, leader.seg, g.sku, g.seq,
                      detail=rules.failure_policy)
        if tier is not None:
            for o in g.members:
                self._settle(o, members=n)
            outcome = "completed"
        else:
            fallback = rules.failure_policy == "fallback_price"
            for o in g.members:
                if fallback and o.u_fallback < rules.fallback_take_up:
                    self._settle(o, members=n, fallback=True)
                else:
                    self.recorder.refunded()
                    self.recorder.event("refund", o.user, o.seg, o.sku, g.seq)
                    self._release(o)
            outcome = "fallback" if fallback else "refunded"
        self.recorder.group_closed(g, tier.size if tier else 0, outcome, g.members[0].depth)

    # -- settling an order ------------------------------------------------------------------

    def _release(self, o: Order) -> None:
        """A lapsed or refunded reservation: stock back on sale, its hold given back."""
        self.ledger.release(o.hold)
        o.hold = 0
        self.stock.release(o.sku, o.qty)

    def _settle(self, o: Order, members: int | None = None, fallback: bool = False) -> None:
        """A paid order that is final: priced, booked, its hold given back."""
        ledger, rules = self.ledger, self.rules
        ledger.release(o.hold)
        o.hold = 0
        spent_before = ledger.spent
        self.stock.sell(o.sku, o.qty)
        perks = self.perks
        gift = perks.next_paid_gets_gift()
        tier = self.segs[o.seg].member_tier
        if o.discounted:
            q = self.prices.quote(o.sku, o.qty, o.interval, tier, members, fallback, gift=gift)
            for i in perks.pools_left():
                with_coupon = self.prices.quote(o.sku, o.qty, o.interval, tier, members,
                                                fallback, coupon=i, gift=gift)
                if with_coupon.coupon_off > 0:
                    perks.take_coupon(i)
                    q = with_coupon
                    break
            total, coupon_off = q.total, q.coupon_off
            if q.gift:
                ledger.book("gift_cost", perks.gift_fen)
        else:
            q = self.prices.quote(o.sku, o.qty, o.interval, tier)
            total, coupon_off = q.list_total, 0
        ledger.book("gmv", q.list_total)
        ledger.book("revenue", total)
        ledger.book("discount_cost", q.list_total - total - coupon_off)
        ledger.book("coupon_cost", coupon_off)
        ledger.book("goods_cost", to_cents(rules.skus[o.sku].unit_cost) * o.qty)
        self.recorder.kept(o.qty)
        successes = self.trees.bought(o.pid, o.depth, o.root, o.inviter)
        if o.discounted:
            self._rewards(o, members, fallback, successes)
        channel = (0 if o.depth > 0 else 1 if o.group else 2 if coupon_off else
                   3 if o.discounted and self.flash[o.interval] else 4)
        rec = self.recorder
        rec.event("order_kept", o.user, o.seg, o.sku, -1, -1, total / 100, CHANNELS[channel])
        if o.depth > 0 or self.segs[o.seg].name == NEW_SEGMENT:
            rec.acquired()
            goods = to_cents(rules.skus[o.sku].unit_cost) * o.qty
            rec.cohort.add(o.user, o.seg, channel, o.sku, q.list_total, goods,
                           ledger.spent - spent_before)

    def _rewards(self, o: Order, members: int | None, fallback: bool, successes: int) -> None:
        """Referral and leader rewards of a kept, subsidised order."""
        ledger, rules = self.ledger, self.rules
        ref = self.ref
        if o.depth > 0 and ref is not None:
            reward = ref.inviter_reward + ref.invitee_reward
            if ref.bonus_after_invites is not None and successes > ref.bonus_after_invites:
                reward += ref.bonus_per_invite
            if reward:
                ledger.book("reward_cost", to_cents(reward))
        if o.leader and members is not None and not fallback:
            assert rules.groups is not None
            if rules.groups.leader_reward:
                ledger.book("reward_cost", to_cents(rules.groups.leader_reward))

    # -- sharing and invitees ---------------------------------------------------------------

    def _share(self, o: Order, g: Group | None) -> None:
        """A paying shopper may share: a group's link (leaders; members too if the scenario
        says so) or, buying singly, the product's link."""
        ref = self.ref
        if ref is None or o.depth >= ref.depth_cap:
            return
        if g is not None and not o.leader and not self.behaviour.members_share:
            return
        if o.u_share >= self._propensity(o.seg, o.depth):
            return
        gain = 0.0
        if g is not None:
            ladder = self.prices.ladder(o.sku, o.qty, o.interval, self.segs[o.seg].member_tier)
            gain = ladder.gain_to_next(len(g.members))
        mean = ref.invites_per_sharer * (1.0 + self.behaviour.share_effort * gain)
        invites = poisson_quantile(o.u_invites, mean)
        self.recorder.shared(invites)
        self.recorder.event("share", o.user, o.seg, o.sku, -1 if g is None else g.seq,
                            detail=str(invites))
        self.trees.sent(invites)
        mean_delay = ref.invite_delay_minutes / 60
        for _ in range(invites):
            delay = self.u_ref.exponential(mean_delay)
            if self.env.now + delay < self.duration:
                if g is not None:
                    g.pending_invites += 1
                self.env.process(self._invitee(o, g, delay))

    def _invitee(self, inviter: Order, g: Group | None, delay: float):
        """A friend arriving by a link: joins the group it carries if that is still open,
        else lands on the product page like a first-time shopper of the invitee segment."""
        ref = self.ref
        assert ref is not None
        yield self.env.timeout(delay)
        if g is not None:
            g.pending_invites -= 1
        self.recorder.invitee_arrived()
        user = self.next_user
        self.next_user += 1
        u = self.u_inv
        u_conv, u_mode, u_look = u(), u(), u()
        luck = [u(), u(), u(), u(), u()]
        seg = self.invitee_seg
        self.recorder.event("invite_arrival", user, seg, inviter.sku,
                            -1 if g is None else g.seq, inviter.user)
        link = g if g is not None and g.open else None
        group = link is not None or (self.rules.groups is not None
                                     and u_mode < self.segs[seg].group_propensity)
        self._decide(user, seg, inviter.sku, group, self.prices.interval(self.env.now), u_conv,
                     u_look, luck, ref.invitee_conversion, inviter, link)

    # -- the run ----------------------------------------------------------------------------

    def sampler(self, minutes: int, open_out: np.ndarray, stock_out: np.ndarray):
        for m in range(minutes):
            yield self.env.timeout(max(0.0, (m + 1) / 60 - self.env.now))
            open_out[m] = 0 if self.groups is None else self.groups.n_open
            stock_out[m] = self.stock.available

    def run(self) -> RunResult:
        times, candidates = self.arrival_candidates()
        minutes = sale_minutes(self.duration)
        open_groups = np.zeros(minutes)
        stock = np.zeros((minutes, len(self.rules.skus)))
        self.env.process(self.arrivals(candidates))
        rec = self.recorder
        if rec.record:
            self.env.process(self.sampler(minutes, open_groups, stock))
        self.env.run()
        recording = None
        if rec.record:
            def per_minute(ts: list[float] | np.ndarray) -> np.ndarray:
                idx = np.minimum((np.asarray(ts, dtype=float) * 60).astype(np.int64), minutes - 1)
                return np.bincount(idx, minlength=minutes).astype(float)

            recording = Recording(
                arrivals=per_minute(times) + per_minute(rec.invitee_times),
                reservations=per_minute([t for t in rec.reservation_times
                                         if t < self.duration]),
                payments=per_minute([t for t in rec.payment_times if t < self.duration]),
                open_groups=open_groups, stock=stock.sum(axis=1), stock_by_sku=stock,
                groups=list(rec.groups), trees=self.trees.sizes_and_depths(),
                stock_trace=rec.stock_trace)
        kpis = self._kpis(len(times))
        fixed = to_cents(self.rules.fixed_cost)
        after = after_campaign(rec.cohort, self.scenario.audience.after_campaign,
                               [s.name for s in self.segs], self.rules, self.rngs["after"],
                               spend_fen=self.ledger.spent + fixed,
                               profit_fen=round(kpis["profit"] * 100))
        kpis.update(after.kpis)
        log = None
        if rec.events is not None:
            log = EventLog(self.visits, rec.events, after.repurchases, list(rec.cohort.user),
                           list(rec.cohort.seg), list(rec.cohort.sku),
                           [CHANNELS[c] for c in rec.cohort.channel])
        return RunResult(kpis, self.env.processed, list(self.stock.sold_out_at),
                         dict(rec.group_outcomes), recording, after, log)

    def _kpis(self, arrivals: int) -> dict[str, float]:
        c: dict[str, float] = {k: float(v) for k, v in self.recorder.counts.items()}
        ledger, trees = self.ledger, self.trees
        c.update({k: v / 100 for k, v in ledger.totals.items()})
        c["arrivals"] = float(arrivals)
        buyers = c.get("orders_paid", 0.0)
        c["buyers"] = buyers  # one order per person
        visitors = arrivals + c.get("invitee_arrivals", 0.0)
        c["visitor_conversion"] = buyers / visitors if visitors else 0.0
        c["organic_buyers"] = float(trees.organic_buyers)
        c["invited_buyers"] = float(trees.invited_buyers)
        opened = c.get("groups_opened", 0.0)
        c["group_completion_rate"] = c.get("groups_completed", 0.0) / opened if opened else 0.0
        top = 0 if self.rules.groups is None else self.rules.groups.top_size
        reached_top = self.recorder.group_outcomes.get(f"tier {top}", 0)
        c["top_tier_rate"] = reached_top / opened if opened else 0.0
        c["mean_group_size"] = self.recorder.group_members / opened if opened else 0.0
        c["subsidy_spent"] = ledger.spent / 100
        c["subsidy_budget_left"] = ledger.left() / 100
        t = ledger.totals
        gross = t["revenue"] - t["goods_cost"] - t["reward_cost"] - t["gift_cost"]
        fixed = to_cents(self.rules.fixed_cost)
        c["gross_profit"] = gross / 100
        c["profit"] = (gross - fixed) / 100
        spend = (ledger.spent + fixed) / 100
        acquired = c.get("acquired_buyers", 0.0)
        c["cost_per_acquired_buyer"] = spend / acquired if acquired else 0.0
        c["roi"] = c["profit"] / spend if spend else 0.0
        sent = float(trees.invites_sent)
        c["invites_sent"] = sent
        c["invite_conversion"] = trees.invited_buyers / sent if sent else 0.0
        inviting = trees.inviting_buyers
        c["viral_coefficient"] = (sent / inviting * c["invite_conversion"]) if inviting else 0.0
        c["amplification"] = buyers / trees.organic_buyers if trees.organic_buyers else 0.0
        c["invited_buyer_share"] = trees.invited_buyers / buyers if buyers else 0.0
        sizes = trees.sizes_and_depths()
        c["mean_referral_tree_size"] = float(np.mean([s for s, _ in sizes])) if sizes else 0.0
        c["max_referral_depth"] = float(max((d for _, d in sizes), default=0))
        c["skus_sold_out"] = float(sum(h is not None for h in self.stock.sold_out_at))
        c["stock_left"] = float(sum(self.stock.available))
        return {k: float(c.get(k, 0.0)) for k in KPI_NAMES if k not in AFTER_KPIS}


def simulate_once(scenario: Scenario, seed: int | np.random.SeedSequence, *,
                  record: bool = False, trace: bool = False, events: bool = False) -> RunResult:
    """Simulate one replication of the campaign. The same seed gives the same numbers.

    `record=True` also keeps the per-minute series, group records and referral trees the
    output files need; `trace=True` records that and the stock after every movement;
    `events=True` keeps the event log (`sim.events.write_events` writes it)."""
    return _Campaign(scenario, seed, record, trace, events).run()
