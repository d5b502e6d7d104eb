"""`run_simulation`: replications of one scenario file and every output file of the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from campaign.errors import ScenarioError
from campaign.scenario import Scenario, load_scenario
from sim.model import RunResult
from sim.outputs import (
    recordings,
    write_arrivals_csv,
    write_kpis_csv,
    write_summary_json,
    write_timeseries_csv,
)
from sim.page import Page
from sim.replicate import replicate
from sim.report import (
    budget_table,
    detail_rows,
    kpi_rows,
    price_table,
    simulation_answer,
    sku_table,
    value_table,
)
from sim.stats import KpiSummary, summarize


@dataclass
class SimulationRun:
    """A finished `run_simulation`: the scenario, every replication, the KPI summary and the
    files written (name -> path)."""

    scenario: Scenario
    scenario_path: str
    out_dir: Path
    seed: int
    results: list[RunResult]
    summary: dict[str, KpiSummary]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def arrivals_csv(self) -> Path:
        return self.files["arrivals.csv"]


def load_simulatable(path: str | Path) -> Scenario:
    """Load a scenario file that can be simulated (it has an [audience]); ScenarioError else."""
    scenario = load_scenario(path)
    if scenario.audience is None:
        raise ScenarioError(str(path), ["audience: missing; a simulation needs the [audience] "
                                        "section (arrival rates and segments)"])
    return scenario


def check_replications(replications: int) -> None:
    if replications < 1:
        raise ValueError(f"replications must be at least 1 (got {replications})")


def run_simulation(scenario_path: str | Path, *, replications: int, seed: int, out_dir: Path,
                   progress: bool = True, events: bool = False) -> SimulationRun:
    """Simulate the scenario file `replications` times and write into out_dir: summary.json,
    kpis.csv, timeseries.csv, arrivals.csv, the PNG figures and report.html; with `events`,
    also each replication's event log as events/replication-<i>.csv (`sim.events`)."""
    from sim.events import write_events
    from sim.plots import PLOT_FILES, write_plots  # matplotlib is slow to import

    check_replications(replications)
    scenario = load_simulatable(scenario_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    event_files: list[Path] = []

    def write_log(i: int, run: RunResult) -> None:
        if run.event_log is not None:
            path = out_dir / "events" / f"replication-{i}.csv"
            path.parent.mkdir(exist_ok=True)
            write_events(path, scenario, run.event_log)
            event_files.append(path)
            run.event_log = None  # written: a long log need not stay in memory

    start = time.perf_counter()
    results = replicate(scenario, replications, seed, progress=progress, record=True,
                        events=events, each=write_log)
    seconds = time.perf_counter() - start
    summary = summarize([r.kpis for r in results])
    recs = recordings(results)
    run = SimulationRun(scenario, str(scenario_path), out_dir, seed, results, summary,
                        seconds=seconds)
    files = run.files
    for path in event_files:
        files[f"events/{path.name}"] = path
    for name in ("summary.json", "kpis.csv", "timeseries.csv", "arrivals.csv", "report.html"):
        files[name] = out_dir / name
    write_kpis_csv(files["kpis.csv"], results)
    write_timeseries_csv(files["timeseries.csv"], recs)
    write_arrivals_csv(files["arrivals.csv"], scenario, recs)
    for path in write_plots(out_dir, scenario, results, summary):
        files[path.name] = path
    write_summary_json(files["summary.json"], scenario=scenario,
                       scenario_path=str(scenario_path), seed=seed, summary=summary,
                       results=results, extra={"simulation_seconds": round(seconds, 3),
                                               "files": sorted(files)})
    c = scenario.campaign
    phases = ", ".join(f"{p.label or p.name} {p.hours:g} h" for p in c.phases)
    segments = ", ".join(f"{s.label or s.name} {s.share:.0%}"
                         for s in scenario.audience.segments) if scenario.audience else "none"
    Page(
        title=f"Simulation: {c.name}",
        answer=simulation_answer(scenario, summary, results),
        facts=[("scenario file", str(scenario_path)), ("replications", str(replications)),
               ("seed", str(seed)), ("sale window", f"{c.duration_hours:g} h ({phases})"),
               ("expected first-time arrivals ∫λ(t)dt", f"{scenario.expected_arrivals():,.0f}"),
               ("segments", segments)],
        tables=[price_table(scenario), budget_table(scenario, summary),
                sku_table(scenario, results),
                ("KPIs (mean over replications, 95% confidence interval)",
                 ("KPI", "mean", "95% CI"), [*kpi_rows(summary), *detail_rows(scenario, results)],
                 ""),
                value_table(scenario, results)],
        figures=[(files[name], caption) for name, caption in PLOT_FILES.items()],
    ).write(files["report.html"])
    return run
