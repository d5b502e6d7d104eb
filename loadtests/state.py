"""The server's final state, typed: the admin ledger and the order, group and claim exports.

`FinalState.from_json` parses what `GET /v1/admin/ledger` and the paged exports return
(CONTRACT.md). Fields of contract 1.1 are required; the 1.2 additions (movement `seq`, order
`paid_seq`, group `leader_reward`, ledger `sale_id` / `start` / timings, claim
`idempotency_key`) are read when present and None otherwise, so the checker knows what it can
prove. Fields a later contract adds are ignored. A missing or mistyped contract field is a
`StateError` naming the row: the server broke the contract, and no invariant is checked on a
guess.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVE = ("reserved", "paid")
"""Order statuses that hold stock."""
ORDER_STATUSES = ("reserved", "paid", "cancelled", "expired", "refunded")
GROUP_STATUSES = ("open", "completed", "failed")
MOVEMENT_KINDS = ("reserve", "release", "refund")


class StateError(ValueError):
    """The server's ledger or an export does not follow the contract."""


def _get(row: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str, *,
         optional: bool = False, nullable: bool = False) -> Any:
    if name not in row:
        if optional:
            return None
        raise StateError(f"{where}: missing field {name!r}")
    v = row[name]
    if v is None and (nullable or optional):
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(v) not in kinds:
        if float in kinds and type(v) is int:
            return float(v)
        raise StateError(f"{where}: {name} = {v!r} is not {'/'.join(k.__name__ for k in kinds)}")
    return v


NUM = (float, int)


@dataclass(frozen=True, slots=True)
class Movement:
    """One change of an order's stock: `reserve` (taken), `release` or `refund` (given back)."""

    kind: str
    quantity: int
    at: float
    seq: int | None = None
    """Contract 1.2: the sale-wide order in which the store applied it."""

    @classmethod
    def from_json(cls, m: Any, where: str) -> Movement:
        if not isinstance(m, dict):
            raise StateError(f"{where}: a movement is not an object")
        kind = _get(m, "kind", str, where)
        if kind not in MOVEMENT_KINDS:
            raise StateError(f"{where}: movement kind {kind!r}")
        return cls(kind, _get(m, "quantity", int, where), _get(m, "at", NUM, where),
                   _get(m, "seq", int, where, optional=True))


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the export shows it (CONTRACT.md, "Order")."""

    order_id: str
    user_id: str
    sku_id: str
    quantity: int
    status: str
    group_id: str | None
    coupon_id: str | None
    idempotency_key: str
    amount: int
    list_amount: int
    gift: bool
    created_at: float
    expires_at: float
    paid_at: float | None
    closed_at: float | None
    movements: tuple[Movement, ...]
    paid_seq: int | None = None
    """Contract 1.2: the payment's rank among the sale's payments."""

    @classmethod
    def from_json(cls, o: Any) -> Order:
        if not isinstance(o, dict):
            raise StateError("an order is not an object")
        oid = _get(o, "order_id", str, "order")
        w = f"order {oid}"
        moves = _get(o, "movements", list, w)
        status = _get(o, "status", str, w)
        if status not in ORDER_STATUSES:
            raise StateError(f"{w}: status {status!r}")
        return cls(
            oid, _get(o, "user_id", str, w), _get(o, "sku_id", str, w),
            _get(o, "quantity", int, w), status,
            _get(o, "group_id", str, w, nullable=True), _get(o, "coupon_id", str, w, nullable=True),
            _get(o, "idempotency_key", str, w), _get(o, "amount", int, w),
            _get(o, "list_amount", int, w), _get(o, "gift", bool, w),
            _get(o, "created_at", NUM, w), _get(o, "expires_at", NUM, w),
            _get(o, "paid_at", NUM, w, nullable=True), _get(o, "closed_at", NUM, w, nullable=True),
            tuple(Movement.from_json(m, w) for m in moves),
            _get(o, "paid_seq", int, w, optional=True))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def ever_paid(self) -> bool:
        """Paid at some point (still paid, or refunded since)."""
        return self.paid_at is not None or self.status in ("paid", "refunded")


@dataclass(frozen=True, slots=True)
class Group:
    """A group as the export shows it (CONTRACT.md, "Group")."""

    group_id: str
    sku_id: str
    leader_id: str
    status: str
    deadline: float
    members: int
    paid_members: int
    top_size: int
    min_size: int
    tier_reached: int | None
    order_ids: tuple[str, ...]
    closed_at: float | None
    leader_reward: int | None = None
    """Contract 1.2: fen granted to the leader (0 unless completed)."""

    @classmethod
    def from_json(cls, g: Any) -> Group:
        if not isinstance(g, dict):
            raise StateError("a group is not an object")
        gid = _get(g, "group_id", str, "group")
        w = f"group {gid}"
        status = _get(g, "status", str, w)
        if status not in GROUP_STATUSES:
            raise StateError(f"{w}: status {status!r}")
        return cls(gid, _get(g, "sku_id", str, w), _get(g, "leader_id", str, w), status,
                   _get(g, "deadline", NUM, w), _get(g, "members", int, w),
                   _get(g, "paid_members", int, w), _get(g, "top_size", int, w),
                   _get(g, "min_size", int, w), _get(g, "tier_reached", int, w, nullable=True),
                   tuple(_get(g, "order_ids", list, w)),
                   _get(g, "closed_at", NUM, w, nullable=True),
                   _get(g, "leader_reward", int, w, optional=True))


@dataclass(frozen=True, slots=True)
class Claim:
    """A coupon claim as the export shows it."""

    claim_id: str
    coupon_id: str
    user_id: str
    claimed_at: float
    order_id: str | None
    idempotency_key: str | None = None
    """Contract 1.2."""

    @classmethod
    def from_json(cls, c: Any) -> Claim:
        if not isinstance(c, dict):
            raise StateError("a claim is not an object")
        cid = _get(c, "claim_id", str, "claim")
        w = f"claim {cid}"
        return cls(cid, _get(c, "coupon_id", str, w), _get(c, "user_id", str, w),
                   _get(c, "claimed_at", NUM, w), _get(c, "order_id", str, w, nullable=True),
                   _get(c, "idempotency_key", str, w, optional=True))


@dataclass(frozen=True, slots=True)
class SkuCounters:
    """One SKU's ledger counters, in units."""

    initial: int
    available: int
    reserved: int
    sold: int
    released: int
    refunded: int

    @classmethod
    def from_json(cls, row: Any, where: str) -> SkuCounters:
        if not isinstance(row, dict):
            raise StateError(f"{where}: not an object")
        return cls(*(_get(row, k, int, where) for k in ("initial", "available", "reserved",
                                                         "sold", "released", "refunded")))


