"""Checker speed: a history of a million operations checked in at most 60 s on one core,
linear in the history's size, beside reading the same file alone.

    .venv/bin/python benchmarks/checker_speed.py [--sizes 100000,300000,1000000] [--repeats 1]

For each size, writes a synthetic but correct run folder (a history file with its header and
the final state a correct server would export, contract 1.2: movement seq, paid_seq): shoppers
reserving, paying, cancelling, abandoning, refused when stock runs out, browsing, claiming and
spending coupons, opening and joining groups that complete. Then times, in this one process:
reading the history file alone (`json.loads` per line), reading it typed (`read_run`), reading
the state, and the whole check (every invariant). The cyclic garbage collector is off while
each of these runs (the checker does that itself: see `loadtests.checker.no_gc`). The table
reports seconds and microseconds per operation; linear means the per-operation figure stays
flat as the size grows.
Prints the table and writes results/benchmarks/checker_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results

from campaign.rules import CampaignRules
from loadtests.checker import check, no_gc, rules_from_campaign
from loadtests.history import HistoryHeader, read_run
from loadtests.state import FinalState

TARGET_SECONDS = 60.0
T0 = 1_800_000_000.0
CAMPAIGN: dict[str, Any] = {
    "name": "checker speed", "per_user_limit": 3,
    "skus": [{"id": f"sku{i}", "stock": 50_000, "list_price": 100.0, "unit_cost": 40.0}
             for i in range(4)],
    "phases": [{"name": "burst", "hours": 48}],
    "groups": {"window_hours": 1, "leader_reward": 5.0, "failure_policy": "refund",
               "tiers": [{"size": 2, "percent_off": 20}]},
    "first_orders_gift": {"count": 100, "gift_cost": 1.0},
    "coupons": [{"id": "c10", "value": 10, "min_spend": 0, "pool": 1_000_000, "per_user": 1000}],
}


class Shop:
    """A correct checkout in memory that writes what a load test and a server would."""

    def __init__(self, rules: CampaignRules, seed: int) -> None:
        from campaign.pricing import PriceContext, price_order

        self.rng = random.Random(seed)
        self.rules = rules
        self.available = {s.id: s.stock for s in rules.skus}
        self.held: dict[tuple[str, str], int] = {}
        self.ops: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        self.seq = self.paid = 0
        self.t = T0
        sku = rules.skus[0]
        coupon = rules.coupons[0]
        self.price = price_order(rules, PriceContext(sku=sku)).total
        self.price_coupon = price_order(rules, PriceContext(sku=sku, coupon=coupon)).total
        self.price_group = price_order(rules, PriceContext(sku=sku, group_members=2)).total
        self.n = 0

    def op(self, user: str, op: str, outcome: str, **kw: Any) -> None:
        self.t += 0.0005
        self.ops.append({"worker": 0, "arrival": self.n, "journey": "speed", "user": user,
                         "op": op, "key": kw.pop("key", None), "intended": self.t,
                         "start": self.t, "end": self.t + 0.0002, "outcome": outcome,
                         "status": 200 if outcome == "ok" else 409,
                         "code": kw.pop("code", None), **kw})

    def move(self, kind: str) -> dict[str, Any]:
        self.seq += 1
        return {"kind": kind, "quantity": 1, "at": self.t, "seq": self.seq}

    def reserve(self, user: str, sku: str, *, coupon: bool = False, group: str | None = None,
                op: str = "reserve") -> dict[str, Any] | None:
        self.n += 1
        key = f"k{self.n}"
        common = {"key": key, "sku_id": sku, "quantity": 1}
        if coupon:
            common["coupon_id"] = "c10"
        if group is not None and op == "join":
            common["group_id"] = group
        if self.available[sku] < 1:
            self.op(user, op, "fail", code="sold_out", **common)
            return None
        if self.held.get((user, sku), 0) >= self.rules.per_user_limit:
            self.op(user, op, "fail", code="limit_reached", **common)
            return None
        self.available[sku] -= 1
        self.held[(user, sku)] = self.held.get((user, sku), 0) + 1
        oid = f"o{self.n}"
        amount = self.price_group if group else self.price_coupon if coupon else self.price
        o = {"order_id": oid, "user_id": user, "sku_id": sku, "quantity": 1,
             "status": "reserved", "group_id": group, "coupon_id": "c10" if coupon else None,
             "idempotency_key": key, "amount": amount, "list_amount": 10000, "gift": False,
             "created_at": self.t, "expires_at": self.t + 3600, "paid_at": None,
             "closed_at": None, "paid_seq": None, "movements": [self.move("reserve")]}
        self.orders.append(o)
        if op == "open_group":
            common["group_id"] = group
        self.op(user, op, "ok", order_id=oid, **common)
        return o

    def pay(self, o: dict[str, Any]) -> None:
        self.paid += 1
        o.update(status="paid", paid_at=self.t, paid_seq=self.paid,
                 gift=self.paid <= self.rules.first_orders_gift.count)
        self.op(o["user_id"], "pay", "ok", order_id=o["order_id"])

    def release(self, o: dict[str, Any], status: str) -> None:
        o.update(status=status, closed_at=self.t)
        o["movements"].append(self.move("release"))
        self.available[o["sku_id"]] += 1
        self.held[(o["user_id"], o["sku_id"])] -= 1

    def arrival(self, users: int) -> None:
        user = f"u{self.rng.randrange(users)}"
        sku = f"sku{self.rng.randrange(4)}"
        r = self.rng.random()
        if r < 0.45:
            o = self.reserve(user, sku)
            if o:
                self.pay(o)
        elif r < 0.55:
            o = self.reserve(user, sku)
            if o:
                self.release(o, "cancelled")
                self.op(user, "cancel", "ok", order_id=o["order_id"])
        elif r < 0.65:
            o = self.reserve(user, sku)
            if o:
                self.release(o, "expired")
        elif r < 0.75:
            self.op(user, "browse", "ok", sku_id=sku)
        elif r < 0.85:
            self.n += 1
            cid = f"c{self.n}"
            self.claims.append({"claim_id": cid, "coupon_id": "c10", "user_id": user,
                                "claimed_at": self.t, "order_id": None,
                                "idempotency_key": f"kc{self.n}"})
            self.op(user, "claim", "ok", key=f"kc{self.n}", coupon_id="c10", claim_id=cid)
            o = self.reserve(user, sku, coupon=True)
            if o:
                self.claims[-1]["order_id"] = o["order_id"]
                self.pay(o)
        else:
            self.group(user, f"u{self.rng.randrange(users)}", sku)

    def group(self, leader: str, friend: str, sku: str) -> None:
        gid = f"g{self.n}"
        o1 = self.reserve(leader, sku, group=gid, op="open_group")
        if o1 is None:
            return
        o2 = self.reserve(friend, sku, group=gid, op="join") if friend != leader else None
        members = [o for o in (o1, o2) if o]
        for o in members:
            self.pay(o)
        done = len(members) == 2
        if not done:
            o1.update(status="refunded", closed_at=self.t)
            o1["movements"].append(self.move("refund"))
            self.available[sku] += 1
            self.held[(leader, sku)] -= 1
            o1["amount"] = self.price_group
        self.groups.append({
            "group_id": gid, "sku_id": sku, "leader_id": leader,
            "status": "completed" if done else "failed", "deadline": self.t + 3600,
            "members": len(members) if done else 0, "paid_members": len(members) if done else 0,
            "top_size": 2, "min_size": 2, "tier_reached": 2 if done else None,
            "order_ids": [o["order_id"] for o in members], "closed_at": self.t,
            "leader_reward": 500 if done else 0})

    def ledger(self) -> dict[str, Any]:
        skus = {}
        for s in self.rules.skus:
            mine = [o for o in self.orders if o["sku_id"] == s.id]
            res = sum(o["status"] == "reserved" for o in mine)
            sold = sum(o["status"] == "paid" for o in mine)
            skus[s.id] = {"initial": s.stock, "available": self.available[s.id],
                          "reserved": res, "sold": sold,
                          "released": sum(o["status"] in ("cancelled", "expired") for o in mine),
                          "refunded": sum(o["status"] == "refunded" for o in mine)}
        statuses = {st: sum(o["status"] == st for o in self.orders)
                    for st in ("reserved", "paid", "cancelled", "expired", "refunded")}
        done = sum(g["status"] == "completed" for g in self.groups)
        return {"sale": "speed", "sale_id": "s-speed", "start": T0 - 3600, "now": self.t + 7200,
                "payment_timeout_seconds": 3600.0, "group_window_seconds": 3600.0,
                "skus": skus, "coupons": {"c10": {"pool": 1_000_000,
                                                  "issued": len(self.claims),
                                                  "per_user": 1000}},
                "groups": {"open": 0, "completed": done, "failed": len(self.groups) - done,
                           "leader_rewards": done}, "orders": statuses}


def make_run(folder: Path, operations: int, seed: int = 1) -> None:
    rules = CampaignRules.model_validate(CAMPAIGN)
    shop = Shop(rules, seed)
    users = max(100, operations // 6)
    while len(shop.ops) < operations:
        shop.arrival(users)
    folder.mkdir(parents=True, exist_ok=True)
    head = HistoryHeader("speed", "s-speed", 0, 1, T0)
    with (folder / "history-0.jsonl").open("w") as fh:
        fh.write(head.to_line())
        for r in shop.ops:
            fh.write(json.dumps({k: v for k, v in r.items() if v is not None or k in
                                 ("key", "status", "code")}, separators=(",", ":")) + "\n")
    (folder / "state.json").write_text(json.dumps(
        {"ledger": shop.ledger(), "orders": shop.orders, "groups": shop.groups,
         "claims": shop.claims, "expiry_ran": True}, separators=(",", ":")))


def time_once(folder: Path) -> dict[str, float]:
    rules = rules_from_campaign(CampaignRules.model_validate(CAMPAIGN), start=T0 - 3600,
                                payment_timeout=3600.0, group_window=3600.0)
    t = time.perf_counter()
    with no_gc(), (folder / "history-0.jsonl").open() as fh:  # as fair as the typed read
        raw = [json.loads(line) for line in fh]
    read_alone = time.perf_counter() - t
    del raw
    t = time.perf_counter()
    history = read_run(folder)
    read_typed = time.perf_counter() - t
    t = time.perf_counter()
    state = FinalState.load(folder / "state.json")
    read_state = time.perf_counter() - t
    t = time.perf_counter()
    report = check(history, state, rules)
    checking = time.perf_counter() - t
    if report.verdict != "held":
        from loadtests.checker import to_text
        raise SystemExit("the synthetic run should hold:\n" + to_text(report)[:4000])
    return {"operations": len(history.ops), "orders": len(state.orders),
            "read_alone": read_alone, "read_typed": read_typed, "read_state": read_state,
            "check": checking, "total": read_typed + read_state + checking}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument("--repeats", type=int, default=1, help="timings per size (median)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as promised
    work = Path(tempfile.mkdtemp(prefix="checker-speed-"))
    rows = []
    try:
        for n in sizes:
            folder = work / str(n)
            print(f"{n:,} operations: writing a run folder …", flush=True)
            make_run(folder, n)
            runs = [time_once(folder) for _ in range(args.repeats)]
            row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append(row)
            print(f"  read alone {row['read_alone']:.1f} s, typed {row['read_typed']:.1f} s, "
                  f"state {row['read_state']:.1f} s, check {row['check']:.1f} s, total "
                  f"{row['total']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| operations | orders | read file alone s | read typed s | read state s | "
             "check s | total s | total µs/op | total / read alone |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['operations']:,.0f} | {r['orders']:,.0f} | {r['read_alone']:.2f} | "
                     f"{r['read_typed']:.2f} | {r['read_state']:.2f} | {r['check']:.2f} | "
                     f"{r['total']:.2f} | {r['total'] / r['operations'] * 1e6:.1f} | "
                     f"{r['total'] / r['read_alone']:.1f} |")
    big = rows[-1]
    verdict = (f"{big['operations']:,.0f} operations: {big['total']:.1f} s on one core "
               f"(target ≤ {TARGET_SECONDS:.0f} s): "
               f"{'met' if big['total'] <= TARGET_SECONDS else 'MISSED'}")
    text = "\n".join(lines) + f"\n\n{verdict}\n\nmachine: {platform.platform()}, " \
        f"{platform.python_implementation()} {platform.python_version()}; one core " \
        f"(sched_setaffinity); median of {args.repeats} run(s)\n"
    print("\n" + text)
    write_results("checker_speed", text, {"rows": rows, "target_seconds": TARGET_SECONDS})
    return 0 if big["total"] <= TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
