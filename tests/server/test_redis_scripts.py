"""The Redis store's pipelined script connection (`stores/redis_scripts.py`) on a private
`redis-server`: a Redis that lost its scripts, connections killed under the server, and a
Redis that stops answering."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import redis as redis_sync

from reference_server.stores import redis_scripts
from tests.support.checkout import running_lab
from tests.support.stores import need_binary

pytestmark = pytest.mark.anyio


@pytest.fixture
def private_redis(tmp_path: Path):
    from loadtests.instances import PrivateRedis
    need_binary("redis-server")
    with PrivateRedis(tmp_path / "redis", appendonly=True, appendfsync="always") as server:
        yield server


async def test_scripts_are_loaded_again_after_redis_forgets_them(private_redis) -> None:
    async with running_lab(private_redis.url) as lab:
        assert (await lab.reserve("u1")).status_code == 201
        redis_sync.Redis.from_url(private_redis.url).script_flush()
        r = await lab.reserve("u2")
        assert r.status_code == 201, r.text
        assert (await lab.pay("u2", r.json()["order_id"])).status_code == 200


async def test_a_killed_script_connection_is_replaced(private_redis) -> None:
    async with running_lab(private_redis.url) as lab:
        assert (await lab.reserve("u1")).status_code == 201
        admin = redis_sync.Redis.from_url(private_redis.url)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        r = await lab.reserve("u2")  # sent on the dead connection, then on a new one
        assert r.status_code == 201, r.text
        assert (await lab.pay("u2", r.json()["order_id"])).status_code == 200


async def test_a_redis_that_stops_answering_is_a_503_not_a_hang(private_redis,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(redis_scripts, "REPLY_TIMEOUT_SECONDS", 0.5)
    async with running_lab(private_redis.url) as lab:
        assert (await lab.reserve("u1")).status_code == 201
        await lab.token("u2")
        pid = private_redis.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            r = await asyncio.wait_for(lab.reserve("u2"), 20)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
        again = await lab.as_user("u2", "POST", "/v1/orders", key="after",
                                  json={"sku_id": "hot", "quantity": 1})
        assert again.status_code == 201, again.text
