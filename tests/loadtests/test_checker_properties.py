"""Property tests: a correct in-memory checkout, driven by random operations (unknown
outcomes, retries, expiries, and requests overlapping in time as under real concurrency),
never trips the checker, with or without the store's sequence numbers; the same checkout with
one lost stock update, or one refusal while stock was free, always does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.checker import Rules, check, to_text
from loadtests.history import History
from loadtests.state import FinalState

STOCK = {"a": 4, "b": 2}
RULES = Rules(stock=STOCK, per_user_limit=2)
NOW = 1_800_000_000.0


class Checkout:
    """A correct checkout in memory: guarded stock, per-user limits, idempotency keys, and a
    sale-wide movement sequence (contract 1.2) when `seq` is on.

    Each operation takes effect at its own moment `t` (the store's serial order); the client
    saw it sent up to `before` seconds earlier and answered up to `after` seconds later."""

    def __init__(self, seq: bool) -> None:
        self.seq_on = seq
        self.seq = 0
        self.paid_seq = 0
        self.available = dict(STOCK)
        self.reserved = dict.fromkeys(STOCK, 0)
        self.sold = dict.fromkeys(STOCK, 0)
        self.released = dict.fromkeys(STOCK, 0)
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self.history: list[dict[str, Any]] = []
        self.t = NOW

    def record(self, user: str, op: str, outcome: str, window: tuple[float, float],
               **kw: Any) -> None:
        before, after = window
        self.history.append({"worker": 0, "arrival": len(self.history), "journey": "prop",
                             "user": user, "op": op, "outcome": outcome,
                             "intended": self.t - before, "start": self.t - before,
                             "end": self.t + after, "status": None,
                             **{"key": None, "code": None, **kw}})

    def move(self, kind: str, qty: int) -> dict[str, Any]:
        m: dict[str, Any] = {"kind": kind, "quantity": qty, "at": self.t}
        if self.seq_on:
            self.seq += 1
            m["seq"] = self.seq
        return m

    def held(self, user: str, sku: str) -> int:
        return sum(o["quantity"] for o in self.orders.values() if o["user_id"] == user
                   and o["sku_id"] == sku and o["status"] in ("reserved", "paid"))

    def reserve(self, user: str, sku: str, qty: int, key: str, *, lose_update: bool = False,
                refuse: bool = False) -> dict[str, Any] | str:
        if (user, key) in self.by_key:
            return self.orders[self.by_key[(user, key)]]
        if (user, key) in self.refused:  # refusals are replayed too (CONTRACT 1.1)
            return self.refused[(user, key)]
        code = None
        if refuse or self.available[sku] < qty:  # refuse: the wrong server, whatever the stock
            code = "sold_out"
        elif self.held(user, sku) + qty > RULES.per_user_limit:
            code = "limit_reached"
        if code is not None:
            self.refused[(user, key)] = code
            return code
        oid = f"o{len(self.orders)}"
        self.orders[oid] = {"order_id": oid, "user_id": user, "sku_id": sku, "quantity": qty,
                            "status": "reserved", "idempotency_key": key, "group_id": None,
                            "coupon_id": None, "amount": 100, "list_amount": 100,
                            "gift": False, "created_at": self.t, "expires_at": self.t + 1000,
                            "paid_at": None, "closed_at": None,
                            "movements": [self.move("reserve", qty)]}
        if self.seq_on:
            self.orders[oid]["paid_seq"] = None
        self.by_key[(user, key)] = oid
        if not lose_update:  # the unsafe store's race: the deduction is overwritten
            self.available[sku] -= qty
        self.reserved[sku] += qty
        return self.orders[oid]

    def pay(self, oid: str) -> bool:
        o = self.orders[oid]
        if o["status"] == "reserved":
            o["status"], o["paid_at"] = "paid", self.t
            self.reserved[o["sku_id"]] -= o["quantity"]
            self.sold[o["sku_id"]] += o["quantity"]
            if self.seq_on:
                self.paid_seq += 1
                o["paid_seq"] = self.paid_seq
        return o["status"] == "paid"

    def release(self, oid: str, status: str) -> bool:
        o = self.orders[oid]
        if o["status"] != "reserved":
            return o["status"] == status
        o["status"], o["closed_at"] = status, self.t
        o["movements"].append(self.move("release", o["quantity"]))
        self.reserved[o["sku_id"]] -= o["quantity"]
        self.available[o["sku_id"]] += o["quantity"]
        self.released[o["sku_id"]] += o["quantity"]
        return True

    def final_state(self) -> FinalState:
        skus = {s: {"initial": STOCK[s], "available": self.available[s],
                    "reserved": self.reserved[s], "sold": self.sold[s],
                    "released": self.released[s], "refunded": 0} for s in STOCK}
        return FinalState.from_json({"sale": "prop", "now": self.t + 1, "skus": skus},
                                    list(self.orders.values()))


operation = st.tuples(
    st.sampled_from(["reserve", "unknown_reserve", "retry", "pay", "unknown_pay", "cancel",
                     "expire"]),
    st.integers(0, 4),          # user
    st.sampled_from(sorted(STOCK)),
    st.integers(1, 2),          # quantity
    st.integers(0, 30),         # which earlier order or key
    st.booleans(),              # did the unknown request take effect?
    st.tuples(st.floats(0, 3), st.floats(0, 3)),  # sent before / answered after its moment
)


def drive(ops: list[tuple], *, seq: bool, lose_at: int | None = None,
          refuse_at: int | None = None) -> Checkout:
    shop = Checkout(seq)
    keys: list[tuple[str, str, str, int]] = []
    for i, (kind, u, sku, qty, pick, took, window) in enumerate(ops):
        shop.t = NOW + i  # the store applies operations one by one, a second apart
        user = f"u{u}"
        if kind in ("reserve", "unknown_reserve"):
            key = f"k{i}"
            keys.append((user, key, sku, qty))
            common = {"key": key, "sku_id": sku, "quantity": qty}
            if kind == "unknown_reserve" and not took:
                shop.record(user, "reserve", "unknown", window, code="timeout", **common)
                continue
            got = shop.reserve(user, sku, qty, key, lose_update=(lose_at == i),
                               refuse=(refuse_at == i))
            if kind == "unknown_reserve":
                shop.record(user, "reserve", "unknown", window, code="timeout", **common)
            elif isinstance(got, str):
                shop.record(user, "reserve", "fail", window, code=got, **common)
            else:
                shop.record(user, "reserve", "ok", window, order_id=got["order_id"], **common)
        elif kind == "retry" and keys:
            user, key, sku, qty = keys[pick % len(keys)]
            got = shop.reserve(user, sku, qty, key)
            common = {"key": key, "sku_id": sku, "quantity": qty}
            if isinstance(got, str):
                shop.record(user, "reserve", "fail", window, code=got, **common)
            else:
                shop.record(user, "reserve", "ok", window, order_id=got["order_id"], **common)
        elif kind in ("pay", "unknown_pay", "cancel", "expire") and shop.orders:
            oid = sorted(shop.orders)[pick % len(shop.orders)]
            owner = shop.orders[oid]["user_id"]
            if kind == "expire":
                shop.release(oid, "expired")
            elif kind == "cancel":
                done = shop.release(oid, "cancelled")
                shop.record(owner, "cancel", "ok" if done else "fail", window, order_id=oid,
                            code=None if done else "order_closed")
            else:
                if kind == "unknown_pay" and not took:
                    shop.record(owner, "pay", "unknown", window, order_id=oid)
                    continue
                done = shop.pay(oid)
                outcome = "unknown" if kind == "unknown_pay" else ("ok" if done else "fail")
                shop.record(owner, "pay", outcome, window, order_id=oid,
                            code=None if outcome != "fail" else "order_closed")
    return shop


def report_of(shop: Checkout):
    shop.history.sort(key=lambda r: r["start"])
    return check(History.of(shop.history), shop.final_state(), RULES)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=40), st.booleans())
def test_a_correct_checkout_never_breaks_an_invariant(ops, seq) -> None:
    report = report_of(drive(ops, seq=seq))
    assert report.held, to_text(report)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, min_size=1, max_size=40), st.integers(0, 39), st.booleans())
def test_one_lost_stock_update_is_always_caught(ops, at, seq) -> None:
    at = at % len(ops)
    _, u, sku, qty, pick, _, window = ops[at]
    ops = [*ops[:at], ("reserve", u, sku, qty, pick, True, window), *ops[at + 1:]]
    shop = drive(ops, seq=seq, lose_at=at)
    lost = any(o["idempotency_key"] == f"k{at}" for o in shop.orders.values())
    report = report_of(shop)
    if lost:
        assert {"conservation", "no_oversell"} <= {r.name for r in report.broken}
    else:  # the reservation was refused, so nothing was lost
        assert report.held, to_text(report)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, min_size=1, max_size=40), st.integers(0, 39))
def test_a_refusal_while_stock_was_free_is_always_caught_by_seq(ops, at) -> None:
    """With the movement seq, stock at a refusal is known exactly once the history pins the
    refusal between its neighbours (requests a second apart, none overlapping another's
    moment): a sold_out answered while the quantity was free is always reported, and one
    answered while it was not never is. (Expiries and unknown outcomes are left out: the
    history does not show when they took effect, so nothing is concluded from them.)"""
    pinned = {"expire": "cancel", "unknown_reserve": "reserve", "unknown_pay": "pay"}
    ops = [(pinned.get(op[0], op[0]), *op[1:6], (op[6][0] / 7, op[6][1] / 7))
           for op in ops]  # windows under 0.5 s
    at = at % len(ops)
    _, u, sku, qty, pick, _, window = ops[at]
    ops = [*ops[:at], ("reserve", u, sku, qty, pick, True, window), *ops[at + 1:]]
    free = drive(ops[:at], seq=True).available[sku] >= qty
    report = report_of(drive(ops, seq=True, refuse_at=at))
    assert ("no_wrongful_refusal" in {r.name for r in report.broken}) == free, to_text(report)
