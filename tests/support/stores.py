"""Stores for tests, each test on its own: a fresh SQLite file, PostgreSQL schema or Redis key
prefix per test, so tests run in parallel (pytest-xdist) and beside other people's runs on the
shared services without seeing each other's data. Dropped again afterwards.

Outside CI a test that needs a missing service or binary is skipped with the reason; in CI
(`CI=true`) it fails, because CI must prove the real backends work."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("GROUPBUY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GROUPBUY_TEST_REDIS", "redis://127.0.0.1:6379/15")
KINDS = ("sqlite", "postgres", "redis", "unsafe")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str, url: str) -> None:
    """Skip (or, in CI, fail) the calling test when the service at `url` is not reachable."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if _in_ci():
        pytest.fail(f"{reason}; CI requires it (start it: see the README's 'Services')")
    pytest.skip(reason)


def need_binary(name: str) -> None:
    """Skip (or, in CI, fail) when a program the test starts is not installed."""
    if shutil.which(name) is None and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")):
        if _in_ci():
            pytest.fail(f"{name} is not installed; CI's crash tests need it")
        pytest.skip(f"{name} is not installed")


def unique(prefix: str, sep: str = "-") -> str:
    """A name no other test (in this run or another on the same services) uses."""
    return f"{prefix}{sep}{secrets.token_hex(5)}"


def with_query(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{key}={value}"


def fresh_postgres(url: str) -> tuple[str, str]:
    """A URL with a fresh schema, and the schema name (drop it afterwards)."""
    schema = unique("gbtest", "_")
    return with_query(url, "schema", schema), schema


def drop_postgres_schema(url: str, schema: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def drop_redis_prefix(url: str, prefix: str) -> None:
    import redis
    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    finally:
        r.close()


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A store URL on a fresh schema of the PostgreSQL at `base`, dropped afterwards."""
    url, schema = fresh_postgres(base)
    try:
        yield url
    finally:
        drop_postgres_schema(base, schema)


@contextlib.contextmanager
def redis_prefix(base: str, prefix: str = "gbtest") -> Iterator[str]:
    """A store URL under a fresh key prefix of the Redis at `base`, deleted afterwards."""
    name = unique(prefix)
    try:
        yield with_query(base, "prefix", name)
    finally:
        drop_redis_prefix(base, name)


@contextlib.contextmanager
def store_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh store of `kind` (one of `KINDS`) for one test; SQLite files go in `folder`."""
    if kind in ("sqlite", "unsafe"):
        yield f"{kind}:///{folder}/{kind}.sqlite3"
    elif kind == "postgres":
        need_service("PostgreSQL", POSTGRES_URL)
        with postgres_schema(POSTGRES_URL) as url:
            yield url
    elif kind == "redis":
        need_service("Redis", REDIS_URL)
        with redis_prefix(REDIS_URL) as url:
            yield url
    else:
        raise ValueError(f"unknown store kind {kind!r}; known: {KINDS}")
