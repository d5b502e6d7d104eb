"""Liveness: no refusal the history proves unjustified, and no run where buyers asked while
stock was there and nothing was sold.

"Provably" means: for every moment at which the server can have decided the refusal, the
state it must have seen allowed the request. A refusal was decided between the first request
under its idempotency key being sent (a later retry may replay that first decision) and the
refusal arriving: the window [s, e]. Conservatively:

- an order's reserve may have happened any time after its first request was sent; it is
  known to have happened by the time it was acknowledged. Releases are known to have happened
  only by an acknowledged cancel; expiries, refunds and group closings may have happened at
  any time. Orders and claims no request explains may have existed all along.
- `limit_reached`: the user's units of the SKU that may have been held in the window (every
  order possibly reserved before e, less those known released before s) plus the request's
  quantity are within the limit. Coupons likewise, per user and per pool.
- `group_full`: fewer members than the top size may have been in the group.
- `sold_out`: with the store's movement `seq` (contract 1.2), stock is replayed exactly; the
  refusal sat after every movement acknowledged before s and before every movement whose
  request was sent after e, and stock was at least the quantity at every such position.
  Without `seq` (1.1): the units possibly held, as for limits, left the quantity free.
- `order_closed` on the owner's payment of a single-buyer order sent so soon after the
  reservation's first request that the payment timeout cannot have passed, with no cancel
  sent before; `group_closed` on a join sent before the group's window can have ended, for a
  group that never completed; `forbidden` / `not_found` on the owner's own acknowledged order.

When in doubt, no alarm.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.inventory import seq_replay
from loadtests.checker.views import (
    INF,
    by_order,
    claim_lo,
    claims_by_key,
    creates_by_key,
    first_start,
    groups_by_id,
    orders_by_group,
    orders_by_id,
    release_hi,
    reserve_hi,
    reserve_lo,
)
from loadtests.history import History, Op
from loadtests.state import FinalState, Order

templates({
    "wrong_sold_out": "{user} was refused sold_out for {quantity} x {sku} (sent {sent:.3f}, "
                      "refused {refused:.3f}), but at least {free} unit(s) were free "
                      "throughout{how}",
    "wrong_limit": "{user} was refused limit_reached for {quantity} x {sku} (sent {sent:.3f}, "
                   "refused {refused:.3f}), but held at most {held} of the limit {limit}",
    "wrong_coupon_limit": "{user} was refused limit_reached claiming coupon {coupon_id}, but "
                          "held at most {held} of {limit} per user",
    "wrong_group_full": "{user} was refused group_full joining group {group_id} (refused "
                        "{refused:.3f}), but it had at most {members} of {top} members",
    "wrong_exhausted": "{user} was refused coupon_exhausted for coupon {coupon_id} (refused "
                       "{refused:.3f}), but at most {claims} of {pool} had been claimed",
    "wrong_order_closed": "{user}'s payment of order {order_id} was refused order_closed "
                          "{elapsed:.3f} s after the reservation was first sent (timeout "
                          "{timeout:g} s), and no cancel had been sent",
    "wrong_group_closed": "{user} was refused group_closed joining group {group_id} "
                          "{elapsed:.3f} s after it was first asked for (window {window:g} s); "
                          "it never completed",
    "wrong_not_yours": "{user} was refused {code} on {op} of their own order {order_id}, "
                       "acknowledged to them before",
    "nothing_reserved": "buyers' {asked} answered request(s) for {sku}, which had {stock} "
                        "unit(s), made not one order",
    "nothing_paid": "owners sent {sent} payment(s) in time for {orders} order(s), and not one "
                    "order was ever paid",
})


@dataclass(frozen=True, slots=True)
class Window:
    """When a refusal can have been decided: from the first request under its key to it."""

    s: float
    e: float


def _window(op: Op, history: History) -> Window:
    keyed = claims_by_key(history) if op.op == "claim" else creates_by_key(history)
    return Window(min(first_start(keyed.get((op.user, op.key), [op])), op.start), op.end)


class _Bound:
    """Units (or members, or claims) that may have been held at a moment in a window: a sum of
    those possibly taken before e, less those known given back before s."""

    def __init__(self) -> None:
        self.taken: list[tuple[float, int]] = []
        self.back: list[tuple[float, int]] = []
        self._ready = False

    def add(self, lo: float, q: int, released_by: float) -> None:
        self.taken.append((lo, q))
        if released_by < INF:
            self.back.append((released_by, q))

    def _prepare(self) -> None:
        self.taken.sort()
        self.back.sort()
        self._t = [t for t, _ in self.taken]
        self._b = [t for t, _ in self.back]
        self._tq = [0, *np.cumsum([q for _, q in self.taken]).tolist()]
        self._bq = [0, *np.cumsum([q for _, q in self.back]).tolist()]
        self._ready = True

    def most(self, w: Window) -> int:
        if not self._ready:
            self._prepare()
        # Taken no later than e (a tie may go either way), given back strictly before s.
        return (self._tq[bisect.bisect_right(self._t, w.e)]
                - self._bq[bisect.bisect_left(self._b, w.s)])


def _released_by(history: History, o: Order) -> float:
    """By when the order's stock came back, if the history shows it (else +inf)."""
    if not any(m.kind != "reserve" for m in o.movements):
        return INF
    return release_hi(history, o)


