"""`compare_scenarios`: two scenarios under common random numbers, paired KPI differences."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from campaign.scenario import Scenario
from sim.model import KPI_NAMES, RunResult
from sim.replicate import replicate
from sim.stats import CONFIDENCE, KpiSummary, paired_differences, summarize


@dataclass
class Comparison:
    """A vs B: each KPI's mean under A and B and the paired difference B - A with its CI."""

    a: Scenario
    b: Scenario
    seed: int
    a_results: list[RunResult]
    b_results: list[RunResult]
    a_summary: dict[str, KpiSummary]
    b_summary: dict[str, KpiSummary]
    diff: dict[str, KpiSummary]

    def significant(self, kpi: str) -> bool:
        """True when the 95% CI of B - A excludes 0."""
        d = self.diff[kpi]
        return d.ci_low > 0 or d.ci_high < 0


def compare_scenarios(a: Scenario, b: Scenario, *, replications: int, seed: int,
                      progress: bool = False) -> Comparison:
    """Run both scenarios with the same seed: replication i of A and of B share their random
    streams (common random numbers), so B - A is measured replication by replication."""
    ra = replicate(a, replications, seed, progress=progress)
    rb = replicate(b, replications, seed, progress=progress)
    rows_a, rows_b = [r.kpis for r in ra], [r.kpis for r in rb]
    return Comparison(a, b, seed, ra, rb, summarize(rows_a), summarize(rows_b),
                      paired_differences(rows_a, rows_b))


def write_comparison(out_dir: Path, cmp: Comparison, path_a: str, path_b: str) -> list[Path]:
    """compare.json and compare.csv (one row per KPI) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in KPI_NAMES:
        d = cmp.diff[k]
        rows.append({"kpi": k, "mean_a": cmp.a_summary[k].mean, "mean_b": cmp.b_summary[k].mean,
                     "diff": d.mean, "diff_ci_low": d.ci_low, "diff_ci_high": d.ci_high,
                     "significant": cmp.significant(k)})
    csv_path, json_path = out_dir / "compare.csv", out_dir / "compare.json"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    json_path.write_text(json.dumps({
        "a": {"path": path_a, "name": cmp.a.campaign.name},
        "b": {"path": path_b, "name": cmp.b.campaign.name},
        "seed": cmp.seed, "replications": len(cmp.a_results), "confidence": CONFIDENCE,
        "common_random_numbers": True, "kpis": rows}, indent=2) + "\n")
    return [json_path, csv_path]
