"""State changes written once in SQL for SQLite and PostgreSQL.

Each public operation runs as one short transaction (`SqlStore._call`). Stock, limits, group
seats and coupon pools change only through guarded updates (`... WHERE available >= ?`), so two
transactions can never both take the last unit; unique constraints and CHECKs are the backstop.
Locks are taken in one order — group, order, SKU, user counter, claim, sale — so PostgreSQL
transactions do not deadlock in the common paths (and are retried when they do)."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from reference_server.domain import (
    ClaimRow,
    GroupRow,
    OrderRow,
    PricedReserve,
    Sale,
    gift_for,
    movement,
    new_id,
    sale_from_record,
)
from reference_server.errors import ApiError
from reference_server.stores.base import (
    IDEMPOTENCY_STALE_SECONDS,
    IDEMPOTENCY_TTL_SECONDS,
    CreateOp,
    ExportKind,
    ExportRow,
    IdemBegin,
    IdemRequest,
    SaleRecord,
    StaleSale,
    Store,
    records_refusal,
)

T = TypeVar("T")

# {serial} is the auto-increment key column of the dialect.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sale (
  id INTEGER PRIMARY KEY CHECK (id = 1), fingerprint TEXT NOT NULL, campaign TEXT NOT NULL,
  start DOUBLE PRECISION NOT NULL, payment_timeout DOUBLE PRECISION NOT NULL,
  group_window DOUBLE PRECISION NOT NULL, paid_seq BIGINT NOT NULL DEFAULT 0,
  leader_rewards BIGINT NOT NULL DEFAULT 0, sale_id TEXT NOT NULL DEFAULT '',
  move_seq BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS skus (
  sku_id TEXT PRIMARY KEY, initial BIGINT NOT NULL, available BIGINT NOT NULL,
  reserved BIGINT NOT NULL DEFAULT 0, sold BIGINT NOT NULL DEFAULT 0,
  released BIGINT NOT NULL DEFAULT 0, refunded BIGINT NOT NULL DEFAULT 0,
  CHECK (available >= 0 AND reserved >= 0 AND sold >= 0));
CREATE TABLE IF NOT EXISTS coupons (
  coupon_id TEXT PRIMARY KEY, pool BIGINT NOT NULL, issued BIGINT NOT NULL DEFAULT 0,
  per_user INTEGER NOT NULL, CHECK (issued >= 0 AND issued <= pool));
CREATE TABLE IF NOT EXISTS coupon_users (
  coupon_id TEXT NOT NULL, user_id TEXT NOT NULL, claimed INTEGER NOT NULL,
  PRIMARY KEY (coupon_id, user_id));
CREATE TABLE IF NOT EXISTS claims (
  seq {serial}, claim_id TEXT NOT NULL UNIQUE, coupon_id TEXT NOT NULL, user_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, order_id TEXT,
  UNIQUE (user_id, idempotency_key));
CREATE INDEX IF NOT EXISTS claims_user ON claims (user_id, coupon_id);
CREATE TABLE IF NOT EXISTS user_units (
  user_id TEXT NOT NULL, sku_id TEXT NOT NULL, units INTEGER NOT NULL CHECK (units >= 0),
  PRIMARY KEY (user_id, sku_id));
CREATE TABLE IF NOT EXISTS orders (
  seq {serial}, order_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL, sku_id TEXT NOT NULL,
  quantity INTEGER NOT NULL, status TEXT NOT NULL, group_id TEXT, coupon_id TEXT,
  idempotency_key TEXT NOT NULL, amount BIGINT NOT NULL, list_amount BIGINT NOT NULL,
  prices TEXT NOT NULL, gift INTEGER NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL, paid_at DOUBLE PRECISION,
  closed_at DOUBLE PRECISION, movements TEXT NOT NULL, paid_seq BIGINT, request_fp TEXT,
  UNIQUE (user_id, idempotency_key));
CREATE INDEX IF NOT EXISTS orders_due ON orders (status, expires_at);
CREATE INDEX IF NOT EXISTS orders_group ON orders (group_id);
CREATE TABLE IF NOT EXISTS groups (
  seq {serial}, group_id TEXT NOT NULL UNIQUE, sku_id TEXT NOT NULL, leader_id TEXT NOT NULL,
  status TEXT NOT NULL, deadline DOUBLE PRECISION NOT NULL, members INTEGER NOT NULL,
  paid_members INTEGER NOT NULL, top_size INTEGER NOT NULL, min_size INTEGER NOT NULL,
  tier_reached INTEGER, closed_at DOUBLE PRECISION,
  CHECK (members >= 0 AND members <= top_size));
CREATE INDEX IF NOT EXISTS groups_due ON groups (status, deadline);
CREATE TABLE IF NOT EXISTS idem (
  user_id TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
  status INTEGER, body TEXT, started_at DOUBLE PRECISION NOT NULL, snapshot TEXT,
  PRIMARY KEY (user_id, key));
CREATE INDEX IF NOT EXISTS idem_age ON idem (started_at);
"""

