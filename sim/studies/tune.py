"""Tuning with Optuna: find scenario settings that maximise (or minimise) one KPI, or the
Pareto front of two, subject to KPI constraints.

Every trial runs the same `replications` (common random numbers) and is judged on KPI means.
Trials are asked in fixed-size batches and run through the executor, so a tune uses all
workers yet gives the same study for the same seed whatever the number of workers. The
study lives in a SQLite file, so re-running the same command resumes it. Constraints go to
the sampler (`trial.set_constraint`, Optuna ≥ 5) and are applied again when picking the best:
an infeasible trial is reported, never returned. The best point is re-estimated on fresh
replications (a separate seed stream) so its CIs are not flattered by the selection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from campaign.errors import ScenarioError
from sim.page import Page
from sim.progress import progress as progress_bar
from sim.stats import summarize
from sim.studies import plots
from sim.studies.executor import Executor
from sim.studies.params import (
    Constraint,
    Objective,
    Param,
    check_bounds,
    check_unique_keys,
    feasible,
    format_params,
    scenario_points,
)
from sim.studies.report import tune_page
from sim.studies.runs import Model, mean_kpis, ok_rows, run_points, simulate_kpis, write_csv

BATCH = 4
"""Trials asked (and run in parallel) at a time; fixed so results do not depend on workers."""
FRESH_STREAM = 1_000_000
"""Fresh replications for the re-estimate use seed children from this index on."""
_STUDY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class TuneSettings:
    """What a study is: parameters, objectives, constraints, replications and seed."""

    params: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    trials: int = 40
    replications: int = 3
    fresh_replications: int = 10
    seed: int = 1

    def identity(self, data: dict[str, Any]) -> dict[str, Any]:
        """The settings a resumed study must share (the trial budget may grow)."""
        scenario_hash = hashlib.sha256(json.dumps(data, sort_keys=True, default=str)
                                       .encode()).hexdigest()[:16]
        return {
            "params": [_param_text(p) for p in self.params],
            "objectives": [str(o) for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "replications": self.replications,
            "seed": self.seed,
            "scenario": scenario_hash,
        }


def _param_text(p: Param) -> str:
    if p.is_range:
        return f"{p.key}={p.low:g}:{p.high:g}"
    return f"{p.key}={','.join(map(str, p.values or ()))}"


@dataclass
class TuneResult:
    """The study's trials as rows, the best point (one objective) or Pareto front (two)."""

    study: str
    storage: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None = None
    front: list[dict[str, Any]] = field(default_factory=list)
    new_trials: int = 0
    failures: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    page: Page | None = None
    """report.html's content (the answer on top), once written."""

    @property
    def feasible_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["feasible"]]

    @property
    def infeasible_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["state"] == "COMPLETE" and not r["feasible"]]


def check_study_name(name: str) -> None:
    """A study name is also a file name: letters, digits, `_ . -`."""
    if not _STUDY_NAME.match(name):
        raise ScenarioError("--study", [f"{name!r}: use letters, digits, _ . - only"])


def check_settings(settings: TuneSettings, data: dict[str, Any], source: str) -> None:
    """Reject unusable settings before any trial runs (one line per problem)."""
    check_unique_keys(settings.params, "--param")
    if not settings.params:
        raise ScenarioError("--param", ["give at least one KEY=lo:hi (or KEY=V1,V2,…)"])
    if not 1 <= len(settings.objectives) <= 2:
        raise ScenarioError("--objective", ["give one objective (best point) or two "
                                            f"(Pareto front), not {len(settings.objectives)}"])
    if len({o.kpi for o in settings.objectives}) != len(settings.objectives):
        raise ScenarioError("--objective", ["the two objectives must be different KPIs"])
    for name, value in (("--trials", settings.trials), ("--replications", settings.replications),
                        ("--fresh-replications", settings.fresh_replications)):
        if value < 1:
            raise ScenarioError(name, [f"must be at least 1, not {value}"])
    check_bounds(data, source, settings.params)


