"""Deadlines: no payment at or after an order's `expires_at` (nor after its group's deadline),
and no reservation still held past its deadline once expiry ran.

Two independent proofs of a late payment. By the server's own clock: `paid_at >= expires_at`
(or `>= deadline` of the order's group). By the history's durations, which need no clock to
agree with the server's: the reserve happened no later than its acknowledgement arrived
(`reserve_hi`), and the payment no earlier than the pay request was sent; when every pay
request of the order that was not refused was sent at least the payment timeout after
`reserve_hi`, the payment came at or after the deadline (likewise a group's window from its
open request's acknowledgement). That catches a server that accepts a late payment because
its expiry sweep had not run yet, whatever timestamps it writes.
"""

from __future__ import annotations

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import by_order, groups_by_id, order_acks, reserve_hi
from loadtests.history import History
from loadtests.state import FinalState

SLEW = 0.001
"""Seconds of allowance for the two clocks ticking at slightly different rates."""

templates({
    "paid_late": "order {order_id} of {user} was paid at {paid_at:.3f}, {late:.3f} s at or "
                 "after its deadline {deadline:.3f}",
    "paid_after_group": "order {order_id} of {user} was paid at {paid_at:.3f}, {late:.3f} s at "
                        "or after group {group_id}'s deadline {deadline:.3f}",
    "paid_late_by_history": "order {order_id} of {user}: every pay request was sent at least "
                            "{after:.3f} s after its reservation was acknowledged (payment "
                            "timeout {timeout:g} s), yet it was paid",
    "paid_after_group_by_history": "order {order_id} of {user}: every pay request was sent at "
                                   "least {after:.3f} s after group {group_id} was "
                                   "acknowledged open (window {window:g} s), yet it was paid",
    "held_late": "order {order_id} of {user} still reserved {late:.1f} s after its deadline",
})


def payment_deadlines(history: History, state: FinalState, rules: Rules) -> Result:
    """No order was paid at or after its payment deadline or its group's deadline."""
    res = Result("payment_deadlines", "no payment at or after the order's expires_at or its "
                 "group's deadline (by the server's clock and by the history's durations)")
    groups = groups_by_id(state)
    pays = by_order(history, "pay")
    acks = order_acks(history)
    opened = {op.group_id: op.end for op in history.ops
              if op.op == "open_group" and op.outcome == "ok" and op.group_id}
    for o in state.orders:
        if not o.ever_paid:
            continue
        res.checked += 1
        if o.paid_at is not None and o.paid_at >= o.expires_at:
            res.broken("paid_late", order_id=o.order_id, user=o.user_id, paid_at=o.paid_at,
                       late=o.paid_at - o.expires_at, deadline=o.expires_at)
        g = groups.get(o.group_id) if o.group_id else None
        if g is not None and o.paid_at is not None and o.paid_at >= g.deadline:
            res.broken("paid_after_group", order_id=o.order_id, user=o.user_id,
                       paid_at=o.paid_at, late=o.paid_at - g.deadline, group_id=g.group_id,
                       deadline=g.deadline)
        sent = [p.start for p in pays.get(o.order_id, ()) if p.outcome != "fail"
                and p.user == o.user_id]
        if not sent:
            continue
        first = min(sent)
        acked = reserve_hi(history, o) if o.order_id in acks else None
        if rules.payment_timeout is not None and acked is not None and \
                first - acked >= rules.payment_timeout + SLEW:
            res.broken("paid_late_by_history", order_id=o.order_id, user=o.user_id,
                       after=first - acked, timeout=rules.payment_timeout)
        g_acked = opened.get(o.group_id) if o.group_id else None
        if rules.group_window is not None and g_acked is not None and \
                first - g_acked >= rules.group_window + SLEW:
            res.broken("paid_after_group_by_history", order_id=o.order_id, user=o.user_id,
                       after=first - g_acked, group_id=o.group_id, window=rules.group_window)
    if rules.payment_timeout is None:
        res.note = "payment timeout unknown: checked by the server's clock only"
    return res


def expiry(history: History, state: FinalState, rules: Rules) -> Result:
    """After expiry ran, no reservation is still held past its payment deadline."""
    res = Result("expiry", "no reservation held past its payment deadline once expiry ran")
    if not state.expiry_ran:
        res.note = "expiry was not run after the deadlines, so nothing to check (--expire)"
        return res
    now = state.ledger.now
    for o in state.orders:
        if o.status != "reserved":
            continue
        res.checked += 1
        if o.expires_at < now:
            res.broken("held_late", order_id=o.order_id, user=o.user_id,
                       late=now - o.expires_at)
    return res