MIGRATIONS = (
    ("sale", "sale_id", "TEXT NOT NULL DEFAULT ''"),
    ("sale", "move_seq", "BIGINT NOT NULL DEFAULT 0"),
    ("orders", "paid_seq", "BIGINT"),
    ("orders", "request_fp", "TEXT"),
    ("idem", "snapshot", "TEXT"),
)
"""Columns added after a store was first created (contract 1.2): (table, column, type)."""

STATE_TABLES = ("orders", "groups", "claims", "coupon_users", "user_units", "idem", "skus",
                "coupons", "sale")
EXPIRY_BATCH = 500
PURGE_EVERY_SECONDS = 60.0


class Tx(Protocol):
    """One open transaction. SQL uses `?` placeholders in both dialects."""

    lock: str
    """" FOR UPDATE" where row locks exist (PostgreSQL); "" where the database lock is enough."""
    exclusive: str
    """A statement that serialises whole-sale changes (load, reset) between processes, or ""
    where every write transaction is already exclusive (SQLite)."""

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None: ...
    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...
    def run(self, sql: str, *params: Any) -> int: ...
    def next_seq(self) -> int:
        """The next value of the sale-wide movement counter (CONTRACT.md 1.2, `seq`)."""
        ...


class Deferred(Exception):
    """Raised by a transaction body that did useful work (e.g. a lazy expiry) but must still
    refuse the caller: the runner commits, then raises `error`."""

    def __init__(self, error: ApiError) -> None:
        self.error = error


class SqlStore(Store):
    """Store logic over a `Tx`; subclasses provide the connection and `_call`."""

    @abstractmethod
    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        """Run `fn(tx, *args)` in one transaction, commit, and return its result. `ApiError`
        rolls back; `Deferred` commits, then raises its error."""

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, args, True)

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, args, False)

    # -- set-up ---------------------------------------------------------------------------
    async def secret(self, proposed: str) -> str:
        return await self._call(_secret, proposed)

    async def load_sale(self, record: SaleRecord, if_absent: bool) -> bool:
        return await self._call(_load_sale, record, if_absent)

    async def reset(self) -> None:
        await self._call(_reset)

    async def sale(self) -> Sale | None:
        return await self._query(_sale_or_none)

    async def skus(self) -> dict[str, dict[str, int]]:
        return await self._query(_skus)

    # -- the one step a deliberately wrong store may change ----------------------------------
    def _take_stock(self, tx: Tx, sku_id: str, quantity: int) -> bool:
        """Move `quantity` units of `sku_id` from available to reserved, or change nothing and
        return False when fewer are available. Runs inside the reservation's transaction."""
        return tx.run("UPDATE skus SET available = available - ?, reserved = reserved + ? "
                      "WHERE sku_id = ? AND available >= ?", quantity, quantity, sku_id,
                      quantity) > 0

    # -- state changes --------------------------------------------------------------------
    async def reserve(self, priced: PricedReserve, now: float) -> OrderRow:
        return OrderRow.from_fields(await self._call(_reserve, priced, now, self._take_stock))

    async def open_group(self, priced: PricedReserve, now: float) -> tuple[GroupRow, OrderRow]:
        g, ids, order = await self._call(_open_group, priced, now, self._take_stock)
        return GroupRow.from_fields(g, ids), OrderRow.from_fields(order)

    async def pay(self, order_id: str, user_id: str | None, now: float) -> OrderRow:
        return OrderRow.from_fields(await self._call(_pay, order_id, user_id, now))

    async def cancel(self, order_id: str, user_id: str | None, now: float) -> OrderRow:
        return OrderRow.from_fields(await self._call(_cancel, order_id, user_id, now))

    async def claim_coupon(self, coupon_id: str, user_id: str, key: str,
                           now: float) -> ClaimRow:
        return ClaimRow.from_fields(await self._call(_claim, coupon_id, user_id, key, now))

    _next_purge = 0.0

    async def expire_due(self, now: float) -> tuple[int, int]:
        if now >= self._next_purge:  # a write, so not on every pass
            await self._call(_forget_idempotency, now)
            self._next_purge = now + PURGE_EVERY_SECONDS
        orders, groups = await self._query(_due, now)
        expired = closed = 0
        for order_id in orders:
            expired += await self._call(_expire_order, order_id, now)
        for group_id in groups:
            closed += await self._call(_close_group_if_due, group_id, now)
        return expired, closed

    # -- reads ----------------------------------------------------------------------------
    async def order(self, order_id: str) -> OrderRow | None:
        row = await self._query(_order, order_id)
        return None if row is None else OrderRow.from_fields(row)

    async def group(self, group_id: str) -> GroupRow | None:
        found = await self._query(_group, group_id)
        return None if found is None else GroupRow.from_fields(*found)

    async def ledger_counts(self) -> dict[str, Any]:
        return await self._query(_ledger_counts)

    async def export(self, kind: ExportKind, after: int,
                     limit: int) -> tuple[list[ExportRow], int | None]:
        rows, nxt = await self._query(_export, kind, after, limit)
        typed: list[ExportRow]
        if kind == "orders":
            typed = [OrderRow.from_fields(r) for r in rows]
        elif kind == "groups":
            typed = [GroupRow.from_fields(r, r["order_ids"]) for r in rows]
        else:
            typed = [ClaimRow.from_fields(r) for r in rows]
        return typed, nxt

    # -- idempotency ----------------------------------------------------------------------
    async def once(self, idem: IdemRequest, op: CreateOp, now: float, *,
                   record_refusals: bool) -> IdemBegin:
        """The key, the change and the recorded answer in one transaction: one commit (and
        one fsync) per creating request, and no in-flight marker a crash could leave behind."""
        return await self._call(_once, idem, op, now, record_refusals, self._take_stock)

    async def idem_begin(self, user_id: str, key: str, fingerprint: str,
                         now: float) -> IdemBegin:
        return await self._call(_idem_begin, user_id, key, fingerprint, now)

    async def idem_finish(self, user_id: str, key: str, status: int, body: str) -> None:
        await self._call(_idem_finish, user_id, key, status, body)

    async def idem_abort(self, user_id: str, key: str) -> None:
        await self._call(_idem_abort, user_id, key)


