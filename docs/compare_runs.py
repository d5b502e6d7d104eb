"""Print, per KPI, two simulate runs side by side and whether the second run's mean lies in the
first run's 95% CI (docs/calibration.md's round trip).

    .venv/bin/python docs/compare_runs.py ORIGINAL/summary.json FITTED/summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, "")

from sim.report import KPI_LABELS, fmt


def main(a_path: str, b_path: str) -> int:
    a, b = (json.loads(Path(p).read_text())["kpis"] for p in (a_path, b_path))
    print("| KPI | original: mean [95% CI] | fitted: mean [95% CI] | fitted mean in the "
          "original CI? |\n|---|---|---|:---:|")
    inside = 0
    for k, x in a.items():
        y = b[k]
        ok = x["ci_low"] - 1e-9 <= y["mean"] <= x["ci_high"] + 1e-9
        inside += ok
        print(f"| {KPI_LABELS.get(k, k)} | {fmt(x['mean'])} [{fmt(x['ci_low'])}, "
              f"{fmt(x['ci_high'])}] | {fmt(y['mean'])} [{fmt(y['ci_low'])}, "
              f"{fmt(y['ci_high'])}] | {'yes' if ok else '**no**'} |")
    print(f"\n{inside} of {len(a)} KPIs: the fitted scenario's mean lies in the original's 95% CI")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
