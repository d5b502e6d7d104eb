"""Fitting a scenario's audience and behaviour to an event log (docs/calibration.md).

What is fitted, each with a 95% interval (`Estimate`):

- arrivals per phase (or per hour of an `hourly_curve`): Poisson maximum likelihood, exact
  interval; segment shares: multinomial maximum likelihood, Wilson intervals;
- per segment: `pay_probability` (binomial), `pay_delay_minutes` (exponential, payments cut
  off at the timeout counted as censored), `share_propensity` (binomial over the buyers who
  could share);
- referral: `invites_per_sharer` (Poisson with each sharer's known share effort as exposure),
  `invite_delay_minutes` (exponential; invites that would land after the sale censored),
  `invitee_share_propensity` if the base sets it;
- `fallback_take_up` (binomial over members of failed groups);
- per segment `base_conversion` and `group_propensity`, `invitee_conversion` and
  `look_share`: their effect goes through the demand shape and the expected price a shopper
  sees, which depends on the model's state (open groups, expected joiners, budget), so they
  are fitted *given the base scenario's shapes and prices*: the model, run at the current
  estimates, gives the mean lift each kind of shopper sees, and the log's conversions divided
  by the lift give the parameters (a fixed point, `iterations` rounds); their intervals add the
  simulation's own noise;
- after the campaign, per segment of acquired buyers: `retention`, `churn`, `repurchase`
  (maximum likelihood of the hidden active/lapsed model over each buyer's months with and
  without a repurchase, scipy.optimize; intervals from the Hessian, scipy.differentiate), and
  `order_value` when the base sets one.

Held fixed from the base scenario: the campaign rules and prices, demand shapes, price
sensitivities, reference discounts, member tiers, quantities, `share_effort`,
`members_share`, the choice rule, `depth_cap`, rewards, the after-campaign channel
multipliers, margin and discount rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import optimize, special
from scipy.differentiate import hessian

from campaign.audience import CHANNELS
from campaign.scenario import Scenario, apply_overrides, parse_scenario, split_key_path
from sim.calibrate.estimate import (
    Estimate,
    exponential_mean,
    log_normal_ci,
    logit_ci,
    poisson_rate,
    proportion,
)
from sim.calibrate.log import EventLogError, Events, events_from_log
from sim.model import PAY_DELAY_MINUTES, child_seed, simulate_once
from sim.model.campaign import NEW_SEGMENT
from sim.model.prices import PriceBook

Say = Callable[[str], None]


@dataclass
class Calibration:
    """What `calibrate` found: the estimates, the fitted scenario (data and parsed), the
    simulated runs of the fitted scenario (for the fit report), and notes for people."""

    estimates: list[Estimate]
    data: dict[str, Any]
    scenario: Scenario
    simulated: list[Events] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ints(x: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(x, minlength=n)[:n] if len(x) else np.zeros(n, dtype=np.int64)


# -- checking the log against the base scenario ----------------------------------------------


def match_names(ev: Events, scenario: Scenario, source: str) -> Events:
    """Recode the log's segments and SKUs to the scenario's order; EventLogError naming the
    first line of each name the scenario does not have."""
    assert scenario.audience is not None
    problems = []
    for attr, names, what in (("segment", [s.name for s in scenario.audience.segments],
                               "segment"),
                              ("sku", [s.id for s in scenario.campaign.skus], "SKU")):
        logged = getattr(ev, attr + "s")
        lookup = np.array([names.index(x) if x in names else -2 for x in logged] + [-1])
        codes = getattr(ev, attr)
        new = lookup[codes]  # code -1 (empty) maps to the appended -1
        for j, name in enumerate(logged):
            if lookup[j] == -2:
                line = int(np.flatnonzero(codes == j)[0]) + 2
                problems.append(f"line {line}: {what} {name!r} is not in the base scenario; "
                                f"its {what}s are {', '.join(names)}")
        setattr(ev, attr, new)
        setattr(ev, attr + "s", names)
    if problems:
        raise EventLogError(source, problems)
    return ev


# -- arrivals and segments --------------------------------------------------------------------


def fit_arrivals(ev: Events, scenario: Scenario) -> list[Estimate]:
    """Visits per phase (or per hour) ÷ its hours: Poisson maximum likelihood."""
    aud = scenario.audience
    assert aud is not None
    t = ev.time[ev.of("visit")]
    out = []
    if aud.arrivals_per_hour is not None:
        for name, lo, hi in scenario.campaign.phase_bounds():
            n = int(np.count_nonzero((t >= lo) & (t < hi)))
            out.append(Estimate(f"audience.arrivals_per_hour.{name}",
                                *poisson_rate(n, (hi - lo) * ev.logs),
                                n, "Poisson MLE: visits ÷ hours", aud.arrivals_per_hour[name]))
    else:
        for h, (lo, hi, rate) in enumerate(scenario.arrival_rate_pieces()):
            n = int(np.count_nonzero((t >= lo) & (t < hi)))
            out.append(Estimate(f"audience.hourly_curve[{h}]",
                                *poisson_rate(n, (hi - lo) * ev.logs), n,
                                "Poisson MLE: visits ÷ hours", rate))
    return out


def fit_shares(ev: Events, scenario: Scenario) -> list[Estimate]:
    """Each segment's share of first-time visits (multinomial MLE, Wilson intervals)."""
    segs = scenario.audience.segments  # type: ignore[union-attr]
    counts = _ints(ev.segment[ev.of("visit")], len(segs))
    total = int(counts.sum())
    if not total:
        return []
    return [Estimate(f"audience.segments[{i}].share", *proportion(int(c), total), total,
                     "share of visits", s.share) for i, (s, c) in enumerate(zip(segs, counts,
                                                                                strict=True))]


