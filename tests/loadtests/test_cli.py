"""`groupbuy loadtest` against a running server (`--host`) in Locust's distributed mode, the
standalone `groupbuy check`, a locustfile run directly, and the commands' error messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from campaign.scenario import load_scenario
from loadtests.history import HistoryHeader
from tests.support import ROOT, SCENARIOS
from tests.support.commands import run_command
from tests.support.scenarios import under_load
from tests.support.servers import reference_server

TOKEN = "load-cli-test-token"
ENV = {k: v for k, v in os.environ.items() if k != "GROUPBUY_ADMIN_TOKEN"}


def run(*args: str, timeout: float = 90,
        token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`groupbuy ARGS`; `token` goes in $GROUPBUY_ADMIN_TOKEN (never on the command line)."""
    exe = Path(sys.executable).parent / "groupbuy"
    env = ENV if token is None else {**ENV, "GROUPBUY_ADMIN_TOKEN": token}
    return run_command([str(exe), *args], timeout=timeout, env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with reference_server(tmp_path_factory.mktemp("server"), TOKEN) as url:
        yield url


@pytest.mark.slow
def test_distributed_mixed_traffic_against_a_running_server_then_check(
        server: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    proc = run("loadtest", str(under_load("default.toml", tmp_path)), "--host", server,
               "--admin-token-file", str(token_file),
               "--locustfile", str(ROOT / "loadtests" / "mixed.py"),
               "--processes", "2", "--duration", "8", "--rate-scale", "3", "--seed", "11",
               "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    history = records(out / "history.jsonl")
    # Both load processes ran their half of the arrivals and their histories were merged.
    assert {r["worker"] for r in history} == {0, 1}
    assert sorted(p.name for p in out.glob("history-*.jsonl")) == ["history-0.jsonl",
                                                                   "history-1.jsonl"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arrivals"]["processes"] == 2
    assert summary["arrivals"]["started"] == summary["arrivals"]["scheduled"] > 100
    ops = Counter(r["op"] for r in history)
    assert {"browse", "reserve", "pay", "cancel", "open_group", "join", "claim"} <= set(ops)
    assert any(r["outcome"] == "unknown" and r.get("client_timeout") for r in history)
    retried = Counter((r["user"], r["key"]) for r in history if r["op"] == "reserve")
    assert max(retried.values()) >= 2  # same idempotency key sent again

    # The checker alone, on the run folder, against the same server, agrees …
    checked = run("check", str(out), "--host", server, "--out", str(tmp_path / "check"),
                  token=TOKEN)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "invariants: ALL HELD" in checked.stdout
    assert (tmp_path / "check" / "invariants.json").is_file()
    # … and so it does offline, from the state.json the run saved.
    offline = run("check", str(out), "--out", str(tmp_path / "offline"))
    assert offline.returncode == 0 and "ALL HELD" in offline.stdout, offline.stdout

    # One load process's file of the two is a partial history: nothing is called a phantom
    # for want of the other's requests, and the verdict says it is incomplete (exit 3).
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("history-0.jsonl", "plan.json", "state.json"):
        (partial / name).write_bytes((out / name).read_bytes())
    half = run("check", str(partial))
    assert half.returncode == 3, half.stdout + half.stderr
    assert "partial history: load process(es) [1] of 2 missing" in half.stdout
    assert "BROKEN" not in half.stdout and "INCOMPLETE" in half.stdout

    # A garbage line is named, file and line, and nothing is checked (exit 2).
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "history-0.jsonl").write_text("not json\n")
    bad = run("check", str(garbage), "--scenario", str(SCENARIOS / "default.toml"))
    assert bad.returncode == 2
    assert f"{garbage / 'history-0.jsonl'}: line 1 is not JSON" in bad.stderr

    # A history that forgot an acknowledged order makes that order a phantom.
    first = next(r for r in history if r["op"] == "reserve" and r["outcome"] == "ok")
    cut = tmp_path / "cut" / "history.jsonl"
    cut.parent.mkdir()
    heads = [line for line in (out / "history.jsonl").open() if '"header"' in line]
    cut.write_text("".join(heads) + "".join(json.dumps(r) + "\n" for r in history
                                            if (r["user"], r["key"]) != (first["user"],
                                                                         first["key"])))
    broken = run("check", "--history", str(cut), "--host", server,
                 "--scenario", str(SCENARIOS / "default.toml"), token=TOKEN)
    assert broken.returncode == 1
    assert "BROKEN  no_phantom" in broken.stdout
    assert first["order_id"] in broken.stdout


def records(path: Path) -> list[dict]:
    """A history file's operation records (its header lines left out)."""
    return [r for r in map(json.loads, path.open()) if "header" not in r]


@pytest.mark.slow
def test_a_missed_threshold_fails_the_run_and_says_which(server: str, tmp_path: Path) -> None:
    text = (SCENARIOS / "flash_sale.toml").read_text()
    assert "p99_ms = 2000" in text
    scenario = tmp_path / "strict.toml"
    scenario.write_text(text.replace("p99_ms = 2000", "p99_ms = 0.001\nmin_throughput = 100000"))
    out = tmp_path / "run"
    proc = run("loadtest", str(scenario), "--host", server, "--duration", "2",
               "--out", str(out), token=TOKEN)
    assert proc.returncode == 99, proc.stdout + proc.stderr
    assert "threshold missed: p99 latency from intended start" in proc.stderr
    assert "> p99_ms 0.001" in proc.stderr
    assert "threshold missed: throughput" in proc.stderr and "min_throughput 100000" in proc.stderr
    assert "invariant broken" not in proc.stderr
    assert "FAILED (exit code 99); results:" in proc.stdout


@pytest.mark.slow
def test_a_locustfile_runs_directly_and_never_appends(server: str, tmp_path: Path) -> None:
    out = tmp_path / "direct"
    heads = []
    for _ in range(2):  # the same run folder twice: the second run replaces the first's files
        proc = run_command(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "flash_sale.py"),
             "--host", server, "--admin-token", TOKEN, "--headless", "--run-dir", str(out),
             "--schedule-seconds", "3", "--only-summary"], timeout=60, cwd=tmp_path, env=ENV)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: Locust saw failed requests
        arrivals = json.loads((out / "arrivals-0.json").read_text())
        assert arrivals["started"] == arrivals["scheduled"] > 50
        lines = (out / "history-0.jsonl").read_text().splitlines()
        assert sum('"header"' in line for line in lines) == 1
        heads.append(json.loads(lines[0])["header"]["run_id"])
    assert heads[0] != heads[1]
    assert json.loads((out / "plan.json").read_text())["run_id"] == heads[1]


def test_a_locustfile_without_admin_token_says_so(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "flash_sale.py"),
         "--host", "http://127.0.0.1:9", "--headless", "--run-time", "10s"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=ENV)
    assert proc.returncode == 2
    assert "no admin token: pass --admin-token or set GROUPBUY_ADMIN_TOKEN" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["loadtest", "nope.toml"], "nope.toml: file not found"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9"],
     "--host needs the server's admin token"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9",
      "--admin-token-file", "/dev/null"], "--admin-token-file: /dev/null is empty"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9",
      "--admin-token", "t"], "--admin-token: a token on the command line is visible"),
    (["check", "--host", "http://127.0.0.1:9", "--admin-token", "t"],
     "--admin-token: a token on the command line is visible"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--store", "mysql://x"],
     "--store: 'mysql://x' is not a store URL"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--duration", "0"],
     "--duration: must be more than 0"),
    (["loadtest", str(SCENARIOS / "default.toml"), "--arrivals", "missing.csv"],
     "--arrivals: missing.csv: file not found"),
    (["check", "--host", "http://127.0.0.1:9", "--history", "missing.jsonl"],
     "missing.jsonl: No such file or directory"),
    (["check"], "give a run folder (RUN_DIR) or --history FILE"),
    (["check", "no-such-folder"], "no-such-folder: not a folder"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--kill-server", "soon"],
     "--kill-server: not a list of seconds: 'soon'"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--pause-worker", "6"],
     "--pause-worker: '6': want AT:SECONDS, e.g. 6:2"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--proxy", "1:2:3:1.5"],
     "fault flags: proxy[0].drop: Input should be less than or equal to 1"),
    (["loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9",
      "--admin-token-file", "TOKEN_FILE", "--kill-server", "3"],
     "kill_server: these faults need a server the run starts, not --host"),
])
def test_mistakes_get_one_line_and_exit_code_2(args: list[str], message: str,
                                                tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    args = [str(token_file) if a == "TOKEN_FILE" else a for a in args]
    if args[0] == "loadtest":
        args = [*args, "--out", str(tmp_path / "o")]
    proc = run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing was started, no folder was made


def test_a_token_that_cannot_go_in_a_header_is_one_line(tmp_path: Path) -> None:
    proc = run("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9",
               "--out", str(tmp_path / "o"), token="…")  # a placeholder copied from the docs
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "GROUPBUY_ADMIN_TOKEN: not a token (it must be printable ASCII" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unreachable_server_is_one_line_for_loadtest(tmp_path: Path) -> None:
    proc = run("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", "http://127.0.0.1:9",
               "--out", str(tmp_path / "o"), token="t")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "groupbuy loadtest: --host: GET http://127.0.0.1:9/v1/health" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_against_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(HistoryHeader("r", None, 0, 1, 1.0).to_line())
    proc = run("check", "--host", "http://127.0.0.1:9", "--history", str(history),
               "--scenario", str(SCENARIOS / "flash_sale.toml"), token="t")
    assert proc.returncode == 2
    assert proc.stderr.startswith("groupbuy check: GET http://127.0.0.1:9/v1/admin/orders")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_simulates_then_load_tests_with_the_simulated_curve(tmp_path: Path) -> None:
    scenario = tmp_path / "short.toml"
    text = (SCENARIOS / "default.toml").read_text()
    peak = load_scenario(SCENARIOS / "default.toml").load.peak_rate
    scenario.write_text(re.sub(r"(?m)^duration_seconds = \S+", "duration_seconds = 6", text))
    out = tmp_path / "demo"
    proc = run("demo", str(scenario), "--replications", "1", "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and str(out) in proc.stdout
    assert (out / "simulation" / "report.html").is_file()
    assert json.loads((out / "loadtest" / "invariants.json").read_text())["held"]
    # The load test followed the simulation's arrivals.csv: one piece per simulated minute,
    # in the same proportions, the busiest minute at the scenario's peak_rate.
    rows = (out / "simulation" / "arrivals.csv").read_text().strip().splitlines()[1:]
    simulated = [float(r.split(",")[3]) for r in rows]
    plan = json.loads((out / "loadtest" / "plan.json").read_text())
    rates = [r for _, _, r in plan["schedule"]]
    assert len(rates) == len(simulated)
    assert max(rates) == pytest.approx(peak)
    assert rates == pytest.approx([peak * a / max(simulated) for a in simulated])


@pytest.mark.slow
def test_a_reused_output_folder_does_not_mix_the_previous_run_in(tmp_path: Path) -> None:
    """Two runs into one folder (scenario path relative to the repo): the second checks only
    its own history, and plan.json / summary.json name the scenario and store absolutely."""
    exe = Path(sys.executable).parent / "groupbuy"
    out = tmp_path / "run"
    for _ in range(2):
        proc = run_command([str(exe), "loadtest", "scenarios/flash_sale.toml", "--duration", "2",
                            "--out", str(out)], timeout=90, env=ENV, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    history = records(out / "history.jsonl")
    assert len({(r["worker"], r["arrival"]) for r in history}) == summary["arrivals"]["started"]
    assert summary["arrivals"]["processes"] == 1
    assert summary["scenario"] == str(SCENARIOS / "flash_sale.toml")
    assert summary["store"] == f"sqlite:///{out / 'server.sqlite3'}"
    assert json.loads((out / "plan.json").read_text())["scenario"] == str(
        SCENARIOS / "flash_sale.toml")


def test_stale_run_files_are_cleared(tmp_path: Path) -> None:
    from loadtests.plan import clear_stale_run_files

    for name in ("history-0.jsonl", "history-3.jsonl", "history.jsonl", "arrivals-0.json",
                 "plan.json", "server.sqlite3"):
        (tmp_path / name).write_text("{}")
    gone = {p.name for p in clear_stale_run_files(tmp_path)}
    assert gone == {"history-0.jsonl", "history-3.jsonl", "history.jsonl", "arrivals-0.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "server.sqlite3"]


def arrivals(**kw: float) -> dict[str, float]:
    a = {"processes": 1, "scheduled": 245, "started": 245, "late": 0, "dropped": 0,
         "unfinished": 0, "seconds": 8.0, "target_rate": 245 / 8, "achieved_rate": 245 / 8}
    a.update(kw)
    return a


def test_dropped_late_or_slow_arrivals_fail_the_run() -> None:
    from campaign.load import Checks
    from loadtests.thresholds import threshold_problems

    figures = {"requests": 10, "errors": 0, "error_rate": 0.0, "throughput": 5.0,
               "p95_ms": 1.0, "p99_ms": 1.0}
    checks = Checks()
    assert threshold_problems(checks, figures, arrivals()) == []
    # The reviewer's run: max_in_flight 2, 85 started of 245, 160 dropped.
    got = threshold_problems(checks, figures, arrivals(started=85, dropped=160,
                                                        achieved_rate=85 / 8))
    assert any("160 of 245 scheduled arrivals dropped > max_dropped 0" in p for p in got), got
    assert any("achieved arrival rate" in p and "5% below the target" in p for p in got), got
    late = threshold_problems(checks, figures, arrivals(late=10, achieved_rate=235 / 8))
    assert any("10 of 245 started arrivals late" in p for p in late), late
    # Within the tolerances: 2 of 245 late (0.8%) is fine.
    assert threshold_problems(checks, figures, arrivals(late=2, achieved_rate=243 / 8)) == []
    # Tolerances are [checks] keys.
    loose = Checks(max_dropped=200, max_late_share=0.5, max_rate_shortfall=0.9)
    assert threshold_problems(loose, figures, arrivals(started=85, dropped=160,
                                                       achieved_rate=85 / 8)) == []


def test_threshold_messages_never_contradict_themselves() -> None:
    import math

    from campaign.load import Checks
    from loadtests.thresholds import threshold_problems

    figures = {"requests": 100000, "errors": 1001, "error_rate": 1001 / 100000,
               "throughput": 99.99, "p95_ms": 2000.4, "p99_ms": math.nan}
    got = threshold_problems(Checks(max_error_rate=0.01, p95_ms=2000, p99_ms=2000,
                                    min_throughput=100), figures)
    text = "\n".join(got)
    assert "error rate 1.001% > max_error_rate 1.000%" in text, text
    assert "p95 latency from intended start 2000.400 ms > p95_ms 2000" in text, text
    assert "p99 latency from intended start no requests > p99_ms 2000" in text, text
    assert "nan" not in text
    assert "throughput 99.9900 req/s < min_throughput 100" in text, text


def test_check_of_a_damaged_run_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "history-0.jsonl").write_text(HistoryHeader("r", None, 0, 1, 1.0).to_line())
    (tmp_path / "plan.json").write_text(json.dumps({"run_id": "r", "scenario": str(
        SCENARIOS / "flash_sale.toml"), "host": "", "run_dir": str(tmp_path), "schedule": [],
        "mix": {}, "tokens": {}, "skus": [], "coupons": [], "per_user_limit": 1}))
    (tmp_path / "state.json").write_text("{not json")
    proc = run("check", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"groupbuy check: {tmp_path / 'state.json'}: not JSON"
    (tmp_path / "state.json").unlink()
    proc = run("check", str(tmp_path))
    assert proc.returncode == 2 and "no state.json" in proc.stderr and "--host" in proc.stderr
