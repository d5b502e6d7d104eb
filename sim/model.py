"""The SimPy model of one campaign run (one replication).

Time is in hours from the sale start. The modelling choices (all documented in
docs/simulation.md):

- Arrivals: a non-homogeneous Poisson process with the scenario's piecewise-constant rate,
  sampled exactly: per piece a Poisson count, then sorted uniform times.
- Each arrival is one shopper (one person). Segment by the segments' shares; SKU uniformly;
  group or single by the segment's `group_propensity` (single only without `[campaign.groups]`).
- Conversion: p = min(1, base_conversion * (1 + price_sensitivity * d)), d the share off the
  list price the shopper sees (group buyers: the smallest tier; others: the best single-buyer
  price at that hour; coupons are not shown). Once the subsidy budget is spent, d = 0.
  Most arrivals do not convert, so conversion is decided with one uniform per arrival before
  the event loop: an arrival whose uniform is above its discounted p can never convert (the
  budget only lowers p), so only the rest become SimPy events (exact thinning, same uniforms).
- A converting shopper wants min(segment quantity, per_user_limit) units. No stock: turned
  away. Else the units are reserved; with `pay_probability` the shopper pays after an
  exponential delay (mean PAY_DELAY_MINUTES, capped just below the payment timeout), otherwise
  the reservation expires at the payment timeout and the units go back on sale.
- Groups: a paying group buyer joins the oldest open group of the SKU (open groups are never
  full), else opens one as leader. A group closes when it reaches the top tier or when its
  window ends; the tier reached prices every member's order. Below the smallest tier it fails:
  `refund` releases the units; `fallback_price` keeps each member with `fallback_take_up`, at
  the fallback price, and refunds the others. The leader reward is paid on completion.
- Referral: a buyer whose order is kept shares with its share propensity, sending
  Poisson(invites_per_sharer) invites; each invitee arrives after an exponential delay (if the
  sale is still on), converts with `invitee_conversion` and then behaves like the invitee
  segment. Invitees deeper than `depth_cap` are not generated. Rewards are paid on the
  invitee's first kept order (each person places one order).
- Money (yuan): gmv = list value of kept orders; discount_cost = list - price before coupons;
  coupon_cost = coupon value used; revenue = what buyers paid; reward_cost = referral, fission
  and leader rewards; gift_cost = first-N gifts; subsidy_spent = discount + coupon + reward +
  gift, summed in integer fen. A discounted reservation sets its expected subsidy aside until
  it is paid or released; once spent + set aside reaches `subsidy_budget`, later shoppers see
  and pay list price and no more rewards, coupons or gifts are given (orders already reserved
  keep their price).
- Stock per SKU: available + reserved + sold == initial stock after every movement.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from campaign.pricing import to_cents
from campaign.scenario import Scenario
from sim.prices import PriceBook

KPI_NAMES: tuple[str, ...] = (
    "arrivals", "invitee_arrivals", "buyers", "orders_paid", "units_sold", "turned_away",
    "expired_reservations", "groups_opened", "groups_completed", "groups_failed",
    "group_completion_rate", "gmv", "revenue", "goods_cost", "discount_cost", "reward_cost",
    "coupon_cost", "gift_cost", "subsidy_spent", "gross_profit", "profit", "new_buyers",
    "cost_per_new_buyer", "roi", "k_factor", "mean_referral_tree_size", "max_referral_depth",
    "sell_out_hour", "stock_left",
)

PAY_DELAY_MINUTES = 3.0
"""Mean delay between reserving and paying, for shoppers who pay."""

MONEY = ("gmv", "revenue", "goods_cost", "discount_cost", "reward_cost", "coupon_cost",
         "gift_cost")

NEW_SEGMENT = "new"
"""Buyers of the segment with this name count as newly acquired (invitees always do)."""

STREAMS = ("arrivals", "segments", "skus", "modes", "conversion", "payment", "referral",
           "fallback", "invitees")
"""One random stream per stochastic process, spawned in this order. For common random numbers
every first-time arrival draws its payment, sharing and fallback luck up front, by arrival
index, so a change that makes one more shopper convert does not shift everybody else's luck."""


