"""Global sensitivity analysis with SALib: which parameter drives which KPI.

Sobol (Saltelli sampling): first-order S1 (the share of a KPI's variance a parameter explains
alone) and total ST (including its interactions), each with a bootstrap confidence interval.
Morris (elementary effects): mu* (mean absolute effect, in the KPI's units) and sigma
(interactions / non-linearity); cheaper, for screening many parameters. Each sample point is
the mean of `replications` runs with common random numbers, so the noise is the same at every
point and does not masquerade as sensitivity.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from SALib.analyze import morris as morris_analyze
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from campaign.errors import ScenarioError
from sim.labels import Names
from sim.page import Page
from sim.studies.executor import Executor
from sim.studies.params import (
    Param,
    check_bounds,
    check_unique_keys,
    format_params,
    scenario_points,
)
from sim.studies.plots import indices_plot
from sim.studies.report import sensitivity_page
from sim.studies.runs import Model, mean_kpis, run_points, simulate_kpis, write_csv

METHODS = ("sobol", "morris")
DEFAULT_PLOT_KPIS = ("gross_profit", "profit", "group_completion_rate", "subsidy_spent")


@dataclass
class SensitivityResult:
    method: str
    params: list[Param]
    points: int
    rows: list[dict[str, Any]]  # one per (KPI, parameter)
    constant: list[str]  # KPIs that never changed: no index to compute
    failures: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    page: Page | None = None
    """report.html's content (the answer on top), once written."""


def problem_of(params: Sequence[Param]) -> dict[str, Any]:
    """The SALib problem: parameter names and bounds."""
    check_unique_keys(params, "--param")
    if not params:
        raise ScenarioError("--param", ["give at least one KEY=lo:hi"])
    listed = [p.key for p in params if not p.is_range]
    if listed:
        raise ScenarioError("--param", [f"{k}: sensitivity needs a range (KEY=lo:hi)"
                                        for k in listed])
    return {"num_vars": len(params), "names": [p.key for p in params],
            "bounds": [[p.low, p.high] for p in params]}


def sample(params: Sequence[Param], method: str, samples: int, seed: int) -> np.ndarray:
    """The SALib design: Sobol/Saltelli `samples * (D + 2)` rows, Morris `samples * (D + 1)`."""
    problem = problem_of(params)
    if method not in METHODS:
        raise ScenarioError("--method", [f"unknown method {method!r}; use sobol or morris"])
    if method == "sobol":
        if samples < 2 or samples & (samples - 1):
            raise ScenarioError("--samples", [f"{samples}: Sobol needs a power of two "
                                              "(e.g. 64, 128, 256)"])
        return sobol_sample.sample(problem, samples, calc_second_order=False, seed=seed)
    if samples < 2:
        raise ScenarioError("--samples", [f"{samples}: Morris needs at least 2 trajectories"])
    return morris_sample.sample(problem, samples, num_levels=4, seed=seed)


@dataclass
class SensitivityPlan:
    """A checked design: the SALib sample, the points as scenario settings, their data."""

    source: str
    method: str
    params: list[Param]
    X: np.ndarray
    points: list[dict[str, Any]]
    scenarios: list[dict[str, Any]]
    replications: int
    seed: int
    base: dict[str, Any]


def plan_sensitivity(data: dict[str, Any], source: str, params: Sequence[Param], *,
                     method: str = "sobol", samples: int = 64, replications: int = 1,
                     seed: int = 1) -> SensitivityPlan:
    """Sample the design and check every point through the scenario schema (nothing runs)."""
    if replications < 1:
        raise ScenarioError("--replications", [f"must be at least 1, not {replications}"])
    params = list(params)
    X = sample(params, method, samples, seed)
    check_bounds(data, source, params)
    # Integer keys are rounded in the scenario; the analysis uses the values actually run.
    X = np.array([[p.cast(v) for p, v in zip(params, row, strict=True)] for row in X])
    points = [{p.key: p.cast(v) for p, v in zip(params, row, strict=True)} for row in X]
    scenarios = scenario_points(data, source, points)
    return SensitivityPlan(source, method, params, X, points, scenarios, replications, seed,
                           data)


def run_sensitivity(plan: SensitivityPlan, *, executor: Executor, out_dir: Path,
                    plot_kpis: Sequence[str] = (), model: Model = simulate_kpis,
                    progress: bool = True) -> SensitivityResult:
    """Run every point, analyse each KPI; write indices.csv, indices.json and one bar plot
    per plotted KPI. A failed run stops the analysis (every point is needed)."""
    outcomes = run_points(plan.scenarios, plan.source, replications=plan.replications,
                          seed=plan.seed, executor=executor, model=model, progress=progress,
                          desc=f"{plan.method} {len(plan.points)} points x {plan.replications}")
    failures = [f"point {i} replication {o.replication} ({format_params(plan.points[i])}): "
                f"{o.error}" for i, runs in enumerate(outcomes) for o in runs if o.error]
    result = SensitivityResult(plan.method, plan.params, len(plan.points), [], [], failures)
    if failures:
        return result
    means = [mean_kpis(runs) for runs in outcomes]
    problem = problem_of(plan.params)
    for kpi in means[0]:
        Y = np.array([m[kpi] for m in means])
        if np.ptp(Y) == 0:
            result.constant.append(kpi)
            continue
        result.rows += analyse(problem, plan.method, plan.X, Y, kpi, plan.seed)
    result.files += write_indices(result, out_dir)
    kpis = plot_kpis or [k for k in DEFAULT_PLOT_KPIS if k in means[0]]
    names = Names(plan.base)
    figures = []
    for kpi in kpis:
        rows = [r for r in result.rows if r["kpi"] == kpi]
        if rows:
            figures.append(indices_plot(rows, kpi, plan.method,
                                        out_dir / f"indices_{kpi}.png", names))
    result.files += figures
    result.page = sensitivity_page(result, plan, means, kpis, plan.base, figures)
    result.files.append(result.page.write(out_dir / "report.html"))
    return result


def analyse(problem: dict[str, Any], method: str, X: np.ndarray, Y: np.ndarray, kpi: str,
            seed: int) -> list[dict[str, Any]]:
    """One row per parameter with the method's indices and their 95% confidence half-widths."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant KPIs divide by ~0
        if method == "sobol":
            si = sobol_analyze.analyze(problem, Y, calc_second_order=False, seed=seed)
            keys = ("S1", "S1_conf", "ST", "ST_conf")
        else:
            si = morris_analyze.analyze(problem, X, Y, num_levels=4, seed=seed)
            keys = ("mu_star", "mu_star_conf", "sigma", "mu")
    return [{"kpi": kpi, "param": name, **{k: _finite(si[k][i]) for k in keys}}
            for i, name in enumerate(problem["names"])]


def _finite(v: Any) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0


def write_indices(result: SensitivityResult, out_dir: Path) -> list[Path]:
    """indices.csv (one row per KPI and parameter) and indices.json (the same, plus the set-up)."""
    csv_path, json_path = out_dir / "indices.csv", out_dir / "indices.json"
    write_csv(csv_path, result.rows)
    json_path.write_text(json.dumps({
        "method": result.method,
        "params": {p.key: [p.low, p.high] for p in result.params},
        "points": result.points,
        "constant_kpis": result.constant,
        "indices": result.rows,
    }, indent=2) + "\n")
    return [csv_path, json_path]
