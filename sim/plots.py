"""PNG figures of a simulation run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from campaign.audience import CHANNELS
from campaign.scenario import Scenario
from sim.labels import compact
from sim.model import Recording, RunResult
from sim.outputs import group_outcomes, mean_series, outcome_label, recordings, sku_label
from sim.plotstyle import cjk_font
from sim.stats import CONFIDENCE, KpiSummary

cjk_font()  # Chinese SKU, phase and segment names render as text

YUAN = FuncFormatter(lambda v, _: f"{compact(v)} yuan" if v else "0")
"""Axis ticks in yuan: `28.8k yuan`, not `28800` or `2.88e+04`."""

MAX_BINS = 480
"""Per-minute series longer than this are summed into coarser bins so the bars stay readable."""

PLOT_FILES = {
    "arrivals_orders.png": "Arrivals and paid orders over time, with the campaign phases",
    "stock.png": "Units in stock over time",
    "group_outcomes.png": "Groups by the tier they reached (share of all groups on the bars)",
    "referral_depth.png": "Referral trees by depth",
    "money_waterfall.png": "Money: from GMV to profit",
    "value_curves.png": "After the campaign: cumulative value per acquired buyer by channel "
                        "(mean, 95% CI band), against the channel's CAC (dashed)",
}


def _bins(n_minutes: int) -> int:
    """Minutes per plotted bin."""
    return max(1, -(-n_minutes // MAX_BINS))


def _rebin(x: np.ndarray, width: int) -> np.ndarray:
    pad = (-len(x)) % width
    return np.pad(x, (0, pad)).reshape(-1, width).sum(axis=1)


def _phase_bands(ax: plt.Axes, scenario: Scenario) -> None:
    colors = ("#f2f2f2", "#dde8f5")
    for i, (phase, (_, lo, hi)) in enumerate(zip(scenario.campaign.phases,
                                                 scenario.campaign.phase_bounds(), strict=True)):
        ax.axvspan(lo, hi, color=colors[i % 2], zorder=0)
        ax.text((lo + hi) / 2, 1.0, phase.label or phase.name, ha="center", va="bottom",
                transform=ax.get_xaxis_transform(), fontsize=8, color="#555555")


def plot_arrivals_orders(path: Path, scenario: Scenario, recs: list[Recording]) -> None:
    arrivals, payments = mean_series(recs, "arrivals"), mean_series(recs, "payments")
    width = _bins(len(arrivals))
    a, p = _rebin(arrivals, width), _rebin(payments, width)
    hours = np.arange(len(a)) * width / 60
    fig, ax = plt.subplots(figsize=(9, 4))
    _phase_bands(ax, scenario)
    ax.step(hours, a, where="post", label="arrivals (incl. invitees)", color="#1f77b4")
    ax.set_xlabel("hours since the sale started")
    ax.set_ylabel(f"arrivals per {width} min (mean)")
    ax2 = ax.twinx()
    ax2.step(hours, p, where="post", label="paid orders", color="#d62728")
    ax2.set_ylabel(f"payments per {width} min (mean)")
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="upper right")
    ax.set_title("Arrivals and paid orders", pad=16)
    _save(fig, path)


def plot_stock(path: Path, scenario: Scenario, recs: list[Recording]) -> None:
    stock = np.array([r.stock_by_sku for r in recs])  # (replications, minutes, SKUs)
    hours = (np.arange(stock.shape[1]) + 1) / 60
    fig, ax = plt.subplots(figsize=(9, 4))
    _phase_bands(ax, scenario)
    for k, sku in enumerate(scenario.campaign.skus):
        line, = ax.plot(hours, stock[:, :, k].mean(axis=0), label=f"{sku_label(sku)} (mean)")
        ax.fill_between(hours, stock[:, :, k].min(axis=0), stock[:, :, k].max(axis=0),
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("hours since the sale started")
    ax.set_ylabel("units available")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", title="shaded: min–max over replications", fontsize=8,
              title_fontsize=8)
    ax.set_title("Stock over time", pad=16)
    _save(fig, path)


def plot_group_outcomes(path: Path, scenario: Scenario, results: list[RunResult]) -> None:
    outcomes = group_outcomes(results)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if outcomes:
        names = list(outcomes)
        colors = ["#d62728" if n.startswith("failed") else "#2ca02c" for n in names]
        labels = [outcome_label(scenario, n) for n in names]
        bars = ax.bar(labels, [outcomes[n] for n in names], color=colors)
        total = sum(outcomes.values())
        ax.bar_label(bars, [f"{outcomes[n] / total:.0%}" for n in names], fontsize=8)
        ax.set_ylabel("groups per replication (mean)")
        ax.set_xlabel("tier the group closed at (completed) or how it failed")
        ax.tick_params(axis="x", labelsize=8, rotation=15)
    else:
        ax.text(0.5, 0.5, "no groups in this campaign", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title("Group outcomes by tier reached")
    _save(fig, path)


def plot_referral_depth(path: Path, recs: list[Recording]) -> None:
    depths = np.array([d for r in recs for _, d in r.trees], dtype=int)
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(depths):
        counts = np.bincount(depths) / len(recs)
        ax.bar(np.arange(len(counts)), counts, color="#9467bd")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(counts)))
        ax.set_xlabel("depth of the referral tree (0 = no invitee bought)")
        ax.set_ylabel("trees per replication (mean, log scale)")
    else:
        ax.text(0.5, 0.5, "no buyers", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Referral trees by depth")
    _save(fig, path)


def plot_money_waterfall(path: Path, summary: dict[str, KpiSummary], fixed_cost: float) -> None:
    m = {k: s.mean for k, s in summary.items()}
    steps = [("GMV", m["gmv"], "total"), ("discounts", -m["discount_cost"], "step"),
             ("coupons", -m["coupon_cost"], "step"), ("revenue", m["revenue"], "total"),
             ("goods", -m["goods_cost"], "step"), ("rewards", -m["reward_cost"], "step"),
             ("gifts", -m["gift_cost"], "step"), ("gross profit", m["gross_profit"], "total"),
             ("fixed cost", -fixed_cost, "step"), ("profit", m["profit"], "total")]
    fig, ax = plt.subplots(figsize=(9, 4))
    level = 0.0
    for i, (_, value, kind) in enumerate(steps):
        if kind == "total":
            bottom, height, color = 0.0, value, "#1f77b4" if value >= 0 else "#d62728"
            level = value
        else:
            bottom, height, color = level, value, "#ff7f0e"
            level += value
        ax.bar(i, height, bottom=bottom, color=color)
        ax.annotate(compact(value), (i, bottom + height), ha="center",
                    va="bottom" if height >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(steps)), [s[0] for s in steps], rotation=30, ha="right")
    ax.set_ylabel("yuan (mean per replication)")
    ax.yaxis.set_major_formatter(YUAN)
    ax.set_title("Money waterfall (yuan)")
    _save(fig, path)


def plot_value_curves(path: Path, results: list[RunResult]) -> None:
    """Per channel: the mean over replications of the cumulative value per acquired buyer by
    day after the sale (campaign order at list margin + discounted repurchase margin), a 95%
    Student-t band, and the channel's mean CAC as a dashed line of the same colour."""
    from scipy import stats

    from sim.report import CHANNEL_LABELS

    fig, ax = plt.subplots(figsize=(9, 4.5))
    drawn = False
    for name in CHANNELS:
        runs = [r.after for r in results if r.after is not None and name in r.after.curves]
        if not runs:
            continue
        curves = np.array([a.curves[name] for a in runs])
        days = np.arange(curves.shape[1])
        mean = curves.mean(axis=0)
        line, = ax.plot(days, mean, label=f"{CHANNEL_LABELS.get(name, name)} "
                        f"({np.mean([a.channels[name]['buyers'] for a in runs]):.0f} buyers)")
        if len(runs) > 1:
            half = (stats.t.ppf(0.5 + CONFIDENCE / 2, len(runs) - 1)
                    * curves.std(axis=0, ddof=1) / np.sqrt(len(runs)))
            ax.fill_between(days, mean - half, mean + half, color=line.get_color(), alpha=0.15)
        ax.axhline(np.mean([a.channels[name]["cac"] for a in runs]), color=line.get_color(),
                   linestyle="--", linewidth=1)
        drawn = True
    if drawn:
        ax.set_xlabel("days after the sale")
        ax.set_ylabel("cumulative value per buyer (yuan)")
        ax.yaxis.set_major_formatter(YUAN)
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8, title="solid: value; dashed: CAC",
                  title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no acquired buyers", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title("Value of acquired buyers after the campaign, by channel")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(out_dir: Path, scenario: Scenario, results: list[RunResult],
                summary: dict[str, KpiSummary]) -> list[Path]:
    """Write every figure of PLOT_FILES into out_dir; returns their paths."""
    recs = recordings(results)
    plot_arrivals_orders(out_dir / "arrivals_orders.png", scenario, recs)
    plot_stock(out_dir / "stock.png", scenario, recs)
    plot_group_outcomes(out_dir / "group_outcomes.png", scenario, results)
    plot_referral_depth(out_dir / "referral_depth.png", recs)
    plot_money_waterfall(out_dir / "money_waterfall.png", summary, scenario.campaign.fixed_cost)
    plot_value_curves(out_dir / "value_curves.png", results)
    return [out_dir / name for name in PLOT_FILES]


