"""Calibration: fit a scenario to an event log (`groupbuy calibrate`; docs/calibration.md).

- `log`: read and check an event log (`read_events`, `EventLogError`), or take a simulated
  run's log in memory (`events_from_log`);
- `estimate`: `Estimate` (a value, its 95% interval, how it was found) and the closed forms;
- `fit`: every parameter's fit and `calibrate`, which puts them together;
- `toml_out`: the fitted scenario, written into the base file's text;
- `report`: the fit report (estimates, observed against simulated curves, goodness of fit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from campaign.scenario import load_scenario, read_scenario_data
from sim.calibrate.estimate import Estimate
from sim.calibrate.fit import HELD, Calibration, Say, calibrate, match_names
from sim.calibrate.log import EventLogError, Events, read_events

__all__ = ["CalibrationRun", "Estimate", "EventLogError", "Events", "calibrate",
           "read_events", "run_calibration"]


@dataclass
class CalibrationRun:
    """A finished `run_calibration`: the fit, the files written and how long each step took."""

    calibration: Calibration
    fitted_path: Path
    kept_layout: bool
    """True: the base file's comments and layout were kept around the fitted values."""
    files: list[Path] = field(default_factory=list)
    fits: list = field(default_factory=list)
    """Goodness of fit per curve (`sim.calibrate.report.Fit`)."""
    events: int = 0
    read_seconds: float = 0.0
    fit_seconds: float = 0.0


def run_calibration(events_paths: list[str | Path], base_path: str | Path,
                    out_path: str | Path,
                    report_dir: str | Path, *, replications: int = 4, seed: int = 1,
                    iterations: int = 2, say: Say = lambda _: None,
                    report: bool = True) -> CalibrationRun:
    """Read the log, fit the base scenario to it, write the fitted scenario (checked by the
    schema) and the fit report."""
    from sim.calibrate.report import write_fit_report
    from sim.calibrate.toml_out import fitted_toml

    base = load_scenario(base_path)
    if base.audience is None:
        from campaign.errors import ScenarioError
        raise ScenarioError(str(base_path), ["audience: missing; calibration fits the "
                                             "[audience] section, so the base needs one"])
    start = time.perf_counter()
    logs = []
    for path in events_paths:
        say(f"reading {path}")
        logs.append(match_names(read_events(path), base, str(path)))
    ev = Events.concat(logs)
    events_path = str(events_paths[0]) if len(events_paths) == 1 else \
        f"{events_paths[0]} … {events_paths[-1]} ({len(events_paths)} logs)"
    read_s = time.perf_counter() - start
    say(f"{len(ev):,} events read in {read_s:.1f} s")
    cal = calibrate(ev, read_scenario_data(base_path), str(base_path),
                    replications=replications, seed=seed, iterations=iterations, say=say)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"Fitted by `groupbuy calibrate {events_path} --scenario {base_path}` on "
              f"{datetime.now():%Y-%m-%d %H:%M}.\n"
              "Lines marked `fitted` carry their 95% interval and the base's value; every "
              "other key is the base's.\n"
              f"Held from the base: {', '.join(HELD)}.")
    text, kept = fitted_toml(Path(base_path).read_text(encoding="utf-8"), cal.data,
                             cal.estimates, header)
    out_path.write_text(text, encoding="utf-8")
    load_scenario(out_path)  # what we wrote must pass the schema
    run = CalibrationRun(cal, out_path, kept, events=len(ev), read_seconds=read_s)
    if report:
        say("writing the fit report")
        run.files, run.fits = write_fit_report(
            Path(report_dir), cal, ev, events_path=str(events_path), base_path=str(base_path),
            fitted_path=str(out_path))
    run.fit_seconds = time.perf_counter() - start - read_s
    return run