# ---- transaction bodies (synchronous, run inside `_call`) ----------------------------------

def _secret(tx: Tx, proposed: str) -> str:
    tx.run("INSERT INTO meta (k, v) VALUES ('secret', ?) ON CONFLICT (k) DO NOTHING", proposed)
    row = tx.one("SELECT v FROM meta WHERE k = 'secret'")
    assert row is not None
    return str(row["v"])


def _load_sale(tx: Tx, record: SaleRecord, if_absent: bool) -> bool:
    sale = sale_from_record(record.campaign_json, record.start, record.payment_timeout,
                            record.group_window)
    if tx.exclusive:
        tx.one(tx.exclusive)
    row = tx.one("SELECT fingerprint FROM sale WHERE id = 1")
    if if_absent and row is not None and row["fingerprint"] == sale.fingerprint:
        return False
    for table in STATE_TABLES:
        tx.run(f"DELETE FROM {table}")
    tx.run("INSERT INTO sale (id, fingerprint, campaign, start, payment_timeout, group_window, "
           "sale_id) VALUES (1, ?, ?, ?, ?, ?, ?)", sale.fingerprint, record.campaign_json,
           record.start, record.payment_timeout, record.group_window, new_id("s"))
    _init_counters(tx, sale)
    return True


def _init_counters(tx: Tx, sale: Sale) -> None:
    for sku in sale.rules.skus:
        tx.run("INSERT INTO skus (sku_id, initial, available) VALUES (?, ?, ?)",
               sku.id, sku.stock, sku.stock)
    for c in sale.rules.coupons:
        tx.run("INSERT INTO coupons (coupon_id, pool, per_user) VALUES (?, ?, ?)",
               c.id, c.pool, c.per_user)


def _reset(tx: Tx) -> None:
    if tx.exclusive:
        tx.one(tx.exclusive)
    sale = _sale(tx)
    for table in STATE_TABLES[:-1]:
        tx.run(f"DELETE FROM {table}")
    tx.run("UPDATE sale SET paid_seq = 0, leader_rewards = 0, sale_id = ? WHERE id = 1",
           new_id("s"))
    _init_counters(tx, sale)


