"""`groupbuy serve` never loses an order at start-up (issue 11): a changed campaign, a busy port
or a second server changes nothing; durability is read from the live store; secrets stay off
command lines, logs and `results/`; every worker stops with the server."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_server_helpers import (
    ADMIN,
    SMALL_SCENARIO,
    ServerProcess,
    drop_postgres_schema,
    drop_redis_prefix,
    free_port,
    with_query,
)

pytestmark = pytest.mark.slow
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
ENV = dict(os.environ, GROUPBUY_ADMIN_TOKEN=ADMIN)


def scenario(tmp_path: Path, name: str = "race.toml", price: str = "100.0") -> Path:
    path = tmp_path / name
    path.write_text(SMALL_SCENARIO.format(stock=20, pool=5).replace(
        "list_price = 100.0", f"list_price = {price}"))
    return path


def serve(exe: str, *args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`groupbuy serve …` expected to refuse: it must exit by itself."""
    return subprocess.run([exe, "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV)


def buy(url: str, user: str = "u1") -> str:
    with httpx.Client(base_url=url, timeout=10) as c:
        tok = c.post("/v1/admin/user-tokens", json={"user_ids": [user]},
                     headers=ADMIN_H).json()["tokens"][user]
        auth = {"Authorization": f"Bearer {tok}"}
        oid = c.post("/v1/orders", json={"sku_id": "hot", "quantity": 1},
                     headers=auth | {"Idempotency-Key": "k1"}).json()["order_id"]
        assert c.post(f"/v1/orders/{oid}/pay", headers=auth).status_code == 200
        return oid


def ledger(url: str) -> dict:
    return httpx.get(f"{url}/v1/admin/ledger", headers=ADMIN_H, timeout=10).json()


# -- 1. no order lost to a config change or a second server ------------------------------------

def test_a_changed_campaign_is_refused_until_reset(tmp_path: Path, groupbuy_exe: str) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    log = str(tmp_path / "server.log")
    server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 2, log)
    try:
        server.wait_ready()
        buy(server.url)
    finally:
        server.stop()
    changed = scenario(tmp_path, "changed.toml", price="120.0")
    out = serve(groupbuy_exe, str(changed), "--store", store, "--port", "0")
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "skus[0].list_price: 100.0 → 120.0" in err and "--reset" in err
    assert "1 order(s)" in err
    # nothing was changed: the first campaign still has its paid order
    server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 1, log)
    try:
        server.wait_ready()
        assert ledger(server.url)["orders"]["paid"] == 1
    finally:
        server.stop()
    server = ServerProcess(groupbuy_exe, str(changed), store, 1, log, "--reset")
    try:
        server.wait_ready()
        led = ledger(server.url)
        assert led["orders"]["paid"] == 0 and led["skus"]["hot"]["available"] == 20
        price = httpx.get(f"{server.url}/v1/skus/hot").json()["list_price"]
        assert price == 12000
    finally:
        server.stop()


def test_a_second_server_on_a_busy_port_writes_nothing(tmp_path: Path,
                                                       groupbuy_exe: str) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 2,
                           str(tmp_path / "server.log"))
    try:
        server.wait_ready()
        buy(server.url)
        before = ledger(server.url)
        other = scenario(tmp_path, "other.toml", price="55.0")
        out = serve(groupbuy_exe, str(other), "--store", store, "--port", str(server.port))
        assert out.returncode == 2 and "cannot listen on" in out.stderr, out.stderr
        after = ledger(server.url)
        assert after["sale_id"] == before["sale_id"] and after["orders"] == before["orders"]
        assert after["skus"] == before["skus"]
    finally:
        server.stop()


def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path,
                                                            groupbuy_exe: str) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 1,
                           str(tmp_path / "server.log"))
    try:
        server.wait_ready()
        buy(server.url)
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", store, "--port", "0")
        assert out.returncode == 2, out.stderr
        assert "in use by another server" in out.stderr and len(out.stderr.splitlines()) == 1
        assert ledger(server.url)["orders"]["paid"] == 1
    finally:
        server.stop()


# -- 4. durability read from the live store ----------------------------------------------------

@pytest.mark.redis
def test_redis_without_persistence_is_refused_unless_allowed(tmp_path: Path, redis_url: str,
                                                             groupbuy_exe: str) -> None:
    prefix = "gbtest-durability"
    url = with_query(redis_url, "prefix", prefix)
    try:
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
        assert out.returncode == 2 and "appendonly=no" in out.stderr, out.stderr
        assert "--allow-unsafe-durability" in out.stderr
        # refused before writing: the store holds no sale
        import redis
        assert redis.Redis.from_url(redis_url).exists(f"{prefix}:sale") == 0
        server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), url, 1,
                               str(tmp_path / "server.log"))  # passes the flag for Redis
        try:
            server.wait_ready()
            h = httpx.get(f"{server.url}/v1/health").json()
            assert h["safe"] is False and "appendonly=no" in h["warning"]
        finally:
            server.stop()
    finally:
        drop_redis_prefix(redis_url, prefix)


