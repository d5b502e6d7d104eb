"""Deliberately wrong checkout servers, for showing that each invariant can fail.

Each bug is one step of the reference server changed, as bugs seen in real group-buy and
flash-sale code are (issue 10): a group not re-priced at the tier it reached, a coupon
subtracted twice, a first-N gift counted per worker process, a leader reward for a failed
group, a payment accepted after its deadline, a per-user check that refuses everyone, an
off-by-one stock guard, a group that reports itself full one seat early, a coupon pool that
runs dry one coupon early, a coupon accepted without a claim, another shopper's order paid,
a refund under the fallback policy, and a Redis stock check made outside the atomic script.
They live here, in the tests, never in the reference server.

Run one as a separate process (uvicorn, any number of workers) and drive it with
`groupbuy loadtest --host URL`:

    python tests/support/wrong_server.py SCENARIO --store URL --bugs no_reprice,gift_per_worker
                                         [--workers 2] [--port P]   (admin token: env)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reference_server.errors import ApiError

BUGS: dict[str, str] = {
    "no_reprice": "members of a group that completed at a higher tier keep the smallest tier's "
                  "price",
    "coupon_twice": "a coupon's value is subtracted twice",
    "gift_per_worker": "the first-N gift is counted per worker process (shows only when more "
                       "than one worker takes payments)",
    "gift_per_sku": "the first-N gift is counted per SKU, not per sale",
    "reward_failed": "a failed group's leader gets the reward too",
    "late_pay": "a payment after expires_at is accepted (and the expiry sweep is slow)",
    "refuse_all": "the per-user check refuses every buyer",
    "off_by_one_stock": "the stock guard wants one unit more than asked (the last unit is "
                        "never sold)",
    "group_full_early": "a group says it is full one seat early",
    "pool_early": "a coupon pool runs dry one coupon early",
    "unclaimed_coupon": "an order may name a coupon its buyer never claimed (the discount "
                        "applies)",
    "foreign_orders": "anyone may pay or cancel any order",
    "refund_fallback": "a failed group's paid orders are refunded even under the fallback "
                       "policy",
    "racy_redis": "the Redis store checks stock outside its atomic script, then takes it",
    "expire_500": "POST /v1/admin/expire fails with a 500 (the run must still be checked)",
}


def _sql() -> Any:
    from reference_server.stores import sql
    return sql


def _no_reprice() -> None:
    sql = _sql()
    original = sql._close_group

    def close_group(tx: Any, sale: Any, g: dict[str, Any], now: float) -> None:
        original(tx, sale, g, now)
        smallest = str(sale.rules.groups.min_size)
        for r in tx.all("SELECT order_id, prices FROM orders WHERE group_id = ? AND "
                        "status = 'paid'", g["group_id"]):
            tx.run("UPDATE orders SET amount = ? WHERE order_id = ?",
                   json.loads(r["prices"])[smallest], r["order_id"])
    sql._close_group = close_group


def _priced(change: Callable[[Any, Any], Any]) -> None:
    """Wrap the one function a reservation is checked and priced with (`prepare_reserve`),
    wherever the app calls it from."""
    import importlib

    from reference_server import domain
    original = domain.prepare_reserve

    def prepare(sale: Any, req: Any, now: float, *, open_group: bool = False) -> Any:
        return change(original(sale, req, now, open_group=open_group), sale)
    for name in ("reference_server.api.steps", "reference_server.api.routes.orders",
                 "reference_server.api.routes.groups"):
        module = importlib.import_module(name)
        if getattr(module, "prepare_reserve", None) is original:
            module.prepare_reserve = prepare


def _coupon_twice() -> None:
    from campaign.pricing import to_cents

    def twice(p: Any, sale: Any) -> Any:
        if not p.req.coupon_id:
            return p
        off = to_cents(sale.rules.coupon(p.req.coupon_id).value)
        return dataclasses.replace(p, amount=max(0, p.amount - off),
                                   prices={k: max(0, v - off) for k, v in p.prices.items()})
    _priced(twice)


def _gift_per_worker() -> None:
    sql = _sql()
    counted = [0]

    def gift_for(sale: Any, sku: Any, paid_seq: int) -> bool:
        counted[0] += 1  # this worker's own count, not the sale's
        gift = sale.rules.first_orders_gift
        return gift is not None and counted[0] <= gift.count
    sql.gift_for = gift_for


def _gift_per_sku() -> None:
    sql = _sql()
    counted: dict[str, int] = {}

    def gift_for(sale: Any, sku: Any, paid_seq: int) -> bool:
        counted[sku.id] = counted.get(sku.id, 0) + 1  # (one worker: the test runs one)
        gift = sale.rules.first_orders_gift
        return gift is not None and counted[sku.id] <= gift.count
    sql.gift_for = gift_for


def _reward_failed() -> None:
    from reference_server import domain
    sql = _sql()
    original = sql._close_group

    def close_group(tx: Any, sale: Any, g: dict[str, Any], now: float) -> None:
        original(tx, sale, g, now)
        row = tx.one("SELECT status FROM groups WHERE group_id = ?", g["group_id"])
        if row is not None and row["status"] == "failed":
            tx.run("UPDATE sale SET leader_rewards = leader_rewards + 1 WHERE id = 1")
    sql._close_group = close_group
    reward = domain.leader_reward

    def leader_reward(status: str, sale: Any) -> int:
        return reward("completed" if status == "failed" else status, sale)
    domain.leader_reward = leader_reward


def _late_pay() -> None:
    sql = _sql()
    original = sql._still_reserved

    def still_reserved(tx: Any, order_id: str, user_id: str | None, now: float,
                       done: str) -> Any:
        return original(tx, order_id, user_id, 0.0, done)  # never past its deadline
    sql._still_reserved = still_reserved
    os.environ["GROUPBUY_EXPIRY_INTERVAL"] = "3600"  # and the sweep has not run yet


def _refuse_all() -> None:
    def refuse(p: Any, sale: Any) -> Any:
        held = 0  # the check reads the wrong counter: it always finds the user at the limit
        if held + p.req.quantity > 0:
            raise ApiError("limit_reached", f"{p.req.sku_id}: at most "
                           f"{sale.rules.per_user_limit} unit(s) per user")
        return p
    _priced(refuse)


def _off_by_one_stock() -> None:
    sql = _sql()

    def take_stock(self: Any, tx: Any, sku_id: str, quantity: int) -> bool:
        return tx.run("UPDATE skus SET available = available - ?, reserved = reserved + ? "
                      "WHERE sku_id = ? AND available > ?", quantity, quantity, sku_id,
                      quantity) > 0
    sql.SqlStore._take_stock = take_stock


def _group_full_early() -> None:
    def early(p: Any, sale: Any) -> Any:
        if p.new_group is None:
            return p
        return dataclasses.replace(p, new_group=dataclasses.replace(
            p.new_group, top_size=p.new_group.top_size - 1))
    _priced(early)


def _pool_early() -> None:
    sql = _sql()
    original = sql._claim

    def claim(tx: Any, coupon_id: str, user_id: str, key: str, now: float) -> Any:
        row = tx.one("SELECT issued, pool FROM coupons WHERE coupon_id = ?", coupon_id)
        prior = tx.one("SELECT claim_id FROM claims WHERE user_id = ? AND idempotency_key = ?",
                       user_id, key)
        if prior is None and row is not None and int(row["issued"]) >= int(row["pool"]) - 1:
            raise ApiError("coupon_exhausted", f"the {coupon_id} pool is empty")
        return original(tx, coupon_id, user_id, key, now)
    sql._claim = claim


def _unclaimed_coupon() -> None:
    sql = _sql()
    original = sql._reserve_new

    def reserve_new(tx: Any, p: Any, now: float, take_stock: Any) -> Any:
        cid = p.req.coupon_id
        if cid is None or tx.one("SELECT claim_id FROM claims WHERE user_id = ? AND "
                                 "coupon_id = ? AND order_id IS NULL", p.req.user_id, cid):
            return original(tx, p, now, take_stock)
        # No claim: reserve as if no coupon were named, then name it anyway (price included).
        plain = dataclasses.replace(p, req=dataclasses.replace(p.req, coupon_id=None))
        row = original(tx, plain, now, take_stock)
        tx.run("UPDATE orders SET coupon_id = ? WHERE order_id = ?", cid, p.order_id)
        return sql._existing_order(tx, p.order_id) or row
    sql._reserve_new = reserve_new


def _foreign_orders() -> None:
    sql = _sql()
    original = sql._owned_order
    sql._owned_order = lambda tx, order_id, user_id: original(tx, order_id, None)


def _refund_fallback() -> None:
    sql = _sql()
    original = sql._close_group

    def close_group(tx: Any, sale: Any, g: dict[str, Any], now: float) -> None:
        rules = sale.rules.model_copy(update={"groups": sale.rules.groups.model_copy(
            update={"failure_policy": "refund"})})
        original(tx, dataclasses.replace(sale, rules=rules), g, now)
    sql._close_group = close_group


RACE_GAP_SECONDS = 0.05


def _racy_redis() -> None:
    from reference_server import app as app_module
    from reference_server.stores import redis_store

    guard = ("if tonumber(redis.call('HGET', sk, 'available')) < q then\n"
             "  return {'err', 'sold_out', sku .. ': not enough stock for ' .. q}\nend\n")

    class RacyRedisStore(redis_store.RedisStore):
        """Checks stock with its own read, waits, then runs the reservation script with the
        script's guard removed: two buyers of the last unit both get it."""

        safe = False

        def script_bodies(self) -> dict[str, str]:
            bodies = super().script_bodies()
            assert guard in bodies["reserve"], "the reserve script changed: update racy_redis"
            return bodies | {"reserve": bodies["reserve"].replace(guard, "")}

        async def reserve(self, priced: Any, now: float) -> Any:
            _, gen = await self._need_sale()
            left = await self.r.hget(self._k(gen, f"sku:{priced.req.sku_id}"), "available")
            if left is not None and int(left) < priced.req.quantity:
                raise ApiError("sold_out", f"{priced.req.sku_id}: not enough stock")
            await asyncio.sleep(RACE_GAP_SECONDS)
            return await super().reserve(priced, now)

    original = app_module.store_from_url
    app_module.store_from_url = lambda url: (RacyRedisStore(url) if url.startswith("redis")
                                             else original(url))