_SALES: dict[tuple[Any, ...], Sale] = {}
"""Parsed sales by identity (campaign fingerprint, timing, sale id): every payment needs the
sale, and reading and parsing the campaign text each time showed in the profile."""


def _sale_or_none(tx: Tx) -> Sale | None:
    row = tx.one("SELECT fingerprint, start, payment_timeout, group_window, sale_id FROM sale "
                 "WHERE id = 1")
    if row is None:
        return None
    ident = tuple(row.values())
    sale = _SALES.get(ident)
    if sale is None:
        campaign = tx.one("SELECT campaign FROM sale WHERE id = 1")
        assert campaign is not None
        sale = sale_from_record(campaign["campaign"], float(row["start"]),
                                float(row["payment_timeout"]), float(row["group_window"]),
                                str(row["sale_id"]))
        if len(_SALES) >= 16:
            _SALES.clear()
        _SALES[ident] = sale
    return sale


def _sale(tx: Tx) -> Sale:
    sale = _sale_or_none(tx)
    if sale is None:
        raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
    return sale


def _skus(tx: Tx) -> dict[str, dict[str, int]]:
    rows = tx.all("SELECT * FROM skus ORDER BY sku_id")
    return {r["sku_id"]: {k: int(r[k]) for k in ("initial", "available", "reserved", "sold",
                                                   "released", "refunded")} for r in rows}


TakeStock = Callable[[Tx, str, int], bool]


def _check_sale(tx: Tx, sale_id: str) -> None:
    """Refuse a request priced under a sale that is no longer the loaded one."""
    row = tx.one("SELECT sale_id FROM sale WHERE id = 1")
    if row is None:
        raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
    if row["sale_id"] != sale_id:
        raise StaleSale()


def _prior_order(tx: Tx, p: PricedReserve) -> dict[str, Any] | None:
    """The order an earlier attempt under the same (user, key) committed (its response may have
    been lost in a crash)."""
    prior = tx.one("SELECT * FROM orders WHERE user_id = ? AND idempotency_key = ?",
                   p.req.user_id, p.req.idempotency_key)
    if prior is not None and prior["request_fp"] and p.req.fingerprint \
            and prior["request_fp"] != p.req.fingerprint:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used for a "
                       "different request")
    return prior


def _reserve(tx: Tx, p: PricedReserve, now: float, take_stock: TakeStock) -> dict[str, Any]:
    """Reserve stock for a priced order: the guarded steps only a store can decide."""
    prior = _prior_order(tx, p)
    if prior is not None:
        return prior
    _check_sale(tx, p.sale_id)
    return _reserve_new(tx, p, now, take_stock)


def _reserve_new(tx: Tx, p: PricedReserve, now: float, take_stock: TakeStock) -> dict[str, Any]:
    req, q, group_id = p.req, p.req.quantity, p.group_id
    if group_id is not None:
        g = tx.one("SELECT * FROM groups WHERE group_id = ?" + tx.lock, group_id)
        if g is None:
            raise ApiError("not_found", f"no group {group_id!r}")
        if g["sku_id"] != req.sku_id:
            raise ApiError("invalid", f"sku_id: group {group_id} buys {g['sku_id']}")
        if g["status"] != "open" or float(g["deadline"]) <= now:
            raise ApiError("group_closed", f"group {group_id} is {g['status']} or past "
                           "its deadline")
        if int(g["members"]) >= int(g["top_size"]):
            raise ApiError("group_full", f"group {group_id} has {g['top_size']} members")
    if not take_stock(tx, req.sku_id, q):
        raise ApiError("sold_out", f"{req.sku_id}: not enough stock for {q}")
    within = tx.one(
        "INSERT INTO user_units (user_id, sku_id, units) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id, sku_id) DO UPDATE SET units = user_units.units + excluded.units "
        "WHERE user_units.units + excluded.units <= ? RETURNING units",
        req.user_id, req.sku_id, q, p.per_user_limit)
    if within is None:
        raise ApiError("limit_reached", f"{req.sku_id}: at most {p.per_user_limit} "
                       "unit(s) per user, reserved and paid together")
    if req.coupon_id is not None:
        claim = tx.one("SELECT claim_id FROM claims WHERE user_id = ? AND coupon_id = ? "
                       "AND order_id IS NULL ORDER BY seq LIMIT 1" + tx.lock,
                       req.user_id, req.coupon_id)
        if claim is None or not tx.run("UPDATE claims SET order_id = ? WHERE claim_id = ? "
                                       "AND order_id IS NULL", p.order_id, claim["claim_id"]):
            raise ApiError("coupon_unavailable", f"no unused {req.coupon_id} coupon claimed by "
                           f"{req.user_id}")
    if group_id is not None:
        tx.run("UPDATE groups SET members = members + 1 WHERE group_id = ?", group_id)
    seq = tx.next_seq()  # after the SKU's guarded update: its lock orders the movements
    order = tx.one(
        "INSERT INTO orders (order_id, user_id, sku_id, quantity, status, group_id, "
        "coupon_id, idempotency_key, amount, list_amount, prices, created_at, expires_at, "
        "movements, request_fp) VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "RETURNING *", p.order_id, req.user_id, req.sku_id, q, group_id, req.coupon_id,
        req.idempotency_key, p.amount, p.list_amount, json.dumps(p.prices), now,
        p.expires_at, json.dumps([movement("reserve", q, now, seq)]), req.fingerprint)
    assert order is not None
    return order