@dataclass
class Recording:
    """What a recorded run keeps for the output files (per-minute series over the sale)."""

    arrivals: np.ndarray
    """Per minute: first-time arrivals plus invitee arrivals."""
    reservations: np.ndarray
    payments: np.ndarray
    open_groups: np.ndarray
    """Open groups at the end of each minute."""
    stock: np.ndarray
    """Units available (all SKUs) at the end of each minute."""
    stock_by_sku: np.ndarray
    """Units available per SKU at the end of each minute: shape (minutes, SKUs)."""
    sku_sell_out: list[float | None]
    """Per SKU, the hour its available stock first reached 0 (None: never)."""
    groups: list[tuple[float, float, int, int, str]]
    """(opened hour, closed hour, members, tier size reached or 0, outcome) per group."""
    trees: list[tuple[int, int]]
    """(buyers, max depth) per referral tree, rooted at each first-time buyer."""
    stock_trace: list[tuple[float, int, int, int, int]]
    """(hour, sku, available, reserved, sold) after every stock movement; only kept with
    `trace=True` (it is long), else empty."""


@dataclass
class RunResult:
    """One replication: every KPI, the SimPy event count and, if asked, the recording."""

    kpis: dict[str, float]
    events: int
    recording: Recording | None = None


class _CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts processed events (the benchmark reports them)."""

    def __init__(self) -> None:
        super().__init__()
        self.processed = 0

    def step(self) -> None:
        self.processed += 1
        super().step()


class _Uniforms:
    """Uniforms from one generator, drawn in blocks (scalar draws are slow)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self.rng.random(1024).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]

    def exponential(self, mean: float) -> float:
        return -mean * math.log(1.0 - self())


@dataclass(slots=True, eq=False)
class _Order:
    pid: int
    sku: int
    seg: int
    qty: int
    group: bool
    interval: int
    discounted: bool
    u_pay: float
    u_delay: float
    u_share: float
    invites: int
    u_fallback: float
    earmark: int = 0
    """Subsidy (fen) set aside for this order while it is reserved, so the budget holds."""
    depth: int = 0
    root: int = -1
    inviter: int = -1


@dataclass(eq=False)
class _Group:
    sku: int
    opened: float
    members: list[_Order] = field(default_factory=list)
    open: bool = True


def sale_minutes(duration_hours: float) -> int:
    """Minutes in a sale of this many hours (a started minute counts): the length of every
    per-minute series, timeseries.csv and arrivals.csv alike."""
    return max(1, math.ceil(duration_hours * 60 - 1e-9))


def child_seed(seed: int | np.random.SeedSequence, k: int) -> np.random.SeedSequence:
    """Child k of `seed`: `SeedSequence(seed).spawn(n)[k]` for any n > k, the same one however
    often this is called (unlike `SeedSequence.spawn`, which moves on at every call). Every
    replication seed in the lab comes from here, so runs share common random numbers."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k),
                                  pool_size=ss.pool_size)


def child_seeds(seed: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first n children of `seed` (see `child_seed`)."""
    return [child_seed(seed, k) for k in range(n)]


def sample_arrivals(pieces: list[tuple[float, float, float]],
                    rng: np.random.Generator) -> np.ndarray:
    """Exact NHPP arrival times for a piecewise-constant rate: Poisson count, sorted uniforms."""
    parts = []
    for lo, hi, rate in pieces:
        n = rng.poisson(rate * (hi - lo)) if rate > 0 else 0
        parts.append(lo + (hi - lo) * np.sort(rng.random(n)))
    return np.concatenate(parts) if parts else np.zeros(0)


