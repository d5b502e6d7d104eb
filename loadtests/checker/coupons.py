"""Coupons: never more issued than the pool or than a user may hold, and never spent without
a claim of the buyer's own behind it (a claim is used by one order, and stays used)."""

from __future__ import annotations

from collections import Counter

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import orders_by_id
from loadtests.history import History
from loadtests.state import FinalState

templates({
    "coupon_rule_differs": "coupon {coupon_id}: ledger {field} {seen} != scenario {field} "
                           "{expected}",
    "coupon_over_issued": "coupon {coupon_id} over-issued: {claims} claims for a pool of {pool}",
    "coupon_issued_differs": "coupon {coupon_id}: ledger issued {seen}, claim export {expected}",
    "coupon_ledger_over": "coupon {coupon_id}: ledger issued {issued} > pool {pool}",
    "coupon_user_over": "user {user} claimed coupon {coupon_id} {claims} times (per-user limit "
                        "{limit})",
    "coupon_unbacked": "user {user} has {orders} order(s) using coupon {coupon_id} but "
                       "{claims} claim(s)",
    "claim_misused": "claim {claim_id} of {user} says order {order_id} used coupon {coupon_id}, "
                     "but that order {why}",
})


def coupons(history: History, state: FinalState, rules: Rules) -> Result:
    """Coupons: claims <= pool and <= per-user limit; the ledger's issued equals the claims;
    every order using a coupon has a claim of its own behind it; a claim's order used it."""
    res = Result("coupons", "coupons issued <= pool and <= per-user limit; every coupon used "
                 "was claimed")
    claims = Counter(c.coupon_id for c in state.claims)
    per_user = Counter((c.coupon_id, c.user_id) for c in state.claims)
    ledger = state.ledger.coupons
    for cid in sorted(set(rules.coupons) | set(ledger) | set(claims)):
        res.checked += 1
        row = ledger.get(cid)
        # The scenario's rules are the truth; the ledger's copy is only checked against them.
        if cid in rules.coupons:
            pool, limit = rules.coupons[cid]
            if row is not None:
                for name, mine in (("pool", pool), ("per_user", limit)):
                    if getattr(row, name) != mine:
                        res.broken("coupon_rule_differs", coupon_id=cid, field=name,
                                   seen=getattr(row, name), expected=mine)
        elif row is not None:
            pool, limit = row.pool, row.per_user
        else:
            pool = limit = None
        if pool is not None and claims[cid] > pool:
            res.broken("coupon_over_issued", coupon_id=cid, claims=claims[cid], pool=pool)
        if row is not None and row.issued != claims[cid]:
            res.broken("coupon_issued_differs", coupon_id=cid, seen=row.issued,
                       expected=claims[cid])
        if pool is not None and row is not None and row.issued > pool:
            res.broken("coupon_ledger_over", coupon_id=cid, issued=row.issued, pool=pool)
        if limit is not None:
            for (c2, user), n in sorted(per_user.items()):
                if c2 == cid and n > limit:
                    res.broken("coupon_user_over", user=user, coupon_id=cid, claims=n,
                               limit=limit)
    # A claim is used by the first order naming its coupon and stays used (CONTRACT 1.1), so
    # orders naming a coupon, whatever their status, never outnumber the user's claims of it.
    used = Counter((o.coupon_id, o.user_id) for o in state.orders if o.coupon_id)
    for (cid, user), n in sorted(used.items()):
        res.checked += 1
        if n > per_user[(cid, user)]:
            res.broken("coupon_unbacked", user=user, orders=n, coupon_id=cid,
                       claims=per_user[(cid, user)])
    orders = orders_by_id(state)
    for c in state.claims:
        if c.order_id is None:
            continue
        res.checked += 1
        o = orders.get(c.order_id)
        if o is None or o.coupon_id != c.coupon_id or o.user_id != c.user_id:
            res.broken("claim_misused", claim_id=c.claim_id, user=c.user_id,
                       order_id=c.order_id, coupon_id=c.coupon_id,
                       why="does not exist" if o is None else "is not theirs with that coupon")
    return res
