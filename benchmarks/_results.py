"""Where every benchmark writes its table: results/benchmarks/<name>.md and <name>.json."""

from __future__ import annotations

import json
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
