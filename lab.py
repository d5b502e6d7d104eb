#!/usr/bin/env python3
"""Bootstrap and run the lab: `python3 lab.py run` (main job) or `python3 lab.py test`.

Creates `.venv/` next to this file on first use, installs the project into it with the extras
the command needs (`extras_for`; again whenever pyproject.toml changes or a command needs more),
then runs the command inside it. Needs only Python 3.11+.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # groupbuy/extras.py is standard library only

from groupbuy import extras as ex  # noqa: E402 - needs the line above

VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed.json"  # {"pyproject": sha256, "extras": [...]}

USAGE = """usage: python3 lab.py COMMAND [ARGS...]

  run [SCENARIO] [ARGS...]  the main job: simulate the scenario (default: scenarios/default.toml),
                            serve it on SQLite, load-test it with the simulated arrival curve,
                            check the invariants, write everything under results/
  test [PYTEST ARGS...]     ruff, then the whole test suite
  groupbuy ARGS...          any groupbuy sub-command inside the lab's environment
  install [EXTRA...]        install extras without running anything (default: all); extras:
                            sim, planner, distributed, server, loadtest, all, dev

Each command installs into .venv/ only what it needs (pyproject.toml's extras), on first use.
"""


def extras_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The pyproject.toml extras `python3 lab.py ARGV…` needs installed."""
    command, rest = argv[0], list(argv[1:])
    if command == "run":
        return ex.needed("demo", rest)
    if command == "test":
        return ("dev",)
    if command == "install":
        return tuple(rest) or ("all",)
    if command == "groupbuy" and rest:
        return ex.needed(rest[0], rest[1:])
    return ()


def _installed() -> tuple[str, frozenset[str]]:
    """(pyproject.toml hash, extras) of what .venv holds; ("", {}) when nothing is there."""
    if not STAMP.exists():
        return "", frozenset()
    stamp = json.loads(STAMP.read_text())
    return stamp["pyproject"], frozenset(stamp["extras"])


def _ensure_venv(extras: Sequence[str]) -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    digest, have = _installed()
    if digest == wanted and ex.closure(extras) <= ex.closure(have):
        return
    keep = sorted(set(extras) | have)  # never drop what an earlier command installed
    if not (BIN / "python").exists():
        print(f"lab: creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    what = f"the extras {', '.join(keep)}" if keep else "the core only"
    print(f"lab: installing the project with {what} (the first time takes a few minutes)",
          flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    target = f"{ROOT}[{','.join(keep)}]" if keep else str(ROOT)
    subprocess.run([*pip, "install", "-q", "-e", target], check=True)
    STAMP.write_text(json.dumps({"pyproject": wanted, "extras": keep}) + "\n")


def _run(args: list[str]) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.call(args, cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - lab.py may be started by an older python3
        sys.exit(f"lab.py needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in {"run", "test", "groupbuy", "install"}:
        print(f"lab.py: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    extras = extras_for(argv)
    unknown = [e for e in extras if e not in ex.EXTRAS]
    if unknown:
        print(f"lab.py install: unknown extra {unknown[0]!r}; the extras are "
              f"{', '.join(ex.EXTRAS)}", file=sys.stderr)
        return 2
    _ensure_venv(extras)
    groupbuy = str(BIN / "groupbuy")
    if command == "install":
        return 0
    if command == "run":
        return _run([groupbuy, "demo", *rest])
    if command == "groupbuy":
        return _run([groupbuy, *rest])
    code = _run([str(BIN / "ruff"), "check", "."])
    if code != 0:
        return code
    return _run([str(BIN / "python"), "-m", "pytest", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