def run_tune(data: dict[str, Any], source: str, settings: TuneSettings, *, study_name: str,
             storage: Path, executor: Executor, out_dir: Path, model: Model = simulate_kpis,
             progress: bool = True) -> TuneResult:
    """Create or resume the study, run trials up to `settings.trials`, write trials.csv and
    best.json (one objective) or pareto.csv + pareto.png (two), plus history.png."""
    check_study_name(study_name)
    check_settings(settings, data, source)
    study = _open_study(study_name, storage, settings, data)
    result = TuneResult(study_name, storage, [])
    _close_interrupted(study)
    # Trials cut short by an interruption (failed without an error of their own) are redone.
    done = sum(1 for t in study.get_trials(deepcopy=False)
               if t.state == optuna.trial.TrialState.COMPLETE or "error" in t.user_attrs)
    todo = max(0, settings.trials - done)
    with progress_bar(total=todo, enabled=progress, desc=f"tune {study_name}", unit="trial",
                      dynamic_ncols=True) as bar:
        while todo > 0:
            n = min(BATCH, todo)
            try:
                result.failures += _run_batch(study, n, data, source, settings, executor, model)
            except BaseException:
                _close_interrupted(study)  # an interrupted batch must not block a resume
                raise
            todo -= n
            result.new_trials += n
            bar.update(n)
    result.rows = trial_rows(study, settings)
    result.files.append(out_dir / "trials.csv")
    write_csv(result.files[-1], result.rows)
    objectives = [o.kpi for o in settings.objectives]
    if len(objectives) == 1:
        result.files.append(plots.history_plot(
            [r for r in result.rows if r["state"] == "COMPLETE"], objectives[0],
            settings.objectives[0].direction == "maximize", out_dir / "history.png"))
        result.best = _best(result, settings, data, source, executor, model)
        if result.best is not None:
            result.files.append(out_dir / "best.json")
            result.files[-1].write_text(json.dumps(result.best, indent=2) + "\n")
    else:
        result.front = pareto_front(result.feasible_rows, settings.objectives)
        result.files.append(out_dir / "pareto.csv")
        write_csv(result.files[-1], result.front)
        complete = [r for r in result.rows if r["state"] == "COMPLETE"]
        result.files.append(plots.pareto_plot(complete, result.front, objectives,
                                                   out_dir / "pareto.png"))
    result.page = tune_page(result, settings, data, source)
    result.files.append(result.page.write(out_dir / "report.html"))
    return result


def _open_study(name: str, storage: Path, settings: TuneSettings,
                data: dict[str, Any]) -> optuna.Study:
    optuna.logging.set_verbosity(logging.WARNING)
    storage.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{storage}"
    identity = settings.identity(data)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(url)}
    if name in existing:
        stored = existing[name].user_attrs.get("settings")
        if stored != identity:
            diff = [k for k in identity if stored is None or stored.get(k) != identity[k]]
            raise ScenarioError("--study", [
                f"{name}: the stored study in {storage} was made with other settings "
                f"({', '.join(diff)} differ); repeat its options to resume it, or choose "
                "another --study name"])
        n_before = existing[name].n_trials
    else:
        n_before = 0
    # A resumed study gets a fresh sampler stream, else it would replay its first trials.
    seed = settings.seed + n_before
    # TPE for one and for two objectives: Optuna 5 made it the multi-objective default over
    # NSGA-II, and on budgets of tens of trials it finds a far fuller front.
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(study_name=name, storage=url, sampler=sampler,
                                directions=[o.direction for o in settings.objectives],
                                load_if_exists=True)
    if name not in existing:
        study.set_user_attr("settings", identity)
    return study


def _close_interrupted(study: optuna.Study) -> None:
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    if not p.is_range:
        return trial.suggest_categorical(p.key, list(p.values or ()))
    assert p.low is not None and p.high is not None
    if p.integer:
        return trial.suggest_int(p.key, round(p.low), round(p.high))
    return trial.suggest_float(p.key, p.low, p.high)


