"""Where every benchmark writes its table (results/benchmarks/<name>.md and <name>.json), and
the outside tools some benchmarks need."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

BENCH_RESULTS = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


def write_results(name: str, table: str, data: dict[str, Any],
                  out_dir: Path = BENCH_RESULTS) -> Path:
    """Write the markdown table and its raw data; print and return where the table went."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{name}.md"
    md.write_text(table.rstrip("\n") + "\n")
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {md} and {name}.json")
    return md


HOW_TO_GET = {
    "wrk": "apt-get install wrk (macOS: brew install wrk)",
    "pgbench": "apt-get install postgresql (pgbench comes with the server package)",
    "redis-benchmark": "apt-get install redis-tools",
}
"""Command-line tools some benchmarks run beside the lab, and how to get each."""


def missing_tool(bench: str, name: str, purpose: str) -> str | None:
    """None when `name` is on PATH; else one line: what is missing, what for, how to get it."""
    if shutil.which(name):
        return None
    return f"{bench}: needs {name} ({purpose}), which is not installed: {HOW_TO_GET[name]}"
