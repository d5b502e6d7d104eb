"""Load-generator speed: achieved vs target arrival rate of one Locust process (the open-workload
scheduler, history included) against `GET /v1/ping`, beside `wrk` on the same endpoint of the
same server in the same run.

    .venv/bin/python benchmarks/loadgen_speed.py [--rates 250,500,...] [--seconds 6]

A rate is sustained when the achieved rate (requests completed over the span from the first
intended start to the last answer) is within 5% of the target and at most 5% of arrivals
started late. The figure is the ratio: the highest sustained rate over wrk's requests/s.
Writes results/benchmarks/loadgen_speed.md and loadgen_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import BENCH_RESULTS, missing_tool, write_results

from loadtests.harness import run_locust
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


def wrk_rate(url: str, seconds: int, connections: int) -> float:
    """wrk's requests/s on the endpoint (closed loop, 1 thread: the same one core Locust gets)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output: {out}")
    return float(m.group(1))


def locust_rate(host: str, token: str, rate: float, seconds: float, work: Path) -> dict:
    """One Locust process driving `rate` pings per second for `seconds` seconds."""
    run_dir = work / f"rate-{rate:g}"
    sched = Schedule((Piece(0.0, seconds, rate),))
    plan = prepare_plan(host, token, SOURCE, sched, run_dir, mix={"ping": 1.0}, seed=1)
    run_locust(run_dir / "plan.json", run_dir, host, plan, locustfile=LOCUSTFILE,
               progress=False)
    history = read_history(run_dir / "history-0.jsonl")
    arrivals = json.loads((run_dir / "arrivals-0.json").read_text())
    ok = [r for r in history if r["outcome"] == "ok"]
    span = max(r["end"] for r in history) - min(r["intended"] for r in history)
    achieved = len(ok) / span if span > 0 else 0.0
    late = arrivals["late"] / max(arrivals["scheduled"], 1)
    lags = [r["start"] - r["intended"] for r in history]
    return {"target": rate, "achieved": achieved, "ratio": achieved / rate,
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
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with ServerProcess(SCENARIO, f"sqlite:///{work / 'bench.sqlite3'}", args.server_workers,
                           token, work / "server.log") as srv:
            ping = f"{srv.url}/v1/ping"
            wrk_runs = sorted(wrk_rate(ping, 3, 32) for _ in range(3))
            wrk = wrk_runs[1]  # the median
            rows = []
            for rate in rates:
                row = locust_rate(srv.url, token, rate, args.seconds, work)
                rows.append(row)
                print(f"target {rate:>6g}/s  achieved {row['achieved']:8.1f}/s  "
                      f"({row['ratio']:.1%})  late {row['late_share']:.1%}", flush=True)
    best = max((r["target"] for r in rows if r["sustained"]), default=0.0)
    lines = [
        f"Load generator vs wrk, GET /v1/ping, reference server with {args.server_workers} "
        f"worker(s), {args.seconds:g} s per rate, {os.cpu_count()} CPU(s)",
        "",
        "| target /s | achieved /s | achieved/target | late arrivals | p99 start lag ms "
        "| errors | sustained (±5%) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        lines.append(f"| {r['target']:g} | {r['achieved']:.0f} | {r['ratio']:.1%} | "
                     f"{r['late_share']:.1%} | {r['p99_lag_ms']:.1f} | {r['errors']} | "
                     f"{'yes' if r['sustained'] else 'no'} |")
    lines += [
        "",
        f"wrk (1 thread, 32 connections) on the same endpoint: median {wrk:.0f} req/s of 3 "
        f"runs of 3 s ({', '.join(f'{w:.0f}' for w in wrk_runs)})",
        f"highest rate one Locust process sustains within 5%: {best:g}/s = "
        f"{best / wrk:.2f} x wrk's median",
    ]
    table = "\n".join(lines)
    print("\n" + table)
    write_results("loadgen_speed", table, {"rows": rows, "wrk_runs": wrk_runs,
                                           "wrk_median": wrk, "best_sustained": best,
                                           "ratio": best / wrk}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
