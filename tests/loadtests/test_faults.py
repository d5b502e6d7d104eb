"""Faults in the harness: a run survives a paused worker and a flaky proxy with every invariant
held; a store restarted mid-run keeps what its settings make durable (measured by the
durability benchmark in a bounded form); and SIGTERM or Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from loadtests.faults import ChaosProxy, read_faults
from tests.support import ROOT, SCENARIOS
from tests.support.commands import run_command
from tests.support.scenarios import under_load

pytestmark = pytest.mark.slow
ENV = {k: v for k, v in os.environ.items() if k != "GROUPBUY_ADMIN_TOKEN"}


def groupbuy(exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_command([exe, *args], timeout=timeout, env=ENV)


def test_a_paused_worker_and_a_flaky_proxy_lose_nothing(groupbuy_exe: str,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = groupbuy(groupbuy_exe, "loadtest", str(under_load("default.toml", tmp_path)),
                    "--duration", "8",
                    "--workers", "2", "--seed", "3", "--pause-worker", "2:1.5",
                    "--proxy", "4:2.5:100:0.25", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    faults = read_faults(out / "faults.jsonl")
    assert [f.fault for f in faults] == ["pause_worker", "proxy"]
    assert faults[0].until - faults[0].at >= 1.4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"]["hit_by_faults"] > 0
    report = json.loads((out / "invariants.json").read_text())
    assert report["verdict"] == "held"
    # The proxy cut requests, some after the server got them: outcomes the client never saw.
    history = [json.loads(line) for line in (out / "history.jsonl").open()
               if '"header"' not in line]
    assert any(r["outcome"] == "unknown" and r["code"] == "connection" for r in history)


def test_the_proxy_forwards_and_cuts(tmp_path: Path) -> None:
    import http.server
    import threading

    import httpx

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    proxy = ChaosProxy(f"http://127.0.0.1:{httpd.server_address[1]}").start()
    try:
        assert httpx.get(proxy.url + "/", timeout=5).status_code == 200
        proxy.drop = 1.0
        with pytest.raises(httpx.HTTPError):
            httpx.get(proxy.url + "/", timeout=5)
        assert proxy.cut >= 1
    finally:
        proxy.stop()
        httpd.shutdown()


def need(binary: str) -> None:
    import shutil
    if shutil.which(binary) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{binary} is not installed; CI's durability test needs it")
        pytest.skip(f"{binary} is not installed")


def test_durability_matrix_bounded(tmp_path: Path) -> None:
    """Redis with appendfsync always keeps every acknowledged order across kill -9 of the
    store; Redis without persistence loses them, and the checker says so (the check can
    fail). The full matrix: benchmarks/durability.py."""
    need("redis-server")
    proc = run_command(
        [sys.executable, str(ROOT / "benchmarks" / "durability.py"), "--settings",
         "redis-always,redis-none", "--kills", "1", "--seconds", "6", "--out", str(tmp_path)],
        timeout=240, cwd=ROOT / "benchmarks")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["setting"]: r for r in json.loads((tmp_path / "durability.json").read_text())
            ["rows"]}
    safe, unsafe = rows["redis-always"], rows["redis-none"]
    assert safe["kills"] == 1 and unsafe["kills"] == 1
    assert safe["acknowledged_orders"] > 50 and safe["lost_orders"] == 0
    assert safe["invariants_broken"] == []
    assert unsafe["lost_orders"] > 0 and "no_lost_acknowledged" in unsafe["invariants_broken"]
    assert "| redis-none (no persistence" in (tmp_path / "durability.md").read_text()


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("command", "sig"), [
    ("loadtest", signal.SIGTERM),
    ("demo", signal.SIGINT),
])
def test_stopping_a_run_leaves_no_process_behind(groupbuy_exe: str, tmp_path: Path,
                                                 command: str, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    if command == "loadtest":
        args = ["loadtest", str(SCENARIOS / "flash_sale.toml"), "--duration", "30",
                "--processes", "2", "--out", str(out)]
        load_dir = out
    else:
        args = ["demo", "--replications", "1", "--out", str(out)]
        load_dir = out / "loadtest"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err_fh:  # a file: an unread pipe would fill up and block the run
        # SIGINT back to its default in the child: a test run started in the background by a
        # shell without job control inherits SIGINT ignored, and Python then keeps it ignored.
        proc = subprocess.Popen([groupbuy_exe, *args], stdout=subprocess.DEVNULL,
                                stderr=err_fh, env=ENV,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Server workers and both Locust processes are up once both histories exist.
        parts = 2 if command == "loadtest" else 1
        wait_for(lambda: len(list(load_dir.glob("history-*.jsonl"))) == parts, 120,
                 "the load to start")
        children = descendants(proc.pid)
        assert len(children) >= 4, [c.cmdline() for c in children]  # server, workers, locust
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    time.sleep(0.5)
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [c.cmdline() for c in left]


def test_a_server_that_dies_on_its_own_is_restarted_to_read_what_it_kept(
        groupbuy_exe: str, tmp_path: Path) -> None:
    """Not a fault the run injected: the server is killed from outside mid-run. The run reports
    the death, restarts the server on its store to read the final state, and still checks
    it: on SQLite nothing acknowledged is lost."""
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err_fh:
        proc = subprocess.Popen([groupbuy_exe, "loadtest", str(SCENARIOS / "flash_sale.toml"),
                                 "--duration", "6", "--rate-scale", "2", "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=err_fh, env=ENV)
    try:
        wait_for(lambda: (out / "history-0.jsonl").exists(), 120, "the load to start")
        time.sleep(2)
        servers = [c for c in descendants(proc.pid) if "serve" in " ".join(c.cmdline())]
        assert servers
        os.killpg(os.getpgid(servers[0].pid), signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 3, err[-2000:]  # a server failure; no invariant broken
    assert "the server died during the run" in err
    assert "restarted on the same store to read its state" in err
    report = json.loads((out / "invariants.json").read_text())
    assert report["verdict"] == "held", report["broken"]
    assert report["stats"]["unknown"] > 0