def _run_batch(study: optuna.Study, n: int, data: dict[str, Any], source: str,
               settings: TuneSettings, executor: Executor, model: Model) -> list[str]:
    trials = [study.ask() for _ in range(n)]
    points = [{p.key: _suggest(t, p) for p in settings.params} for t in trials]
    failures: list[str] = []
    runnable: list[int] = []
    scenarios: list[dict[str, Any]] = []
    for i, point in enumerate(points):
        try:
            scenarios += scenario_points(data, source, [point])
            runnable.append(i)
        except ScenarioError as exc:  # a combination the schema rejects: a failed trial
            trials[i].set_user_attr("error", "; ".join(exc.problems))
            failures.append(f"trial {trials[i].number} ({format_params(point)}): not a valid "
                            f"scenario: {'; '.join(exc.problems)}")
    outcomes = run_points(scenarios, source, replications=settings.replications,
                          seed=settings.seed, executor=executor, model=model, progress=False)
    runs_of = dict(zip(runnable, outcomes, strict=True))
    for i, trial in enumerate(trials):  # told in trial order: the same seed, the same study
        runs = runs_of.get(i)
        errors = [o for o in runs or [] if o.error]
        if runs is None or errors or not ok_rows(runs):
            for o in errors:
                trial.set_user_attr("error", o.error)
                failures.append(f"trial {trial.number} replication {o.replication} "
                                f"({format_params(points[i])}): {o.error}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        kpis = mean_kpis(runs)
        trial.set_user_attr("kpis", kpis)
        for c in settings.constraints:
            trial.set_constraint(str(c), c.violation(kpis))
        study.tell(trial, [kpis[o.kpi] for o in settings.objectives])
    return failures


def trial_rows(study: optuna.Study, settings: TuneSettings) -> list[dict[str, Any]]:
    """One row per trial: state, feasibility, parameters, objectives, then every KPI mean."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        kpis: dict[str, float] = t.user_attrs.get("kpis", {})
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name,
                               "feasible": bool(kpis) and feasible(kpis, settings.constraints)}
        row |= {p.key: t.params.get(p.key) for p in settings.params}
        row |= {o.kpi: kpis.get(o.kpi) for o in settings.objectives}
        broken = [str(c) for c in settings.constraints if kpis and not c.holds(kpis)]
        row["violated"] = "; ".join(broken)
        row["error"] = t.user_attrs.get("error", "interrupted" if t.state.name == "FAIL"
                                        else "")
        row |= {f"mean_{k}": v for k, v in kpis.items()}
        rows.append(row)
    return rows


def pareto_front(rows: Sequence[dict[str, Any]],
                 objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """The rows no other row dominates (at least as good in both objectives, better in one)."""
    def signed(r: dict[str, Any]) -> tuple[float, ...]:
        return tuple(r[o.kpi] if o.direction == "maximize" else -r[o.kpi] for o in objectives)

    front = []
    for r in rows:
        a = signed(r)
        dominated = any(all(x >= y for x, y in zip(b, a, strict=True)) and b != a
                        for b in map(signed, rows))
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r[objectives[0].kpi])


def _best(result: TuneResult, settings: TuneSettings, data: dict[str, Any], source: str,
          executor: Executor, model: Model) -> dict[str, Any] | None:
    obj = settings.objectives[0]
    candidates = [r for r in result.feasible_rows if r["state"] == "COMPLETE"]
    if not candidates:
        return None
    pick = max if obj.direction == "maximize" else min
    best = pick(candidates, key=lambda r: r[obj.kpi])
    point = {p.key: best[p.key] for p in settings.params}
    scenario = scenario_points(data, source, [point])
    runs = run_points(scenario, source, replications=settings.fresh_replications,
                      seed=settings.seed, executor=executor, model=model,
                      first_replication=FRESH_STREAM, progress=False)[0]
    rows = ok_rows(runs)
    fresh = summarize(rows) if rows else {}
    means = {k: s.mean for k, s in fresh.items()}
    return {
        "study": result.study,
        "trial": best["trial"],
        "params": point,
        "objective": {"kpi": obj.kpi, "direction": obj.direction,
                      "tuning_mean": best[obj.kpi]},
        "constraints": [str(c) for c in settings.constraints],
        "feasible_on_fresh_replications": bool(means) and feasible(means, settings.constraints),
        "fresh_replications": len(rows),
        "fresh_failed": [o.error for o in runs if o.error],
        "kpis": {k: asdict(s) for k, s in fresh.items()},
        "trials": len(result.rows),
        "feasible_trials": len(result.feasible_rows),
        "infeasible_trials": len(result.infeasible_rows),
        "failed_trials": sum(1 for r in result.rows if r["state"] == "FAIL"),
    }
