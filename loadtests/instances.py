"""Private Redis and PostgreSQL instances for crash and durability runs.

Crash tests must never touch the shared services, so each instance here lives in a folder of
its own, listens on a free loopback port, and is stopped by pid. `kill9()` is a crash (no
shutdown, no flush); `start()` again on the same folder is the restart after it, with whatever
the instance had made durable. PostgreSQL's `initdb` and `pg_ctl` refuse to run as root, so as
root they run as the `postgres` user (`runuser`), which then owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psutil

REDIS_FSYNC = ("always", "everysec", "no")


class InstanceError(RuntimeError):
    """A private instance could not be started; the message says why (log tail included)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float, alive: Callable[[], bool], what: str,
                   log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise InstanceError(f"{what} exited during start-up: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise InstanceError(f"{what} did not listen on port {port} within {timeout:g} s: "
                        f"{_tail(log)}")


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0): reap it if it is ours, else ask what state it is in
    # (another process may have killed a child of ours, e.g. `instances restart`)
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill9(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


class PrivateRedis:
    """`redis-server` in `folder` on a free port.

    `appendonly=False` keeps nothing on disk (this machine's shared Redis runs so);
    `appendfsync` is `always`, `everysec` or `no` (only meaningful with `appendonly`)."""

    def __init__(self, folder: str | Path, *, appendonly: bool = True,
                 appendfsync: str = "always", port: int | None = None) -> None:
        if appendfsync not in REDIS_FSYNC:
            raise ValueError(f"appendfsync must be one of {REDIS_FSYNC}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.log = self.folder / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _running_pid(self) -> int | None:
        """The live redis-server of this folder: ours, or one another process restarted
        (`python -m loadtests.instances restart`), by its pidfile."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return _pidfile_pid(self.pidfile)

    def start(self, timeout: float = 20.0) -> Self:
        """Start (or restart after a kill) on the same folder and port."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise InstanceError("redis-server is not installed (apt-get install redis-server)")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
               "--save", "", "--appendonly", "yes" if self.appendonly else "no",
               "--appendfsync", self.appendfsync, "--logfile", str(self.log),
               "--pidfile", str(self.pidfile), "--daemonize", "no", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _save_state(self.folder, {"kind": "redis", "port": self.port,
                                  "appendonly": self.appendonly,
                                  "appendfsync": self.appendfsync})
        _wait_for_port(self.port, timeout, lambda: self.proc is not None
                       and self.proc.poll() is None, "redis-server", self.log)
        self._wait_loaded(timeout)
        return self

    @property
    def pidfile(self) -> Path:
        return self.folder / "redis.pid"

    def _wait_loaded(self, timeout: float) -> None:
        """After a restart Redis answers LOADING until the append-only file is read back."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                 capture_output=True, text=True, check=False).stdout
            if out.strip() == "PONG":
                return
            time.sleep(0.05)
        raise InstanceError(f"redis-server on port {self.port} did not answer PING: "
                            f"{_tail(self.log)}")

    def kill9(self) -> None:
        """Crash it: SIGKILL, nothing flushed."""
        pid = self._running_pid()
        if pid is not None:
            _kill9([pid])
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it for good (SIGTERM, then SIGKILL), whoever started it last."""
        pid = self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            self.kill9()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


STATE_FILE = "instance.json"


def _save_state(folder: Path, state: dict[str, object]) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state))


def _pidfile_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    pid = int(first) if first.isdigit() else None
    return pid if _pid_alive(pid) else None


def open_instance(folder: str | Path) -> PrivateRedis | PrivatePostgres:
    """The private instance that lives in `folder` (as its last start left it), e.g. to crash
    and restart it from another process."""
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise InstanceError(f"{folder}: no private instance here ({STATE_FILE} missing)") from None
    if state["kind"] == "redis":
        return PrivateRedis(folder, appendonly=state["appendonly"],
                            appendfsync=state["appendfsync"], port=state["port"])
    return PrivatePostgres(folder, synchronous_commit=state["synchronous_commit"],
                           fsync=state["fsync"], port=state["port"])


def crash_and_restart(folder: str | Path, down_seconds: float = 0.0) -> str:
    """kill -9 the private instance in `folder`, wait, start it again on the same data and
    port; returns what was done. A store restart for `[faults] restart_store`."""
    inst = open_instance(folder)
    inst.kill9()
    time.sleep(down_seconds)
    inst.start()
    kind = "redis" if isinstance(inst, PrivateRedis) else "postgres"
    return f"{kind} on port {inst.port} killed (-9) and restarted"


