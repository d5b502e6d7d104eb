"""Print docs/calibration.md's parameter-recovery tables (markdown).

    .venv/bin/python docs/recovery.py [--seeds 20]

Simulates scenarios/default.toml (the truth) once per seed, calibrates a deliberately wrong
base on each event log (the one tests/sim/test_calibrate.py uses) and prints: the worked example
(seed 1: true value, estimate, 95% CI, covered?) and, per parameter, how many seeds' intervals
covered the truth.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_calibrate import DEFAULT, wrong_base  # noqa: E402  (the test's own wrong base)

from campaign.scenario import read_scenario_data  # noqa: E402
from sim.calibrate.recovery import recover  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    rows = recover(read_scenario_data(DEFAULT), wrong_base(), list(range(1, args.seeds + 1)))
    print("| parameter | true | estimate | 95% CI | covered? |\n|---|---:|---:|---|:---:|")
    for r in (r for r in rows if r.seed == 1):
        print(f"| `{r.key}` | {r.true:.4g} | {r.estimate:.4g} | [{r.ci_low:.4g}, "
              f"{r.ci_high:.4g}] | {'yes' if r.covered else '**no**'} |")
    by_key: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_key[r.key].append(r.covered)
    print(f"\n| parameter | intervals covering the truth, of {args.seeds} seeds |\n|---|---:|")
    for key, hits in by_key.items():
        print(f"| `{key}` | {sum(hits)} |")
    total = sum(r.covered for r in rows)
    print(f"| **all** | **{total} of {len(rows)} ({total / len(rows):.1%})** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
