"""`groupbuy serve` never loses an order at start-up (issue 11): a changed campaign, a busy port
or a second server changes nothing; durability is read from the live store; secrets stay off
command lines, logs and `results/`; every worker stops with the server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from groupbuy.workers import listen
from loadtests.instances import PrivateRedis
from tests.support.checkout import ADMIN, SMALL_SCENARIO
from tests.support.servers import StartServer, refused_port
from tests.support.stores import (
    drop_postgres_schema,
    drop_redis_prefix,
    need_binary,
    unique,
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

def test_a_changed_campaign_is_refused_until_reset(tmp_path: Path, groupbuy_exe: str,
                                                   start_server: StartServer) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    with start_server(scenario(tmp_path), store, 2) as server:
        buy(server.url)
    changed = scenario(tmp_path, "changed.toml", price="120.0")
    out = serve(groupbuy_exe, str(changed), "--store", store, "--port", "0")
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "skus[0].list_price: 100.0 → 120.0" in err and "--reset" in err
    assert "1 order(s)" in err
    # nothing was changed: the first campaign still has its paid order
    with start_server(scenario(tmp_path), store) as server:
        assert ledger(server.url)["orders"]["paid"] == 1
    with start_server(changed, store, 1, "--reset") as server:
        led = ledger(server.url)
        assert led["orders"]["paid"] == 0 and led["skus"]["hot"]["available"] == 20
        price = httpx.get(f"{server.url}/v1/skus/hot").json()["list_price"]
        assert price == 12000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_a_busy_port_writes_nothing(tmp_path: Path, groupbuy_exe: str,
                                                       start_server: StartServer,
                                                       workers: str) -> None:
    # the running server's workers listen with SO_REUSEPORT; a second server must still be
    # refused the port, with one worker or several
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    server = start_server(scenario(tmp_path), store, 2)
    buy(server.url)
    before = ledger(server.url)
    other = scenario(tmp_path, "other.toml", price="55.0")
    out = serve(groupbuy_exe, str(other), "--store", store, "--port", str(server.port),
                "--workers", workers)
    assert out.returncode == 2 and "cannot listen on" in out.stderr, out.stderr
    after = ledger(server.url)
    assert after["sale_id"] == before["sale_id"] and after["orders"] == before["orders"]
    assert after["skus"] == before["skus"]


def test_a_second_server_on_the_same_sqlite_file_is_refused(
        tmp_path: Path, groupbuy_exe: str, start_server: StartServer) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    server = start_server(scenario(tmp_path), store)
    buy(server.url)
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", store, "--port", "0")
    assert out.returncode == 2, out.stderr
    assert "in use by another server" in out.stderr and len(out.stderr.splitlines()) == 1
    assert ledger(server.url)["orders"]["paid"] == 1


# -- 4. durability read from the live store ----------------------------------------------------

@pytest.mark.redis
def test_redis_without_persistence_is_refused_unless_allowed(
        tmp_path: Path, redis_url: str, groupbuy_exe: str, start_server: StartServer) -> None:
    prefix = unique("gbtest-durability")
    url = with_query(redis_url, "prefix", prefix)
    try:
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
        assert out.returncode == 2 and "appendonly=no" in out.stderr, out.stderr
        assert "--allow-unsafe-durability" in out.stderr
        # refused before writing: the store holds no sale
        import redis
        assert redis.Redis.from_url(redis_url).exists(f"{prefix}:sale") == 0
        with start_server(scenario(tmp_path), url) as server:  # passes the flag for Redis
            h = httpx.get(f"{server.url}/v1/health").json()
            assert h["safe"] is False and "appendonly=no" in h["warning"]
    finally:
        drop_redis_prefix(redis_url, prefix)


def test_redis_with_appendfsync_always_is_safe(tmp_path: Path,
                                               start_server: StartServer) -> None:
    need_binary("redis-server")
    with PrivateRedis(tmp_path / "redis", appendonly=True, appendfsync="always") as r, \
            start_server(scenario(tmp_path), r.url, 1,
                         allow_unsafe_durability=False) as server:
        h = httpx.get(f"{server.url}/v1/health", timeout=10).json()
        assert h["safe"] is True and "warning" not in h
        assert h["durability"] == {"appendonly": "yes", "appendfsync": "always"}


@pytest.mark.postgres
def test_postgres_synchronous_commit_off_is_refused(tmp_path: Path, postgres_url: str,
                                                    groupbuy_exe: str) -> None:
    schema = unique("gbtest_durability_off", "_")
    url = with_query(postgres_url, "options", "-c%20synchronous_commit%3Doff")
    url = with_query(url, "schema", schema)
    try:
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
        assert out.returncode == 2, out.stderr
        assert "synchronous_commit=off" in out.stderr
        assert "--allow-unsafe-durability" in out.stderr
    finally:
        drop_postgres_schema(postgres_url, schema)


def test_sqlite_synchronous_normal_is_unsafe(tmp_path: Path, groupbuy_exe: str) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3?synchronous=NORMAL"
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", store, "--port", "0")
    assert out.returncode == 2 and "synchronous=NORMAL" in out.stderr, out.stderr


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
def test_stopping_serve_stops_every_worker(tmp_path: Path, start_server: StartServer,
                                           sig) -> None:
    server = start_server(scenario(tmp_path), f"sqlite:///{tmp_path}/s.sqlite3", 2)
    workers = _children(server.proc.pid)  # two workers and multiprocessing's resource tracker
    assert len(workers) >= 2
    os.kill(server.proc.pid, sig)  # the server only, not its process group
    server.proc.wait(timeout=20)
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    assert left == [], [(_cmdline(w), Path(f"/proc/{w}/stat").read_text()) for w in left]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/v1/ping", timeout=1)


def test_new_connections_are_spread_over_the_workers() -> None:
    # one listening socket per worker on one port: the kernel hands each some of a burst (one
    # shared socket let the first worker to wake accept all of it)
    socks = listen("127.0.0.1", 0, 2)
    port = socks[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        accepted = []
        for sock in socks:
            assert sock.getsockname()[1] == port
            sock.setblocking(False)
            n = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.accept()[0].close()
                    n += 1
            accepted.append(n)
        assert sum(accepted) == 40 and min(accepted) > 0, accepted
    finally:
        for c in clients + socks:
            c.close()


def test_a_worker_that_dies_is_replaced_on_its_own_socket(tmp_path: Path,
                                                          start_server: StartServer) -> None:
    server = start_server(scenario(tmp_path), f"sqlite:///{tmp_path}/s.sqlite3", 2)
    workers = [w for w in _children(server.proc.pid) if "resource_tracker" not in _cmdline(w)]
    assert len(workers) == 2, [_cmdline(w) for w in workers]
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = [w for w in _children(server.proc.pid) if "resource_tracker" not in _cmdline(w)]
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the dead worker was not replaced")
    # every new connection is answered: the kernel hashes some of them to the dead worker's
    # socket, which only its replacement serves
    for _ in range(30):
        assert httpx.get(f"{server.url}/v1/ping", timeout=5).status_code == 200


# -- 7. secrets ------------------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_admin_token_is_never_on_a_command_line_or_in_the_log(
        tmp_path: Path, groupbuy_exe: str, start_server: StartServer) -> None:
    secret_token = "tok-" + os.urandom(8).hex()
    with start_server(scenario(tmp_path), f"sqlite:///{tmp_path}/s.sqlite3", 2, "--log-level",
                      "debug", admin_token=secret_token) as server:
        for pid in [server.proc.pid, *_children(server.proc.pid)]:
            assert secret_token not in _cmdline(pid)
        r = httpx.get(f"{server.url}/v1/admin/ledger",
                      headers={"Authorization": f"Bearer {secret_token}"})
        assert r.status_code == 200
    text = server.log_path.read_text()
    assert secret_token not in text and "admin token: from $GROUPBUY_ADMIN_TOKEN" in text
    out = serve(groupbuy_exe, str(scenario(tmp_path)), "--admin-token", "x", "--port", "0")
    assert out.returncode == 2 and "GROUPBUY_ADMIN_TOKEN" in out.stderr


def test_a_generated_admin_token_is_in_a_private_file(tmp_path: Path,
                                                      start_server: StartServer) -> None:
    state = tmp_path / "state"
    with start_server(scenario(tmp_path), f"sqlite:///{tmp_path}/s.sqlite3", admin_token=None,
                      env={"GROUPBUY_STATE_DIR": str(state)}) as server:
        file = state / "admin-token"
        token = file.read_text().strip()
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        r = httpx.get(f"{server.url}/v1/admin/ledger",
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    text = server.log_path.read_text()
    assert f"admin token: in {file}" in text and token not in text


def test_a_password_in_the_store_url_is_never_printed(tmp_path: Path,
                                                      groupbuy_exe: str) -> None:
    with refused_port() as port:
        url = f"postgresql://postgres:hunter2secret@127.0.0.1:{port}/test"
        out = serve(groupbuy_exe, str(scenario(tmp_path)), "--store", url, "--port", "0")
    assert out.returncode == 2 and "cannot open" in out.stderr
    assert "hunter2secret" not in out.stdout + out.stderr and "postgres:***@" in out.stderr


def test_the_signing_secret_is_outside_the_store_file_and_survives_a_restart(
        tmp_path: Path, start_server: StartServer) -> None:
    db = tmp_path / "results" / "s.sqlite3"
    store = f"sqlite:///{db}"
    server = start_server(scenario(tmp_path), store, 2)
    tok = httpx.post(f"{server.url}/v1/admin/user-tokens", json={"user_ids": ["u1"]},
                     headers=ADMIN_H).json()["tokens"]["u1"]
    server.kill9()  # as the harness does mid-run
    server = start_server(scenario(tmp_path), store, 2)
    r = httpx.post(f"{server.url}/v1/orders", json={"sku_id": "hot", "quantity": 1},
                   headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": "k"})
    assert r.status_code == 201, r.text  # the client's token still works
    server.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE k = 'secret'").fetchone() == (0,)
    for path in db.parent.iterdir():  # nothing under results/ holds the secret
        assert b"secret" not in path.name.encode()