def main(argv: list[str] | None = None) -> int:
    """`python -m loadtests.instances restart FOLDER [--down S]`: crash and restart the
    private instance in FOLDER (one line on success; one line and exit 1 on failure)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m loadtests.instances")
    p.add_argument("action", choices=["restart"])
    p.add_argument("folder")
    p.add_argument("--down", type=float, default=0.0, help="seconds to stay down")
    args = p.parse_args(argv)
    try:
        print(crash_and_restart(args.folder, args.down))
    except InstanceError as exc:
        print(f"loadtests.instances: {exc}", file=sys.stderr)
        return 1
    return 0


def _pg_bin(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        exe = found[-1] if found else None
    if exe is None:
        raise InstanceError(f"{name} is not installed (apt-get install postgresql)")
    return exe


class PrivatePostgres:
    """A PostgreSQL cluster made by `initdb` in `folder` (default: a new temp folder, removed
    by `stop()`), on a free port, trust auth.

    `synchronous_commit` and `fsync` are the durability settings under test
    (`on`/`off`); the URL points at the `postgres` database as the `postgres` user."""

    def __init__(self, folder: str | Path | None = None, *, synchronous_commit: str = "on",
                 fsync: str = "on", port: int | None = None) -> None:
        self._own_folder = folder is None
        if folder is None:
            # mkdtemp makes a 0700 folder; the postgres user must be able to enter it
            folder = tempfile.mkdtemp(prefix="groupbuy-pg-")
            Path(folder).chmod(0o755)
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.log = self.folder / "postgres.log"
        self.synchronous_commit = synchronous_commit
        self.fsync = fsync
        self.port = port or free_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from postmaster.pid (None when not running)."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        pid = int(first) if first.strip().isdigit() else None
        return pid if _pid_alive(pid) else None

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def _initdb(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
            reach = self._run(["test", "-w", str(self.folder)], timeout=10)
            if reach.returncode != 0:
                raise InstanceError(f"{self.folder}: the postgres user cannot reach this folder "
                                    "(a parent is private); leave `folder` out to get one in "
                                    "the system's temp folder")
        out = self._run([_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U",
                         "postgres", "--no-sync", "-E", "UTF8"], timeout=120)
        if out.returncode != 0:
            raise InstanceError(f"initdb failed: {(out.stderr or out.stdout).strip()[-500:]}")

    def start(self, timeout: float = 60.0) -> Self:
        """Create the cluster on first use; start (or restart after a kill, with crash
        recovery) on the same folder and port."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.sockets} "
                   f"-c synchronous_commit={self.synchronous_commit} -c fsync={self.fsync} "
                   "-c max_connections=200")
        out = self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
                         options, "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        if out.returncode != 0:
            raise InstanceError(f"pg_ctl start failed: {(out.stderr or out.stdout).strip()} "
                                f"{_tail(self.log)}")
        _save_state(self.folder, {"kind": "postgres", "port": self.port,
                                  "synchronous_commit": self.synchronous_commit,
                                  "fsync": self.fsync})
        _wait_for_port(self.port, timeout, lambda: self.pid is not None, "postgres", self.log)
        return self

    def _cluster_pids(self) -> list[int]:
        pid = self.pid
        if pid is None:
            return []
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                                  check=False).stdout.split()
        return [int(c) for c in children] + [pid]

    def kill9(self) -> None:
        """Crash it: SIGKILL to the postmaster and every backend, nothing flushed."""
        pids = self._cluster_pids()
        _kill9(pids)
        # A killed postmaster lingers as a zombie until its parent (init) reaps it, and
        # PostgreSQL takes lock files naming a zombie for a live server: wait for the reaping,
        # and if it does not come, remove the locks (they are stale: the server is dead).
        deadline = time.monotonic() + 10
        while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if any(psutil.pid_exists(p) for p in pids):
            locks = [self.data / "postmaster.pid", *self.sockets.glob(".s.PGSQL.*.lock")]
            self._run(["rm", "-f", *map(str, locks)], timeout=10)

    def stop(self) -> None:
        """Stop it for good (fast shutdown, then SIGKILL); a folder it made itself is removed."""
        if self.pid is not None:
            out = self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                             "stop"], timeout=60)
            if out.returncode != 0:
                self.kill9()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