class _SeqStock:
    """One SKU's stock replayed by movement seq, with the positions a window can fall in."""

    def __init__(self, history: History, initial: int,
                 moves: list[tuple[int, int, str, str]], orders: dict[str, Order]) -> None:
        n = len(moves)
        deltas = np.array([d for _, d, _, _ in moves], dtype=np.int64)
        self.avail = np.concatenate(([initial], initial - np.cumsum(deltas))).astype(np.int64)
        los, his = np.empty(n), np.empty(n)
        for i, (_, _, oid, kind) in enumerate(moves):
            o = orders[oid]
            los[i] = reserve_lo(history, o)
            his[i] = (reserve_hi(history, o) if kind == "reserve" else
                      release_hi(history, o) if kind == "release" else INF)
        # L(s): positions after every movement acknowledged before s.
        order = np.argsort(his, kind="stable")
        self._hi = his[order]
        self._after = np.maximum.accumulate(order + 1) if n else np.array([], dtype=np.int64)
        # U(e): positions before every movement whose request was sent after e.
        order = np.argsort(los, kind="stable")
        self._lo = los[order]
        self._before = (np.minimum.accumulate(order[::-1])[::-1] if n
                        else np.array([], dtype=np.int64))
        self._n = n
        self._table = [self.avail]
        k = 1
        while 2 * k <= n + 1:
            prev = self._table[-1]
            self._table.append(np.minimum(prev[:-k], prev[k:]))
            k *= 2

    def least_free(self, w: Window) -> int | None:
        """The least stock available at any position the window allows (None: no position
        fits, the seq contradicts the clients' order; `stock_movements` reports that)."""
        i = int(np.searchsorted(self._hi, w.s, side="left"))
        lo = int(self._after[i - 1]) if i > 0 else 0
        j = int(np.searchsorted(self._lo, w.e, side="right"))
        hi = int(self._before[j]) if j < self._n else self._n
        if lo > hi:
            return None
        k = (hi - lo + 1).bit_length() - 1
        row = self._table[k]
        return int(min(row[lo], row[hi - (1 << k) + 1]))


def wrongful_refusals(history: History, state: FinalState, rules: Rules) -> Result:
    """No refusal the history proves unjustified (see the module doc for "proves")."""
    res = Result("no_wrongful_refusal", "no refusal the history proves unjustified: sold_out "
                 "with stock free, limit_reached under the limit, group_full with a seat free, "
                 "coupon_exhausted with coupons left, a payment in time refused")
    orders = orders_by_id(state)
    by_seq = state.has_seq
    stock: dict[str, _Bound] = defaultdict(_Bound)
    held: dict[tuple[str, str], _Bound] = defaultdict(_Bound)
    seats: dict[str, _Bound] = defaultdict(_Bound)
    for o in state.orders:
        lo, back = reserve_lo(history, o), _released_by(history, o)
        held[(o.user_id, o.sku_id)].add(lo, o.quantity, back)
        if not by_seq:
            stock[o.sku_id].add(lo, o.quantity, back)
        if o.group_id is not None:
            seats[o.group_id].add(lo, 1, back)
    pool: dict[str, _Bound] = defaultdict(_Bound)
    mine: dict[tuple[str, str], _Bound] = defaultdict(_Bound)
    for c in state.claims:
        lo = claim_lo(history, c)
        pool[c.coupon_id].add(lo, 1, INF)
        mine[(c.user_id, c.coupon_id)].add(lo, 1, INF)
    replays: dict[str, _SeqStock] = {}
    if by_seq:
        for sku, moves in seq_replay(state.orders).items():
            row = state.ledger.skus.get(sku)
            init = rules.stock.get(sku, row.initial if row else 0)
            replays[sku] = _SeqStock(history, init, moves, orders)
    refused = 0
    for op in history.ops:
        if op.outcome != "fail" or op.probe is not None:
            continue
        code = op.code
        if op.creates and code in ("sold_out", "limit_reached", "group_full", "group_closed"):
            refused += 1
            _create_refusal(op, _window(op, history), history, state, rules, res, stock, held,
                            seats, replays)
        elif op.op == "claim" and code in ("coupon_exhausted", "limit_reached"):
            refused += 1
            _claim_refusal(op, _window(op, history), rules, res, pool, mine)
        elif op.op in ("pay", "cancel") and code in ("order_closed", "forbidden", "not_found"):
            o = orders.get(op.order_id) if op.order_id else None
            if o is not None and o.user_id == op.user:
                refused += 1
                _own_order_refusal(op, o, history, rules, res)
    res.note = (f"{refused} refusal(s) examined; stock "
                + ("replayed by movement seq" if by_seq else
                   "bounded by the history alone (no movement seq, contract 1.1)"))
    return res