# -- paying -----------------------------------------------------------------------------------


def _first_time(ev: Events, kind: str) -> np.ndarray:
    """Per user, the time of its first event of this kind (nan: none)."""
    out = np.full(ev.n_users, np.nan)
    rows = ev.of(kind)[::-1]  # the earliest written last
    out[ev.user[rows]] = ev.time[rows]
    return out


def fit_payment(ev: Events, scenario: Scenario) -> list[Estimate]:
    """Per segment: share of reservations paid; mean delay to pay (exponential; payments cut
    off by the model's timeout cap are censored)."""
    segs = scenario.audience.segments  # type: ignore[union-attr]
    reserve, pay = ev.of("reserve"), ev.of("pay")
    reserved_at = _first_time(ev, "reserve")
    timeout = scenario.campaign.payment_timeout_minutes / 60
    out = []
    paid_users = np.zeros(ev.n_users, dtype=bool)
    paid_users[ev.user[pay]] = True
    for i, s in enumerate(segs):
        r = reserve[ev.segment[reserve] == i]
        if len(r):
            k = int(paid_users[ev.user[r]].sum())
            out.append(Estimate(f"audience.segments[{i}].pay_probability",
                                *proportion(k, len(r)), len(r), "paid ÷ reserved",
                                s.pay_probability))
        p = pay[ev.segment[pay] == i]
        delay = ev.time[p] - reserved_at[ev.user[p]]
        delay = delay[np.isfinite(delay)]
        censored = delay >= 0.999 * timeout - 1e-6
        events = int((~censored).sum())
        if events:
            mean, lo, hi = exponential_mean(float(delay.sum()) * 60, events)
            default = min(PAY_DELAY_MINUTES, timeout * 60 / 3)
            out.append(Estimate(f"audience.segments[{i}].pay_delay_minutes", mean, lo, hi,
                                events, "exponential MLE (censored at the timeout)",
                                s.pay_delay_minutes if s.pay_delay_minutes else default))
    return out


# -- referral trees ----------------------------------------------------------------------------


def depths(ev: Events, cap: int) -> np.ndarray:
    """Per user: 0 for a first-time visitor, the inviter's depth + 1 for an invitee (counted
    up to cap + 1)."""
    inviter_of = np.full(ev.n_users, -1)
    arrive = ev.of("invite_arrival")
    inviter_of[ev.user[arrive]] = ev.inviter[arrive]
    depth = np.zeros(ev.n_users, dtype=np.int64)
    node = inviter_of.copy()
    for _ in range(cap + 1):
        has = node >= 0
        if not has.any():
            break
        depth[has] += 1
        node = np.where(has, inviter_of[np.maximum(node, 0)], -1)
    return depth