def _open_group(tx: Tx, p: PricedReserve, now: float,
                take_stock: TakeStock) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    order = _prior_order(tx, p)
    if order is None:
        _check_sale(tx, p.sale_id)
        g = p.new_group
        assert g is not None
        tx.run("INSERT INTO groups (group_id, sku_id, leader_id, status, deadline, members, "
               "paid_members, top_size, min_size) VALUES (?, ?, ?, 'open', ?, 0, 0, ?, ?)",
               g.group_id, p.req.sku_id, p.req.user_id, g.deadline, g.top_size, g.min_size)
        order = _reserve_new(tx, p, now, take_stock)
    found = _group(tx, order["group_id"])
    assert found is not None
    return found[0], found[1], order


def _owned_order(tx: Tx, order_id: str, user_id: str | None) -> dict[str, Any]:
    row = tx.one("SELECT * FROM orders WHERE order_id = ?", order_id)
    if row is None:
        raise ApiError("not_found", f"no order {order_id!r}")
    if user_id is not None and row["user_id"] != user_id:
        raise ApiError("forbidden", "this order belongs to another user")
    return row


def _locked_order(tx: Tx, row: dict[str, Any]) -> dict[str, Any]:
    """Lock the order's group (if any) and then the order, in the global lock order."""
    if not tx.lock:  # the whole transaction is exclusive (SQLite): the row read is current
        return row
    if row["group_id"]:
        tx.one("SELECT group_id FROM groups WHERE group_id = ?" + tx.lock, row["group_id"])
    locked = tx.one("SELECT * FROM orders WHERE order_id = ?" + tx.lock, row["order_id"])
    assert locked is not None
    return locked


def _still_reserved(tx: Tx, order_id: str, user_id: str | None, now: float,
                    done: str) -> tuple[dict[str, Any], bool]:
    """The caller's order, locked while it is still reserved and in time, with False; or the
    order with True when it already has status `done` (pay and cancel are idempotent).
    Any other state is `order_closed`; an order found past its deadline is expired first."""
    row = _owned_order(tx, order_id, user_id)
    if row["status"] == "reserved":
        row = _locked_order(tx, row)
    if row["status"] == done:
        return row, True
    if row["status"] == "paid":
        raise ApiError("order_closed", f"order {order_id} is paid; paid orders cannot be "
                       "cancelled")
    if row["status"] != "reserved":
        raise ApiError("order_closed", f"order {order_id} is {row['status']}")
    if float(row["expires_at"]) <= now:
        _release(tx, row, "expired", now)
        raise Deferred(ApiError("order_closed", f"order {order_id} expired unpaid"))
    return row, False


