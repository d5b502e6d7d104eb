"""Reference-server speed: hot-SKU reserve-and-pay throughput and latency per store and worker
count, each beside `GET /v1/ping` of the same server in the same run (the ratio is the figure),
and beside the backend's raw limit for the same guarded step where a tool exists.

    .venv/bin/python benchmarks/server_speed.py [--seconds 3] [--rounds 3] [--concurrency 32]

Writes results/benchmarks/server_speed.md (the table) and server_speed.json. Stores whose service
is not reachable are skipped with a note. Runs in about two to three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _results import missing_tool, write_results

from campaign.progress import progress
from loadtests.metrics import percentile
from loadtests.server import ServerProcess

REPO = Path(__file__).resolve().parents[1]
WARMUP_SECONDS = 2.0
ADMIN = "bench-admin"
PG = os.environ.get("GROUPBUY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("GROUPBUY_TEST_REDIS", "redis://127.0.0.1:6379/15")
SCENARIO = """
[campaign]
name = "speed: one hot SKU"
per_user_limit = 1000
payment_timeout_minutes = 15
[[campaign.skus]]
id = "hot"
stock = 1000000000
list_price = 100.0
unit_cost = 40.0
[[campaign.phases]]
name = "burst"
hours = 2
"""


# -- a minimal keep-alive HTTP/1.1 client: light enough not to be the bottleneck -------------

class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                          .encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        m = re.search(rb"(?i)content-length: *(\d+)", raw)
        return status, await self.reader.readexactly(int(m.group(1)) if m else 0)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Run:
    ops: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, float]:
        return {"per_s": self.ops / seconds,
                "p50_ms": 1000 * percentile(self.latencies, 50),
                "p99_ms": 1000 * percentile(self.latencies, 99), "errors": self.errors}


async def _measure(port: int, tokens: list[str], seconds: float, concurrency: int,
                   buy: bool) -> Run:
    run = Run()
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn = await Conn.open(port)
        auth = {"Authorization": f"Bearer {tokens[i]}"}
        n = 0
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                if buy:
                    n += 1
                    status, body = await conn.request(
                        "POST", "/v1/orders", auth | {"Idempotency-Key": f"{i}-{n}"},
                        b'{"sku_id": "hot", "quantity": 1}')
                    ok = status == 201
                    if ok:
                        oid = json.loads(body)["order_id"]
                        status, _ = await conn.request("POST", f"/v1/orders/{oid}/pay", auth)
                        ok = status == 200
                else:
                    status, _ = await conn.request("GET", "/v1/ping", {})
                    ok = status == 200
                run.latencies.append(time.perf_counter() - t0)
                run.ops += ok
                run.errors += not ok
        finally:
            conn.close()

    await asyncio.gather(*[client(i) for i in range(concurrency)])
    return run


# -- servers and stores -------------------------------------------------------------------

def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def bench_server(scenario: Path, store: str, workers: int, seconds: float, concurrency: int,
                 log: Path, rounds: int) -> dict[str, Any]:
    """`rounds` alternating buy/ping measurements on one server; the row is the round with the
    median buy/ping ratio (the machine is shared and noisy: side by side, then the median)."""
    with ServerProcess(scenario, store, workers, ADMIN, log,
                       allow_unsafe_durability=True) as server:
        port = server.port
        users = [f"bench{i}" for i in range(concurrency)]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/admin/user-tokens",
                       json={"user_ids": users}, headers={"Authorization": f"Bearer {ADMIN}"})
        tokens = [r.json()["tokens"][u] for u in users]
        # warm-up, not measured: a new store's files grow (each growth makes the next fsync
        # dearer) and every cache starts cold; a running sale is past that
        asyncio.run(_measure(port, tokens, WARMUP_SECONDS, concurrency, buy=True))
        asyncio.run(_measure(port, tokens, WARMUP_SECONDS / 2, concurrency, buy=False))
        measured = []
        for _ in range(rounds):
            buy = asyncio.run(_measure(port, tokens, seconds, concurrency, buy=True))
            ping = asyncio.run(_measure(port, tokens, seconds, concurrency, buy=False))
            measured.append({"buy": buy.summary(seconds), "ping": ping.summary(seconds)})
        ratios = [m["buy"]["per_s"] / m["ping"]["per_s"] for m in measured]
        median = sorted(range(rounds), key=lambda i: ratios[i])[rounds // 2]
        ledger = httpx.get(f"http://127.0.0.1:{port}/v1/admin/ledger",
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()
        return measured[median] | {"ratios": ratios, "stock": stock_check(ledger)}


def stock_check(ledger: dict[str, Any]) -> str:
    """'held' when the hot SKU's stock is conserved, nothing is negative and the counters agree
    with the orders (one unit each); else what broke."""
    sku, orders = ledger["skus"]["hot"], ledger["orders"]
    problems = []
    if min(sku["available"], sku["reserved"], sku["sold"]) < 0:
        problems.append("a negative counter")
    if sku["initial"] != sku["available"] + sku["reserved"] + sku["sold"]:
        problems.append("initial != available + reserved + sold")
    if sku["sold"] != orders["paid"] or sku["reserved"] != orders["reserved"]:
        problems.append(f"sold/reserved {sku['sold']}/{sku['reserved']} vs paid/reserved orders "
                        f"{orders['paid']}/{orders['reserved']}")
    return "; ".join(problems) or "held"


# -- raw backend limits for the same guarded step --------------------------------------------

def raw_sqlite(path: Path, seconds: float) -> str:
    """The guarded stock UPDATE in BEGIN IMMEDIATE transactions, one Python thread, at the
    server's durability (synchronous=FULL: one fsync per commit)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    n, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE skus SET available = available - 1, reserved = reserved + 1 "
                     "WHERE sku_id = 'hot' AND available >= 1")
        conn.execute("COMMIT")
        n += 1
    conn.close()
    return f"{n / seconds:,.0f} tx/s (python sqlite3, guarded UPDATE, synchronous=FULL)"


