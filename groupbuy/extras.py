"""Which optional extras (pyproject.toml `[project.optional-dependencies]`) each sub-command
needs, and the one line that says which to install when one is missing.

Standard library only: `lab.py` imports this module before the virtual environment exists,
to install just what the command it runs needs.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path

DISTRIBUTION = "groupbuy-lab"
"""The name `pip install` knows this project by."""

CHECKOUT = Path(__file__).resolve().parents[1]
"""The source checkout this package runs from (when `lab.py` is there)."""

EXTRAS = ("sim", "planner", "distributed", "server", "loadtest", "all", "dev")
"""Every extra pyproject.toml declares."""

INCLUDES: dict[str, tuple[str, ...]] = {
    "planner": ("sim",),
    "all": ("planner", "distributed", "server", "loadtest"),
    "dev": ("all",),
}
"""Extras that install other extras (`groupbuy-lab[sim]` in pyproject.toml's `planner`)."""

_SIM = ("simpy", "numpy", "scipy", "matplotlib", "tqdm")
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "sim": _SIM,
    "planner": (*_SIM, "optuna", "SALib", "pandas"),
    "distributed": ("distributed", "dask"),
    "server": ("fastapi", "starlette", "uvicorn", "psycopg", "psycopg_pool", "redis", "hiredis"),
    "loadtest": ("locust", "gevent", "httpx", "psutil", "numpy", "matplotlib", "tqdm"),
}
"""The third-party modules the code imports that each extra brings, included extras' too
(`dask` is imported only for `--executor dask://…`, `pandas` for `calibrate` and
`simulate --events`)."""

COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "validate": (),
    "simulate": ("sim",),
    "compare": ("sim",),
    "calibrate": ("planner",),
    "sweep": ("planner",),
    "tune": ("planner",),
    "sensitivity": ("planner",),
    "serve": ("server",),
    "loadtest": ("loadtest",),  # and the server's, unless it tests a running one (--host)
    "check": ("loadtest",),
    "demo": ("sim", "server", "loadtest"),
}
"""What each `groupbuy` sub-command needs beyond the core (pydantic), whatever its flags."""


def closure(extras: Sequence[str]) -> frozenset[str]:
    """`extras` and every extra they install: closure(["dev"]) is every extra."""
    out: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra not in out:
            out.add(extra)
            todo.extend(INCLUDES.get(extra, ()))
    return frozenset(out)


def _flag_extras(command: str, args: Sequence[str]) -> list[str]:
    """Extras that a sub-command's flags add to what it always needs."""
    extra: list[str] = []
    if command == "simulate" and "--events" in args:
        extra.append("planner")  # the event log is written with pandas
    if command == "loadtest" and not any(a == "--host" or a.startswith("--host=") for a in args):
        extra.append("server")  # it starts `groupbuy serve`
    executors = [a.split("=", 1)[1] for a in args if a.startswith("--executor=")]
    executors += [b for a, b in itertools.pairwise(args) if a == "--executor"]
    if any(e.startswith("dask://") for e in executors):
        extra.append("distributed")
    return extra


def needed(command: str, args: Sequence[str] = ()) -> tuple[str, ...]:
    """Every extra `groupbuy COMMAND ARGS…` needs; an unknown command needs only the core."""
    return tuple(dict.fromkeys([*COMMAND_EXTRAS.get(command, ()),
                                *_flag_extras(command, args)]))


def require(command: str, args: Sequence[str] = ()) -> None:
    """Raise ModuleNotFoundError (its `name` set) for the first module `groupbuy COMMAND ARGS…`
    needs that is not installed, before the command does anything. Looks, does not import."""
    for extra in needed(command, args):
        for module in EXTRA_MODULES[extra]:
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def install_hint(extras: Sequence[str]) -> str:
    """How to install `extras`: `pip install 'groupbuy-lab[a,b]'`, and in a source checkout
    also the `lab.py` way."""
    hint = f"pip install '{DISTRIBUTION}[{','.join(extras)}]'"
    if (CHECKOUT / "lab.py").is_file():
        hint += f" (in this checkout: python3 lab.py install {' '.join(extras)})"
    return hint


def missing_extra_message(command: str, module: str, args: Sequence[str] = ()) -> str | None:
    """One line for `groupbuy COMMAND ARGS…` failing to import `module`: which extra to
    install. None when no extra brings `module` (then it is a bug, not a lighter install)."""
    top = module.split(".")[0]
    bringing = [extra for extra, modules in EXTRA_MODULES.items() if top in modules]
    if not bringing:
        return None
    own = needed(command, args)
    extras = own if set(own) & set(bringing) else (bringing[0],)
    names = [f"'{e}'" for e in extras]
    which = (f"the {names[0]} extra brings" if len(names) == 1
             else f"the {', '.join(names[:-1])} and {names[-1]} extras bring")
    return f"groupbuy {command}: needs {top}, which {which}: {install_hint(extras)}"
