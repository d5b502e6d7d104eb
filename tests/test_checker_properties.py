"""Property tests: a correct in-memory checkout, driven by random operations (including
unknown outcomes and retries), never trips the checker; the same checkout with one lost stock
update always does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.checker import FinalState, Rules, check

STOCK = {"a": 4, "b": 2}
RULES = Rules(stock=STOCK, per_user_limit=2)
NOW = 1_800_000_000.0


class Checkout:
    """A correct checkout in memory: guarded stock, per-user limits, idempotency keys."""

    def __init__(self) -> None:
        self.available = dict(STOCK)
        self.reserved = dict.fromkeys(STOCK, 0)
        self.sold = dict.fromkeys(STOCK, 0)
        self.released = dict.fromkeys(STOCK, 0)
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.history: list[dict[str, Any]] = []

    def record(self, user: str, op: str, outcome: str, **kw: Any) -> None:
        self.history.append({"user": user, "op": op, "outcome": outcome, "intended": NOW,
                             "start": NOW, "end": NOW, **kw})

    def held(self, user: str, sku: str) -> int:
        return sum(o["quantity"] for o in self.orders.values() if o["user_id"] == user
                   and o["sku_id"] == sku and o["status"] in ("reserved", "paid"))

    def reserve(self, user: str, sku: str, qty: int, key: str, *, lose_update: bool = False
                ) -> dict[str, Any] | str:
        if (user, key) in self.by_key:
            return self.orders[self.by_key[(user, key)]]
        if self.available[sku] < qty:
            return "sold_out"
        if self.held(user, sku) + qty > RULES.per_user_limit:
            return "limit_reached"
        oid = f"o{len(self.orders)}"
        self.orders[oid] = {"order_id": oid, "user_id": user, "sku_id": sku, "quantity": qty,
                            "status": "reserved", "idempotency_key": key, "group_id": None,
                            "coupon_id": None, "amount": 100, "expires_at": NOW + 100,
                            "paid_at": None,
                            "movements": [{"kind": "reserve", "quantity": qty, "at": NOW}]}
        self.by_key[(user, key)] = oid
        if not lose_update:  # the unsafe store's race: the deduction is overwritten
            self.available[sku] -= qty
        self.reserved[sku] += qty
        return self.orders[oid]

    def pay(self, oid: str) -> bool:
        o = self.orders[oid]
        if o["status"] == "reserved":
            o["status"], o["paid_at"] = "paid", NOW
            self.reserved[o["sku_id"]] -= o["quantity"]
            self.sold[o["sku_id"]] += o["quantity"]
        return o["status"] == "paid"

    def release(self, oid: str, status: str) -> bool:
        o = self.orders[oid]
        if o["status"] != "reserved":
            return o["status"] == status
        o["status"] = status
        o["movements"].append({"kind": "release", "quantity": o["quantity"], "at": NOW})
        self.reserved[o["sku_id"]] -= o["quantity"]
        self.available[o["sku_id"]] += o["quantity"]
        self.released[o["sku_id"]] += o["quantity"]
        return True

    def final_state(self) -> FinalState:
        skus = {s: {"initial": STOCK[s], "available": self.available[s],
                    "reserved": self.reserved[s], "sold": self.sold[s],
                    "released": self.released[s], "refunded": 0} for s in STOCK}
        return FinalState({"now": NOW + 1, "skus": skus}, list(self.orders.values()))


operation = st.tuples(
    st.sampled_from(["reserve", "unknown_reserve", "retry", "pay", "unknown_pay", "cancel",
                     "expire"]),
    st.integers(0, 4),          # user
    st.sampled_from(sorted(STOCK)),
    st.integers(1, 2),          # quantity
    st.integers(0, 30),         # which earlier order or key
    st.booleans(),              # did the unknown request take effect?
)


def drive(ops: list[tuple[str, int, str, int, int, bool]], lose_at: int | None = None
          ) -> Checkout:
    shop = Checkout()
    keys: list[tuple[str, str, str, int]] = []
    for i, (kind, u, sku, qty, pick, took) in enumerate(ops):
        user = f"u{u}"
        if kind in ("reserve", "unknown_reserve"):
            key = f"k{i}"
            keys.append((user, key, sku, qty))
            if kind == "unknown_reserve" and not took:
                shop.record(user, "reserve", "unknown", key=key, code="timeout")
                continue
            got = shop.reserve(user, sku, qty, key, lose_update=(lose_at == i))
            if kind == "unknown_reserve":
                shop.record(user, "reserve", "unknown", key=key, code="timeout")
            elif isinstance(got, str):
                shop.record(user, "reserve", "fail", key=key, code=got)
            else:
                shop.record(user, "reserve", "ok", key=key, order_id=got["order_id"])
        elif kind == "retry" and keys:
            user, key, sku, qty = keys[pick % len(keys)]
            got = shop.reserve(user, sku, qty, key)
            if isinstance(got, str):
                shop.record(user, "reserve", "fail", key=key, code=got)
            else:
                shop.record(user, "reserve", "ok", key=key, order_id=got["order_id"])
        elif kind in ("pay", "unknown_pay", "cancel", "expire") and shop.orders:
            oid = sorted(shop.orders)[pick % len(shop.orders)]
            owner = shop.orders[oid]["user_id"]
            if kind == "expire":
                shop.release(oid, "expired")
            elif kind == "cancel":
                done = shop.release(oid, "cancelled")
                shop.record(owner, "cancel", "ok" if done else "fail", order_id=oid,
                            code=None if done else "order_closed")
            else:
                if kind == "unknown_pay" and not took:
                    shop.record(owner, "pay", "unknown", order_id=oid)
                    continue
                done = shop.pay(oid)
                outcome = "unknown" if kind == "unknown_pay" else ("ok" if done else "fail")
                shop.record(owner, "pay", outcome, order_id=oid)
    return shop


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=40))
def test_a_correct_checkout_never_breaks_an_invariant(ops) -> None:
    shop = drive(ops)
    report = check(shop.history, shop.final_state(), RULES)
    assert report.held, report.to_text()


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, min_size=1, max_size=40), st.integers(0, 39))
def test_one_lost_stock_update_is_always_caught(ops, at) -> None:
    at = at % len(ops)
    _, u, sku, qty, pick, _ = ops[at]
    ops = [*ops[:at], ("reserve", u, sku, qty, pick, True), *ops[at + 1:]]
    shop = drive(ops, lose_at=at)
    lost = any(o["idempotency_key"] == f"k{at}" for o in shop.orders.values())
    report = check(shop.history, shop.final_state(), RULES)
    if lost:
        assert {"conservation", "no_oversell"} <= {r.name for r in report.broken}
    else:  # the reservation was refused, so nothing was lost
        assert report.held, report.to_text()
