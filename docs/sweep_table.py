"""Print a sweep's points as a markdown table: the settings, then each KPI's mean ± half its 95%
CI (docs/simulation.md's lever tables).

    .venv/bin/python docs/sweep_table.py RESULTS/points.csv KPI [KPI ...]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, "")

from sim.report import KPI_LABELS, fmt


def main(points: str, kpis: list[str]) -> int:
    with Path(points).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"{points}: no points", file=sys.stderr)
        return 1
    header = list(rows[0])
    settings = header[1:header.index("runs_ok")]  # between `point` and `runs_ok`
    names = [s.split(".")[-1] for s in settings] + [KPI_LABELS.get(k, k) for k in kpis]
    print("| " + " | ".join(names) + " |")
    print("|" + "---:|" * len(names))
    for row in rows:
        cells = [row[s] for s in settings]
        for k in kpis:
            mean, lo, hi = (float(row[f"{k}_{x}"]) for x in ("mean", "ci_low", "ci_high"))
            cells.append(f"{fmt(mean)} ± {fmt((hi - lo) / 2)}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
