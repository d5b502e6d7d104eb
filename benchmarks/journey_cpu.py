"""CPU time per arrival of the load generator's own code: a shopper journey with its history
record written, against a stand-in for the HTTP client (no network, no Locust), so a busy
machine disturbs it little.

    .venv/bin/python benchmarks/journey_cpu.py [--arrivals 30000] [--repeats 5] [--journey ping]

Prints the median CPU microseconds per arrival (user + system) of the repeats.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtests.history import HistoryHeader, HistoryWriter
from loadtests.journeys import Arrival, GroupBoard, JourneyPicker, OrderBoard, Shopper
from loadtests.plan import Plan

ANSWER = (200, b'{"ok":true}', None, 1.0)


def cpu_per_arrival(journey: str, arrivals: int, folder: Path) -> float:
    """CPU microseconds per arrival of `journey`, every request answered 200 at once."""
    plan = Plan(scenario="bench", host="http://bench", run_dir=str(folder),
                schedule=[[0.0, 1.0, 1.0]], mix={journey: 1.0}, tokens={"u": "t"},
                skus=["a"], coupons=[], per_user_limit=1)
    writer = HistoryWriter(folder / "history.jsonl", HistoryHeader("bench", None, 0, 1, 0.0))
    rng, pick = random.Random(1), JourneyPicker(plan.mix)
    board, orders = GroupBoard(), OrderBoard()
    start = time.process_time()
    for n in range(arrivals):
        arrival = Arrival(0, n, pick(rng), "u", "t", time.time())
        Shopper(plan, arrival, lambda *_: ANSWER, writer.write, board, rng.random(),
                orders).run()
    used = time.process_time() - start
    writer.close()
    return 1e6 * used / arrivals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrivals", type=int, default=30_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--journey", default="ping")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [cpu_per_arrival(args.journey, args.arrivals, Path(tmp))
                for _ in range(args.repeats)]
    print(f"{args.journey}: {statistics.median(runs):.1f} µs CPU per arrival (median of "
          f"{args.repeats}: {', '.join(f'{r:.1f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
