"""Private store instances for crash tests: a kill -9 keeps what the settings make durable."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import redis

from loadtests.instances import InstanceError, PrivatePostgres, PrivateRedis
from tests.support.stores import need_binary


def test_redis_with_fsync_always_keeps_a_write_across_kill9(tmp_path: Path) -> None:
    need_binary("redis-server")
    with PrivateRedis(tmp_path, appendonly=True, appendfsync="always") as r:
        redis.Redis.from_url(r.url).set("k", "v")
        r.kill9()
        r.start()
        assert redis.Redis.from_url(r.url).get("k") == b"v"


def test_redis_without_persistence_loses_everything_on_kill9(tmp_path: Path) -> None:
    need_binary("redis-server")
    with PrivateRedis(tmp_path, appendonly=False) as r:
        redis.Redis.from_url(r.url).set("k", "v")
        r.kill9()
        assert r.pid is not None  # the old process object; it is dead
        r.start()
        assert redis.Redis.from_url(r.url).get("k") is None


def test_postgres_keeps_a_commit_across_kill9_and_cleans_up() -> None:
    need_binary("initdb")
    pg = PrivatePostgres(synchronous_commit="on")
    try:
        pg.start()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        pg.kill9()
        assert pg.pid is None
        pg.start()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        pg.stop()
    assert not pg.folder.exists()


def test_bad_redis_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appendfsync must be one of"):
        PrivateRedis(tmp_path, appendfsync="sometimes")


def test_unreachable_postgres_folder_is_a_clear_error(tmp_path: Path) -> None:
    need_binary("initdb")
    if os.geteuid() != 0:
        pytest.skip("only root runs initdb as another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o700)
    with pytest.raises(InstanceError, match="cannot reach this folder"):
        PrivatePostgres(private / "pg").start()
