"""Plain Locust and how the load test reaches a server: a web UI's Start runs again into a
fresh folder; healthy `--processes` runs exit 0 though the timeout journey hangs up on purpose;
one HTTP client honours a path prefix behind a gateway, https, a proxy and a trailing slash;
a wrong or unreachable host is one line. Everything on loopback, every run bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from loadtests.instances import free_port
from tests.support import ROOT, SCENARIOS
from tests.support.gateway import Gateway, self_signed_cert
from tests.support.servers import reference_server

LOCUSTFILES = ROOT / "loadtests"
TOKEN = "locust-usage-test-token"
ENV = {k: v for k, v in os.environ.items()
       if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                    "all_proxy", "NO_PROXY", "no_proxy")}
ENV["GROUPBUY_ADMIN_TOKEN"] = TOKEN  # never on a command line


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with reference_server(tmp_path_factory.mktemp("server"), TOKEN) as url:
        yield url


def groupbuy(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "groupbuy"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or ENV)


def locust(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env or ENV)


def records(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.open()) if "header" not in r]


# -- plain Locust ---------------------------------------------------------------------------

@pytest.mark.slow
def test_processes_run_exits_0_with_deliberate_client_timeouts(server: str,
                                                                tmp_path: Path) -> None:
    port = str(free_port())  # other Locust runs on the machine must not join this one
    proc = locust("-f", str(LOCUSTFILES / "mixed.py"), "--host", server, "--headless",
                  "--processes", "2", "--master-bind-port", port, "--master-port", port,
                  "--run-dir", str(tmp_path / "run"),
                  "--schedule-seconds", "4", "--only-summary", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = records(tmp_path / "run" / "history-0.jsonl") + records(
        tmp_path / "run" / "history-1.jsonl")
    timeouts = [r for r in history if r.get("client_timeout")]
    # Mostly unknown; an answer that came back before the client gave up is kept as it was.
    assert any(r["outcome"] == "unknown" and r["code"] == "timeout" for r in timeouts)
    # Locust counted them as requests, not failures; and said nothing about --run-time.
    assert "POST /v1/orders [client timeout]" in proc.stderr + proc.stdout
    assert "will be ignored" not in proc.stderr and "WARNING" not in proc.stderr


@pytest.mark.slow
def test_master_and_workers_exit_0(server: str, tmp_path: Path) -> None:
    port = str(free_port())
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / "mixed.py")]
    master = subprocess.Popen(
        [*base, "--master", "--master-bind-port", port, "--expect-workers", "2", "--headless",
         "--host", server, "--run-dir", str(tmp_path / "run"),
         "--schedule-seconds", "3", "--only-summary"], cwd=tmp_path, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([*base, "--worker", "--master-port", port], cwd=tmp_path,
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    try:
        _, err = master.communicate(timeout=90)
        assert master.returncode == 0, err[-3000:]
        assert [w.wait(timeout=30) for w in workers] == [0, 0]
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
    assert sorted(p.name for p in (tmp_path / "run").glob("arrivals-*.json")) == [
        "arrivals-0.json", "arrivals-1.json"]


@pytest.mark.slow
def test_web_ui_start_runs_again_into_a_fresh_folder(server: str, tmp_path: Path) -> None:
    port = free_port()
    run_dir = tmp_path / "ui"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / "flash_sale.py"), "--host",
           server, "--web-host", "127.0.0.1", "--web-port", str(port),
           "--run-dir", str(run_dir), "--schedule-seconds", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=ENV, start_new_session=True)
    ui = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{ui}/", timeout=2).status_code == 200, 30)
        for run in (1, 2):
            started = httpx.post(f"{ui}/swarm", timeout=10).json()
            assert started["success"], started
            folder = run_dir if run == 1 else Path(f"{run_dir}-2")
            wait_for(lambda f=folder: (f / "arrivals-0.json").is_file(), 40)
            wait_for(lambda: httpx.get(f"{ui}/stats/requests", timeout=5).json()["state"]
                     == "stopped", 30)
            arrivals = json.loads((folder / "arrivals-0.json").read_text())
            assert arrivals["started"] == arrivals["scheduled"] > 20
        plans = [json.loads((f / "plan.json").read_text())["run_id"]
                 for f in (run_dir, Path(f"{run_dir}-2"))]
        assert plans[0] != plans[1]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wait_for(ready, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {seconds} s")


# -- one HTTP client: prefix, trailing slash, https, proxy --------------------------------

@pytest.mark.slow
def test_a_gateway_prefix_and_a_trailing_slash_reach_every_journey(server: str,
                                                                   tmp_path: Path) -> None:
    with Gateway(server, "/shop") as gw:
        out = tmp_path / "run"
        proc = groupbuy("loadtest", str(SCENARIOS / "default.toml"), "--host", gw.url + "/",
                        "--locustfile", str(LOCUSTFILES / "mixed.py"),
                        "--duration", "4", "--rate-scale", "2", "--seed", "3", "--out", str(out))
        # Invariants held and the run completed (a loaded machine may miss a latency
        # threshold through the gateway: 99, which is not what this test is about).
        assert proc.returncode in (0, 99), proc.stdout + proc.stderr
        paths = [line.split(" ", 1)[1] for line in gw.seen]
    # Every request, the timeout journey's included, went under the prefix, none to //v1.
    assert paths and all(p.startswith("/shop/v1/") for p in paths), sorted(set(paths))[:5]
    history = records(out / "history.jsonl")
    assert any(r.get("client_timeout") for r in history)
    assert all(r["code"] != "http_404" for r in history)


@pytest.mark.slow
def test_https_through_a_proxy(server: str, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with Gateway(server, "/shop", tls=(cert, key)) as tls, Gateway(server) as proxy:
        # The TLS gateway is reached through the forward proxy (CONNECT is not needed: the
        # proxy here forwards absolute URLs; https goes direct, http through the proxy).
        env = dict(ENV, SSL_CERT_FILE=str(cert))
        out = tmp_path / "tls"
        proc = groupbuy("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", tls.url,
                        "--duration", "2", "--out", str(out), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert tls.seen and all(p.split(" ", 1)[1].startswith("/shop/v1/") for p in tls.seen)
        direct = tmp_path / "direct"
        via = locust("-f", str(LOCUSTFILES / "mixed.py"), "--host", server, "--headless",
                     "--run-dir", str(direct), "--schedule-seconds", "2", "--only-summary",
                     cwd=tmp_path,
                     env=dict(ENV, HTTP_PROXY=proxy.url, NO_PROXY=""))
        assert via.returncode == 0, via.stderr[-3000:]
        sent = records(direct / "history-0.jsonl")
        shopper_lines = [s for s in proxy.seen
                         if "/v1/admin/" not in s and not s.endswith("/v1/health")]
        # Every shopper request went through the proxy, in absolute form.
        assert len(shopper_lines) == len(sent) > 20
        assert all(s.split(" ", 1)[1].startswith(server + "/v1/") for s in shopper_lines)


def test_a_wrong_or_unreachable_host_is_one_line(server: str, tmp_path: Path) -> None:
    with Gateway(server, "/shop") as gw:
        wrong = groupbuy("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host",
                         gw.url.removesuffix("/shop"), "--out", str(tmp_path / "o"))
        plain = locust("-f", str(LOCUSTFILES / "flash_sale.py"), "--host",
                       gw.url.removesuffix("/shop"), "--headless", cwd=tmp_path)
    assert plain.returncode == 2
    (error,) = [ln for ln in plain.stderr.splitlines() if "/ERROR/" in ln]
    assert "cannot prepare the run: GET " in error and "no checkout server" in error
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert "answered 404: no checkout server at this address" in line
    assert "path prefix" in line
    for host, message in [("http://127.0.0.1:9", "GET http://127.0.0.1:9/v1/health"),
                          ("127.0.0.1:8000", "is not a server URL"),
                          ("http://127.0.0.1:8000/?x=1", "no ?query")]:
        proc = groupbuy("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", host,
                        "--out", str(tmp_path / "o"))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("groupbuy loadtest: --host: ") and message in line, line
    assert not (tmp_path / "o").exists()
    # Plain Locust: one line too, and exit code 2.
    direct = locust("-f", str(LOCUSTFILES / "flash_sale.py"), "--host", "http://127.0.0.1:9",
                    "--headless", cwd=tmp_path)
    assert direct.returncode == 2
    errors = [ln for ln in direct.stderr.splitlines() if "/ERROR/" in ln]
    assert len(errors) == 1 and "cannot prepare the run: GET http://127.0.0.1:9/v1/health" \
        in errors[0]
    assert "Traceback" not in direct.stderr


# -- thresholds, abort-on-fail, exit codes, JUnit ----------------------------------------

@pytest.mark.slow
def test_per_name_threshold_missed_exits_99_and_junit_lists_everything(server: str,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = groupbuy("loadtest", str(SCENARIOS / "flash_sale.toml"), "--host", server,
                    "--duration", "2", "--out", str(out),
                    "--threshold", "POST /v1/orders:p95_ms=0.001",
                    "--threshold", "POST /v1/orders/{id}/pay:max_error_rate=0.5",
                    "--threshold", "GET /v1/nothing:p99_ms=100")
    assert proc.returncode == 99, proc.stdout + proc.stderr
    assert "threshold missed: POST /v1/orders: p95 latency from intended start" in proc.stderr
    assert "threshold missed: GET /v1/nothing: no requests of that name" in proc.stderr
    assert "threshold missed: POST /v1/orders/{id}/pay" not in proc.stderr  # met
    assert "FAILED (exit code 99)" in proc.stdout
    tree = ET.parse(out / "junit.xml")
    suites = {s.get("name"): s for s in tree.getroot().findall("testsuite")}
    invariants = json.loads((out / "invariants.json").read_text())["invariants"]
    cases = suites["invariants"].findall("testcase")
    assert [c.get("name") for c in cases] == [r["name"] for r in invariants]
    assert all(c.find("failure") is None for c in cases)
    thresholds = {c.get("name"): c for c in suites["thresholds"].findall("testcase")}
    assert thresholds["POST /v1/orders: p95_ms"].find("failure") is not None
    assert thresholds["POST /v1/orders/{id}/pay: max_error_rate"].find("failure") is None
    assert thresholds["p99_ms"].find("failure") is None  # the scenario's own, met
    assert int(tree.getroot().get("failures")) == 2
    # `groupbuy check` judges the same thresholds on the run folder when asked (exit 99) …
    again = groupbuy("check", str(out), "--out", str(tmp_path / "c"), "--threshold",
                     "POST /v1/orders:p95_ms=0.001")
    assert again.returncode == 99, again.stdout + again.stderr
    assert "threshold missed: POST /v1/orders: p95 latency" in again.stderr
    assert (tmp_path / "c" / "junit.xml").is_file()
    # … and only the invariants when not.
    assert groupbuy("check", str(out), "--out", str(tmp_path / "d")).returncode == 0


@pytest.mark.slow
def test_abort_on_fail_stops_the_load_early(server: str, tmp_path: Path) -> None:
    text = (SCENARIOS / "flash_sale.toml").read_text()
    scenario = tmp_path / "abort.toml"
    scenario.write_text(text.replace("[checks]", "[checks]\nabort_grace_seconds = 1"))
    out = tmp_path / "run"
    start = time.monotonic()
    proc = groupbuy("loadtest", str(scenario), "--host", server, "--duration", "30", "--out",
                    str(out), "--threshold", "p99_ms=0.001", "--abort-on-fail")
    took = time.monotonic() - start
    assert proc.returncode == 99, proc.stdout + proc.stderr
    assert "load aborted after" in proc.stderr and "(abort_on_fail)" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aborted"]
    assert summary["arrivals"]["started"] < summary["arrivals"]["scheduled"]
    assert took < 30  # the 30 s schedule did not run out
    # What the run did get was still checked.
    assert json.loads((out / "invariants.json").read_text())["verdict"] == "held"


def test_a_broken_threshold_flag_is_a_usage_error(tmp_path: Path) -> None:
    for flag, message in [("p98_ms=1", "want [NAME:]KEY=VALUE"),
                          ("POST /v1/orders:max_dropped=1", "KEY one of max_error_rate"),
                          ("p99_ms=soon", "'soon' is not a number"),
                          ("max_error_rate=2", "--threshold: max_error_rate")]:
        proc = groupbuy("loadtest", str(SCENARIOS / "flash_sale.toml"), "--threshold", flag,
                        "--out", str(tmp_path / "o"))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
