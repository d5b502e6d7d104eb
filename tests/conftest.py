"""Shared fixtures: the real PostgreSQL and Redis services of this machine.

Outside CI a test that needs a missing service is skipped with the reason; in CI (`CI=true`)
a missing service is a failure, because CI must prove the real backends work."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = REPO_ROOT / "scenarios"
POSTGRES_URL = os.environ.get("GROUPBUY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GROUPBUY_TEST_REDIS", "redis://127.0.0.1:6379/15")
# Servers started by tests keep their secrets (admin token, SQLite signing secrets) here, not in
# the user's own state folder; child processes inherit it.
os.environ.setdefault("GROUPBUY_STATE_DIR", tempfile.mkdtemp(prefix="groupbuy-test-state-"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) the calling test when the service is not reachable."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI requires it (start it: see the README's 'Services')")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> str:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def groupbuy_exe() -> str:
    """The `groupbuy` console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "groupbuy"
    assert exe.exists(), f"groupbuy is not installed next to {sys.executable}"
    return str(exe)
