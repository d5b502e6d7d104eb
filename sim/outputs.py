"""The data files of a simulation run: summary.json, kpis.csv, timeseries.csv, arrivals.csv."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from campaign.audience import CHANNELS
from campaign.rules import Sku
from campaign.scenario import Scenario
from sim.labels import outcome_name
from sim.model import KPI_NAMES, Recording, RunResult, sale_minutes
from sim.stats import CONFIDENCE, KpiSummary, summarize_values

ARRIVALS_HEADER = ("minute", "start_hour", "rate_per_hour", "arrivals")
TIMESERIES_HEADER = ("minute", "start_hour", "arrivals", "reservations", "paid_orders",
                     "open_groups", "stock")


def recordings(results: list[RunResult]) -> list[Recording]:
    """The recordings of recorded runs (all of them, or an error naming the problem)."""
    recs = [r.recording for r in results if r.recording is not None]
    if len(recs) != len(results):
        raise ValueError("output files need runs made with record=True")
    return recs


def minute_rates(scenario: Scenario) -> np.ndarray:
    """λ(t) per minute of the sale in arrivals per hour: the rate averaged over the minute
    (the exact rate whenever phases start on whole minutes)."""
    duration = scenario.campaign.duration_hours
    minutes = sale_minutes(duration)
    out = np.zeros(minutes)
    for lo, hi, rate in scenario.arrival_rate_pieces():
        for m in range(int(lo * 60), min(minutes, math.ceil(hi * 60 - 1e-9))):
            a, b = m / 60, min((m + 1) / 60, duration)
            overlap = min(hi, b) - max(lo, a)
            if overlap > 0 and b > a:
                out[m] += rate * overlap / (b - a)
    return out


def mean_series(recs: list[Recording], name: str) -> np.ndarray:
    return np.mean([getattr(r, name) for r in recs], axis=0)


def write_arrivals_csv(path: Path, scenario: Scenario, recs: list[Recording]) -> None:
    """`minute,start_hour,rate_per_hour,arrivals`: the scenario's first-time arrival rate and
    the mean simulated arrivals (first-time + invitees) per minute. The load tests read it."""
    rates, arrivals = minute_rates(scenario), mean_series(recs, "arrivals")
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ARRIVALS_HEADER)
        for m, (rate, n) in enumerate(zip(rates, arrivals, strict=True)):
            w.writerow([m, f"{m / 60:.8g}", f"{rate:.10g}", f"{n:.10g}"])


def write_timeseries_csv(path: Path, recs: list[Recording]) -> None:
    """Per minute, mean across replications: arrivals, reservations, paid orders, open groups
    (end of minute) and units in stock (end of minute)."""
    cols = [mean_series(recs, n) for n in ("arrivals", "reservations", "payments",
                                           "open_groups", "stock")]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TIMESERIES_HEADER)
        for m, row in enumerate(zip(*cols, strict=True)):
            w.writerow([m, f"{m / 60:.8g}", *(f"{v:.10g}" for v in row)])


def write_kpis_csv(path: Path, results: list[RunResult]) -> None:
    """One row per replication: `replication` then every KPI."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["replication", *KPI_NAMES])
        for i, r in enumerate(results):
            w.writerow([i, *(repr(r.kpis[k]) for k in KPI_NAMES)])


def group_outcomes(results: list[RunResult]) -> dict[str, float]:
    """Mean groups per replication by outcome: `tier <size>` for completed groups (smallest
    tier first), then `failed: refunded` / `failed: fallback`."""
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r.group_outcomes)
    order = sorted(counts, key=lambda k: (k.startswith("failed"), len(k), k))
    return {k: counts[k] / len(results) for k in order}


def outcome_label(scenario: Scenario, outcome: str) -> str:
    """`tier 3` -> `3-person tier (30% off)`, `failed: fallback` -> `failed, fallback price`."""
    groups = scenario.campaign.groups
    return outcome_name(outcome, {t.size: t.percent_off for t in groups.tiers} if groups else {})


def sku_label(sku: Sku) -> str:
    """A SKU as people see it: its display name, else its id."""
    return sku.name or sku.id


def sell_out_by_sku(scenario: Scenario, results: list[RunResult]) -> dict[str, dict[str, Any]]:
    """Per SKU: in how many replications it sold out, and when it did (mean hour and its 95%
    CI over those replications; None when it never sold out)."""
    out: dict[str, dict[str, Any]] = {}
    for k, sku in enumerate(scenario.campaign.skus):
        hours = [r.sell_out[k] for r in results if r.sell_out[k] is not None]
        s = summarize_values(hours) if hours else None
        out[sku.id] = {"replications_sold_out": len(hours), "replications": len(results),
                       "mean_sell_out_hour": s.mean if s else None,
                       "ci_low": s.ci_low if s else None, "ci_high": s.ci_high if s else None}
    return out


CHANNEL_METRICS = ("buyers", "cac", "ltv", "ltv_to_cac", "payback_days", "repurchase_rate")


def value_by_channel(results: list[RunResult]) -> dict[str, dict[str, KpiSummary]]:
    """Per acquisition channel (in `CHANNELS` order), each metric's mean and 95% CI over the
    replications in which the channel acquired somebody."""
    out: dict[str, dict[str, KpiSummary]] = {}
    for name in CHANNELS:
        rows = [r.after.channels[name] for r in results
                if r.after is not None and name in r.after.channels]
        if rows:
            out[name] = {m: summarize_values([row[m] for row in rows]) for m in CHANNEL_METRICS}
    return out


def referral_trees(recs: list[Recording]) -> dict[str, dict[str, float]]:
    """Mean referral trees per replication by depth and by size (buyers in the tree)."""
    by_depth: Counter[int] = Counter(d for r in recs for _, d in r.trees)
    by_size: Counter[int] = Counter(s for r in recs for s, _ in r.trees)
    n = len(recs)
    return {"by_depth": {str(k): by_depth[k] / n for k in sorted(by_depth)},
            "by_size": {str(k): by_size[k] / n for k in sorted(by_size)}}


def write_summary_json(path: Path, *, scenario: Scenario, scenario_path: str, seed: int,
                       summary: dict[str, KpiSummary], results: list[RunResult],
                       extra: dict[str, Any]) -> None:
    recs = [r.recording for r in results if r.recording is not None]
    data = {
        "scenario": {"name": scenario.campaign.name, "path": scenario_path,
                     "duration_hours": scenario.campaign.duration_hours,
                     "expected_arrivals": scenario.expected_arrivals()},
        "seed": seed,
        "replications": len(results),
        "confidence": CONFIDENCE,
        "kpis": {k: s.as_dict() for k, s in summary.items()},
        "group_outcomes_per_replication": group_outcomes(results),
        "sell_out_by_sku": sell_out_by_sku(scenario, results),
        "referral_trees_per_replication": referral_trees(recs) if recs else {},
        "after_campaign_by_channel": {c: {m: s.as_dict() for m, s in ms.items()}
                                      for c, ms in value_by_channel(results).items()},
        "mean_simpy_events": float(np.mean([r.events for r in results])),
        **extra,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
