"""Benchmarks that run an outside tool (wrk, pgbench, redis-benchmark, a private redis-server or
PostgreSQL) say in one line what is missing and how to get it, when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_without_tools(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """The benchmark with a PATH that holds none of the tools."""
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PATH=str(tmp_path)),
                          cwd=tmp_path)


def test_loadgen_speed_without_wrk(tmp_path: Path) -> None:
    proc = run_without_tools(tmp_path, "loadgen_speed.py")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("loadgen_speed: needs wrk") and "apt-get install wrk" in err


def test_durability_without_redis_server(tmp_path: Path) -> None:
    proc = run_without_tools(tmp_path, "durability.py", "--settings", "redis-always")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "redis-server is not installed (apt-get install redis-server)" in err