def _pay(tx: Tx, order_id: str, user_id: str | None, now: float) -> dict[str, Any]:
    row, done = _still_reserved(tx, order_id, user_id, now, "paid")
    if done:
        return row
    sale = _sale(tx)
    if row["group_id"]:  # the group is locked (`_locked_order`)
        g = tx.one("SELECT * FROM groups WHERE group_id = ?", row["group_id"])
        assert g is not None
        if g["status"] == "open" and float(g["deadline"]) <= now:
            # too late to count: the group closes as of its deadline (releasing this order)
            _close_group(tx, sale, g, now)
            raise Deferred(ApiError("order_closed", f"order {order_id}: group "
                                    f"{row['group_id']} passed its deadline"))
    q = int(row["quantity"])
    tx.run("UPDATE skus SET reserved = reserved - ?, sold = sold + ? WHERE sku_id = ?",
           q, q, row["sku_id"])
    if row["group_id"]:  # the group counts this order as paid when it closes
        tx.run("UPDATE orders SET status = 'paid', paid_at = ? WHERE order_id = ?", now,
               order_id)
        g = tx.one("UPDATE groups SET paid_members = paid_members + 1 WHERE group_id = ? "
                   "RETURNING *", row["group_id"])
        assert g is not None
        if int(g["paid_members"]) >= int(g["top_size"]):
            _close_group(tx, sale, g, now)
    # the sale row is every payment's lock (dense ranks for the gift): take it last, briefly
    seq = tx.one("UPDATE sale SET paid_seq = paid_seq + 1 WHERE id = 1 RETURNING paid_seq")
    assert seq is not None
    rank = int(seq["paid_seq"])
    paid = tx.one("UPDATE orders SET status = 'paid', paid_at = ?, paid_seq = ?, gift = ? "
                  "WHERE order_id = ? RETURNING *",
                  now, rank, int(gift_for(sale, sale.sku(row["sku_id"]), rank)), order_id)
    assert paid is not None
    return paid


def _cancel(tx: Tx, order_id: str, user_id: str | None, now: float) -> dict[str, Any]:
    row, done = _still_reserved(tx, order_id, user_id, now, "cancelled")
    if not done:
        _release(tx, row, "cancelled", now)
        row = _existing_order(tx, order_id)
    return row


def _existing_order(tx: Tx, order_id: str) -> dict[str, Any]:
    """The order just written in this transaction."""
    row = _order(tx, order_id)
    assert row is not None
    return row


def _release(tx: Tx, row: dict[str, Any], status: str, now: float) -> bool:
    """Return a reserved order's stock exactly once (guarded on status)."""
    q = int(row["quantity"])
    if not tx.run("UPDATE orders SET status = ?, closed_at = ? "
                  "WHERE order_id = ? AND status = 'reserved'", status, now, row["order_id"]):
        return False
    tx.run("UPDATE skus SET reserved = reserved - ?, available = available + ?, "
           "released = released + ? WHERE sku_id = ?", q, q, q, row["sku_id"])
    moves = [*json.loads(row["movements"]), movement("release", q, now, tx.next_seq())]
    tx.run("UPDATE orders SET movements = ? WHERE order_id = ?", json.dumps(moves),
           row["order_id"])
    tx.run("UPDATE user_units SET units = units - ? WHERE user_id = ? AND sku_id = ?",
           q, row["user_id"], row["sku_id"])
    if row["group_id"]:
        tx.run("UPDATE groups SET members = members - 1 WHERE group_id = ?", row["group_id"])
    return True


def _close_group(tx: Tx, sale: Sale, g: dict[str, Any], now: float) -> None:
    """Complete or fail a locked open group (CONTRACT.md, "Group")."""
    rules = sale.rules.groups
    assert rules is not None
    rows = tx.all("SELECT * FROM orders WHERE group_id = ? AND status IN ('reserved', 'paid') "
                  "ORDER BY seq" + tx.lock, g["group_id"])
    paid = [r for r in rows if r["status"] == "paid"]
    tier = rules.tier_reached(len(paid))
    for r in rows:
        if r["status"] == "reserved":
            _release(tx, r, "cancelled", now)
    if tier is not None:
        for r in paid:
            tx.run("UPDATE orders SET amount = ? WHERE order_id = ?",
                   json.loads(r["prices"])[str(tier.size)], r["order_id"])
        tx.run("UPDATE sale SET leader_rewards = leader_rewards + 1 WHERE id = 1")
    elif rules.failure_policy == "fallback_price":
        for r in paid:
            tx.run("UPDATE orders SET amount = ? WHERE order_id = ?",
                   json.loads(r["prices"])["fallback"], r["order_id"])
    else:
        for r in paid:
            q = int(r["quantity"])
            tx.run("UPDATE skus SET sold = sold - ?, available = available + ?, "
                   "refunded = refunded + ? WHERE sku_id = ?", q, q, q, r["sku_id"])
            moves = [*json.loads(r["movements"]), movement("refund", q, now, tx.next_seq())]
            tx.run("UPDATE orders SET status = 'refunded', closed_at = ?, movements = ? "
                   "WHERE order_id = ?", now, json.dumps(moves), r["order_id"])
            tx.run("UPDATE user_units SET units = units - ? WHERE user_id = ? AND sku_id = ?",
                   q, r["user_id"], r["sku_id"])
        # refunded orders are no longer active members (CONTRACT.md, "Group")
        tx.run("UPDATE groups SET members = members - ?, paid_members = paid_members - ? "
               "WHERE group_id = ?", len(paid), len(paid), g["group_id"])
    tx.run("UPDATE groups SET status = ?, tier_reached = ?, closed_at = ? WHERE group_id = ?",
           "completed" if tier else "failed", tier.size if tier else None, now, g["group_id"])


