"""What a new user's first `python3 lab.py run` costs: a fresh clone of each revision, an empty
`.venv`, the main job; wall time (and how much of it is installing), `.venv` size and package
count. Revisions run in interleaved rounds, so a noisy machine hits both alike; the figure to
read is the ratio within a round.

    .venv/bin/python benchmarks/install_speed.py BEFORE_REV AFTER_REV [--rounds 3] [--repo .]

Writes results/benchmarks/install_speed.md and install_speed.json. Each run downloads every
package it installs (several minutes per run).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import BENCH_RESULTS, write_results

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = "1/2 simulating"
"""The first line `lab.py run` prints after installing."""


def fresh_run(repo: Path, rev: str, work: Path) -> dict[str, Any]:
    """Clone `rev` into `work`, time `python3 lab.py run` there, measure its `.venv`."""
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", rev], check=True)
    start = time.monotonic()
    installed = None
    with (work / "lab-run.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "lab.py", "run"], cwd=work, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if installed is None and line.startswith(INSTALLED):
                installed = time.monotonic() - start
        code = proc.wait()
    total = time.monotonic() - start
    size = subprocess.run(["du", "-sm", str(work / ".venv")], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    packages = subprocess.run([str(work / ".venv" / "bin" / "python"), "-m", "pip", "list",
                               "--format=freeze"], capture_output=True, text=True).stdout
    return {"rev": rev, "exit": code, "total_s": total, "install_s": installed or total,
            "venv_mb": int(size), "packages": len(packages.splitlines()),
            "load": Path("/proc/loadavg").read_text().split()[0]}


def table(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    def med(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows = ["| measure | before | after | after ÷ before (median; per round) |",
            "| --- | ---: | ---: | --- |"]
    for key, label in (("venv_mb", "`.venv` MB"), ("packages", "packages"),
                       ("total_s", "wall time s"), ("install_s", "of which installing s")):
        ratios = [a[key] / b[key] for b, a in zip(before, after, strict=True)]
        rows.append(f"| {label} | {med(before, key):,.0f} | {med(after, key):,.0f} | "
                    f"{statistics.median(ratios):.2f}; "
                    f"{', '.join(f'{r:.2f}' for r in ratios)} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="revision before the change")
    p.add_argument("after", help="revision after the change")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--repo", type=Path, default=ROOT, help="repository to clone (default: this)")
    p.add_argument("--out", type=Path, default=BENCH_RESULTS, help="where the table goes")
    args = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="groupbuy-install-") as tmp:
        for i in range(args.rounds):
            order = ("before", "after") if i % 2 else ("after", "before")
            for side in order:
                rev = getattr(args, side)
                run = fresh_run(args.repo, rev, Path(tmp) / f"{side}-{i}")
                runs[side].append(run)
                print(f"round {i + 1} {side} ({rev}): {run['total_s']:.0f} s, installing "
                      f"{run['install_s']:.0f} s, .venv {run['venv_mb']} MB, "
                      f"{run['packages']} packages, exit {run['exit']}, load {run['load']}",
                      flush=True)
    text = table(runs["before"], runs["after"])
    print("\n" + text)
    write_results("install_speed", text, runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