@dataclass(frozen=True, slots=True)
class CouponCounters:
    pool: int
    issued: int
    per_user: int

    @classmethod
    def from_json(cls, row: Any, where: str) -> CouponCounters:
        if not isinstance(row, dict):
            raise StateError(f"{where}: not an object")
        return cls(*(_get(row, k, int, where) for k in ("pool", "issued", "per_user")))


@dataclass(frozen=True)
class Ledger:
    """`GET /v1/admin/ledger`."""

    sale: str
    now: float
    skus: dict[str, SkuCounters]
    coupons: dict[str, CouponCounters]
    groups: dict[str, int]
    """open, completed, failed, leader_rewards"""
    orders: dict[str, int]
    """count per order status"""
    sale_id: str | None = None
    start: float | None = None
    payment_timeout_seconds: float | None = None
    group_window_seconds: float | None = None

    @classmethod
    def from_json(cls, led: Any) -> Ledger:
        if not isinstance(led, dict):
            raise StateError("the ledger is not an object")
        w = "ledger"
        skus = _get(led, "skus", dict, w)
        coupons = _get(led, "coupons", dict, w, optional=True) or {}
        groups = _get(led, "groups", dict, w, optional=True) or {}
        orders = _get(led, "orders", dict, w, optional=True) or {}
        for section, rows in (("groups", groups), ("orders", orders)):
            for k, v in rows.items():
                if type(v) is not int:
                    raise StateError(f"ledger {section}.{k} = {v!r} is not an int")
        return cls(
            _get(led, "sale", str, w), _get(led, "now", NUM, w),
            {k: SkuCounters.from_json(v, f"ledger sku {k}") for k, v in skus.items()},
            {k: CouponCounters.from_json(v, f"ledger coupon {k}") for k, v in coupons.items()},
            dict(groups), dict(orders),
            _get(led, "sale_id", str, w, optional=True), _get(led, "start", NUM, w, optional=True),
            _get(led, "payment_timeout_seconds", NUM, w, optional=True),
            _get(led, "group_window_seconds", NUM, w, optional=True))


@dataclass(frozen=True)
class FinalState:
    """The server's state after the run."""

    ledger: Ledger
    orders: tuple[Order, ...]
    groups: tuple[Group, ...] = ()
    claims: tuple[Claim, ...] = ()
    expiry_ran: bool = False
    """Expiry was run after every payment and group deadline had passed, so anything still
    held past its deadline is a violation too."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The JSON it was parsed from (saved as state.json in a run folder)."""

    @classmethod
    def from_json(cls, ledger: Any, orders: Iterable[Any], groups: Iterable[Any] = (),
                  claims: Iterable[Any] = (), *, expiry_ran: bool = False) -> FinalState:
        orders, groups, claims = list(orders), list(groups), list(claims)
        was = gc.isenabled()
        gc.disable()  # hundreds of thousands of small acyclic rows: see `read_segments`
        try:
            return cls._parse(ledger, orders, groups, claims, expiry_ran)
        finally:
            if was:
                gc.enable()

    @classmethod
    def _parse(cls, ledger: Any, orders: list[Any], groups: list[Any], claims: list[Any],
               expiry_ran: bool) -> FinalState:
        return cls(Ledger.from_json(ledger), tuple(Order.from_json(o) for o in orders),
                   tuple(Group.from_json(g) for g in groups),
                   tuple(Claim.from_json(c) for c in claims), expiry_ran,
                   {"ledger": ledger, "orders": orders, "groups": groups, "claims": claims,
                    "expiry_ran": expiry_ran})

    @property
    def has_seq(self) -> bool:
        """Every movement carries the store's sequence number (contract 1.2)."""
        return all(m.seq is not None for o in self.orders for m in o.movements)

    @property
    def has_paid_seq(self) -> bool:
        return all(o.paid_seq is not None for o in self.orders if o.ever_paid)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.raw, separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> FinalState:
        """A state saved by `save` (a run folder's state.json); StateError says what is wrong
        with it (the caller names the file)."""
        try:
            raw = json.loads(Path(path).read_text())
        except ValueError:
            raise StateError("not JSON") from None
        if not isinstance(raw, dict) or "ledger" not in raw:
            raise StateError("not a saved final state (no ledger)")
        return cls.from_json(raw["ledger"], raw.get("orders", []), raw.get("groups", []),
                             raw.get("claims", []), expiry_ran=bool(raw.get("expiry_ran")))

    @classmethod
    def empty(cls, sale: str = "", now: float = 0.0) -> FinalState:
        """A server with nothing in it (e.g. a store that came back empty after a crash)."""
        return cls.from_json({"sale": sale, "now": now, "skus": {}}, [])