def _due(tx: Tx, now: float) -> tuple[list[str], list[str]]:
    orders = tx.all("SELECT order_id FROM orders WHERE status = 'reserved' AND expires_at <= ? "
                    "ORDER BY expires_at LIMIT ?", now, EXPIRY_BATCH)
    groups = tx.all("SELECT group_id FROM groups WHERE status = 'open' AND deadline <= ? "
                    "ORDER BY deadline LIMIT ?", now, EXPIRY_BATCH)
    return [r["order_id"] for r in orders], [r["group_id"] for r in groups]


def _expire_order(tx: Tx, order_id: str, now: float) -> int:
    row = tx.one("SELECT * FROM orders WHERE order_id = ?", order_id)
    if row is None or row["status"] != "reserved":
        return 0
    row = _locked_order(tx, row)
    if row["status"] != "reserved" or float(row["expires_at"]) > now:
        return 0
    return int(_release(tx, row, "expired", now))


def _close_group_if_due(tx: Tx, group_id: str, now: float) -> int:
    g = tx.one("SELECT * FROM groups WHERE group_id = ?" + tx.lock, group_id)
    if g is None or g["status"] != "open" or float(g["deadline"]) > now:
        return 0
    _close_group(tx, _sale(tx), g, now)
    return 1


def _claim(tx: Tx, coupon_id: str, user_id: str, key: str, now: float) -> dict[str, Any]:
    prior = tx.one("SELECT * FROM claims WHERE user_id = ? AND idempotency_key = ?",
                   user_id, key)
    if prior is not None:
        if prior["coupon_id"] != coupon_id:
            raise ApiError("idempotency_key_reused", "this Idempotency-Key was used to claim "
                           f"coupon {prior['coupon_id']}")
        return prior
    coupon = _sale(tx).coupon(coupon_id)
    if not tx.run("UPDATE coupons SET issued = issued + 1 WHERE coupon_id = ? AND issued < pool",
                  coupon.id):
        raise ApiError("coupon_exhausted", f"the {coupon.id} pool is empty")
    within = tx.one(
        "INSERT INTO coupon_users (coupon_id, user_id, claimed) VALUES (?, ?, 1) "
        "ON CONFLICT (coupon_id, user_id) DO UPDATE SET claimed = coupon_users.claimed + 1 "
        "WHERE coupon_users.claimed < ? RETURNING claimed", coupon.id, user_id, coupon.per_user)
    if within is None:
        raise ApiError("limit_reached", f"{coupon.id}: at most {coupon.per_user} per user")
    claim_id = new_id("c")
    tx.run("INSERT INTO claims (claim_id, coupon_id, user_id, idempotency_key, claimed_at) "
           "VALUES (?, ?, ?, ?, ?)", claim_id, coupon.id, user_id, key, now)
    return {"claim_id": claim_id, "coupon_id": coupon.id, "user_id": user_id, "claimed_at": now,
            "order_id": None, "idempotency_key": key}


def _order(tx: Tx, order_id: str) -> dict[str, Any] | None:
    return tx.one("SELECT * FROM orders WHERE order_id = ?", order_id)


def _group(tx: Tx, group_id: str) -> tuple[dict[str, Any], list[str]] | None:
    g = tx.one("SELECT * FROM groups WHERE group_id = ?", group_id)
    if g is None:
        return None
    ids = tx.all("SELECT order_id FROM orders WHERE group_id = ? ORDER BY seq", group_id)
    return g, [r["order_id"] for r in ids]


def _ledger_counts(tx: Tx) -> dict[str, Any]:
    sale = tx.one("SELECT leader_rewards FROM sale WHERE id = 1")
    coupons = {r["coupon_id"]: {"pool": int(r["pool"]), "issued": int(r["issued"]),
                                "per_user": int(r["per_user"])}
               for r in tx.all("SELECT * FROM coupons ORDER BY coupon_id")}
    groups = {s: 0 for s in ("open", "completed", "failed")}
    for r in tx.all("SELECT status, COUNT(*) AS n FROM groups GROUP BY status"):
        groups[r["status"]] = int(r["n"])
    groups["leader_rewards"] = int(sale["leader_rewards"]) if sale else 0
    orders = {s: 0 for s in ("reserved", "paid", "cancelled", "expired", "refunded")}
    for r in tx.all("SELECT status, COUNT(*) AS n FROM orders GROUP BY status"):
        orders[r["status"]] = int(r["n"])
    return {"coupons": coupons, "groups": groups, "orders": orders}


