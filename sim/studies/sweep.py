"""Parameter sweeps: a grid or a Latin hypercube over scenario keys, replicated with common
random numbers, summarised per point (KPI means and CIs) and plotted."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from campaign.errors import ScenarioError
from sim.labels import Names
from sim.stats import summarize
from sim.studies.executor import Executor
from sim.studies.params import (
    Constraint,
    Objective,
    Param,
    check_bounds,
    check_unique_keys,
    feasible,
    scenario_points,
)
from sim.studies.plots import sweep_plots
from sim.studies.report import sweep_page
from sim.studies.runs import (
    Model,
    PointResult,
    SweepResult,
    ok_rows,
    run_points,
    simulate_kpis,
    write_csv,
)

DEFAULT_OBJECTIVE = Objective("gross_profit", "maximize")
DEFAULT_PLOT_KPIS = ("gross_profit", "profit", "group_completion_rate", "orders_paid",
                     "subsidy_spent", "roi")


def design_points(params: Sequence[Param], design: str, samples: int,
                  seed: int) -> list[dict[str, Any]]:
    """The points to run: the cartesian product of value lists (`grid`), or `samples` Latin
    hypercube points over `lo:hi` ranges (`lhs`; integer keys rounded)."""
    check_unique_keys(params, "--vary")
    if not params:
        raise ScenarioError("--vary", ["give at least one KEY=V1,V2,… or KEY=lo:hi"])
    if design == "grid":
        ranged = [p.key for p in params if p.is_range]
        if ranged:
            raise ScenarioError("--vary", [f"{k}: a grid needs a list of values (KEY=V1,V2,…); "
                                           "use --design lhs for lo:hi ranges" for k in ranged])
        keys = [p.key for p in params]
        lists = [p.values or () for p in params]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]
    if design == "lhs":
        listed = [p.key for p in params if not p.is_range]
        if listed:
            raise ScenarioError("--vary", [f"{k}: a Latin hypercube needs a range (KEY=lo:hi)"
                                           for k in listed])
        if samples < 1:
            raise ScenarioError("--samples", [f"must be at least 1, not {samples}"])
        unit = qmc.LatinHypercube(d=len(params), rng=np.random.default_rng(seed)).random(samples)
        return [{p.key: p.at(u) for p, u in zip(params, row, strict=True)} for row in unit]
    raise ScenarioError("--design", [f"unknown design {design!r}; use grid or lhs"])


@dataclass
class SweepPlan:
    """A checked sweep: the points, their validated scenario data, replications and seed."""

    source: str
    params: list[Param]
    points: list[dict[str, Any]]
    scenarios: list[dict[str, Any]]
    replications: int
    seed: int
    constraints: list[Constraint]
    base: dict[str, Any]
    objective: Objective = DEFAULT_OBJECTIVE


def plan_sweep(data: dict[str, Any], source: str, params: Sequence[Param], *,
               design: str = "grid", samples: int = 20, replications: int = 5, seed: int = 1,
               constraints: Sequence[Constraint] = (),
               objective: Objective = DEFAULT_OBJECTIVE) -> SweepPlan:
    """Build the design and check every point through the scenario schema (nothing runs);
    ScenarioError with one line per bad key, value or point."""
    if replications < 1:
        raise ScenarioError("--replications", [f"must be at least 1, not {replications}"])
    points = design_points(params, design, samples, seed)
    if design == "lhs":
        check_bounds(data, source, params)
    scenarios = scenario_points(data, source, points)
    return SweepPlan(source, list(params), points, scenarios, replications, seed,
                     list(constraints), data, objective)


def run_sweep(plan: SweepPlan, *, executor: Executor, out_dir: Path,
              plot_kpis: Sequence[str] = (), model: Model = simulate_kpis,
              progress: bool = True) -> SweepResult:
    """Run points x replications through `executor` (common random numbers); write
    `points.csv`, `runs.csv` and the plots into `out_dir`."""
    outcomes = run_points(plan.scenarios, plan.source, replications=plan.replications,
                          seed=plan.seed, executor=executor, model=model, progress=progress,
                          desc=f"sweep {len(plan.points)} points x {plan.replications}")
    results = []
    for i, (point, runs) in enumerate(zip(plan.points, outcomes, strict=True)):
        rows = ok_rows(runs)
        res = PointResult(i, point, runs, summarize(rows) if rows else {})
        if plan.constraints and rows:
            res.feasible = feasible({k: s.mean for k, s in res.summary.items()},
                                    plan.constraints)
        results.append(res)
    sweep = SweepResult(results, plan.params, plan.constraints, out_dir, names=Names(plan.base),
                        objective=plan.objective)
    sweep.files += write_tables(sweep)
    figures = sweep_plots(sweep, plot_kpis or _default_kpis(results, plan.constraints,
                                                            plan.objective))
    sweep.files += figures
    sweep.page = sweep_page(sweep, plan, figures)
    sweep.files.append(sweep.page.write(out_dir / "report.html"))
    return sweep


def _default_kpis(points: Sequence[PointResult], constraints: Sequence[Constraint],
                  objective: Objective) -> list[str]:
    have = next((p.summary for p in points if p.summary), {})
    kpis = [k for k in (objective.kpi, *DEFAULT_PLOT_KPIS) if k in have]
    kpis = list(dict.fromkeys(kpis))
    return kpis + [c.kpi for c in constraints if c.kpi not in kpis]


def write_tables(sweep: SweepResult) -> list[Path]:
    """`points.csv` (one row per point) and `runs.csv` (one row per replication)."""
    point_rows, run_rows = [], []
    for p in sweep.points:
        row: dict[str, Any] = {"point": p.index, **p.params, "runs_ok": len(p.runs) -
                               len(p.failed), "runs_failed": len(p.failed)}
        if sweep.constraints:
            row["feasible"] = "" if p.feasible is None else p.feasible
        for kpi, s in p.summary.items():
            row |= {f"{kpi}_mean": s.mean, f"{kpi}_ci_low": s.ci_low, f"{kpi}_ci_high": s.ci_high}
        point_rows.append(row)
        for o in p.runs:
            run_rows.append({"point": p.index, "replication": o.replication, **p.params,
                             "error": o.error or "", **(o.kpis or {})})
    paths = [sweep.out_dir / "points.csv", sweep.out_dir / "runs.csv"]
    write_csv(paths[0], point_rows)
    write_csv(paths[1], run_rows)
    return paths
