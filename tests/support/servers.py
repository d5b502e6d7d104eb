"""Start a deliberately wrong server (`wrong_server.py`) as a separate process, like
`loadtests.server.ServerProcess` starts the reference one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from loadtests.instances import free_port
from loadtests.server import ServerProcess

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parents[1] / "scenarios"


@contextlib.contextmanager
def reference_server(folder: Path, token: str,
                     scenario: Path = SCENARIOS / "default.toml") -> Iterator[str]:
    """The reference server on a fresh SQLite file in `folder` (2 workers); yields its URL."""
    with ServerProcess(scenario, f"sqlite:///{folder / 's.sqlite3'}", 2, token,
                       folder / "server.log") as srv:
        yield srv.url
TOKEN = "wrong-server-admin-token"


class WrongServer:
    """`wrong_server.py SCENARIO --store URL --bugs B,…` on a free port; stops with its
    workers on exit."""

    def __init__(self, scenario: str | Path, store: str, bugs: list[str], log: Path,
                 workers: int = 2, timeout: float = 60) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TOKEN
        self._log = log.open("w")
        cmd = [sys.executable, str(HERE / "wrong_server.py"), str(scenario), "--store", store,
               "--bugs", ",".join(bugs), "--workers", str(workers), "--port", str(self.port)]
        env = dict(os.environ, GROUPBUY_ADMIN_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"wrong server exited: {log.read_text()[-1500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"wrong server did not come up: {log.read_text()[-1500:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> WrongServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
