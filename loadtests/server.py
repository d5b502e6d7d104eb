"""Start `groupbuy serve` as a separate process (never imported: HTTP only) and stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

URL_LINE = re.compile(r"groupbuy serve: (http://\S+)")


class ServerStartError(RuntimeError):
    """The server did not come up; the message quotes the end of its log."""


class ServerProcess:
    """`groupbuy serve SCENARIO --store URL --workers N --port 0` on 127.0.0.1, logging to
    `log_path`; a context manager that stops it (and its worker processes) on exit."""

    def __init__(self, scenario: str | Path, store: str, workers: int, admin_token: str,
                 log_path: str | Path, startup_timeout: float = 60.0, *,
                 allow_unsafe_durability: bool = False) -> None:
        self.log_path = Path(log_path)
        exe = Path(sys.executable).parent / "groupbuy"
        cmd = [str(exe), "serve", str(scenario), "--store", store, "--workers", str(workers),
               "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"]
        if allow_unsafe_durability:
            cmd.append("--allow-unsafe-durability")
        self._log = self.log_path.open("w")
        # A session of its own, so stopping it also stops uvicorn's worker processes. The
        # token goes through the environment: a command line is visible to everyone (ps).
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1",
                                              GROUPBUY_ADMIN_TOKEN=admin_token))
        try:
            self.url = self._wait_until_up(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"

    def _wait_until_up(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"the server exited with code {self.proc.returncode}: "
                                       f"{self._tail()}")
            if url is None:
                m = URL_LINE.search(self.log_path.read_text(errors="replace"))
                url = m.group(1) if m else None
            if url is not None:
                try:
                    if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        return url
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise ServerStartError(f"the server did not answer /v1/health within {timeout:g} s: "
                               f"{self._tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
