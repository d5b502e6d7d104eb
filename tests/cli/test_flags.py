"""One flag name per idea across sub-commands (`serve --listen` is where the server listens,
`--host` is always a server to test), and `--help` shows every default."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from groupbuy.cli import build_parser, main
from groupbuy.extras import COMMAND_EXTRAS

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "scenarios" / "default.toml")


def sub_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", sorted(COMMAND_EXTRAS))
def test_help_shows_every_default(command: str) -> None:
    parser = sub_parsers()[command]
    shown = flat(parser.format_help())
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{command} {name}: no help text"
        line = formatter._expand_help(action)
        assert line.count("(default") <= 1, f"{command} {name}: {line}"
        if action.option_strings and action.default not in (None, False, []):
            assert f"(default: {action.default})" in shown, f"{command} {name}"


def test_serve_and_loadtest_agree_on_host() -> None:
    """`--host` is a server to test wherever it appears; `serve` listens on `--listen`."""
    parsers = sub_parsers()
    serve = {s for a in parsers["serve"]._actions if a.help != argparse.SUPPRESS
             for s in a.option_strings}
    assert "--listen" in serve and "--host" not in serve  # still accepted, not advertised
    for command in ("loadtest", "check"):
        host = next(a for a in parsers[command]._actions if "--host" in a.option_strings)
        assert host.metavar == "URL"


def test_the_old_serve_host_still_works_and_says_so(capsys) -> None:
    args = build_parser().parse_args(["serve", SCENARIO, "--host", "0.0.0.0"])
    assert args.listen == "0.0.0.0"
    err = capsys.readouterr().err.strip()
    assert err == "groupbuy serve: --host is deprecated and goes in the next release; " \
                  "use --listen"
    assert build_parser().parse_args(["serve", SCENARIO]).listen == "127.0.0.1"


def test_listen_on_an_address_this_machine_lacks_is_one_line(capsys, tmp_path: Path) -> None:
    code = main(["serve", SCENARIO, "--store", f"sqlite:///{tmp_path / 's.sqlite3'}",
                 "--listen", "192.0.2.1", "--port", "0"])  # TEST-NET-1: never local
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("groupbuy serve: cannot listen on 192.0.2.1:0: ")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "s.sqlite3").exists()  # nothing was written


def test_serve_listens_where_listen_says(groupbuy_exe: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [groupbuy_exe, "serve", SCENARIO, "--store", f"sqlite:///{tmp_path / 's.sqlite3'}",
         "--listen", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, GROUPBUY_ADMIN_TOKEN="t" * 32))
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("groupbuy serve: http://127.0.0.1:"), banner
        url = banner.split()[2]
        assert not url.endswith(":0")
        health = httpx.get(f"{url}/v1/health", timeout=10)
        assert health.status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
