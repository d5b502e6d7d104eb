"""Reference-server CPU per request without the HTTP server: the app called through its ASGI
interface from 32 concurrent tasks, hot-SKU reserve+pay against `GET /v1/ping`, as CPU time of
this process (event loop and database threads) per operation. Steadier than wall-clock rates on
a busy machine: other processes take turns, but not this process's CPU seconds.

    .venv/bin/python benchmarks/server_cpu.py [--store sqlite|postgresql|redis] [--pairs 60]
                                              [--rounds 3]

Prints one line per round: µs of CPU per ping and per reserve+pay pair, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import tomllib
from typing import Any

import server_speed as speed

from reference_server.app import ServerConfig, create_app

Asgi = Any


async def call(app: Asgi, method: str, path: str, headers: dict[str, str],
               body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI interface."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {},
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)
    return out["status"], out["body"]


async def measure(url: str, pairs: int, rounds: int) -> None:
    app = create_app(ServerConfig(url, speed.ADMIN, expiry_interval=3600.0))
    admin = {"Authorization": f"Bearer {speed.ADMIN}", "Content-Type": "application/json"}
    campaign = tomllib.loads(speed.SCENARIO)["campaign"]
    async with app.router.lifespan_context(app):
        status, _ = await call(app, "POST", "/v1/admin/sale", admin,
                               json.dumps({"campaign": campaign}).encode())
        assert status == 200
        users = [f"cpu{i}" for i in range(32)]
        _, body = await call(app, "POST", "/v1/admin/user-tokens", admin,
                             json.dumps({"user_ids": users}).encode())
        tokens = json.loads(body)["tokens"]

        async def pings() -> None:
            for _ in range(pairs):
                await call(app, "GET", "/v1/ping", {})

        async def buys(user: str) -> None:
            auth = {"Authorization": f"Bearer {tokens[user]}"}
            for _ in range(pairs):
                status, body = await call(
                    app, "POST", "/v1/orders", auth | {"Idempotency-Key": secrets.token_hex(8)},
                    b'{"sku_id": "hot", "quantity": 1}')
                assert status == 201, body
                oid = json.loads(body)["order_id"]
                status, body = await call(app, "POST", f"/v1/orders/{oid}/pay", auth)
                assert status == 200, body

        n = len(users) * pairs
        for _ in range(rounds):
            t0 = time.process_time()
            await asyncio.gather(*[pings() for _ in users])
            ping = (time.process_time() - t0) / n
            t0 = time.process_time()
            await asyncio.gather(*[buys(u) for u in users])
            pair = (time.process_time() - t0) / n
            print(f"CPU per ping {ping * 1e6:,.0f} µs, per reserve+pay {pair * 1e6:,.0f} µs, "
                  f"ratio {ping / pair:.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=["sqlite", "postgresql", "redis"], default="sqlite")
    ap.add_argument("--pairs", type=int, default=60, help="per buyer and round (default 60)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tag = secrets.token_hex(4)
    schema, prefix = f"gbcpu_{tag}", f"gbcpu-{tag}"
    url = {"sqlite": f"sqlite:///{tempfile.mkdtemp(prefix='gb-cpu-')}/cpu.sqlite3",
           "postgresql": f"{speed.PG}?schema={schema}",
           "redis": f"{speed.REDIS}?prefix={prefix}"}[args.store]
    try:
        asyncio.run(measure(url, args.pairs, args.rounds))
    finally:
        speed._cleanup(schema if args.store == "postgresql" else None,
                       prefix if args.store == "redis" else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
