"""Calibration speed: fitting a one-million-event log, beside reading the file alone.

    .venv/bin/python benchmarks/calibrate_speed.py [--events 1000000] [--repeats 3]

Simulates the default scenario scaled so that its event log has about --events rows (rates,
stock and budget scaled alike, as benchmarks/sim_speed.py does), writes the log and the scaled
scenario under results/benchmarks/, then times, alternating, median of --repeats:

- the floor: reading the file alone (pandas' C reader, as calibration reads it), and the
  standard library's csv module for comparison;
- `read_events`: reading and checking the log (columns, kinds, time order, pay after reserve);
- the whole `run_calibration`: read, fit (with its simulations), write the fitted scenario and
  the fit report.

Prints a table and writes results/benchmarks/calibrate_speed.md and .json.
Target: a 1M-event log calibrated in at most 60 s on one core.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
from _results import BENCH_RESULTS, write_results
from sim_speed import scaled_default

from campaign.scenario import load_scenario
from sim import simulate_once
from sim.calibrate import read_events, run_calibration
from sim.calibrate.toml_out import dump
from sim.events import write_events

TARGET_SECONDS = 60.0
EVENTS_PER_ARRIVAL = 1.125
"""Rows per first-time arrival in the default scenario's log (visits, invitees, orders …)."""


def make_log(events: int, out: Path) -> tuple[Path, Path, int]:
    scenario = scaled_default(events / EVENTS_PER_ARRIVAL)
    base = out / "calibrate_base.toml"
    base.write_text(dump(scenario.model_dump(mode="json", exclude_none=True)))
    scenario = load_scenario(base)
    run = simulate_once(scenario, 1, events=True)
    path = out / "calibrate_events.csv"
    rows = write_events(path, scenario, run.event_log)
    return path, base, rows


def read_floor(path: Path) -> float:
    start = time.perf_counter()
    pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, engine="c")
    return time.perf_counter() - start


def read_csv_module(path: Path) -> float:
    start = time.perf_counter()
    with path.open(newline="") as fh:
        for _ in csv.reader(fh):
            pass
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=float, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=BENCH_RESULTS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log, base, rows = make_log(int(args.events), args.out)
    floor, csv_s, check, full = [], [], [], []
    fits = None
    for _ in range(args.repeats):
        floor.append(read_floor(log))
        csv_s.append(read_csv_module(log))
        start = time.perf_counter()
        read_events(log)
        check.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = run_calibration([log], base, args.out / "calibrate_fitted.toml",
                                 args.out / "calibrate_report")
        full.append(time.perf_counter() - start)
        fits = result.fits
    t_floor, t_csv = statistics.median(floor), statistics.median(csv_s)
    t_check, t_full = statistics.median(check), statistics.median(full)
    size = log.stat().st_size / 1e6
    table_rows = [
        ("event log", f"{rows:,} rows, {size:,.0f} MB (default scenario scaled)"),
        ("read the file alone: pandas C reader, as calibrate does", f"{t_floor:.2f} s"),
        ("read the file alone: the csv module, rows only", f"{t_csv:.2f} s"),
        ("read and check the log (read_events)", f"{t_check:.2f} s"),
        ("calibrate: read, fit, write scenario and report", f"{t_full:.2f} s"),
        ("calibrate ÷ the faster read (the floor)", f"{t_full / min(t_floor, t_csv):.1f}×"),
        ("read and check ÷ the floor", f"{t_check / min(t_floor, t_csv):.1f}×"),
        (f"target: ≤ {TARGET_SECONDS:g} s for 1M events",
         "met" if t_full <= TARGET_SECONDS * rows / 1e6 else "NOT met"),
    ]
    w = max(len(a) for a, _ in table_rows)
    table = "\n".join([f"| {'measure':<{w}} | value (median of {args.repeats}) |",
                       f"|{'-' * (w + 2)}|-------|",
                       *(f"| {a:<{w}} | {b} |" for a, b in table_rows)])
    machine = f"{platform.python_implementation()} {platform.python_version()}, pandas " \
              f"{pd.__version__}, {os.cpu_count()} CPU(s), one core used"
    print(table)
    print(machine)
    print("goodness of fit: " + "; ".join(str(f) for f in fits or []))
    write_results("calibrate_speed", f"{table}\n\n{machine}", {
        "rows": rows, "floor_seconds": floor, "csv_module_seconds": csv_s,
        "read_events_seconds": check, "calibrate_seconds": full, "machine": machine}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
