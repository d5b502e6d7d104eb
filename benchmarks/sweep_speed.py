"""Sweep throughput: model runs per second at 1 and 2 local processes and on a Dask
LocalCluster with 2 worker processes, measured side by side in one run.

The workload is a fixed sweep over scenarios/group_buy_ladder.toml (points x replications,
common random numbers). Each executor is started and warmed up first (workers spawned,
modules imported), then the rounds are interleaved (A B C, A B C, …) so a busy moment on the
machine hits every executor alike. The table gives the median runs/s over the rounds and the
scaling efficiency: runs/s ÷ (workers × runs/s of one process). It also checks that every
executor produced exactly the same KPIs.

    .venv/bin/python benchmarks/sweep_speed.py [--points 12] [--replications 10] [--rounds 5]

Writes results/benchmarks/sweep_speed.md (the table) and sweep_speed.json (every round).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

from _results import write_results

from campaign.scenario import read_scenario_data
from sim.studies.executor import DaskExecutor, Executor, LocalExecutor
from sim.studies.params import parse_param
from sim.studies.runs import run_points
from sim.studies.sweep import plan_sweep

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "group_buy_ladder.toml"


def digest(outcomes: list) -> str:
    """A fingerprint of every KPI of every run, to show all executors computed the same."""
    h = hashlib.sha256()
    for runs in outcomes:
        for o in runs:
            h.update(json.dumps([o.point, o.replication, o.kpis, o.error]).encode())
    return h.hexdigest()[:12]


def timed(executor: Executor, plan, replications: int) -> tuple[float, str]:
    start = time.perf_counter()
    outcomes = run_points(plan.scenarios, plan.source, replications=replications,
                          seed=plan.seed, executor=executor, progress=False)
    return time.perf_counter() - start, digest(outcomes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=12)
    ap.add_argument("--replications", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    data = read_scenario_data(SCENARIO)
    values = ",".join(str(40 + 2 * i) for i in range(args.points))
    plan = plan_sweep(data, str(SCENARIO.relative_to(REPO)),
                      [parse_param(f"campaign.groups.tiers[2].percent_off={values}")],
                      replications=args.replications, seed=1)
    runs = args.points * args.replications

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1", scheduler_port=0)
    executors: dict[str, tuple[Executor, int]] = {
        "local, 1 process": (LocalExecutor(1), 1),
        "local, 2 processes": (LocalExecutor(2), 2),
        "dask LocalCluster, 2 workers": (DaskExecutor(cluster.scheduler_address), 2),
    }
    seconds: dict[str, list[float]] = {name: [] for name in executors}
    digests: dict[str, set[str]] = {name: set() for name in executors}
    try:
        for ex, _ in executors.values():  # warm-up: spawn workers, import the model
            timed(ex, plan, 1)
        for _ in range(args.rounds):
            for name, (ex, _) in executors.items():
                secs, fp = timed(ex, plan, args.replications)
                seconds[name].append(secs)
                digests[name].add(fp)
    finally:
        for ex, _ in executors.values():
            ex.close()
        cluster.close()

    base = runs / statistics.median(seconds["local, 1 process"])
    same = len(set().union(*digests.values())) == 1
    lines = [
        f"Sweep throughput: {args.points} points x {args.replications} replications = {runs} "
        f"runs of {SCENARIO.name}, median of {args.rounds} interleaved rounds "
        f"({os.cpu_count()} cores, Python {platform.python_version()})",
        "",
        "| executor | workers | median s | runs/s | speed-up | scaling efficiency |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table = []
    for name, (_, workers) in executors.items():
        med = statistics.median(seconds[name])
        rate = runs / med
        row = {"executor": name, "workers": workers, "median_s": med, "runs_per_s": rate,
               "speedup": rate / base, "efficiency": rate / (workers * base),
               "rounds_s": seconds[name]}
        table.append(row)
        lines.append(f"| {name} | {workers} | {med:.2f} | {rate:.1f} | {rate / base:.2f}x | "
                     f"{rate / (workers * base):.0%} |")
    lines += ["", f"Identical KPIs from every executor: {'yes' if same else 'NO'}"]
    text = "\n".join(lines)
    print(text)
    write_results("sweep_speed", text,
                  {"runs": runs, "rounds": args.rounds, "identical": same, "rows": table})


if __name__ == "__main__":
    main()