def _expire_500() -> None:
    from reference_server.api.routes import admin

    async def broken(store: Any, clock: Any) -> tuple[int, int]:
        raise RuntimeError("deliberately broken expiry")
    admin.expire_now = broken


PATCHES: dict[str, Callable[[], None]] = {
    "no_reprice": _no_reprice, "coupon_twice": _coupon_twice,
    "gift_per_worker": _gift_per_worker, "gift_per_sku": _gift_per_sku,
    "reward_failed": _reward_failed,
    "late_pay": _late_pay, "refuse_all": _refuse_all, "off_by_one_stock": _off_by_one_stock,
    "group_full_early": _group_full_early, "pool_early": _pool_early,
    "unclaimed_coupon": _unclaimed_coupon, "foreign_orders": _foreign_orders,
    "refund_fallback": _refund_fallback, "racy_redis": _racy_redis, "expire_500": _expire_500,
}
assert set(PATCHES) == set(BUGS)


def apply(bugs: list[str]) -> None:
    for bug in bugs:
        PATCHES[bug]()


def app_from_env() -> Any:
    """uvicorn factory: the reference app with the bugs in GROUPBUY_BUGS."""
    from reference_server.app import app_from_env as reference_app

    apply([b for b in os.environ.get("GROUPBUY_BUGS", "").split(",") if b])
    return reference_app()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from groupbuy.workers import listen, serve

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario")
    p.add_argument("--store", required=True)
    p.add_argument("--bugs", required=True, help=", ".join(BUGS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    bugs = [b for b in args.bugs.split(",") if b]
    unknown = [b for b in bugs if b not in BUGS]
    if unknown:
        p.error(f"unknown bug(s) {unknown}; known: {sorted(BUGS)}")
    # Bind here, as `groupbuy serve` does: with port 0 the kernel picks a free port and no
    # other process can take it before the workers serve on it.
    socks = listen("127.0.0.1", args.port, args.workers)
    port = socks[0].getsockname()[1]
    here = str(Path(__file__).resolve().parent)
    os.environ.update(GROUPBUY_STORE=args.store, GROUPBUY_BUGS=",".join(bugs),
                      GROUPBUY_SCENARIO=os.path.abspath(args.scenario),
                      PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    if "late_pay" in bugs:
        os.environ["GROUPBUY_EXPIRY_INTERVAL"] = "3600"
    sys.path.insert(0, here)
    print(f"groupbuy serve: http://127.0.0.1:{port}  (wrong server: {', '.join(bugs)})",
          flush=True)
    serve("wrong_server:app_from_env", socks, "127.0.0.1", args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
