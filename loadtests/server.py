"""Start `groupbuy serve` as a separate process (never imported: HTTP only), break it on
purpose, restart it on the same store, and stop it with every worker it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import psutil

URL_LINE = re.compile(r"groupbuy serve: (http://\S+)")


class ServerStartError(RuntimeError):
    """The server did not come up; the message quotes the end of its log."""


class ServerProcess:
    """`groupbuy serve SCENARIO --store URL --workers N` on 127.0.0.1, logging to `log_path`;
    a context manager that stops it (and its worker processes) on exit. The server binds the
    port itself (`port=0`, the default: a free one, read back from its first log line), so
    two servers never race for one. The admin token goes through the environment, never the
    command line (where `ps` would show it); `admin_token=None` leaves the server to find its
    own. `extra_args` go on the command line, `env` into the environment.

    Faults: `kill9()` kills every process of the server at once; `kill9_worker()` one uvicorn
    worker (the supervisor starts another); `pause_worker()` / `resume()` stop and continue
    one; `restart()` starts the server again on the same store and port.

    Another server that speaks the contract starts the same way: override `command()`."""

    def __init__(self, scenario: str | Path, store: str, workers: int, admin_token: str | None,
                 log_path: str | Path, startup_timeout: float = 60.0, *, port: int = 0,
                 allow_unsafe_durability: bool = False, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.scenario, self.store, self.workers = str(scenario), store, workers
        self.log_path = Path(log_path)
        self.startup_timeout = startup_timeout
        self.extra_args = (*extra_args,
                           *(("--allow-unsafe-durability",) if allow_unsafe_durability else ()))
        self.admin_token = admin_token
        self._env = dict(env or {})
        self.port = port
        self.url = ""
        self.restarts = 0
        self._log = self.log_path.open("w")
        self.proc = self._spawn()
        try:
            self.url = self._wait_until_up(startup_timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        self.port = int(self.url.rsplit(":", 1)[1])

    def command(self) -> list[str]:
        """The command line that starts the server on `self.port` (0: any free port)."""
        exe = Path(sys.executable).parent / "groupbuy"
        return [str(exe), "serve", self.scenario, "--store", self.store, "--workers",
                str(self.workers), "--listen", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", *self.extra_args]

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self._env)
        env.pop("GROUPBUY_ADMIN_TOKEN", None)
        if self.admin_token is not None:
            env["GROUPBUY_ADMIN_TOKEN"] = self.admin_token
        self._log.flush()
        # A session of its own, so stopping it also stops uvicorn's worker processes.
        return subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)

    def _tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"

    def _wait_until_up(self, timeout: float, proc: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}" if self.port else None
        seen = self.log_path.stat().st_size if url is None else 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(f"the server exited with code {proc.returncode}: "
                                       f"{self._tail()}")
            if url is None:
                with self.log_path.open(errors="replace") as fh:
                    fh.seek(max(0, seen - 1))
                    m = URL_LINE.search(fh.read())
                url = m.group(1) if m else None
            if url is not None:
                try:
                    if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        return url
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise ServerStartError(f"the server did not answer /v1/health within {timeout:g} s: "
                               f"{self._tail()}")

    # -- state ----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor); with one worker, the
        server process itself serves."""
        if not self.alive:
            return []
        if self.workers == 1:
            return [self.proc.pid]
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        out = []
        for c in children:
            with contextlib.suppress(psutil.Error):
                if "resource_tracker" not in " ".join(c.cmdline()):
                    out.append(c.pid)
        return sorted(out)

    # -- faults ---------------------------------------------------------------------------
    def kill9(self) -> None:
        """Crash every process of the server at once (SIGKILL to its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def kill9_worker(self, index: int = 0) -> int | None:
        """SIGKILL one worker (uvicorn's supervisor starts a new one); returns its pid."""
        pids = self.worker_pids()
        if not pids:
            return None
        pid = pids[index % len(pids)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def pause_worker(self, index: int = 0) -> int | None:
        """SIGSTOP one worker; `resume(pid)` continues it. Returns its pid."""
        pids = self.worker_pids()
        if not pids:
            return None
        pid = pids[index % len(pids)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        return pid

    @staticmethod
    def resume(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start the server again on the same store and port (after `kill9` or a death)."""
        if self.alive:
            self.kill9()
        self._log.write(f"\n--- restart {self.restarts + 1} ---\n")
        self.restarts += 1
        self.proc = self._spawn()
        self._wait_until_up(self.startup_timeout, self.proc)

    # -- stop -----------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)  # a paused worker must hear SIGTERM
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # any worker left behind
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
