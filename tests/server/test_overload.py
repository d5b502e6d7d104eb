"""Overload (issue 11, item 5): a worker serves a bounded number of requests at once and sheds
the rest at once with `503 overloaded` and `Retry-After`; the Redis store waits for a pooled
connection instead of failing with "Too many connections"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from reference_server.app import ServerConfig, create_app
from tests.support.checkout import ADMIN, Clock, Lab
from tests.support.stores import need_binary, redis_prefix

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def _lab(url: str, max_in_flight: int) -> AsyncIterator[Lab]:
    app = create_app(ServerConfig(url, ADMIN, expiry_interval=3600.0,
                                  max_in_flight=max_in_flight), Clock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lab") as client:
            lab = Lab(client, app.state.clock, app)
            await lab.load()
            yield lab


async def test_requests_beyond_the_limit_are_shed_with_retry_after(tmp_path, monkeypatch) -> None:
    async with _lab(f"sqlite:///{tmp_path}/s.sqlite3", max_in_flight=2) as lab:
        await lab.token("u1")
        await lab.token("u2")
        release = asyncio.Event()
        real = lab.store.once

        async def slow(*args, **kw):
            await release.wait()
            return await real(*args, **kw)
        monkeypatch.setattr(lab.store, "once", slow)
        held = [asyncio.create_task(lab.reserve(u)) for u in ("u1", "u2")]
        await asyncio.sleep(0.05)
        r = await lab.client.get("/v1/skus/hot")
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        assert r.headers["retry-after"] == "1"
        h = await lab.client.get("/v1/health")  # health is always answered
        assert h.status_code == 200
        release.set()
        assert [t.status_code for t in await asyncio.gather(*held)] == [201, 201]
        assert (await lab.client.get("/v1/skus/hot")).status_code == 200  # room again


@pytest.mark.redis
async def test_redis_waits_for_a_pooled_connection(redis_url: str, monkeypatch) -> None:
    from redis.asyncio import BlockingConnectionPool

    from reference_server.stores import redis_store
    monkeypatch.setattr(redis_store, "POOL_SIZE", 2)
    with redis_prefix(redis_url) as url:
        async with _lab(url, max_in_flight=1000) as lab:
            assert isinstance(lab.store.r.connection_pool, BlockingConnectionPool)
            users = [f"u{i}" for i in range(30)]
            for u in users:
                await lab.token(u)
            rs = await asyncio.gather(*[lab.reserve(u, sku="grp") for u in users])
            assert [r.status_code for r in rs] == [201] * 30, {r.text for r in rs}


async def test_redis_retries_after_killed_connections_never_replay_another_body(tmp_path) -> None:
    """The issue's case: creates answered 503 because the store's connections were killed, then
    retried under the same key with another body (quantity 2) must never get the first order:
    either 422 idempotency_key_reused (the first attempt took effect) or a new order of 2."""
    import redis as redis_sync

    from loadtests.instances import PrivateRedis
    need_binary("redis-server")
    with PrivateRedis(tmp_path / "redis", appendonly=True, appendfsync="always") as server:
        async with _lab(server.url, max_in_flight=1000) as lab:
            users = [f"k{i}" for i in range(40)]
            for u in users:
                await lab.token(u)
            killer = redis_sync.Redis.from_url(server.url)
            stop = asyncio.Event()

            async def kill_clients() -> None:
                while not stop.is_set():
                    killer.client_kill_filter(_type="normal", skipme=True)
                    await asyncio.sleep(0.003)
            body = {"sku_id": "grp", "quantity": 1}
            task = asyncio.create_task(kill_clients())
            first = await asyncio.gather(*[
                lab.as_user(u, "POST", "/v1/orders", key=f"key-{u}", json=body) for u in users])
            stop.set()
            await task
            lost = [u for u, r in zip(users, first, strict=True) if r.status_code == 503]
            assert lost, "no request hit a killed connection; the test proves nothing"
            for u in lost:
                r = await lab.as_user(u, "POST", "/v1/orders", key=f"key-{u}",
                                      json=body | {"quantity": 2})
                assert r.status_code in (201, 409, 422), r.text
                if r.status_code == 201:
                    assert r.json()["quantity"] == 2, "the first body's order was replayed"
                elif r.status_code == 422:
                    assert r.json()["error"]["code"] == "idempotency_key_reused"
            killer.close()
