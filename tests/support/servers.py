"""Server processes for tests, all started by the one launcher, `loadtests.server.ServerProcess`
(the server binds port 0 and says which port it got): the reference server, a deliberately
wrong one (`wrong_server.py`), and a port that refuses connections."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from loadtests.server import ServerProcess

HERE = Path(__file__).resolve().parent
TOKEN = "wrong-server-admin-token"

StartServer = Callable[..., ServerProcess]
"""The `start_server` fixture (tests/conftest.py): starts the reference server for a test."""


class WrongServer(ServerProcess):
    """`wrong_server.py SCENARIO --store URL --bugs B,…`: the reference app with the named bugs,
    started, faulted and stopped like the reference server."""

    def __init__(self, scenario: str | Path, store: str, bugs: list[str], log: Path,
                 workers: int = 2, timeout: float = 60) -> None:
        self.bugs = list(bugs)
        self.token = TOKEN
        super().__init__(scenario, store, workers, TOKEN, log, timeout)

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / "wrong_server.py"), self.scenario, "--store",
                self.store, "--bugs", ",".join(self.bugs), "--workers", str(self.workers),
                "--port", str(self.port)]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound and not
    listening, so no other process (another test, another worker) can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
