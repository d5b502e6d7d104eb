"""After the campaign: what the acquired buyers are worth (repurchases, LTV, CAC, payback).

Vectorised with numpy rather than a SimPy process per buyer: after the sale nothing competes
for stock, groups or budget, so each buyer's repurchases are independent draws and one array
operation per period does the whole cohort (a few milliseconds for tens of thousands of
buyers).

The model, per acquired buyer i of segment s who came by channel c (`campaign.audience`):
active in period 1; stays active after it with `retention_s`, after each later period with
1 - `churn_s`; while active, orders again in a period with chance
p_i = min(1, `repurchase_s` × channel multiplier), on a uniform day of the period, for
v_i = `order_value_s` (default: the list value of its campaign order) × channel multiplier,
keeping `margin` of it (default: its SKU's list margin), discounted at
(1 + `annual_discount_rate`)^(-day/365). Value counts the campaign order at list margin
(its discount is part of the cost, CAC) plus the repurchases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from campaign.audience import CHANNELS, AfterCampaign
from campaign.rules import CampaignRules


@dataclass
class Cohort:
    """The acquired buyers of one run, appended as their campaign order is kept."""

    user: list[int] = field(default_factory=list)
    seg: list[int] = field(default_factory=list)
    channel: list[int] = field(default_factory=list)
    sku: list[int] = field(default_factory=list)
    list_fen: list[int] = field(default_factory=list)
    goods_fen: list[int] = field(default_factory=list)
    subsidy_fen: list[int] = field(default_factory=list)

    def add(self, user: int, seg: int, channel: int, sku: int, list_fen: int, goods_fen: int,
            subsidy_fen: int) -> None:
        self.user.append(user)
        self.seg.append(seg)
        self.channel.append(channel)
        self.sku.append(sku)
        self.list_fen.append(list_fen)
        self.goods_fen.append(goods_fen)
        self.subsidy_fen.append(subsidy_fen)

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class AfterValue:
    """One run's after-campaign value: KPIs, per-channel figures, value curves and (for the
    event log) every repurchase."""

    kpis: dict[str, float]
    channels: dict[str, dict[str, float]]
    """Per channel with buyers: buyers, cac, ltv, ltv_to_cac, payback_days, repurchase_rate."""
    curves: dict[str, np.ndarray]
    """Per channel with buyers (and "all"): mean cumulative value per buyer (yuan) at the end
    of each day 0..horizon; day 0 is the campaign order's list margin."""
    repurchases: tuple[np.ndarray, np.ndarray, np.ndarray] = ()  # type: ignore[assignment]
    """(buyer index in the cohort, day after the sale, order value in yuan)."""


AFTER_KPIS = ("retention", "repurchase_rate", "repurchase_orders", "ltv", "ltv_to_cac",
              "payback_days", "break_even_days", "break_even_daily_orders", "lifetime_profit")


def first_day(curve: np.ndarray, target: float) -> float:
    """The first day the curve reaches `target`; the horizon (its last day) if it never does."""
    hit = np.flatnonzero(curve >= target - 1e-9)
    return float(hit[0]) if len(hit) else float(len(curve) - 1)