def plot_differences(path: Path, diff: dict[str, KpiSummary], kpis: list[str],
                     labels: list[str]) -> Path:
    """B - A per money KPI as horizontal bars with their 95% CIs (common random numbers)."""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(kpis) + 1.6))
    y = np.arange(len(kpis))[::-1]
    means = np.array([diff[k].mean for k in kpis])
    err = np.array([[diff[k].mean - diff[k].ci_low for k in kpis],
                    [diff[k].ci_high - diff[k].mean for k in kpis]])
    # Earnings green when they rise, red when they fall; costs in orange either way.
    colors = ["#ff7f0e" if k.endswith("_cost") or k == "subsidy_spent"
              else "#2ca02c" if m >= 0 else "#d62728" for k, m in zip(kpis, means, strict=True)]
    ax.barh(y, means, xerr=err, color=colors, capsize=3)
    for yi, m in zip(y, means, strict=True):
        ax.annotate(f"{'+' if m >= 0 else ''}{compact(m)} yuan", (m, yi), va="center",
                    ha="left" if m >= 0 else "right", fontsize=8,
                    xytext=(4 if m >= 0 else -4, 6), textcoords="offset points")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.xaxis.set_major_formatter(YUAN)
    ax.set_xlabel("B − A, yuan per campaign (mean; bars: 95% CI)")
    ax.set_title("What B changes in money, against A")
    _save(fig, path)
    return path
