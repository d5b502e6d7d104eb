"""`lab.py` installs the extras the command it runs needs, and pyproject.toml's extras say the
same as `groupbuy/extras.py` (which `lab.py` and the missing-extra message read)."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from groupbuy import extras as ex
from groupbuy.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab", ROOT / "lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab = _load_lab()


@pytest.mark.parametrize(("argv", "extras"), [
    (["run"], ("sim", "server", "loadtest")),
    (["run", "scenarios/flash_sale.toml", "--replications", "2"], ("sim", "server", "loadtest")),
    (["test", "-x", "-q", "tests/test_lab.py"], ("dev",)),
    (["install"], ("all",)),
    (["install", "server", "sim"], ("server", "sim")),
    (["groupbuy", "validate", "scenarios/default.toml"], ()),
    (["groupbuy", "--help"], ()),
    (["groupbuy"], ()),
    (["groupbuy", "simulate", "scenarios/default.toml"], ("sim",)),
    (["groupbuy", "simulate", "scenarios/default.toml", "--events"], ("sim", "planner")),
    (["groupbuy", "compare", "a.toml", "b.toml"], ("sim",)),
    (["groupbuy", "calibrate", "e.csv", "--scenario", "b.toml", "--out", "f.toml"],
     ("planner",)),
    (["groupbuy", "sweep", "s.toml", "--vary", "x=1,2"], ("planner",)),
    (["groupbuy", "sweep", "s.toml", "--executor", "local"], ("planner",)),
    (["groupbuy", "tune", "s.toml", "--executor", "dask://h:8786"], ("planner", "distributed")),
    (["groupbuy", "sensitivity", "s.toml", "--executor=dask://h:8786"],
     ("planner", "distributed")),
    (["groupbuy", "serve", "s.toml", "--listen", "0.0.0.0"], ("server",)),
    (["groupbuy", "loadtest", "s.toml"], ("loadtest", "server")),
    (["groupbuy", "loadtest", "s.toml", "--host", "http://shop:8000"], ("loadtest",)),
    (["groupbuy", "check", "results/x"], ("loadtest",)),
    (["groupbuy", "demo"], ("sim", "server", "loadtest")),
])
def test_extras_per_command(argv: list[str], extras: tuple[str, ...]) -> None:
    assert lab.extras_for(argv) == extras


def test_every_sub_command_says_what_it_needs() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(ex.COMMAND_EXTRAS)  # type: ignore[arg-type]


def test_closure_follows_includes() -> None:
    assert ex.closure(["dev"]) == frozenset(ex.EXTRAS)
    assert ex.closure(["planner"]) == {"planner", "sim"}
    assert ex.closure([]) == frozenset()


# --- pyproject.toml agrees with groupbuy/extras.py ------------------------------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SELF = re.compile(r"groupbuy-lab\[(?P<extras>[^\]]+)\]")
# what each distribution lets the code import (a dependency's own dependency where the code
# imports it: starlette comes with fastapi, gevent with locust)
MODULES = {"simpy": ("simpy",), "numpy": ("numpy",), "scipy": ("scipy",),
           "matplotlib": ("matplotlib",), "tqdm": ("tqdm",), "optuna": ("optuna",),
           "salib": ("SALib",), "pandas": ("pandas",), "dask": ("dask", "distributed"),
           "fastapi": ("fastapi", "starlette"), "uvicorn": ("uvicorn",),
           "psycopg": ("psycopg",), "psycopg-pool": ("psycopg_pool",), "redis": ("redis",),
           "hiredis": ("hiredis",),
           "locust": ("locust", "gevent"), "httpx": ("httpx",), "psutil": ("psutil",),
           # the CJK font is optional at run time (sim/plotstyle.py falls back to system fonts)
           "noto-cjk-sans-otc": ()}
TOOLS = {"pytest", "pytest-xdist", "hypothesis", "ruff", "schemathesis"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()


def test_pyproject_declares_the_same_extras() -> None:
    declared = PYPROJECT["optional-dependencies"]
    assert set(declared) == set(ex.EXTRAS)
    for extra, requirements in declared.items():
        included = [e.strip() for r in requirements if (m := SELF.match(r))
                    for e in m["extras"].split(",")]
        assert sorted(included) == sorted(ex.INCLUDES.get(extra, ())), extra


def test_each_extra_brings_the_modules_the_message_names() -> None:
    declared = PYPROJECT["optional-dependencies"]

    def modules(extra: str) -> set[str]:
        out: set[str] = set()
        for requirement in declared[extra]:
            if m := SELF.match(requirement):
                for included in m["extras"].split(","):
                    out |= modules(included.strip())
            elif _name(requirement) not in TOOLS:
                out |= set(MODULES[_name(requirement)])
        return out

    for extra, named in ex.EXTRA_MODULES.items():
        assert modules(extra) == set(named), extra
    assert [_name(r) for r in PYPROJECT["dependencies"]] == ["pydantic"]


# --- what lab.py installs, and when ---------------------------------------------------------

@pytest.fixture
def fake_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """lab.py pointed at an empty folder with a python in it; pip calls are recorded."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    monkeypatch.setattr(lab, "VENV", tmp_path)
    monkeypatch.setattr(lab, "BIN", tmp_path / "bin")
    monkeypatch.setattr(lab, "STAMP", tmp_path / ".installed.json")
    calls: list[list[str]] = []
    monkeypatch.setattr(lab.subprocess, "run", lambda cmd, check: calls.append(cmd))
    return calls


def _stamp(extras: list[str], pyproject: str | None = None) -> None:
    import hashlib
    digest = pyproject or hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    lab.STAMP.write_text(json.dumps({"pyproject": digest, "extras": extras}))


def _installed_target(calls: list[list[str]]) -> str:
    return next(c[c.index("-e") + 1] for c in calls if "-e" in c)


def test_nothing_installed_when_the_venv_has_it(fake_venv: list[list[str]]) -> None:
    _stamp(["planner"])
    lab._ensure_venv(("sim",))  # planner brings sim
    _stamp(["dev"])
    lab._ensure_venv(("sim", "server", "loadtest"))
    assert fake_venv == []


def test_a_command_needing_more_adds_its_extras(fake_venv: list[list[str]]) -> None:
    _stamp(["sim"])
    lab._ensure_venv(("server", "loadtest"))
    assert _installed_target(fake_venv) == f"{ROOT}[loadtest,server,sim]"
    assert json.loads(lab.STAMP.read_text())["extras"] == ["loadtest", "server", "sim"]


def test_a_changed_pyproject_reinstalls(fake_venv: list[list[str]]) -> None:
    _stamp(["sim"], pyproject="0" * 64)
    lab._ensure_venv(("sim",))
    assert _installed_target(fake_venv) == f"{ROOT}[sim]"


def test_core_only(fake_venv: list[list[str]]) -> None:
    lab._ensure_venv(())
    assert _installed_target(fake_venv) == str(ROOT)


def test_unknown_extra_is_one_line(fake_venv: list[list[str]], capsys) -> None:
    assert lab.main(["install", "plannr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab.py install: unknown extra 'plannr'") and "\n" not in err
    assert fake_venv == []