def _members_when_sharing(ev: Events) -> np.ndarray:
    """Per user: the paid members of its group right after it opened or joined it (0: none)."""
    out = np.zeros(ev.n_users, dtype=np.int64)
    out[ev.user[ev.of("group_open")]] = 1
    joins = ev.of("group_join")
    if len(joins):
        g = ev.group[joins]
        order = np.lexsort((joins, g))
        rank = np.empty(len(joins), dtype=np.int64)
        gs = g[order]
        starts = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
        pos = np.arange(len(gs)) - np.repeat(starts, np.diff(np.r_[starts, len(gs)]))
        rank[order] = pos
        out[ev.user[joins]] = rank + 2  # the leader is member 1
    return out


def fit_sharing(ev: Events, scenario: Scenario) -> list[Estimate]:
    """Share propensity per segment, invites per sharer, the invite delay (and the invitees'
    own share propensity when the base sets one)."""
    aud, rules = scenario.audience, scenario.campaign
    assert aud is not None
    ref = aud.referral
    if ref is None:
        return []
    segs = aud.segments
    behaviour = aud.groups
    members_share = behaviour is not None and behaviour.members_share
    depth = depths(ev, ref.depth_cap)
    mode = np.zeros(ev.n_users, dtype=bool)  # True: a group order
    reserve = ev.of("reserve")
    mode[ev.user[reserve]] = ev.detail[reserve] == "group"
    # who could share: single buyers when they pay; group leaders; members (if they share)
    # unless their joining filled the group's top tier (it closes at once)
    pay = ev.of("pay")
    eligible = np.zeros(ev.n_users, dtype=bool)
    eligible[ev.user[pay[~mode[ev.user[pay]]]]] = True
    eligible[ev.user[ev.of("group_open")]] = True
    if members_share and rules.groups is not None:
        joins = ev.of("group_join")
        eligible[ev.user[joins]] = True
        top = str(rules.groups.top_size)
        done = ev.of("group_complete")
        done = done[ev.detail[done] == top]
        last_join = np.full(int(ev.group.max(initial=-1)) + 1, -1)
        np.maximum.at(last_join, ev.group[joins], joins)
        filled = last_join[ev.group[done]]
        eligible[ev.user[filled[filled >= 0]]] = False
    eligible &= depth < ref.depth_cap
    share = ev.of("share")
    shared = np.zeros(ev.n_users, dtype=bool)
    shared[ev.user[share]] = True
    seg_of = np.full(ev.n_users, -1)
    seg_of[ev.user[pay]] = ev.segment[pay]
    own = ref.invitee_share_propensity is not None
    out = []
    for i, s in enumerate(segs):
        pool = eligible & (seg_of == i) & ((depth == 0) if own else True)
        n = int(pool.sum())
        if n:
            out.append(Estimate(f"audience.segments[{i}].share_propensity",
                                *proportion(int((pool & shared).sum()), n), n,
                                "shared ÷ buyers who could share", s.share_propensity))
    if own:
        pool = eligible & (depth > 0)
        if pool.any():
            out.append(Estimate("audience.referral.invitee_share_propensity",
                                *proportion(int((pool & shared).sum()), int(pool.sum())),
                                int(pool.sum()), "shared ÷ invitees who could share",
                                ref.invitee_share_propensity))
    if not len(share):
        return out
    try:
        invites = np.array([int(d) for d in ev.detail[share]])
    except ValueError:
        return out  # no invite counts: invites per sharer and the delay stay the base's
    # exposure: 1 + share_effort × the discount still to be won at the group's next tier
    effort = behaviour.share_effort if behaviour is not None else 2.0
    prices = PriceBook(rules)
    members = _members_when_sharing(ev)
    grouped = ev.group[share] >= 0
    exposure = np.ones(len(share))
    if rules.groups is not None and effort:
        for j in np.flatnonzero(grouped):
            row = share[j]
            seg = segs[ev.segment[row]]
            ladder = prices.ladder(int(ev.sku[row]), min(seg.quantity, rules.per_user_limit),
                                   prices.interval(float(ev.time[row])), seg.member_tier)
            exposure[j] += effort * ladder.gain_to_next(int(members[ev.user[row]]))
    total = int(invites.sum())
    out.append(Estimate("audience.referral.invites_per_sharer",
                        *poisson_rate(total, float(exposure.sum())), len(share),
                        "Poisson MLE with each share's effort as exposure",
                        ref.invites_per_sharer))
    # invite delay: arrivals seen, and invites that would have landed after the sale
    shared_at = np.full(ev.n_users, np.nan)
    shared_at[ev.user[share]] = ev.time[share]
    arrive = ev.of("invite_arrival")
    arrive = arrive[ev.inviter[arrive] >= 0]
    delay = ev.time[arrive] - shared_at[ev.inviter[arrive]]
    delay = delay[np.isfinite(delay)]
    seen = _ints(ev.inviter[arrive], ev.n_users)[ev.user[share]]
    unseen = np.maximum(0, invites - seen)
    at_risk = float(delay.sum() + (unseen * (rules.duration_hours - ev.time[share])).sum())
    if len(delay):
        out.append(Estimate("audience.referral.invite_delay_minutes",
                            *(x * 60 for x in exponential_mean(at_risk, len(delay))),
                            len(delay), "exponential MLE (invites after the sale censored)",
                            ref.invite_delay_minutes))
    return out


