"""A sub-command whose optional extra is not installed says in one line which extra to install
(no traceback), and the core install alone runs `--help` and `validate`.

Each case runs `groupbuy` in a fresh interpreter where the modules an extra brings cannot be
imported (`sys.modules[name] = None`), as in an environment without that extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from groupbuy import extras as ex

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
EVERY_THIRD_PARTY = sorted({m for modules in ex.EXTRA_MODULES.values() for m in modules})


def groupbuy_without(blocked: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys\n"
            f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
            "from groupbuy.cli import main\n"
            f"sys.exit(main({list(argv)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("blocked", "argv", "says"), [
    (["optuna"], ["tune", str(SCENARIOS / "group_buy_ladder.toml"), "--param",
                  "campaign.groups.window_hours=1:12", "--trials", "1"],
     "groupbuy tune: needs optuna, which the 'planner' extra brings: "
     "pip install 'groupbuy-lab[planner]'"),
    (["SALib"], ["sensitivity", str(SCENARIOS / "group_buy_ladder.toml"), "--param",
                 "campaign.groups.window_hours=1:12"],
     "groupbuy sensitivity: needs SALib, which the 'planner' extra brings"),
    (["distributed", "dask"], ["sweep", str(SCENARIOS / "group_buy_ladder.toml"), "--vary",
                               "campaign.groups.window_hours=1,2", "--executor",
                               "dask://127.0.0.1:1"],
     "groupbuy sweep: needs distributed, which the 'planner' and 'distributed' extras bring: "
     "pip install 'groupbuy-lab[planner,distributed]'"),
    (["simpy"], ["simulate", str(SCENARIOS / "default.toml"), "-n", "1"],
     "groupbuy simulate: needs simpy, which the 'sim' extra brings"),
    (["uvicorn", "fastapi"], ["serve", str(SCENARIOS / "default.toml"), "--port", "0"],
     "groupbuy serve: needs "),
    (["locust"], ["loadtest", str(SCENARIOS / "flash_sale.toml"), "--duration", "1"],
     "groupbuy loadtest: needs locust, which the 'loadtest' and 'server' extras bring: "
     "pip install 'groupbuy-lab[loadtest,server]'"),
    (["locust"], ["loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://shop:8000"],
     "groupbuy loadtest: needs locust, which the 'loadtest' extra brings: "
     "pip install 'groupbuy-lab[loadtest]'"),
    (["httpx"], ["check", str(ROOT / "results")],
     "groupbuy check: needs httpx, which the 'loadtest' extra brings"),
    (["scipy"], ["demo", "--replications", "1"],
     "groupbuy demo: needs scipy, which the 'sim', 'server' and 'loadtest' extras bring: "
     "pip install 'groupbuy-lab[sim,server,loadtest]'"),
    (["pandas"], ["simulate", str(SCENARIOS / "default.toml"), "--events"],
     "groupbuy simulate: needs pandas, which the 'sim' and 'planner' extras bring"),
])
def test_missing_extra_is_one_line(blocked: list[str], argv: list[str], says: str) -> None:
    err = one_line(groupbuy_without(blocked, *argv))
    assert says in err
    assert "python3 lab.py install" in err  # this is a checkout: the lab.py way too


def test_the_core_alone_gives_help_and_validates() -> None:
    for argv in (["--help"], *([c, "--help"] for c in ex.COMMAND_EXTRAS)):
        proc = groupbuy_without(EVERY_THIRD_PARTY, *argv)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (argv, proc.stderr)
    proc = groupbuy_without(EVERY_THIRD_PARTY, "validate", *map(str, SCENARIOS.glob("*.toml")))
    assert proc.returncode == 0, proc.stderr


def test_an_import_that_fails_inside_a_command_is_one_line_too(monkeypatch, capsys,
                                                               tmp_path: Path) -> None:
    """The check before the command misses a module (it is imported lazily): the import error
    itself becomes the line."""
    from groupbuy import cli

    monkeypatch.setattr(cli, "require", lambda command, args: None)
    for name in [m for m in sys.modules if m == "optuna" or m.startswith("sim.studies.tune")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "optuna", None)
    code = cli.main(["tune", str(SCENARIOS / "group_buy_ladder.toml"), "--param",
                     "campaign.groups.window_hours=1:12", "--trials", "1", "--out",
                     str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("groupbuy tune: needs optuna, which the 'planner'")
    assert len(err.splitlines()) == 1


def test_the_message_names_the_extra_that_brings_the_module() -> None:
    # a command's own extras when one of them brings it (numpy comes with loadtest too) ...
    assert "'loadtest' extra" in (ex.missing_extra_message("check", "numpy.linalg") or "")
    # ... else the extra that does (the event log of `simulate --events` needs pandas)
    assert "[planner]" in (ex.missing_extra_message("simulate", "pandas") or "")
    # a module no extra brings is a bug, not a lighter install: no message, the error stays
    assert ex.missing_extra_message("simulate", "sim.no_such_module") is None
