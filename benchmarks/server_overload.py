"""Overload: the reference server beyond its capacity sheds load (503 overloaded + Retry-After)
and the requests it accepts keep a bounded latency, with every invariant holding — beside the
same server without a limit, in the same run.

    .venv/bin/python benchmarks/server_overload.py [--seconds 6]

Hot-SKU reserve+pay from keep-alive connections on SQLite (2 workers, synchronous=FULL): 32
connections (about capacity) and 512 (far beyond it), each with `--max-in-flight 16` per worker
and with no limit. A shed client waits the Retry-After it was given, as a polite client does.
Writes results/benchmarks/server_overload.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _results import write_results
from server_speed import ADMIN, SCENARIO, Conn

from loadtests.metrics import percentile
from loadtests.server import ServerProcess

LIMITED, UNLIMITED = "16", "100000"


async def _drive(port: int, tokens: list[str], seconds: float) -> dict:
    lat: list[float] = []
    counts = {"pairs": 0, "shed": 0, "other": 0}
    acked: list[str] = []
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn = await Conn.open(port)
        auth = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        n = 0
        try:
            while time.perf_counter() < stop:
                n += 1
                t0 = time.perf_counter()
                status, body = await conn.request(
                    "POST", "/v1/orders", auth | {"Idempotency-Key": f"{i}-{n}"},
                    b'{"sku_id": "hot", "quantity": 1}')
                if status == 201:
                    oid = json.loads(body)["order_id"]
                    acked.append(oid)
                    status, body = await conn.request("POST", f"/v1/orders/{oid}/pay", auth)
                if status in (200, 201):
                    counts["pairs"] += status == 200
                    lat.append(time.perf_counter() - t0)
                elif status == 503 and b"overloaded" in body:
                    counts["shed"] += 1
                    await asyncio.sleep(1.0)  # Retry-After: 1
                else:
                    counts["other"] += 1
        finally:
            conn.close()

    await asyncio.gather(*[client(i) for i in range(len(tokens))])
    return {**counts, "per_s": counts["pairs"] / seconds,
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "acked": acked}


def _invariants(url: str, acked: list[str]) -> str:
    h = {"Authorization": f"Bearer {ADMIN}"}
    ledger = httpx.get(f"{url}/v1/admin/ledger", headers=h, timeout=30).json()
    orders, after = [], None
    while True:
        page = httpx.get(f"{url}/v1/admin/orders", headers=h, timeout=30,
                         params={"limit": 1000} | ({"after": after} if after else {})).json()
        orders += page["orders"]
        after = page["next"]
        if after is None:
            break
    c = ledger["skus"]["hot"]
    held = sum(o["quantity"] for o in orders if o["status"] in ("reserved", "paid"))
    problems = []
    if c["initial"] != c["available"] + c["reserved"] + c["sold"]:
        problems.append("not conserved")
    if held != c["reserved"] + c["sold"]:
        problems.append(f"orders hold {held}, counters {c['reserved'] + c['sold']}")
    missing = set(acked) - {o["order_id"] for o in orders}
    if missing:
        problems.append(f"{len(missing)} acknowledged orders missing")
    return "held" if not problems else "; ".join(problems)


def run_case(tmp: Path, limit: str, connections: int, seconds: float) -> dict:
    scenario = tmp / "speed.toml"
    store = f"sqlite:///{tmp}/overload-{limit}-{connections}.sqlite3"
    with ServerProcess(scenario, store, 2, ADMIN, tmp / f"server-{limit}-{connections}.log",
                       extra_args=("--max-in-flight", limit)) as server:
        users = [f"o{i}" for i in range(connections)]
        tok = httpx.post(f"{server.url}/v1/admin/user-tokens", json={"user_ids": users},
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30).json()
        out = asyncio.run(_drive(server.port, [tok["tokens"][u] for u in users], seconds))
        out["invariants"] = _invariants(server.url, out.pop("acked"))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    if not 1 <= args.seconds <= 60:
        print("server_overload: --seconds 1..60", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gb-overload-"))
    (tmp / "speed.toml").write_text(SCENARIO)
    rows = []
    try:
        for connections in (32, 512):
            for limit in (LIMITED, UNLIMITED):
                r = run_case(tmp, limit, connections, args.seconds)
                rows.append({"limit": limit, "connections": connections, **r})
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"Hot-SKU reserve+pay on SQLite (2 workers, synchronous=FULL), {args.seconds:g} s "
             f"per row, {os.cpu_count()} CPUs shared by client and server; a shed client "
             "waits its Retry-After (1 s).", "",
             "| max in flight / worker | connections | pairs/s | accepted p50 ms | accepted p99 ms "
             "| shed (503 overloaded) | other errors | invariants |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        limit = "none" if r["limit"] == UNLIMITED else r["limit"]
        lines.append(f"| {limit} | {r['connections']} | {r['per_s']:,.0f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['shed']:,} | {r['other']} | {r['invariants']} |")
    table = "\n".join(lines)
    print(table)
    write_results("server_overload", table, {"rows": rows, "seconds": args.seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
