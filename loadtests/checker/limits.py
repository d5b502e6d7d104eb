"""Per-user limits over time: reserved + paid units per user per SKU never exceed the limit,
at the end or at any moment (by the store's movement seq; 1.1 fallback: by timestamps with
slack, see `inventory`)."""

from __future__ import annotations

from collections import Counter, defaultdict

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.inventory import AT_NOTE, SEQ_NOTE, peak_by_at
from loadtests.checker.views import order_acks
from loadtests.history import History
from loadtests.state import FinalState, Order

templates({
    "user_over_limit": "user {user} holds {held} unit(s) of {sku} (limit {limit})",
    "user_over_limit_seq": "user {user} held {held} unit(s) of {sku} for a while (limit "
                           "{limit}) after movement seq {seq} (order {order_id})",
    "user_over_limit_at": "user {user} held {held} unit(s) of {sku} for a while (limit "
                          "{limit}) at {at:.3f} (by their orders' timestamps)",
})


def per_user_limits(history: History, state: FinalState, rules: Rules) -> Result:
    """Per user and SKU, reserved + paid units never exceed the per-user limit."""
    limit = rules.per_user_limit
    res = Result("per_user_limits", f"reserved + paid units per user per SKU <= {limit}, at "
                 "the end and at every moment")
    held: Counter[tuple[str, str]] = Counter()
    by_pair: dict[tuple[str, str], list[Order]] = defaultdict(list)
    for o in state.orders:
        by_pair[(o.user_id, o.sku_id)].append(o)
        if o.active:
            held[(o.user_id, o.sku_id)] += o.quantity
    for (user, sku), n in sorted(held.items()):
        res.checked += 1
        if n > limit:
            res.broken("user_over_limit", user=user, held=n, sku=sku, limit=limit)
    by_seq = state.has_seq
    acked = order_acks(history)
    for (user, sku), orders in sorted(by_pair.items()):
        res.checked += 1
        if held[(user, sku)] > limit:
            continue  # already reported at the end
        if by_seq:
            moves = sorted((m.seq, m.quantity if m.kind == "reserve" else -m.quantity,
                            o.order_id) for o in orders for m in o.movements)
            now = 0
            for seq, delta, oid in moves:
                now += delta
                if now > limit:
                    res.broken("user_over_limit_seq", user=user, held=now, sku=sku,
                               limit=limit, seq=seq, order_id=oid)
                    break
        else:
            peak, when = peak_by_at(orders, acked)
            if peak > limit:
                res.broken("user_over_limit_at", user=user, held=peak, sku=sku, limit=limit,
                           at=when)
    res.note = SEQ_NOTE if by_seq else AT_NOTE
    return res
