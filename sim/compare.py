"""`compare_scenarios`: two scenarios under common random numbers, paired KPI differences."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from campaign.scenario import Scenario
from sim.labels import fmt_change, fmt_ci, fmt_kpi, kpi_axis, kpi_name, kpi_unit
from sim.model import KPI_NAMES, RunResult
from sim.page import Answer, Page
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


COMPARE_MONEY = ("revenue", "goods_cost", "discount_cost", "coupon_cost", "reward_cost",
                 "gift_cost", "subsidy_spent", "gross_profit", "profit")


def compare_page(cmp: Comparison, path_a: str, path_b: str, out_dir: Path) -> Page:
    """The comparison's report: does B earn more than A (profit B - A with its CI), what it
    costs and earns in yuan, then every KPI; writes money_diff.png beside it."""
    from sim.plots import plot_differences  # matplotlib is slow to import

    d = cmp.diff["profit"]
    verdict = ("more" if d.mean > 0 else "less") if cmp.significant("profit") else None
    name_a, name_b = cmp.a.campaign.name, cmp.b.campaign.name
    headline = (f"B earns {fmt_kpi('profit', abs(d.mean))} {verdict} profit than A"
                if verdict else
                f"No clear difference in profit: B − A = {fmt_change('profit', d.mean)}, and the "
                "95% CI includes 0")
    rows = [("profit after fixed cost, B − A", _diff_text("profit", d))]
    for kpi in ("revenue", "subsidy_spent", "goods_cost", "gross_profit", "orders_paid",
                "group_completion_rate"):
        a_text = fmt_kpi(kpi, cmp.a_summary[kpi].mean)
        b_text = fmt_kpi(kpi, cmp.b_summary[kpi].mean)
        rows.append((kpi_name(kpi), f"A {a_text} → B {b_text}: {_diff_text(kpi, cmp.diff[kpi])}"))
    for label, scenario in (("A", cmp.a), ("B", cmp.b)):
        budget = scenario.campaign.subsidy_budget
        if budget:
            spent = (cmp.a_summary if label == "A" else cmp.b_summary)["subsidy_spent"].mean
            rows.append((f"{label}: subsidy spent vs budget",
                         f"{fmt_kpi('subsidy_spent', spent)} of "
                         f"{fmt_kpi('subsidy_spent', budget)} ({spent / budget:.0%})"))
    kpis = [k for k in COMPARE_MONEY  # an item neither campaign spends on is left out
            if k in cmp.diff and (cmp.a_summary[k].mean or cmp.b_summary[k].mean)]
    figure = plot_differences(out_dir / "money_diff.png", cmp.diff, kpis,
                              [kpi_name(k) for k in kpis])
    table_rows = [(kpi_axis(k), fmt_kpi(k, cmp.a_summary[k].mean, short=False),
                   fmt_kpi(k, cmp.b_summary[k].mean, short=False),
                   fmt_change(k, cmp.diff[k].mean),
                   _diff_text(k, cmp.diff[k]).partition("(95% CI ")[2].rstrip(")"),
                   "yes" if cmp.significant(k) else "")
                  for k in KPI_NAMES]
    return Page(
        f"Compare: {name_a} (A) vs {name_b} (B)",
        Answer(headline, rows),
        [("A", f"{path_a} ({name_a})"), ("B", f"{path_b} ({name_b})"),
         ("paired replications", f"{len(cmp.a_results)} (common random numbers), seed "
                                 f"{cmp.seed}")],
        [("Every KPI", ("KPI", "A", "B", "B − A", "95% CI of B − A", "CI excludes 0"),
          table_rows, "Means over the replications; B − A is measured replication by "
          "replication under common random numbers, so its CI is narrower than the "
          "difference of two independent means.")],
        [(figure, "What B changes in money against A (bars: 95% CI)")])


def _diff_text(kpi: str, d: KpiSummary) -> str:
    if kpi_unit(kpi) == "%":
        ci = f"{100 * d.ci_low:+.1f} – {100 * d.ci_high:+.1f} pp"
    else:
        ci = fmt_ci(kpi, d.ci_low, d.ci_high)
    return f"{fmt_change(kpi, d.mean)} (95% CI {ci})"
