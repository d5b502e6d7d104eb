"""Shared fixtures: the real PostgreSQL and Redis services of this machine, a fresh store per
test, and reference servers started by the one launcher (`loadtests.server.ServerProcess`).

Every test gets its own store (SQLite file in its tmp_path, PostgreSQL schema, Redis key
prefix) and its servers bind port 0, so the suite runs in parallel (`pytest -n`) and beside
other runs on the same services. Helpers live in `tests/support/`."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.server import ServerProcess
from tests.support.checkout import ADMIN
from tests.support.servers import StartServer
from tests.support.stores import POSTGRES_URL, REDIS_URL, need_service, store_url

# Servers started by tests keep their secrets (admin token, SQLite signing secrets) here, not in
# the user's own state folder; child processes inherit it.
os.environ.setdefault("GROUPBUY_STATE_DIR", tempfile.mkdtemp(prefix="groupbuy-test-state-"))

REAL_STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
               pytest.param("redis", marks=pytest.mark.redis)]
"""Parameters for a test that must hold on every real store."""


@pytest.fixture
def postgres_url() -> str:
    need_service("PostgreSQL", POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", REDIS_URL)
    return REDIS_URL


@pytest.fixture(params=REAL_STORES)
def real_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each real kind (SQLite, PostgreSQL, Redis), dropped afterwards."""
    with store_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def groupbuy_exe() -> str:
    """The `groupbuy` console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "groupbuy"
    assert exe.exists(), f"groupbuy is not installed next to {sys.executable}"
    return str(exe)



@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """`start_server(scenario, store, workers=1, *extra_args, **options)`: `groupbuy serve` on a
    port of its own with the test admin token (`tests.support.checkout.ADMIN`), logging to a
    file in tmp_path; stopped with every worker at the end of the test. Redis stores get
    `--allow-unsafe-durability` (the shared test Redis keeps nothing on disk)."""
    started: list[ServerProcess] = []
    numbers = itertools.count(1)

    def start(scenario: str | Path, store: str, workers: int = 1, *extra_args: str,
              **options: object) -> ServerProcess:
        options.setdefault("allow_unsafe_durability", store.startswith("redis"))
        options.setdefault("admin_token", ADMIN)
        log = tmp_path / f"server-{next(numbers)}.log"
        server = ServerProcess(scenario, store, workers, log_path=log, extra_args=extra_args,
                               **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