def fit_fallback(ev: Events, scenario: Scenario) -> list[Estimate]:
    """Share of failed groups' members who keep their order at the fallback price."""
    groups = scenario.campaign.groups
    if groups is None or groups.failure_policy != "fallback_price":
        return []
    failed = np.zeros(int(ev.group.max(initial=-1)) + 1, dtype=bool)
    fail = ev.of("group_fail")
    failed[ev.group[fail]] = True
    members = np.concatenate([ev.of("group_open"), ev.of("group_join")])
    n = int(failed[ev.group[members]].sum())
    refunds = ev.of("refund")
    k = n - int(failed[ev.group[refunds]].sum())
    if not n:
        return []
    return [Estimate("campaign.groups.fallback_take_up", *proportion(k, n), n,
                     "kept ÷ members of failed groups", groups.fallback_take_up)]


# -- after the campaign ------------------------------------------------------------------------


def acquired_buyers(ev: Events, scenario: Scenario) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """(user, segment, channel index) of each acquired buyer: a kept order by the `new`
    segment or by an invitee."""
    segs = [s.name for s in scenario.audience.segments]  # type: ignore[union-attr]
    kept = ev.of("order_kept")
    invited = np.zeros(ev.n_users, dtype=bool)
    invited[ev.user[ev.of("invite_arrival")]] = True
    new = segs.index(NEW_SEGMENT) if NEW_SEGMENT in segs else -2
    pick = kept[invited[ev.user[kept]] | (ev.segment[kept] == new)]
    lookup = {c: i for i, c in enumerate(CHANNELS)}
    channel = np.array([lookup.get(d, CHANNELS.index("regular")) for d in ev.detail[pick]],
                       dtype=np.int64)
    return ev.user[pick], ev.segment[pick], channel


def _repurchase_loglik(x: np.ndarray, bought: np.ndarray, last: np.ndarray, mult: np.ndarray,
                       frac: np.ndarray) -> float:
    """Log-likelihood of each buyer's months with and without a repurchase, given logits of
    (retention, churn, repurchase): sum over how long the buyer stayed active (T periods) of
    P(T) × the chance of its pattern in T active periods (none after)."""
    rho, churn, p = special.expit(x)
    k = bought.shape[1]
    pk = np.clip(p * mult[:, None] * frac[None, :], 1e-12, 1 - 1e-12)
    term = np.where(bought, np.log(pk), np.log1p(-pk))
    cum = np.cumsum(term, axis=1)  # cum[:, T-1]: the first T periods
    t = np.arange(1, k + 1)
    if k == 1:
        log_pt = np.zeros(1)
    else:
        stay = np.log(max(rho, 1e-300)) + (t - 2) * np.log1p(-min(churn, 1 - 1e-12))
        log_pt = np.where(t == 1, np.log1p(-min(rho, 1 - 1e-12)),
                          np.where(t < k, stay + np.log(max(churn, 1e-300)), stay))
    ok = t[None, :] > last[:, None]
    terms = np.where(ok, log_pt[None, :] + cum, -np.inf)
    return float(special.logsumexp(terms, axis=1).sum())