def raw_postgres(schema: str, seconds: float) -> str:
    """pgbench's guarded UPDATE of one hot row, 8 clients, on a fresh table in a schema of its
    own (the server's tables, grown by the run, would slow it: measured before the server's
    rows, as the more demanding comparison)."""
    if missing := missing_tool("server_speed", "pgbench", "the PostgreSQL raw limit"):
        print(missing, file=sys.stderr)
        return "n/a (pgbench is not installed)"
    import psycopg
    raw = f"{schema}_raw"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {raw}")
        conn.execute(f"CREATE TABLE {raw}.skus (sku_id TEXT PRIMARY KEY, initial BIGINT NOT NULL, "
                     "available BIGINT NOT NULL, reserved BIGINT NOT NULL DEFAULT 0, "
                     "sold BIGINT NOT NULL DEFAULT 0)")
        conn.execute(f"INSERT INTO {raw}.skus VALUES ('hot', 1000000000, 1000000000)")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write("UPDATE skus SET available = available - 1, reserved = reserved + 1 "
                 "WHERE sku_id = 'hot' AND available >= 1;\n")
    try:
        out = subprocess.run(["pgbench", "-n", "-f", fh.name, "-T", str(int(seconds)), "-c", "8",
                              "-j", "2", PG.split("?")[0]], capture_output=True, text=True,
                             env=os.environ | {"PGOPTIONS": f"-c search_path={raw}"}, timeout=60)
    finally:
        os.unlink(fh.name)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {raw} CASCADE")
    tps = re.search(r"tps = ([\d.]+)", out.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    if not tps:
        return f"pgbench failed: {out.stderr.strip()[:80]}"
    avg = lat.group(1) if lat else "?"
    return f"{float(tps.group(1)):,.0f} tx/s, {avg} ms avg (pgbench, 8 clients)"


def raw_redis(prefix: str, seconds: float) -> str:
    if missing := missing_tool("server_speed", "redis-benchmark", "the Redis raw limit"):
        print(missing, file=sys.stderr)
        return "n/a (redis-benchmark is not installed)"
    import redis

    from reference_server.stores.redis_store import _scripts
    bodies, _ = _scripts()
    r = redis.Redis.from_url(REDIS.split("?")[0], decode_responses=True)
    sha = r.script_load(bodies["reserve"])
    gen = r.hget(f"{prefix}:sale", "gen")
    db = REDIS.split("?")[0].rsplit("/", 1)[-1]
    r.close()
    now = repr(time.time())
    args = [prefix, gen, now, "", "", "u__rand_int__", "hot", "1", "k__rand_int__",
            "o-__rand_int__", "", "", "1000", repr(time.time() + 900), "10000", "10000", "",
            "", "0", "0", "0", ""]
    n = 20000
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "--dbnum", db,
                          "-n", str(n), "-c", "16", "-r", "100000000", "--csv",
                          "EVALSHA", sha, "0", *args], capture_output=True, text=True,
                         timeout=max(60, seconds * 10))
    rows = [line for line in out.stdout.splitlines() if line.startswith('"EVALSHA')]
    if not rows:
        return f"redis-benchmark failed: {out.stderr.strip()[:80]}"
    # the test name (the whole command) may hold commas: the 7 figures are the last fields
    rps, _avg, _min, p50, _p95, p99, _max = (c.strip('"') for c in rows[-1].rsplit(",", 7)[1:])
    return (f"{float(rps):,.0f} scripts/s, p50 {p50} ms, p99 {p99} ms "
            "(redis-benchmark EVALSHA reserve, 16 clients)")