def test_redis_with_appendfsync_always_is_safe(tmp_path: Path, groupbuy_exe: str) -> None:
    from test_instances import need_binary

    from loadtests.instances import PrivateRedis
    need_binary("redis-server")
    with PrivateRedis(tmp_path / "redis", appendonly=True, appendfsync="always") as r:
        proc = subprocess.Popen([groupbuy_exe, "serve", str(scenario(tmp_path)), "--store",
                                 r.url, "--port", str(port := free_port())], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            h = _wait_health(f"http://127.0.0.1:{port}", proc)
            assert h["safe"] is True and "warning" not in h
            assert h["durability"] == {"appendonly": "yes", "appendfsync": "always"}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.mark.postgres
def test_postgres_synchronous_commit_off_is_refused(tmp_path: Path, postgres_url: str,
                                                    groupbuy_exe: str) -> None:
    url = with_query(postgres_url, "options", "-c%20synchronous_commit%3Doff")
    url = with_query(url, "schema", "gbtest_durability_off")
    try:
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
        assert out.returncode == 2, out.stderr
        assert "synchronous_commit=off" in out.stderr
        assert "--allow-unsafe-durability" in out.stderr
    finally:
        drop_postgres_schema(postgres_url, "gbtest_durability_off")


def test_sqlite_synchronous_normal_is_unsafe(tmp_path: Path, groupbuy_exe: str) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3?synchronous=NORMAL"
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", store, "--port", "0")
    assert out.returncode == 2 and "synchronous=NORMAL" in out.stderr, out.stderr


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            return httpx.get(f"{url}/v1/health", timeout=1).json()
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("no health answer")


# -- 6. process hygiene ------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(
        f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_serve_stops_every_worker(tmp_path: Path, groupbuy_exe: str, sig) -> None:
    port = free_port()
    proc = subprocess.Popen([groupbuy_exe, "serve", str(scenario(tmp_path)), "--store",
                             f"sqlite:///{tmp_path}/s.sqlite3", "--workers", "2", "--port",
                             str(port)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_health(f"http://127.0.0.1:{port}", proc)
        workers = _children(proc.pid)  # two workers and multiprocessing's resource tracker
        assert len(workers) >= 2
        os.kill(proc.pid, sig)  # the server only, not its process group
        proc.wait(timeout=20)
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
        assert left == [], [(_cmdline(w), Path(f"/proc/{w}/stat").read_text()) for w in left]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/ping", timeout=1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# -- 7. secrets ------------------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_admin_token_is_never_on_a_command_line_or_in_the_log(
        tmp_path: Path, groupbuy_exe: str) -> None:
    secret_token = "tok-" + os.urandom(8).hex()
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as fh:
        proc = subprocess.Popen([groupbuy_exe, "serve", str(scenario(tmp_path)), "--store",
                                 f"sqlite:///{tmp_path}/s.sqlite3", "--workers", "2",
                                 "--port", str(port), "--log-level", "debug"],
                                env=dict(os.environ, GROUPBUY_ADMIN_TOKEN=secret_token),
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_health(f"http://127.0.0.1:{port}", proc)
            for pid in [proc.pid, *_children(proc.pid)]:
                assert secret_token not in _cmdline(pid)
            r = httpx.get(f"http://127.0.0.1:{port}/v1/admin/ledger",
                          headers={"Authorization": f"Bearer {secret_token}"})
            assert r.status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    text = log.read_text()
    assert secret_token not in text and "admin token: from $GROUPBUY_ADMIN_TOKEN" in text
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--admin-token", "x", "--port", "0")
    assert out.returncode == 2 and "GROUPBUY_ADMIN_TOKEN" in out.stderr


def test_a_generated_admin_token_is_in_a_private_file(tmp_path: Path,
                                                      groupbuy_exe: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GROUPBUY_ADMIN_TOKEN"}
    env["GROUPBUY_STATE_DIR"] = str(tmp_path / "state")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([groupbuy_exe, "serve", str(scenario(tmp_path)), "--store",
                                 f"sqlite:///{tmp_path}/s.sqlite3", "--port", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            _wait_health(f"http://127.0.0.1:{port}", proc)
            file = tmp_path / "state" / "admin-token"
            token = file.read_text().strip()
            assert stat.S_IMODE(file.stat().st_mode) == 0o600
            r = httpx.get(f"http://127.0.0.1:{port}/v1/admin/ledger",
                          headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    text = log.read_text()
    assert f"admin token: in {file}" in text and token not in text


def test_a_password_in_the_store_url_is_never_printed(tmp_path: Path,
                                                      groupbuy_exe: str) -> None:
    url = f"postgresql://postgres:hunter2secret@127.0.0.1:{free_port()}/test"
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
    assert out.returncode == 2 and "cannot open" in out.stderr
    assert "hunter2secret" not in out.stdout + out.stderr and "postgres:***@" in out.stderr


def test_the_signing_secret_is_outside_the_store_file_and_survives_a_restart(
        tmp_path: Path, groupbuy_exe: str) -> None:
    db = tmp_path / "results" / "s.sqlite3"
    store = f"sqlite:///{db}"
    log = str(tmp_path / "server.log")
    server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 2, log)
    try:
        server.wait_ready()
        tok = httpx.post(f"{server.url}/v1/admin/user-tokens", json={"user_ids": ["u1"]},
                         headers=ADMIN_H).json()["tokens"]["u1"]
        server.kill9()  # as the harness does mid-run
        server = ServerProcess(groupbuy_exe, str(scenario(tmp_path)), store, 2, log)
        server.wait_ready()
        r = httpx.post(f"{server.url}/v1/orders", json={"sku_id": "hot", "quantity": 1},
                       headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": "k"})
        assert r.status_code == 201, r.text  # the client's token still works
    finally:
        server.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE k = 'secret'").fetchone() == (0,)
    for path in db.parent.iterdir():  # nothing under results/ holds the secret
        assert b"secret" not in path.name.encode()
