#!/usr/bin/env python3
"""Bootstrap and run the lab: `python3 lab.py run` (main job) or `python3 lab.py test`.

Creates `.venv/` next to this file on first use, installs the project into it (again whenever
pyproject.toml changes), then runs the command inside it. Needs only Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-pyproject.sha256"

USAGE = """usage: python3 lab.py COMMAND [ARGS...]

  run [SCENARIO] [ARGS...]  the main job: simulate the scenario (default: scenarios/default.toml),
                            serve it on SQLite, load-test it with the simulated arrival curve,
                            check the invariants, write everything under results/
  test [PYTEST ARGS...]     ruff, then the whole test suite (in parallel: one pytest-xdist
                            worker per CPU; pass -n 0 to run it in one process)
  groupbuy ARGS...          any groupbuy sub-command inside the lab's environment
"""


def _ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - lab.py may be started by an older python3
        sys.exit(f"lab.py needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"lab: creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print("lab: installing the project and its dependencies (first run takes a few minutes)",
          flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def _run(args: list[str]) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.call(args, cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in {"run", "test", "groupbuy"}:
        print(f"lab.py: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    _ensure_venv()
    groupbuy = str(BIN / "groupbuy")
    if command == "run":
        return _run([groupbuy, "demo", *rest])
    if command == "groupbuy":
        return _run([groupbuy, *rest])
    code = _run([str(BIN / "ruff"), "check", "."])
    if code != 0:
        return code
    return _run([str(BIN / "python"), "-m", "pytest", *_parallel(rest), *rest])


def _parallel(pytest_args: list[str]) -> list[str]:
    """pytest-xdist options: one worker per CPU, each test file on one worker (so the load
    tests of a file, such as the gate's, never run at once and measure each other); none when
    the caller chose (-n, --dist, -p no:xdist)."""
    if any(a.startswith(("-n", "--numprocesses", "--dist")) or a == "no:xdist"
           for a in pytest_args):
        return []
    return ["-n", "auto", "--dist", "loadfile"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
