"""Simulation speed: a 1-million-arrival campaign beside a bare SimPy timeout loop.

    .venv/bin/python benchmarks/sim_speed.py [--arrivals 1000000] [--repeats 3] [--scenario F]

Builds the default scenario scaled so that ∫λ(t)dt = --arrivals (rates, stock and subsidy
budget scaled alike), runs one replication per repeat, and in the same run times a bare SimPy
loop (one process yielding N timeouts, N = the campaign's arrivals). The runs alternate, and
the table reports medians. Prints a table and writes it to
results/benchmarks/sim_speed.md and .json.
Target: 1 million arrivals in at most 20 s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import simpy
from _results import BENCH_RESULTS, write_results

from campaign.scenario import Scenario, parse_scenario, read_scenario_data
from sim import simulate_once
from sim.model.after import Cohort, after_campaign

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 20.0
DEFAULT = ROOT / "scenarios" / "default.toml"


def scaled_default(arrivals: float, path: Path = DEFAULT) -> Scenario:
    """The scenario (default: scenarios/default.toml) with rates, stock and budget scaled to
    `arrivals` expected."""
    data = read_scenario_data(path)
    base = parse_scenario(data).expected_arrivals()
    f = arrivals / base
    aud, camp = data["audience"], data["campaign"]
    aud["arrivals_per_hour"] = {k: v * f for k, v in aud["arrivals_per_hour"].items()}
    for sku in camp["skus"]:
        sku["stock"] = round(sku["stock"] * f)
    camp["subsidy_budget"] = camp["subsidy_budget"] * f
    camp["name"] = f"{path.stem} scaled to {arrivals:,.0f} arrivals"
    return parse_scenario(data, "benchmark")


def bare_loop(n: int) -> float:
    """Seconds for SimPy to process one process yielding n timeouts."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1e-6)

    env.process(proc())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def after_alone(scenario: Scenario, buyers: int) -> float:
    """Seconds for the after-campaign step on a cohort of `buyers` acquired buyers."""
    cohort = Cohort()
    for i in range(buyers):
        cohort.add(i, 0, i % 5, i % len(scenario.campaign.skus), 8900, 3600, 1000)
    assert scenario.audience is not None
    start = time.perf_counter()
    after_campaign(cohort, scenario.audience.after_campaign,
                   [s.name for s in scenario.audience.segments], scenario.campaign,
                   np.random.default_rng(1), spend_fen=buyers * 5000, profit_fen=0)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arrivals", type=float, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=BENCH_RESULTS)
    ap.add_argument("--scenario", type=Path, default=DEFAULT,
                    help="the scenario to scale (default: scenarios/default.toml)")
    args = ap.parse_args()
    scenario = scaled_default(args.arrivals, args.scenario)
    sim_s, bare_s, log_s, after_s, runs = [], [], [], [], []
    for i in range(args.repeats):
        start = time.perf_counter()
        run = simulate_once(scenario, i + 1)
        sim_s.append(time.perf_counter() - start)
        runs.append(run)
        bare_s.append(bare_loop(int(run.kpis["arrivals"])))
        start = time.perf_counter()
        simulate_once(scenario, i + 1, events=True)
        log_s.append(time.perf_counter() - start)
        after_s.append(after_alone(scenario, int(run.kpis["acquired_buyers"])))
    k = [r.kpis for r in runs]
    shoppers = statistics.median(x["arrivals"] + x["invitee_arrivals"] for x in k)
    events = statistics.median(r.events for r in runs)
    t_sim, t_bare = statistics.median(sim_s), statistics.median(bare_s)
    n_bare = statistics.median(x["arrivals"] for x in k)
    rows = [
        ("campaign", scenario.campaign.name),
        ("arrivals (first-time + invitees, median)", f"{shoppers:,.0f}"),
        ("paid orders (median)", f"{statistics.median(x['orders_paid'] for x in k):,.0f}"),
        ("SimPy events processed (median)", f"{events:,.0f}"),
        ("simulation wall time (median of "
         f"{args.repeats})", f"{t_sim:.2f} s"),
        ("simulated shoppers per second", f"{shoppers / t_sim:,.0f}"),
        ("model SimPy events per second", f"{events / t_sim:,.0f}"),
        ("of which after-campaign value (numpy, "
         f"{statistics.median(x['acquired_buyers'] for x in k):,.0f} acquired buyers)",
         f"{statistics.median(after_s) * 1000:.0f} ms"),
        ("simulation keeping the event log (--events)", f"{statistics.median(log_s):.2f} s"),
        (f"bare SimPy loop: {n_bare:,.0f} timeouts", f"{t_bare:.2f} s"),
        ("bare SimPy timeouts per second", f"{n_bare / t_bare:,.0f}"),
        ("shoppers/s ÷ bare timeouts/s", f"{(shoppers / t_sim) / (n_bare / t_bare):.2f}"),
        ("model events/s ÷ bare timeouts/s", f"{(events / t_sim) / (n_bare / t_bare):.2f}"),
        (f"target: ≤ {TARGET_SECONDS:g} s for 1M arrivals",
         "met" if t_sim <= TARGET_SECONDS * shoppers / 1e6 else "NOT met"),
    ]
    w = max(len(a) for a, _ in rows)
    table = "\n".join([f"| {'measure':<{w}} | value |", f"|{'-' * (w + 2)}|-------|",
                       *(f"| {a:<{w}} | {b} |" for a, b in rows)])
    machine = f"{platform.python_implementation()} {platform.python_version()}, " \
              f"simpy {simpy.__version__}, {os.cpu_count()} CPU(s), one core used"
    print(table)
    print(machine)
    write_results("sim_speed", f"{table}\n\n{machine}", {
        "sim_seconds": sim_s, "bare_seconds": bare_s, "event_log_seconds": log_s,
        "after_campaign_seconds": after_s, "rows": dict(rows),
        "machine": machine}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
