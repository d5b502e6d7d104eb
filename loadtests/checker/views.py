"""Indexes over the history and the final state, built once per check and shared by every
invariant (so the whole check stays linear in the history's size), and the real-time bounds
the history gives each order.

Real-time bounds use the load generator's clock only, never the server's: an order's reserve
happened no earlier than the first request under its idempotency key was sent (`reserve_lo`)
and no later than the first answer acknowledging it arrived (`reserve_hi`); a release no later
than an acknowledged cancel of it (`release_hi`). Orders no request explains get -inf / +inf:
anything is possible, so nothing is concluded from them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from loadtests.history import History, Op
from loadtests.state import Claim, FinalState, Group, Order

T = TypeVar("T")
INF = math.inf


def _memo(obj: Any, name: str, build: Callable[[], T]) -> T:
    # Cached on the object itself (a frozen dataclass's __dict__ is writable directly), so a
    # view lives exactly as long as the history or state it indexes.
    d = obj.__dict__
    if name not in d:
        d[name] = build()
    return d[name]


Key = tuple[str, str | None]


# --- history -------------------------------------------------------------------------------

def creates_by_key(h: History) -> dict[Key, list[Op]]:
    """(user, idempotency key) -> every create request sent under it, in start order."""
    def build() -> dict[Key, list[Op]]:
        out: dict[Key, list[Op]] = defaultdict(list)
        for op in h.ops:
            if op.creates:
                out[(op.user, op.key)].append(op)
        return dict(out)
    return _memo(h, "_v_creates", build)


def claims_by_key(h: History) -> dict[Key, list[Op]]:
    """(user, idempotency key) -> every claim request sent under it."""
    def build() -> dict[Key, list[Op]]:
        out: dict[Key, list[Op]] = defaultdict(list)
        for op in h.ops:
            if op.op == "claim":
                out[(op.user, op.key)].append(op)
        return dict(out)
    return _memo(h, "_v_claims", build)


def first_start(ops: list[Op]) -> float:
    return min(op.start for op in ops) if ops else -INF


def order_acks(h: History) -> dict[str, float]:
    """Order id -> when the first answer acknowledging its creation arrived."""
    def build() -> dict[str, float]:
        out: dict[str, float] = {}
        for op in h.ops:
            if op.creates and op.outcome == "ok" and op.order_id is not None:
                prev = out.get(op.order_id)
                if prev is None or op.end < prev:
                    out[op.order_id] = op.end
        return out
    return _memo(h, "_v_acks", build)


def claim_acks(h: History) -> dict[str, Op]:
    """Claim id -> the first request acknowledged with it."""
    def build() -> dict[str, Op]:
        out: dict[str, Op] = {}
        for op in h.ops:
            if op.op == "claim" and op.outcome == "ok" and op.claim_id is not None:
                prev = out.get(op.claim_id)
                if prev is None or op.end < prev.end:
                    out[op.claim_id] = op
        return out
    return _memo(h, "_v_claim_acks", build)


def by_order(h: History, kind: str) -> dict[str, list[Op]]:
    """Order id -> every `kind` (pay, cancel, view_order) request naming it."""
    def build() -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = defaultdict(list)
        for op in h.ops:
            if op.op == kind and op.order_id is not None:
                out[op.order_id].append(op)
        return dict(out)
    return _memo(h, f"_v_by_order_{kind}", build)


# --- state ---------------------------------------------------------------------------------

def orders_by_id(s: FinalState) -> dict[str, Order]:
    return _memo(s, "_v_orders", lambda: {o.order_id: o for o in s.orders})


def orders_by_key(s: FinalState) -> dict[Key, list[Order]]:
    def build() -> dict[Key, list[Order]]:
        out: dict[Key, list[Order]] = defaultdict(list)
        for o in s.orders:
            out[(o.user_id, o.idempotency_key)].append(o)
        return dict(out)
    return _memo(s, "_v_orders_by_key", build)


def groups_by_id(s: FinalState) -> dict[str, Group]:
    return _memo(s, "_v_groups", lambda: {g.group_id: g for g in s.groups})


def orders_by_group(s: FinalState) -> dict[str, list[Order]]:
    def build() -> dict[str, list[Order]]:
        out: dict[str, list[Order]] = defaultdict(list)
        for o in s.orders:
            if o.group_id is not None:
                out[o.group_id].append(o)
        return dict(out)
    return _memo(s, "_v_orders_by_group", build)


def claim_of_order(s: FinalState) -> dict[str, Claim]:
    """Order id -> the claim that order used (by the claim export's `order_id`)."""
    def build() -> dict[str, Claim]:
        out: dict[str, Claim] = {}
        for c in s.claims:
            if c.order_id is not None:
                out.setdefault(c.order_id, c)
        return out
    return _memo(s, "_v_claim_of_order", build)


# --- real-time bounds ----------------------------------------------------------------------

def key_starts(h: History) -> dict[Key, float]:
    """(user, key) -> when the first create request under it was sent."""
    def build() -> dict[Key, float]:
        out: dict[Key, float] = {}
        for op in h.ops:
            if op.creates:
                k = (op.user, op.key)
                prev = out.get(k)
                if prev is None or op.start < prev:
                    out[k] = op.start
        return out
    return _memo(h, "_v_key_starts", build)


def reserve_lo(h: History, o: Order) -> float:
    """The earliest moment this order's reserve can have happened: when the first request
    under its key was sent (-inf when no request in the history explains it)."""
    return key_starts(h).get((o.user_id, o.idempotency_key), -INF)


def reserve_hi(h: History, o: Order) -> float:
    """The latest moment by which this order's reserve had happened: its first
    acknowledgement (+inf when it was never acknowledged)."""
    return order_acks(h).get(o.order_id, INF)


def release_hi(h: History, o: Order) -> float:
    """By when its release had happened: the first acknowledged cancel of it (+inf when none
    was acknowledged, e.g. an expiry, a refund or a group closing)."""
    best = INF
    for op in by_order(h, "cancel").get(o.order_id, ()):
        if op.outcome == "ok" and op.end < best:
            best = op.end
    return best


def claim_lo(h: History, c: Claim) -> float:
    """The earliest moment a claim can have been made: the first request under the key that
    got it (by claim id, else by the 1.2 export's key), -inf when none explains it."""
    ack = claim_acks(h).get(c.claim_id)
    if ack is not None:
        return first_start(claims_by_key(h).get((ack.user, ack.key), [ack]))
    if c.idempotency_key is not None:
        ops = claims_by_key(h).get((c.user_id, c.idempotency_key))
        if ops:
            return first_start(ops)
    return -INF
