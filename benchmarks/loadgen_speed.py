"""Load-generator speed: achieved vs target arrival rate of one Locust process (the open-workload
scheduler, history included) against `GET /v1/ping`, beside `wrk` on the same endpoint of the
same server in the same run.

    .venv/bin/python benchmarks/loadgen_speed.py [--rates 250,500,...] [--seconds 6]

A rate is sustained when the achieved rate (requests completed over the span from the first
intended start to the last answer) is within 5% of the target and at most 5% of arrivals
started late. The figure is the ratio: the highest sustained rate over wrk's requests/s.
Beside it, CPU time per request of each (user + system of the finished child process): for
Locust, a run's CPU less that of a one-arrival run (start-up), over its requests. A busy
machine disturbs that far less than the rates. Writes results/benchmarks/loadgen_speed.md
and loadgen_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import BENCH_RESULTS, missing_tool, write_results

from loadtests.harness import run_locust, sigterm_as_interrupt
from loadtests.history import read_history
from loadtests.metrics import percentile
from loadtests.plan import ScenarioFile, prepare_plan
from loadtests.schedule import Piece, Schedule
from loadtests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = ROOT / "scenarios" / "flash_sale.toml"
SOURCE = ScenarioFile.read(SCENARIO)
LOCUSTFILE = ROOT / "loadtests" / "scenario.py"
TOLERANCE = 0.05


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk_rate(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """wrk's requests/s on the endpoint (closed loop, 1 thread: the same one core Locust gets)
    and its CPU milliseconds per request."""
    cpu = children_cpu()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
                         capture_output=True, text=True, check=True).stdout
    cpu = children_cpu() - cpu
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n:
        raise RuntimeError(f"cannot read wrk's output: {out}")
    return float(m.group(1)), 1000 * cpu / max(int(n.group(1)), 1)


def locust_rate(host: str, token: str, rate: float, seconds: float, work: Path) -> dict:
    """One Locust process driving `rate` pings per second for `seconds` seconds."""
    run_dir = work / f"rate-{rate:g}"
    sched = Schedule((Piece(0.0, seconds, rate),))
    plan = prepare_plan(host, token, SOURCE, sched, run_dir, mix={"ping": 1.0}, seed=1)
    cpu = children_cpu()
    run_locust(run_dir / "plan.json", run_dir, host, plan, locustfile=LOCUSTFILE,
               progress=False)
    cpu = children_cpu() - cpu
    history = read_history(run_dir / "history-0.jsonl")
    arrivals = json.loads((run_dir / "arrivals-0.json").read_text())
    ok = [r for r in history if r.outcome == "ok"]
    span = max(r.end for r in history) - min(r.intended for r in history)
    achieved = len(ok) / span if span > 0 else 0.0
    late = arrivals["late"] / max(arrivals["scheduled"], 1)
    lags = [r.start - r.intended for r in history]
    return {"target": rate, "achieved": achieved, "ratio": achieved / rate,
            "requests": len(history), "cpu_seconds": cpu,
            "late_share": late, "errors": len(history) - len(ok),
            "p99_lag_ms": 1000 * percentile(lags, 99) if lags else 0.0,
            "sustained": achieved >= (1 - TOLERANCE) * rate and late <= TOLERANCE}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="1000,2000,4000,6000,8000,10000,12000,16000",
                    help="target arrival rates per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per rate (default 6)")
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=BENCH_RESULTS)
    args = ap.parse_args()
    if missing := missing_tool("loadgen_speed", "wrk", "the yardstick Locust is measured "
                               "against"):
        print(missing, file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",")]
    token = secrets.token_hex(8)
    # SIGTERM unwinds like Ctrl-C, so the server and Locust stop with the benchmark.
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with ServerProcess(SCENARIO, f"sqlite:///{work / 'bench.sqlite3'}", args.server_workers,
                           token, work / "server.log") as srv:
            ping = f"{srv.url}/v1/ping"
            wrk_measured = sorted(wrk_rate(ping, 3, 32) for _ in range(3))
            wrk_runs = [r for r, _ in wrk_measured]
            wrk, wrk_cpu_ms = wrk_measured[1]  # the median
            startup = locust_rate(srv.url, token, 1, 1, work)["cpu_seconds"]
            rows = []
            for rate in rates:
                row = locust_rate(srv.url, token, rate, args.seconds, work)
                row["cpu_ms"] = 1000 * (row["cpu_seconds"] - startup) / max(row["requests"], 1)
                rows.append(row)
                print(f"target {rate:>6g}/s  achieved {row['achieved']:8.1f}/s  "
                      f"({row['ratio']:.1%})  late {row['late_share']:.1%}", flush=True)
    best = max((r["target"] for r in rows if r["sustained"]), default=0.0)
    busiest = max(rows, key=lambda r: r["requests"])
    locust_cpu_ms = busiest["cpu_ms"]
    lines = [
        f"Load generator vs wrk, GET /v1/ping, reference server with {args.server_workers} "
        f"worker(s), {args.seconds:g} s per rate, {os.cpu_count()} CPU(s)",
        "",
        "| target /s | achieved /s | achieved/target | late arrivals | p99 start lag ms "
        "| errors | CPU ms/request | sustained (±5%) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        lines.append(f"| {r['target']:g} | {r['achieved']:.0f} | {r['ratio']:.1%} | "
                     f"{r['late_share']:.1%} | {r['p99_lag_ms']:.1f} | {r['errors']} | "
                     f"{r['cpu_ms']:.3f} | "
                     f"{'yes' if r['sustained'] else 'no'} |")
    lines += [
        "",
        f"wrk (1 thread, 32 connections) on the same endpoint: median {wrk:.0f} req/s of 3 "
        f"runs of 3 s ({', '.join(f'{w:.0f}' for w in wrk_runs)})",
        f"highest rate one Locust process sustains within 5%: {best:g}/s = "
        f"{best / wrk:.2f} x wrk's median",
        f"CPU per request: Locust {locust_cpu_ms:.3f} ms (the {busiest['target']:g}/s run, "
        f"start-up {startup:.2f} s taken off), wrk {wrk_cpu_ms:.3f} ms: one core would carry "
        f"{1000 / locust_cpu_ms:,.0f} Locust requests/s = {wrk_cpu_ms / locust_cpu_ms:.2f} x "
        "wrk's per core",
    ]
    table = "\n".join(lines)
    print("\n" + table)
    write_results("loadgen_speed", table, {"rows": rows, "wrk_runs": wrk_runs,
                                           "wrk_median": wrk, "best_sustained": best,
                                           "ratio": best / wrk, "wrk_cpu_ms": wrk_cpu_ms,
                                           "locust_cpu_ms": locust_cpu_ms,
                                           "locust_startup_cpu_seconds": startup}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