def _create_refusal(op: Op, w: Window, history: History, state: FinalState, rules: Rules,
                    res: Result,
                    stock: dict[str, _Bound], held: dict[tuple[str, str], _Bound],
                    seats: dict[str, _Bound], replays: dict[str, _SeqStock]) -> None:
    q, sku = op.quantity or 1, op.sku_id
    if sku is None:
        return
    res.checked += 1
    base = dict(user=op.user, quantity=q, sku=sku, sent=w.s, refused=w.e)
    if op.code == "sold_out":
        if sku in replays:
            free = replays[sku].least_free(w)
            how = " (stock replayed by movement seq)"
        elif state.has_seq:  # no movement of this SKU at all: nothing was ever taken
            free, how = rules.stock.get(sku), ""
        else:
            init = rules.stock.get(sku)
            free = None if init is None else init - stock[sku].most(w)
            how = " (bounded by the history)"
        if free is not None and free >= q:
            res.broken("wrong_sold_out", free=free, how=how, **base)
    elif op.code == "limit_reached":
        most = held[(op.user, sku)].most(w)
        if most + q <= rules.per_user_limit:
            res.broken("wrong_limit", held=most, limit=rules.per_user_limit, **base)
    elif op.code == "group_full" and op.group_id is not None:
        top = rules.top_size
        g = groups_by_id(state).get(op.group_id)
        if g is not None and top:
            members = seats[op.group_id].most(w)
            if members < top:
                res.broken("wrong_group_full", user=op.user, group_id=op.group_id,
                           refused=w.e, members=members, top=top)
    elif op.code == "group_closed" and op.group_id is not None:
        g = groups_by_id(state).get(op.group_id)
        window = rules.group_window
        if g is None or g.status == "completed" or window is None:
            return
        leader = [o for o in orders_by_group(state).get(op.group_id, ())
                  if o.user_id == g.leader_id]
        opened = min((reserve_lo(history, o) for o in leader), default=-INF)
        if opened > -INF and w.e - opened < window:
            res.broken("wrong_group_closed", user=op.user, group_id=op.group_id,
                       elapsed=w.e - opened, window=window)


def _claim_refusal(op: Op, w: Window, rules: Rules, res: Result, pool: dict[str, _Bound],
                   mine: dict[tuple[str, str], _Bound]) -> None:
    cid = op.coupon_id
    if cid is None or cid not in rules.coupons:
        return
    size, per_user = rules.coupons[cid]
    res.checked += 1
    if op.code == "coupon_exhausted":
        n = pool[cid].most(w)
        if n < size:
            res.broken("wrong_exhausted", user=op.user, coupon_id=cid, refused=w.e, claims=n,
                       pool=size)
    else:
        n = mine[(op.user, cid)].most(w)
        if n < per_user:
            res.broken("wrong_coupon_limit", user=op.user, coupon_id=cid, held=n,
                       limit=per_user)


def _own_order_refusal(op: Op, o: Order, history: History, rules: Rules,
                       res: Result) -> None:
    res.checked += 1
    if op.code in ("forbidden", "not_found"):
        if op.start > reserve_hi(history, o):
            res.broken("wrong_not_yours", user=op.user, code=op.code, op=op.op,
                       order_id=o.order_id)
        return
    if op.op != "pay" or o.group_id is not None or rules.payment_timeout is None:
        return
    lo = reserve_lo(history, o)
    cancelled = any(c.start < op.end and c.outcome != "fail"
                    for c in by_order(history, "cancel").get(o.order_id, ()))
    if lo > -INF and not cancelled and op.end - lo < rules.payment_timeout:
        res.broken("wrong_order_closed", user=op.user, order_id=o.order_id,
                   elapsed=op.end - lo, timeout=rules.payment_timeout)


def progress(history: History, state: FinalState, rules: Rules) -> Result:
    """A run where buyers asked for a SKU that had stock and no order was made, or where
    owners paid in time and no order was ever paid, fails."""
    res = Result("progress", "buyers who asked while stock was there got orders, and payments "
                 "sent in time paid something")
    asked: dict[str, int] = defaultdict(int)
    for op in history.ops:
        # Answered requests only: one that got no answer may never have reached the server.
        if op.creates and op.probe is None and op.sku_id is not None and \
                op.outcome != "unknown":
            asked[op.sku_id] += 1
    made = {o.sku_id for o in state.orders}
    for sku, n in sorted(asked.items()):
        stock = rules.stock.get(sku, 0)
        if stock <= 0:
            continue
        res.checked += 1
        if sku not in made:
            res.broken("nothing_reserved", asked=n, sku=sku, stock=stock)
    timeout = rules.payment_timeout
    if timeout is not None:
        in_time: set[str] = set()
        sent = 0
        orders = orders_by_id(state)
        for op in history.ops:
            if op.op != "pay" or op.probe is not None or op.order_id is None:
                continue
            o = orders.get(op.order_id)
            if o is None or o.user_id != op.user or o.group_id is not None:
                continue
            lo = reserve_lo(history, o)
            if lo > -INF and op.end - lo < timeout:
                sent += 1
                in_time.add(o.order_id)
        if in_time:
            res.checked += 1
            if not any(o.ever_paid for o in state.orders):
                res.broken("nothing_paid", sent=sent, orders=len(in_time))
    return res
