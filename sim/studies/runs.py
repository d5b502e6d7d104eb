"""Running many scenario points × replications through an executor, with common random numbers.

Point p, replication r always uses `SeedSequence(seed).spawn(R)[r]` (as `sim.replicate` does),
so two points differ only by their parameters, not by luck. Each task carries the scenario
*data* of its point, so a worker anywhere re-validates it and needs no shared state.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from campaign.scenario import Scenario, parse_scenario
from sim.labels import Names
from sim.model import child_seed, simulate_once
from sim.page import Page
from sim.progress import progress as progress_bar
from sim.stats import KpiSummary
from sim.studies.executor import Executor
from sim.studies.params import Constraint, Objective, Param

Model = Callable[[Scenario, np.random.SeedSequence], Mapping[str, float]]


def simulate_kpis(scenario: Scenario, seed: np.random.SeedSequence) -> dict[str, float]:
    """The campaign model: one run's KPIs."""
    return dict(simulate_once(scenario, seed).kpis)


def replication_seed(seed: int, replication: int) -> np.random.SeedSequence:
    """The seed of replication `replication`, the same one `sim.replicate` uses."""
    return child_seed(seed, replication)


@dataclass(frozen=True)
class RunTask:
    """One model run: point `point`, replication `replication`, with the point's scenario data."""

    point: int
    replication: int
    seed: int
    data: dict[str, Any]
    source: str
    model: Model = simulate_kpis


def run_task(task: RunTask) -> dict[str, float]:
    """Validate the point's scenario and run the model once (in whatever process gets it)."""
    scenario = parse_scenario(task.data, task.source)
    kpis = task.model(scenario, replication_seed(task.seed, task.replication))
    return {name: float(value) for name, value in kpis.items()}


@dataclass
class RunOutcome:
    """What one run gave: its KPIs, or the error it raised."""

    point: int
    replication: int
    kpis: dict[str, float] | None
    error: str | None = None


def run_points(points: Sequence[dict[str, Any]], source: str, *, replications: int, seed: int,
               executor: Executor, model: Model = simulate_kpis, first_replication: int = 0,
               progress: bool = True, desc: str = "runs") -> list[list[RunOutcome]]:
    """Run every point `replications` times; outcomes per point, ordered by replication.

    Replications are numbered from `first_replication`, so a later call can draw fresh,
    independent replications of the same points (used to re-estimate a tuned optimum)."""
    tasks = [RunTask(p, first_replication + r, seed, data, source, model)
             for p, data in enumerate(points) for r in range(replications)]
    out: list[list[RunOutcome]] = [[] for _ in points]
    with progress_bar(total=len(tasks), enabled=progress, desc=desc, unit="run",
                      dynamic_ncols=True) as bar:
        for task, result in executor.map_unordered(run_task, tasks):
            if isinstance(result, BaseException):
                outcome = RunOutcome(task.point, task.replication, None, _describe(result))
            else:
                outcome = RunOutcome(task.point, task.replication, result)
            out[task.point].append(outcome)
            bar.update()
    for runs in out:
        runs.sort(key=lambda o: o.replication)
    return out


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def ok_rows(runs: Sequence[RunOutcome]) -> list[dict[str, float]]:
    """The KPI dicts of the runs that succeeded."""
    return [o.kpis for o in runs if o.kpis is not None]


def mean_kpis(runs: Sequence[RunOutcome]) -> dict[str, float]:
    """Mean of each KPI over the successful runs (empty if none succeeded)."""
    rows = ok_rows(runs)
    if not rows:
        return {}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of dicts as CSV (columns in first-seen order); floats with full precision."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


@dataclass
class PointResult:
    """One sweep point: its parameters, its runs, and the summary of the KPIs over them."""

    index: int
    params: dict[str, Any]
    runs: list[RunOutcome]
    summary: dict[str, KpiSummary] = field(default_factory=dict)
    feasible: bool | None = None

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.runs if o.error is not None]

    def mean(self, kpi: str) -> float:
        return float(self.summary[kpi].mean)


@dataclass
class SweepResult:
    """A finished sweep: every point, what was varied and constrained, the files written."""

    points: list[PointResult]
    params: list[Param]
    constraints: list[Constraint]
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    names: Names = field(default_factory=lambda: Names({}))
    objective: Objective | None = None
    page: Page | None = None
    """report.html's content (the answer on top), once written."""

    @property
    def best(self) -> PointResult | None:
        """The point with the best mean objective among those that meet the constraints."""
        if self.objective is None:
            return None
        kpi = self.objective.kpi
        ok = [p for p in self.points if kpi in p.summary and p.feasible is not False]
        if not ok:
            return None
        pick = max if self.objective.direction == "maximize" else min
        return pick(ok, key=lambda p: p.mean(kpi))

    @property
    def failures(self) -> list[tuple[PointResult, RunOutcome]]:
        return [(p, o) for p in self.points for o in p.failed]