def fit_repurchase(ev: Events, scenario: Scenario, say: Say) -> list[Estimate]:
    """Per segment of acquired buyers: retention, churn and repurchase by maximum likelihood
    (channel multipliers held at the base's), and order value when the base sets one."""
    aud = scenario.audience
    assert aud is not None
    after = aud.after_campaign
    user, seg, chan = acquired_buyers(ev, scenario)
    if not len(user):
        return []
    period, horizon = after.period_days, after.horizon_days
    k = math.ceil(horizon / period)
    frac = np.minimum(1.0, (horizon - np.arange(k) * period) / period)
    index = np.full(ev.n_users, -1)
    index[user] = np.arange(len(user))
    rep = ev.of("repurchase")
    rep = rep[index[ev.user[rep]] >= 0]
    day = (ev.time[rep] - scenario.campaign.duration_hours) / 24
    keep = (day >= 0) & (day < horizon)
    rep, day = rep[keep], day[keep]
    buyer = index[ev.user[rep]]  # each repurchase's buyer, as a row of `user`
    bought = np.zeros((len(user), k), dtype=bool)
    bought[buyer, np.minimum((day // period).astype(np.int64), k - 1)] = True
    last = np.where(bought.any(axis=1), k - 1 - np.argmax(bought[:, ::-1], axis=1), -1)
    mult_p = np.array([getattr(after.channels, c).repurchase for c in CHANNELS])
    mult_v = np.array([getattr(after.channels, c).order_value for c in CHANNELS])
    out = []
    for i, s in enumerate(aud.segments):
        mine = seg == i
        if not mine.any():
            continue
        base = after.for_segment(s.name)
        args = (bought[mine], last[mine], mult_p[chan[mine]], frac)

        def nll(x: np.ndarray, args: tuple = args) -> float:
            return -_repurchase_loglik(x, *args)

        start = special.logit(np.clip([base.retention, base.churn, base.repurchase],
                                      0.02, 0.98))
        res = optimize.minimize(nll, start, method="L-BFGS-B", bounds=[(-12, 12)] * 3)
        h = hessian(lambda xs, f=nll: np.apply_along_axis(f, 0, xs), res.x).ddf
        try:
            cov = np.linalg.inv(h)
            var = np.diag(cov)
            if not np.all(np.isfinite(var)) or np.any(var <= 0):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            var = np.full(3, np.inf)
            say(f"repurchase of segment {s.name}: the likelihood is flat in some direction; "
                "those intervals span 0-1")
        n = int(mine.sum())
        for j, name in enumerate(("retention", "churn", "repurchase")):
            value = float(special.expit(res.x[j]))
            est = logit_ci(value, float(var[j])) if np.isfinite(var[j]) else (value, 0.0, 1.0)
            out.append(Estimate(f"audience.after_campaign.segments.{s.name}.{name}", *est, n,
                                "MLE of the active/lapsed model (scipy.optimize)",
                                getattr(base, name)))
        if base.order_value is not None:
            theirs = seg[buyer] == i
            divided = ev.amount[rep[theirs]] / mult_v[chan[buyer[theirs]]]
            if len(divided) > 1:
                m, sd = float(divided.mean()), float(divided.std(ddof=1))
                half = 1.96 * sd / math.sqrt(len(divided))
                out.append(Estimate(f"audience.after_campaign.segments.{s.name}.order_value",
                                    m, m - half, m + half, len(divided), "mean repurchase value",
                                    base.order_value))
    return out


# -- conversion, through the model's lifts ------------------------------------------------------


@dataclass
class Conversions:
    """Counts the conversion fit needs: first-time visits and conversions (reservations or
    sold-out refusals) per segment and mode (single, group); group reservations and those
    that joined an open group from the product page; invitee visits and conversions."""

    visits: np.ndarray
    converted: np.ndarray
    group_reserved: int
    joined: int
    invitee_visits: int
    invitee_converted: int

    @classmethod
    def of(cls, ev: Events, n_segments: int) -> Conversions:
        invited = np.zeros(ev.n_users, dtype=bool)
        arrive = ev.of("invite_arrival")
        invited[ev.user[arrive]] = True
        rows = np.concatenate([ev.of("reserve"), ev.of("sold_out")])
        first = rows[~invited[ev.user[rows]]]
        grp = ev.detail[first] == "group"
        converted = np.stack([_ints(ev.segment[first[~grp]], n_segments),
                              _ints(ev.segment[first[grp]], n_segments)], axis=1)
        res = ev.of("reserve")
        res = res[~invited[ev.user[res]] & (ev.detail[res] == "group")]
        return cls(_ints(ev.segment[ev.of("visit")], n_segments), converted, len(res),
                   int((ev.group[res] >= 0).sum()), len(arrive),
                   int(invited[ev.user[rows]].sum()))

    @classmethod
    def total(cls, parts: list[Conversions]) -> Conversions:
        return cls(sum(p.visits for p in parts), sum(p.converted for p in parts),
                   sum(p.group_reserved for p in parts), sum(p.joined for p in parts),
                   sum(p.invitee_visits for p in parts), sum(p.invitee_converted for p in parts))


def fit_conversion(obs: Conversions, sim: Conversions, scenario: Scenario) -> list[Estimate]:
    """base_conversion and group_propensity per segment, invitee_conversion and look_share,
    from observed conversions ÷ the lifts the model gave at `scenario`'s values."""
    aud, rules = scenario.audience, scenario.campaign
    assert aud is not None
    out = []
    grouped = rules.groups is not None
    for i, s in enumerate(aud.segments):
        b0, g0 = s.base_conversion, s.group_propensity if grouped else 0.0
        parts = []  # (estimate of base × share of the mode, variance of its log)
        for m, share in enumerate((1 - g0, g0)):
            o, e = int(obs.converted[i, m]), int(sim.converted[i, m])
            if not (obs.visits[i] and sim.visits[i] and b0 > 0 and share > 0 and e and o):
                parts.append((0.0, 0.0, o))
                continue
            lift = e / (sim.visits[i] * b0 * share)  # the model's mean lift for this mode
            parts.append((o / (obs.visits[i] * lift), 1 / o + 1 / e, o))
        (x, vx, nx), (y, vy, ny) = parts
        if x + y <= 0:
            continue
        var_log = (x * x * vx + y * y * vy) / (x + y) ** 2
        out.append(Estimate(f"audience.segments[{i}].base_conversion",
                            *log_normal_ci(x + y, var_log), nx + ny,
                            "conversions ÷ the model's lift (given shapes and prices)",
                            s.base_conversion))
        if grouped and x > 0 and y > 0:
            out.append(Estimate(f"audience.segments[{i}].group_propensity",
                                *logit_ci(y / (x + y), vx + vy), nx + ny,
                                "group ÷ all conversions, each ÷ the model's lift",
                                s.group_propensity))
    ref = aud.referral
    if ref is not None and obs.invitee_converted and sim.invitee_converted \
            and ref.invitee_conversion > 0:
        lift = sim.invitee_converted / (sim.invitee_visits * ref.invitee_conversion)
        q = obs.invitee_converted / (obs.invitee_visits * lift)
        out.append(Estimate("audience.referral.invitee_conversion",
                            *log_normal_ci(q, 1 / obs.invitee_converted
                                           + 1 / sim.invitee_converted),
                            obs.invitee_converted, "invitee conversions ÷ the model's lift",
                            ref.invitee_conversion))
    look = aud.groups.look_share if aud.groups is not None else 0.5
    o_j, o_n, s_j, s_n = obs.joined, obs.group_reserved, sim.joined, sim.group_reserved
    if grouped and 0 < look < 1 and min(o_j, o_n - o_j, s_j, s_n - s_j) > 0:
        odds = look / (1 - look) * (o_j / (o_n - o_j)) / (s_j / (s_n - s_j))
        var = 1 / o_j + 1 / (o_n - o_j) + 1 / s_j + 1 / (s_n - s_j)
        out.append(Estimate("audience.groups.look_share", *logit_ci(odds / (1 + odds), var),
                            o_n, "odds of joining from the page ÷ the model's odds",
                            aud.groups.look_share if aud.groups is not None else None))
    return out


# -- the whole fit ------------------------------------------------------------------------------


def with_estimates(data: dict[str, Any], estimates: list[Estimate], source: str
                   ) -> dict[str, Any]:
    """The scenario data with every estimate's key set (segment shares made to add up to 1)."""
    values = {e.key: _round(e.value) for e in estimates}
    shares = [k for k in values if k.endswith("].share") and k.startswith("audience.segments")]
    if shares:
        # the schema wants shares adding up to 1: the rounding left over goes to the largest
        total = sum(values[k] for k in shares)
        for k in shares:
            values[k] = round(values[k] / total, 6)
        big = max(shares, key=lambda k: values[k])
        values[big] = round(1 - sum(values[k] for k in shares if k != big), 6)
    return apply_overrides(data, values, source)


def _value_at(data: dict[str, Any], key: str, default: float | None) -> float | None:
    node: Any = data
    for part in split_key_path(key):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
    return float(node) if isinstance(node, int | float) else default


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def simulate_logs(scenario: Scenario, replications: int, seed: int, progress: Say | None = None
                  ) -> list[Events]:
    """Event logs of `replications` runs of the scenario, as `Events` (not written)."""
    aud = scenario.audience
    assert aud is not None
    segs, skus = [s.name for s in aud.segments], [s.id for s in scenario.campaign.skus]
    out = []
    for r in range(replications):
        run = simulate_once(scenario, child_seed(seed, r), events=True)
        assert run.event_log is not None
        out.append(events_from_log(run.event_log, segs, skus, scenario.campaign.duration_hours))
        if progress is not None:
            progress(f"replication {r + 1} of {replications}")
    return out


def calibrate(ev: Events, data: dict[str, Any], source: str, *, replications: int = 4,
              seed: int = 1, iterations: int = 2, say: Say = lambda _: None) -> Calibration:
    """Fit the base scenario (`data`, from `source`) to the event log; see the module docs."""
    base = parse_scenario(data, source)
    if base.audience is None:
        raise ValueError("the base scenario has no [audience] section to fit")
    n_segments = len(base.audience.segments)
    say("fitting arrivals, segments, paying, sharing, groups and repurchases")
    direct = [*fit_arrivals(ev, base), *fit_shares(ev, base), *fit_payment(ev, base),
              *fit_sharing(ev, base), *fit_fallback(ev, base),
              *fit_repurchase(ev, base, say)]
    fitted = with_estimates(data, direct, source)
    observed = Conversions.of(ev, n_segments)
    conversion: list[Estimate] = []
    for it in range(iterations):
        scenario = parse_scenario(fitted, source)
        say(f"conversion, round {it + 1} of {iterations}: simulating {replications} "
            "replication(s) for the lifts shoppers see")
        sims = simulate_logs(scenario, replications, seed + it, say)
        sim = Conversions.total([Conversions.of(s, n_segments) for s in sims])
        conversion = fit_conversion(observed, sim, scenario)
        fitted = with_estimates(fitted, conversion, source)
    scenario = parse_scenario(fitted, source)
    say(f"simulating the fitted scenario ({replications} replication(s)) for the fit report")
    simulated = simulate_logs(scenario, replications, seed + iterations, say)
    # the conversion rounds started from earlier rounds' values: show the base's own
    conversion = [replace(e, base=_value_at(data, e.key, e.base)) for e in conversion]
    estimates = direct + conversion
    notes = [f"held from the base: {', '.join(HELD)}"]  # the fitted file's header says it too
    return Calibration(estimates, fitted, scenario, simulated, notes)


HELD = ("campaign rules and prices", "demand shapes, price sensitivities and reference "
        "discounts", "member tiers and quantities", "share_effort", "members_share",
        "the choice rule", "depth_cap", "rewards",
        "after-campaign channel multipliers, margin and discount rate")