def after_campaign(cohort: Cohort, params: AfterCampaign, segment_names: list[str],
                   rules: CampaignRules, rng: np.random.Generator, *, spend_fen: int,
                   profit_fen: int) -> AfterValue:
    """Repurchases of the cohort over the horizon and the value KPIs. `spend_fen` is the
    campaign's whole spend (subsidy + fixed cost), shared among the acquired buyers as CAC;
    `profit_fen` its profit after fixed cost (what break-even must recover if negative)."""
    n = len(cohort)
    horizon, period = params.horizon_days, params.period_days
    k_periods = math.ceil(horizon / period)
    seg = np.asarray(cohort.seg, dtype=np.int64)
    chan = np.asarray(cohort.channel, dtype=np.int64)
    segs = [params.for_segment(name) for name in segment_names]
    mult_p = np.array([getattr(params.channels, c).repurchase for c in CHANNELS])
    mult_v = np.array([getattr(params.channels, c).order_value for c in CHANNELS])
    ret = np.array([s.retention for s in segs])[seg]
    churn = np.array([s.churn for s in segs])[seg]
    p = np.minimum(1.0, np.array([s.repurchase for s in segs])[seg] * mult_p[chan])
    list_yuan = np.asarray(cohort.list_fen, dtype=float) / 100
    own = np.array([np.nan if s.order_value is None else s.order_value for s in segs])[seg]
    value = np.where(np.isnan(own), list_yuan, own) * mult_v[chan]
    if params.margin is not None:
        margin = np.full(n, params.margin)
    else:
        sku_margin = np.array([1 - s.unit_cost / s.list_price for s in rules.skus])
        margin = np.maximum(0.0, sku_margin[np.asarray(cohort.sku, dtype=np.int64)])
    # Draws: retention, lifetime after period 2, and per period whether and when to order.
    u_ret, u_life = rng.random((2, n))
    u_buy, u_day = rng.random((2, n, k_periods))
    retained = u_ret < ret
    # periods survived after the second begins: P(later >= g) = (1 - churn)^g
    later = np.floor(np.log1p(-u_life) / np.log1p(-np.clip(churn, 1e-12, 1 - 1e-12)))
    later[churn >= 1] = 0
    later[churn <= 0] = k_periods
    active = np.where(retained, np.minimum(k_periods, 2 + later), 1).astype(np.int64)
    k = np.arange(k_periods)
    day = (k + u_day) * period
    buy = (k < active[:, None]) & (u_buy < p[:, None]) & (day < horizon)
    who, when = np.nonzero(buy)
    days = day[who, when]
    amount = value[who]
    pv = amount * margin[who] * (1 + params.annual_discount_rate) ** (-days / 365)
    day_bin = np.minimum(days.astype(np.int64) + 1, horizon)  # counted by the end of its day
    first = (np.asarray(cohort.list_fen, dtype=float)
             - np.asarray(cohort.goods_fen, dtype=float)) / 100
    subsidy = np.asarray(cohort.subsidy_fen, dtype=float) / 100
    shared = (spend_fen / 100 - subsidy.sum()) / n if n else 0.0
    bought_again = np.zeros(n, dtype=bool)
    bought_again[who] = True

    def curve(mask: np.ndarray) -> np.ndarray:
        m = int(mask.sum())
        pick = mask[who]
        cum = np.cumsum(np.bincount(day_bin[pick], weights=pv[pick], minlength=horizon + 1))
        return (first[mask].sum() + cum) / m

    channels: dict[str, dict[str, float]] = {}
    curves: dict[str, np.ndarray] = {}
    for c, name in enumerate(CHANNELS):
        mask = chan == c
        m = int(mask.sum())
        if not m:
            continue
        curves[name] = cv = curve(mask)
        cac = float(subsidy[mask].mean() + shared)
        channels[name] = {"buyers": float(m), "cac": cac, "ltv": float(cv[-1]),
                          "ltv_to_cac": float(cv[-1] / cac) if cac > 0 else 0.0,
                          "payback_days": first_day(cv, cac),
                          "repurchase_rate": float(bought_again[mask].mean())}
    kpis = dict.fromkeys(AFTER_KPIS, 0.0)
    total_pv = float(pv.sum())
    kpis["lifetime_profit"] = (profit_fen / 100) + total_pv
    loss = max(0.0, -profit_fen / 100)
    if n:
        curves["all"] = cv = curve(np.ones(n, dtype=bool))
        cac = spend_fen / 100 / n
        kpis.update(retention=float(retained.mean()), repurchase_rate=float(bought_again.mean()),
                    repurchase_orders=float(len(who)), ltv=float(cv[-1]),
                    ltv_to_cac=float(cv[-1] / cac) if cac > 0 else 0.0,
                    payback_days=first_day(cv, cac))
        # break-even: the campaign's loss recovered by the acquired buyers' repurchases
        repurchase_cum = (cv - first.mean()) * n
        kpis["break_even_days"] = first_day(repurchase_cum, loss) if loss else 0.0
        per_order = float(pv.mean()) if len(pv) else float((value * margin).mean())
        kpis["break_even_daily_orders"] = loss / per_order / horizon if per_order > 0 else 0.0
    elif loss:
        kpis["break_even_days"] = float(horizon)
    return AfterValue(kpis, channels, curves, (who, days, amount))