class _Campaign:
    """State and processes of one run."""

    def __init__(self, scenario: Scenario, seed: int | np.random.SeedSequence,
                 record: bool, trace: bool) -> None:
        if scenario.audience is None:
            raise ValueError("the scenario has no [audience] section, so it cannot be simulated")
        self.sc = scenario
        rules = self.rules = scenario.campaign
        self.aud = scenario.audience
        self.record = record or trace
        self.trace = trace
        self.env = _CountingEnvironment()
        self.prices = PriceBook(rules)
        self.rngs = {name: np.random.default_rng(s)
                     for name, s in zip(STREAMS, child_seeds(seed, len(STREAMS)), strict=True)}
        self.u_ref = _Uniforms(self.rngs["referral"])
        self.u_inv = _Uniforms(self.rngs["invitees"])
        self.duration = rules.duration_hours
        self.timeout = rules.payment_timeout_minutes / 60
        self.pay_mean = min(PAY_DELAY_MINUTES / 60, self.timeout / 3)
        self.segs = self.aud.segments
        self.qty = [min(s.quantity, rules.per_user_limit) for s in self.segs]
        ref = self.aud.referral
        self.ref = ref
        self.invitee_seg = 0 if ref is None or ref.invitee_segment is None else \
            [s.name for s in self.segs].index(ref.invitee_segment)
        self.budget = None if rules.subsidy_budget is None else to_cents(rules.subsidy_budget)
        # stock per SKU: available + reserved + sold == initial, always
        self.initial = [s.stock for s in rules.skus]
        self.available = list(self.initial)
        self.reserved = [0] * len(self.initial)
        self.sold = [0] * len(self.initial)
        self.open_groups: list[deque[_Group]] = [deque() for _ in rules.skus]
        self.n_open = 0
        self.c = dict.fromkeys(KPI_NAMES, 0.0)
        # money is summed in integer fen, as priced, and turned into yuan at the end
        self.fen = dict.fromkeys(MONEY, 0)
        self.subsidy = 0
        self.committed = 0
        self.paid_seq = 0
        self.coupon_left = [c.pool for c in rules.coupons]
        self.next_pid = 0
        self.trees: dict[int, list[int]] = {}
        self.successes: dict[int, int] = {}
        self.sell_out: float | None = None if any(self.available) else 0.0
        self.sku_sell_out: list[float | None] = [None if n else 0.0 for n in self.available]
        self.invitee_times: list[float] = []
        self.reservation_times: list[float] = []
        self.payment_times: list[float] = []
        self.group_log: list[tuple[float, float, int, int, str]] = []
        self.stock_trace: list[tuple[float, int, int, int, int]] = []

    # -- budget and stock -------------------------------------------------------------------

    def exhausted(self) -> bool:
        return self.budget is not None and self.subsidy + self.committed >= self.budget

    def _earmark(self, o: _Order) -> None:
        """Set aside the subsidy a discounted reservation expects (group buyers: the smallest
        tier), so shoppers in the middle of paying cannot overrun the budget."""
        if o.discounted and self.budget is not None:
            groups = self.rules.groups
            members = groups.min_size if o.group and groups is not None else None
            q = self.prices.quote(o.sku, o.qty, o.interval, self.segs[o.seg].member_tier,
                                  members)
            o.earmark = q.discount
            self.committed += o.earmark

    def _unearmark(self, o: _Order) -> None:
        self.committed -= o.earmark
        o.earmark = 0

    def _trace(self, sku: int) -> None:
        if self.trace:
            self.stock_trace.append((self.env.now, sku, self.available[sku],
                                     self.reserved[sku], self.sold[sku]))

    def _release(self, o: _Order) -> None:
        self._unearmark(o)
        self.reserved[o.sku] -= o.qty
        self.available[o.sku] += o.qty
        self._trace(o.sku)

    # -- arrivals ---------------------------------------------------------------------------

    def arrival_candidates(self) -> tuple[np.ndarray, list[tuple]]:
        """All arrival times, and for those that convert at least while the budget lasts:
        (time, segment, sku, group, interval, conversion uniform, *their luck for `_Order`)."""
        r = self.rngs
        times = sample_arrivals(self.sc.arrival_rate_pieces(), r["arrivals"])
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
        table = np.empty((n_sku, len(self.segs), 2, len(starts)))
        for k in range(n_sku):
            for j, s in enumerate(self.segs):
                for g in (0, 1):
                    for i in range(len(starts)):
                        d = self.prices.discount_share(k, self.qty[j], i, s.member_tier, bool(g))
                        table[k, j, g, i] = min(1.0, s.base_conversion
                                                * (1 + s.price_sensitivity * d))
        u = r["conversion"].random(n)
        keep = u < table[sku, seg, group.astype(np.int64), interval]
        u_pay, u_delay = r["payment"].random((2, n))
        u_share = r["referral"].random(n)
        invites = r["referral"].poisson(self.ref.invites_per_sharer if self.ref else 0.0, n)
        u_fallback = r["fallback"].random(n)
        cols = (times[keep], seg[keep], sku[keep], group[keep], interval[keep], u[keep],
                u_pay[keep], u_delay[keep], u_share[keep], invites[keep], u_fallback[keep])
        return times, list(zip(*(c.tolist() for c in cols), strict=True))

    def arrivals(self, candidates: list[tuple]):
        env, segs = self.env, self.segs
        for t, seg, sku, group, interval, u, *luck in candidates:
            yield env.timeout(t - env.now)
            discounted = not self.exhausted()
            if not discounted and u >= segs[seg].base_conversion:
                continue  # without the discount this shopper would not buy
            if self.available[sku] < self.qty[seg]:
                self.c["turned_away"] += 1  # sold out: no process needed
                continue
            self.next_pid += 1
            o = _Order(self.next_pid, sku, seg, self.qty[seg], group and discounted, interval,
                       discounted, *luck)
            env.process(self.shopper(o))

    # -- one converting shopper -------------------------------------------------------------

    def shopper(self, o: _Order):
        env = self.env
        if self.available[o.sku] < o.qty:
            self.c["turned_away"] += 1
            return
        self.available[o.sku] -= o.qty
        self.reserved[o.sku] += o.qty
        self._trace(o.sku)
        self._earmark(o)
        if not self.available[o.sku]:
            if self.sku_sell_out[o.sku] is None:
                self.sku_sell_out[o.sku] = env.now
            if self.sell_out is None and not any(self.available):
                self.sell_out = env.now
        if self.record:
            self.reservation_times.append(env.now)
        if o.u_pay < self.segs[o.seg].pay_probability:
            delay = -self.pay_mean * math.log(1.0 - o.u_delay)
            yield env.timeout(min(delay, 0.999 * self.timeout))
            if self.record:
                self.payment_times.append(env.now)
            if o.group:
                self._join_group(o)
            else:
                self._keep(o)
        else:
            yield env.timeout(self.timeout)
            self.c["expired_reservations"] += 1
            self._release(o)

    # -- groups -----------------------------------------------------------------------------

    def _join_group(self, o: _Order) -> None:
        rules = self.rules.groups
        assert rules is not None
        queue = self.open_groups[o.sku]
        if queue:
            g = queue[0]
            g.members.append(o)
            if len(g.members) >= rules.top_size:
                self._close(g)
        else:
            g = _Group(o.sku, self.env.now, [o])
            queue.append(g)
            self.n_open += 1
            self.c["groups_opened"] += 1
            self.env.process(self._group_deadline(g, rules.window_hours))

    def _group_deadline(self, g: _Group, window: float):
        yield self.env.timeout(window)
        if g.open:
            self._close(g)

    def _close(self, g: _Group) -> None:
        rules = self.rules.groups
        assert rules is not None
        g.open = False
        self.open_groups[g.sku].remove(g)
        self.n_open -= 1
        n = len(g.members)
        tier = rules.tier_reached(n)
        if tier is not None:
            self.c["groups_completed"] += 1
            for o in g.members:
                self._keep(o, members=n)
            if rules.leader_reward and not self.exhausted():
                self._reward(to_cents(rules.leader_reward))
            outcome = "completed"
        else:
            self.c["groups_failed"] += 1
            fallback = rules.failure_policy == "fallback_price"
            for o in g.members:
                if fallback and o.u_fallback < rules.fallback_take_up:
                    self._keep(o, members=n, fallback=True)
                else:
                    self._release(o)
            outcome = "fallback" if fallback else "refunded"
        if self.record:
            self.group_log.append((g.opened, self.env.now, n, tier.size if tier else 0, outcome))

    # -- a kept (paid and final) order ------------------------------------------------------

    def _reward(self, fen: int) -> None:
        self.fen["reward_cost"] += fen
        self.subsidy += fen

    def _keep(self, o: _Order, members: int | None = None, fallback: bool = False) -> None:
        c, fen, sku = self.c, self.fen, self.rules.skus[o.sku]
        self._unearmark(o)
        self.reserved[o.sku] -= o.qty
        self.sold[o.sku] += o.qty
        self._trace(o.sku)
        self.paid_seq += 1
        tier = self.segs[o.seg].member_tier
        if o.discounted:
            live = not self.exhausted()
            gift = live and self.rules.first_orders_gift is not None \
                and self.paid_seq <= self.rules.first_orders_gift.count
            q = self.prices.quote(o.sku, o.qty, o.interval, tier, members, fallback, gift=gift)
            if live:
                for i, left in enumerate(self.coupon_left):
                    if left > 0:
                        with_coupon = self.prices.quote(o.sku, o.qty, o.interval, tier, members,
                                                        fallback, coupon=i, gift=gift)
                        if with_coupon.coupon_off > 0:
                            self.coupon_left[i] -= 1
                            q = with_coupon
                            break
            total, coupon_off = q.total, q.coupon_off
            if q.gift:
                assert self.rules.first_orders_gift is not None
                gift_cost = to_cents(self.rules.first_orders_gift.gift_cost)
                fen["gift_cost"] += gift_cost
                self.subsidy += gift_cost
        else:
            q = self.prices.quote(o.sku, o.qty, o.interval, tier)
            total, coupon_off = q.list_total, 0
        discount = q.list_total - total - coupon_off
        c["orders_paid"] += 1
        c["units_sold"] += o.qty
        fen["gmv"] += q.list_total
        fen["revenue"] += total
        fen["discount_cost"] += discount
        fen["coupon_cost"] += coupon_off
        fen["goods_cost"] += to_cents(sku.unit_cost) * o.qty
        self.subsidy += discount + coupon_off
        if o.depth == 0:
            self.trees[o.pid] = [1, 0]
            o.root = o.pid
            if self.segs[o.seg].name == NEW_SEGMENT:
                c["new_buyers"] += 1
        else:
            self._invitee_bought(o)
        self._share(o)

    # -- referral ---------------------------------------------------------------------------

    def _invitee_bought(self, o: _Order) -> None:
        ref = self.ref
        assert ref is not None
        self.c["new_buyers"] += 1
        tree = self.trees[o.root]
        tree[0] += 1
        tree[1] = max(tree[1], o.depth)
        n = self.successes[o.inviter] = self.successes.get(o.inviter, 0) + 1
        if not self.exhausted():
            reward = ref.inviter_reward + ref.invitee_reward
            if ref.bonus_after_invites is not None and n > ref.bonus_after_invites:
                reward += ref.bonus_per_invite
            if reward:
                self._reward(to_cents(reward))

    def _share(self, o: _Order) -> None:
        ref = self.ref
        if ref is None or o.depth >= ref.depth_cap:
            return
        propensity = self.segs[o.seg].share_propensity
        if o.depth > 0 and ref.invitee_share_propensity is not None:
            propensity = ref.invitee_share_propensity
        if o.u_share >= propensity:
            return
        mean_delay = ref.invite_delay_minutes / 60
        for _ in range(o.invites):
            delay = self.u_ref.exponential(mean_delay)
            if self.env.now + delay < self.duration:
                self.env.process(self._invitee(o, delay))

    def _invitee(self, inviter: _Order, delay: float):
        ref = self.ref
        assert ref is not None
        yield self.env.timeout(delay)
        self.c["invitee_arrivals"] += 1
        if self.record:
            self.invitee_times.append(self.env.now)
        u = self.u_inv
        u_conv, u_mode, u_sku = u(), u(), u()
        if u_conv >= ref.invitee_conversion:
            return
        seg = self.invitee_seg
        discounted = not self.exhausted()
        group = (discounted and self.rules.groups is not None
                 and u_mode < self.segs[seg].group_propensity)
        n_sku = len(self.rules.skus)
        self.next_pid += 1
        o = _Order(self.next_pid, min(int(u_sku * n_sku), n_sku - 1), seg, self.qty[seg],
                   group, self.prices.interval(self.env.now), discounted, u(), u(), u(),
                   int(self.rngs["invitees"].poisson(ref.invites_per_sharer)), u())
        o.depth, o.root, o.inviter = inviter.depth + 1, inviter.root, inviter.pid
        yield from self.shopper(o)

    # -- the run ----------------------------------------------------------------------------

    def sampler(self, minutes: int, open_out: np.ndarray, stock_out: np.ndarray):
        for m in range(minutes):
            yield self.env.timeout(max(0.0, (m + 1) / 60 - self.env.now))
            open_out[m] = self.n_open
            stock_out[m] = self.available

    def run(self) -> RunResult:
        times, candidates = self.arrival_candidates()
        minutes = sale_minutes(self.duration)
        open_groups = np.zeros(minutes)
        stock = np.zeros((minutes, len(self.available)))
        self.env.process(self.arrivals(candidates))
        if self.record:
            self.env.process(self.sampler(minutes, open_groups, stock))
        self.env.run()
        self.c["arrivals"] = float(len(times))
        kpis = self._kpis()
        recording = None
        if self.record:
            def per_minute(ts: list[float] | np.ndarray) -> np.ndarray:
                idx = np.minimum((np.asarray(ts, dtype=float) * 60).astype(np.int64), minutes - 1)
                return np.bincount(idx, minlength=minutes).astype(float)

            recording = Recording(
                arrivals=per_minute(times) + per_minute(self.invitee_times),
                reservations=per_minute([t for t in self.reservation_times
                                         if t < self.duration]),
                payments=per_minute([t for t in self.payment_times if t < self.duration]),
                open_groups=open_groups, stock=stock.sum(axis=1), stock_by_sku=stock,
                sku_sell_out=self.sku_sell_out,
                groups=self.group_log,
                trees=[(s, d) for s, d in self.trees.values()], stock_trace=self.stock_trace)
        return RunResult(kpis, self.env.processed, recording)

    def _kpis(self) -> dict[str, float]:
        c = self.c
        for k, v in self.fen.items():
            c[k] = v / 100
        c["buyers"] = c["orders_paid"]  # one order per person
        c["subsidy_spent"] = self.subsidy / 100
        opened = c["groups_opened"]
        c["group_completion_rate"] = c["groups_completed"] / opened if opened else 0.0
        f = self.fen
        gross = f["revenue"] - f["goods_cost"] - f["reward_cost"] - f["gift_cost"]
        fixed = to_cents(self.rules.fixed_cost)
        c["gross_profit"] = gross / 100
        c["profit"] = (gross - fixed) / 100
        spend = (self.subsidy + fixed) / 100
        c["cost_per_new_buyer"] = spend / c["new_buyers"] if c["new_buyers"] else 0.0
        c["roi"] = c["profit"] / spend if spend else 0.0
        invitee_buyers = sum(s - 1 for s, _ in self.trees.values())
        c["k_factor"] = invitee_buyers / c["buyers"] if c["buyers"] else 0.0
        sizes = [s for s, _ in self.trees.values()]
        c["mean_referral_tree_size"] = float(np.mean(sizes)) if sizes else 0.0
        c["max_referral_depth"] = float(max((d for _, d in self.trees.values()), default=0))
        c["sell_out_hour"] = self.sell_out if self.sell_out is not None else self.duration
        c["stock_left"] = float(sum(self.available))
        return {k: float(c[k]) for k in KPI_NAMES}


def simulate_once(scenario: Scenario, seed: int | np.random.SeedSequence, *,
                  record: bool = False, trace: bool = False) -> RunResult:
    """Simulate one replication of the campaign. The same seed gives the same numbers.

    `record=True` also keeps the per-minute series, group outcomes and referral trees the
    output files need; `trace=True` records that and the stock after every movement."""
    return _Campaign(scenario, seed, record, trace).run()