# -- the run ----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="buy/ping pairs per server; the "
                    "median ratio is reported (default 3)")
    ap.add_argument("--concurrency", type=int, default=32, help="client connections")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 60 or not 1 <= args.concurrency <= 256 \
            or not 1 <= args.rounds <= 9:
        print("server_speed: --seconds 1..60, --concurrency 1..256, --rounds 1..9",
              file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gb-speed-"))
    scenario = tmp / "speed.toml"
    scenario.write_text(SCENARIO)
    tag = secrets.token_hex(4)
    schema, prefix = f"gbspeed_{tag}", f"gbspeed-{tag}"
    stores: list[tuple[str, str]] = [("sqlite", f"sqlite:///{tmp}/speed.sqlite3")]
    notes = []
    if _reachable(5432):
        stores.append(("postgresql", f"{PG}?schema={schema}"))
    else:
        notes.append("PostgreSQL not reachable at 127.0.0.1:5432: skipped")
    if _reachable(6379):
        stores.append(("redis", f"{REDIS}?prefix={prefix}"))
    else:
        notes.append("Redis not reachable at 127.0.0.1:6379: skipped")

    rows, raw = [], {}
    try:
        with progress(total=len(stores) * 3, desc="server speed", unit="step") as bar:
            for name, url in stores:
                if name == "postgresql":  # first: on a quiet database (see raw_postgres)
                    raw[name] = raw_postgres(schema, args.seconds)
                for workers in (1, 2):
                    m = bench_server(scenario, url, workers, args.seconds, args.concurrency,
                                     tmp / f"server-{name}-{workers}.log", args.rounds)
                    rows.append({"store": name, "workers": workers, **m})
                    bar.update()
                if name == "sqlite":
                    raw[name] = raw_sqlite(tmp / "speed.sqlite3", args.seconds)
                elif name == "redis":
                    raw[name] = raw_redis(prefix, args.seconds)
                bar.update()
    finally:
        _cleanup(schema if any(s == "postgresql" for s, _ in stores) else None,
                 prefix if any(s == "redis" for s, _ in stores) else None)
        shutil.rmtree(tmp, ignore_errors=True)

    table = _table(rows, raw, args, notes)
    print(table)
    write_results("server_speed", table, {
        "rows": rows, "raw": raw, "seconds": args.seconds, "concurrency": args.concurrency,
        "cpus": os.cpu_count()})
    return 0


def _table(rows: list[dict], raw: dict[str, str], args: argparse.Namespace,
           notes: list[str]) -> str:
    lines = [
        f"Hot-SKU reserve+pay vs GET /v1/ping on the same server, same run "
        f"({args.concurrency} keep-alive connections, {args.seconds:g} s each, "
        f"{args.rounds} alternating rounds per row after {WARMUP_SECONDS:g} s of warm-up, the "
        f"round with the median ratio shown; "
        f"{os.cpu_count()} CPUs shared by client and server).",
        "",
        "| store | workers | reserve+pay /s | p50 ms | p99 ms | ping /s | ping p50 ms "
        "| ping p99 ms | buy/ping | buy/ping of every round | errors | no oversell |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        b, p = r["buy"], r["ping"]
        lines.append(
            f"| {r['store']} | {r['workers']} | {b['per_s']:,.0f} | {b['p50_ms']:.1f} | "
            f"{b['p99_ms']:.1f} | {p['per_s']:,.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{b['per_s'] / p['per_s']:.3f} | "
            f"{', '.join(f'{x:.3f}' for x in r['ratios'])} | {b['errors'] + p['errors']} | "
            f"{r['stock']} |")
    lines += ["", "Raw backend limit for the same guarded stock step (no HTTP, no Python "
              "server):", ""]
    lines += [f"- {name}: {text}" for name, text in raw.items()]
    pg = [r for r in rows if r["store"] == "postgresql" and r["workers"] == 2]
    tps = re.match(r"([\d,]+) tx/s", raw.get("postgresql", ""))
    if pg and tps:
        pairs, limit = pg[0]["buy"]["per_s"], float(tps.group(1).replace(",", ""))
        lines.append(f"- postgresql, 2 workers: {pairs:,.0f} reserve+pay pairs/s = "
                     f"**{pairs / limit:.2f}** of pgbench's guarded UPDATE tx/s")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def _cleanup(schema: str | None, prefix: str | None) -> None:
    if schema:
        import psycopg
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    if prefix:
        import redis
        r = redis.Redis.from_url(REDIS)
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
        r.close()


if __name__ == "__main__":
    sys.exit(main())
