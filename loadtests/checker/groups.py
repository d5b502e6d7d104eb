"""Groups: never more active members than the top size (at the end, and at every moment by
the movement seq), member counts that match the orders, completions that reached the smallest
tier, failed groups refunded once (refund policy) or kept paid (fallback), and no group left
open past its deadline once expiry ran."""

from __future__ import annotations

from collections import Counter

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import orders_by_group
from loadtests.history import History
from loadtests.state import FinalState

templates({
    "group_unknown": "orders {order_ids} name group {group_id}, which is not in the group "
                     "export",
    "group_size_differs": "group {group_id}: export says {field} {seen}, the scenario "
                          "{expected}",
    "group_over_top": "group {group_id}: {active} active members > top size {top} (users "
                      "{users})",
    "group_over_top_seq": "group {group_id}: {members} active members > top size {top} for a "
                          "while, after movement seq {seq} (order {order_id})",
    "group_members": "group {group_id} ({status}): says {seen} member(s), but {expected} of its "
                     "orders are active (reserved or paid)",
    "group_left_reserved": "group {group_id} is {status} but orders {order_ids} are still "
                           "reserved",
    "group_small": "group {group_id} completed with {paid} paid member(s) < min size {need}",
    "group_not_refunded": "group {group_id} failed: paid order {order_id} of {user} is {status} "
                          "with movements {kinds} (want refunded exactly once)",
    "group_fallback_refunded": "group {group_id} failed under the fallback policy, yet order "
                               "{order_id} was refunded",
    "group_open_late": "group {group_id} is still open {late:.1f} s after its deadline, "
                       "although expiry ran",
})


def groups(history: History, state: FinalState, rules: Rules) -> Result:
    """Groups: active members <= top size and equal to the export; completed groups reached
    the smallest tier; a failed group's paid orders were refunded exactly once (refund policy)
    or stayed paid (fallback); closed groups keep no reservation; no open group past its
    deadline once expiry ran."""
    res = Result("groups", "members <= top size at every moment; failed groups' paid orders "
                 "refunded once; closed groups hold no reservation")
    by_group = orders_by_group(state)
    known = {g.group_id for g in state.groups}
    for gid in sorted(set(by_group) - known):
        res.broken("group_unknown", order_ids=[o.order_id for o in by_group[gid]], group_id=gid)
    now = state.ledger.now
    by_seq = state.has_seq
    for g in state.groups:
        res.checked += 1
        gid, status = g.group_id, g.status
        orders = by_group.get(gid, [])
        active = [o for o in orders if o.active]
        top = rules.top_size or g.top_size
        for name, mine in (("top_size", rules.top_size), ("min_size", rules.min_size)):
            seen = getattr(g, name)
            if mine and seen != mine:
                res.broken("group_size_differs", group_id=gid, field=name, seen=seen,
                           expected=mine)
        if len(active) > top:
            res.broken("group_over_top", group_id=gid, active=len(active), top=top,
                       users=sorted(o.user_id for o in active))
        elif by_seq:
            moves = sorted((m.seq, 1 if m.kind == "reserve" else -1, o.order_id)
                           for o in orders for m in o.movements)
            members = 0
            for seq, delta, oid in moves:
                members += delta
                if members > top:
                    res.broken("group_over_top_seq", group_id=gid, members=members, top=top,
                               seq=seq, order_id=oid)
                    break
        if g.members != len(active):
            res.broken("group_members", group_id=gid, status=status, seen=g.members,
                       expected=len(active))
        paid = [o for o in orders if o.status == "paid"]
        if status in ("completed", "failed"):
            left = [o.order_id for o in orders if o.status == "reserved"]
            if left:
                res.broken("group_left_reserved", group_id=gid, status=status, order_ids=left)
        if status == "completed":
            need = rules.min_size or g.min_size
            if len(paid) < need:
                res.broken("group_small", group_id=gid, paid=len(paid), need=need)
        if status == "failed" and rules.failure_policy == "refund":
            for o in orders:
                kinds = [m.kind for m in o.movements]
                if o.status == "paid" or (o.paid_at is not None and kinds.count("refund") != 1):
                    res.broken("group_not_refunded", group_id=gid, order_id=o.order_id,
                               user=o.user_id, status=o.status, kinds=kinds)
        if status == "failed" and rules.failure_policy == "fallback_price":
            for o in orders:
                if o.status == "refunded":
                    res.broken("group_fallback_refunded", group_id=gid, order_id=o.order_id)
        if state.expiry_ran and status == "open" and g.deadline < now:
            res.broken("group_open_late", group_id=gid, late=now - g.deadline)
    outcomes = Counter(g.status for g in state.groups)
    res.note = ", ".join(f"{outcomes[s]} {s}" for s in ("open", "completed", "failed"))
    if not by_seq:
        res.add_note("members over time not checked (no movement seq, contract 1.1)")
    return res