def _export(tx: Tx, kind: str, after: int, limit: int) -> tuple[list[dict], int | None]:
    table = {"orders": "orders", "groups": "groups", "claims": "claims"}[kind]
    rows = tx.all(f"SELECT * FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?", after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if kind == "groups":
        for r in rows:
            ids = tx.all("SELECT order_id FROM orders WHERE group_id = ? ORDER BY seq",
                         r["group_id"])
            r["order_ids"] = [i["order_id"] for i in ids]
    return rows, (int(rows[-1]["seq"]) if more else None)


def _idem_begin(tx: Tx, user_id: str, key: str, fingerprint: str, now: float) -> IdemBegin:
    # a new key (the common case) in one statement; PostgreSQL waits here for a concurrent
    # request under the same key to commit
    if tx.run("INSERT INTO idem (user_id, key, fingerprint, state, started_at) "
              "VALUES (?, ?, ?, 'in_flight', ?) ON CONFLICT DO NOTHING",
              user_id, key, fingerprint, now):
        return IdemBegin("new")
    row = tx.one("SELECT * FROM idem WHERE user_id = ? AND key = ?" + tx.lock, user_id, key)
    if row is None:
        return IdemBegin("in_flight")
    if float(row["started_at"]) < now - IDEMPOTENCY_TTL_SECONDS:  # expired: start afresh
        tx.run("UPDATE idem SET fingerprint = ?, state = 'in_flight', status = NULL, "
               "body = NULL, started_at = ? WHERE user_id = ? AND key = ?",
               fingerprint, now, user_id, key)
        return IdemBegin("new")
    if row["fingerprint"] != fingerprint:
        return IdemBegin("mismatch")
    if row["state"] == "done":
        return IdemBegin("replay", int(row["status"]), str(row["body"]))
    if float(row["started_at"]) < now - IDEMPOTENCY_STALE_SECONDS:
        tx.run("UPDATE idem SET started_at = ? WHERE user_id = ? AND key = ?", now, user_id, key)
        return IdemBegin("new")
    return IdemBegin("in_flight")


def _once(tx: Tx, idem: IdemRequest, op: CreateOp, now: float, record_refusals: bool,
          take_stock: TakeStock) -> IdemBegin:
    begun = _idem_begin(tx, idem.user_id, idem.key, idem.fingerprint, now)
    if begun.state != "new":
        return begun
    tx.run("SAVEPOINT op")
    try:
        row: Any
        if op.kind == "refusal":
            raise op.args[0]
        if op.kind == "reserve":
            row = OrderRow.from_fields(_reserve(tx, *op.args, now, take_stock))
        elif op.kind == "open_group":
            g, ids, order = _open_group(tx, *op.args, now, take_stock)
            row = GroupRow.from_fields(g, ids), OrderRow.from_fields(order)
        else:
            row = ClaimRow.from_fields(_claim(tx, *op.args, now))
        status, body = 201, op.render(row)
    except ApiError as exc:
        if not records_refusal(exc, record_refusals):
            raise  # the whole transaction rolls back: no record of the key
        tx.run("ROLLBACK TO SAVEPOINT op")  # keep the key, undo the half-done change
        status, body = exc.status, json.dumps(exc.body())
    tx.run("RELEASE SAVEPOINT op")
    _idem_finish(tx, idem.user_id, idem.key, status, body)
    return IdemBegin("done", status, body)


def _forget_idempotency(tx: Tx, now: float) -> None:
    """Drop replay records past their TTL (orders stay unique per key regardless)."""
    tx.run("DELETE FROM idem WHERE started_at < ?", now - IDEMPOTENCY_TTL_SECONDS)


def _idem_finish(tx: Tx, user_id: str, key: str, status: int, body: str) -> None:
    tx.run("UPDATE idem SET state = 'done', status = ?, body = ? WHERE user_id = ? AND key = ?",
           status, body, user_id, key)


def _idem_abort(tx: Tx, user_id: str, key: str) -> None:
    tx.run("DELETE FROM idem WHERE user_id = ? AND key = ? AND state = 'in_flight'",
           user_id, key)
