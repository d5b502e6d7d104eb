"""Money and rules: every amount is what the shared pricing function (`campaign.pricing`) says
for that request; gifts go to exactly the first N payments; leader rewards to completed groups
only; refunds only to failed groups under the refund policy.

Prices are recomputed from the scenario, never taken from the server: the time discount at the
order's creation (hours since the sale start), the `ordinary` member tier (CONTRACT 1.1: a
token carries no tier), the best spend threshold, the coupon only when the claim export shows
this user's claim used by this very order, and in a group the smallest tier's price until the
group completes (then the tier its paid members reached) or fails (then the fallback price,
under that policy).

"First N" is decided by the order's `paid_seq` (contract 1.2), the payment's rank. Without it
(1.1) the checker can count the gifts (exactly min(N, orders ever paid)) and prove an order
wrong only when the history shows it: a payment acknowledged before a gifted order's first
payment request was sent, yet left without a gift.
"""

from __future__ import annotations

import math
from collections import Counter

from campaign.pricing import PriceContext, price_order
from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import by_order, claim_of_order, groups_by_id, orders_by_group
from loadtests.history import History
from loadtests.state import FinalState, Order

templates({
    "price_unknown_sku": "order {order_id}: sku {sku} is not in the scenario",
    "price_unknown_coupon": "order {order_id}: coupon {coupon_id} is not in the scenario",
    "price": "order {order_id} of {user} ({how}): amount {seen}, but pricing says {expected}",
    "price_group": "order {order_id} of {user} ({how}): amount {seen}, but pricing says "
                   "{expected}",
    "price_coupon": "order {order_id} of {user} ({how}): amount {seen}, but pricing says "
                    "{expected}",
    "price_unbacked_coupon": "order {order_id} of {user} ({how}): amount {seen}, but pricing "
                             "says {expected}",
    "list_price": "order {order_id}: list_amount {seen}, but the list price of {quantity} x "
                  "{sku} is {expected}",
    "too_many_gifts": "{gifts} orders got the first-{n} gift (at most {n})",
    "gift_count": "{gifts} orders got the first-{n} gift, but {paid} were paid: want {expected}",
    "gift_unpaid": "order {order_id} got a gift but was never paid",
    "paid_seq_duplicate": "paid_seq {paid_seq} was given to {count} orders {order_ids}",
    "paid_seq_gaps": "paid_seq of {paid} paid orders runs {lo}..{hi} with {gaps} gap(s) "
                     "(want 1..{paid}, dense)",
    "paid_seq_unpaid": "order {order_id} was never paid but has paid_seq {paid_seq}",
    "gift_vs_seq": "order {order_id}: paid_seq {paid_seq}, gift {gift} (want gift exactly for "
                   "paid_seq <= {n})",
    "paid_seq_vs_time": "order {later}'s payment (paid_seq {later_seq}) was acknowledged at "
                        "{acked:.3f}, before order {earlier}'s first pay request (paid_seq "
                        "{earlier_seq}, a lower rank) was sent at {sent:.3f}",
    "gift_vs_time": "order {late} got the first-{n} gift, but order {early}'s payment was "
                    "acknowledged at {acked:.3f}, before {late}'s first pay request was sent at "
                    "{sent:.3f}, and got none",
    "leader_rewards_count": "ledger counts {seen} leader reward(s) for {expected} completed "
                            "group(s)",
    "leader_reward": "group {group_id} ({status}): leader_reward {seen} fen, want {expected}",
    "refund_wrong": "order {order_id} of {user} was refunded, but {why}",
    "refund_unpaid": "order {order_id} was refunded but never paid",
})


def _group_price_context(o: Order, state: FinalState, rules: Rules) -> tuple[int | None, bool,
                                                                            str]:
    """(members to price at, fallback?, words) for an order, from its group's outcome."""
    if o.group_id is None:
        return None, False, "single buyer"
    g = groups_by_id(state).get(o.group_id)
    if g is not None and o.status == "paid":
        if g.status == "completed":
            paid = sum(1 for m in orders_by_group(state).get(o.group_id, ())
                       if m.status == "paid")
            return paid, False, f"group {o.group_id} completed with {paid} paid"
        if g.status == "failed" and rules.failure_policy == "fallback_price":
            return 0, True, f"group {o.group_id} failed: fallback price"
    return rules.min_size, False, f"group {o.group_id} at its smallest tier"


def prices(history: History, state: FinalState, rules: Rules) -> Result:
    """Every order's amount (and list amount) equals `campaign.pricing.price_order` for its
    request, its own used coupon, and its group's outcome."""
    res = Result("prices", "every amount equals the shared pricing function's price for the "
                 "request, the buyer's own claimed coupon and the group's final tier")
    c = rules.campaign
    if c is None:
        res.skipped = "no campaign rules to price with"
        return res
    if c.time_discounts and rules.start is None:
        res.skipped = ("the sale start is unknown (no plan.json and a contract 1.1 ledger), "
                       "so time discounts cannot be priced")
        return res
    claims = claim_of_order(state)
    cache: dict[tuple[object, ...], tuple[int, int]] = {}
    for o in state.orders:
        res.checked += 1
        try:
            sku = c.sku(o.sku_id)
        except KeyError:
            res.broken("price_unknown_sku", order_id=o.order_id, sku=o.sku_id)
            continue
        coupon = None
        claim = claims.get(o.order_id)
        if o.coupon_id and claim is not None and claim.user_id == o.user_id and \
                claim.coupon_id == o.coupon_id:
            try:
                coupon = c.coupon(o.coupon_id)
            except KeyError:
                res.broken("price_unknown_coupon", order_id=o.order_id, coupon_id=o.coupon_id)
                continue
        members, fallback, how = _group_price_context(o, state, rules)
        hour = max(0.0, (o.created_at - rules.start) / 3600.0) if rules.start is not None else 0.0
        running = tuple(i for i, td in enumerate(c.time_discounts)
                        if td.start_hour <= hour < td.end_hour)
        key = (o.sku_id, o.quantity, coupon.id if coupon else None, members, fallback, running)
        got = cache.get(key)
        if got is None:
            q = price_order(c, PriceContext(sku=sku, quantity=o.quantity, hour=hour,
                                            group_members=members,
                                            group_failed_fallback=fallback, coupon=coupon))
            got = cache[key] = (q.total, q.list_total)
        total, list_total = got
        if o.amount != total:
            unbacked = o.coupon_id is not None and coupon is None
            words = how + (f", coupon {o.coupon_id}" if coupon else "") + (
                f", coupon {o.coupon_id} not backed by a claim of theirs" if unbacked
                else "") + (", time discount" if running else "")
            kind = ("price_unbacked_coupon" if unbacked else "price_coupon" if coupon
                    else "price_group" if o.group_id else "price")
            res.broken(kind, order_id=o.order_id, user=o.user_id, how=words, seen=o.amount,
                       expected=total)
        if o.list_amount != list_total:
            res.broken("list_price", order_id=o.order_id, seen=o.list_amount,
                       quantity=o.quantity, sku=o.sku_id, expected=list_total)
    return res


def _pay_bounds(history: History, o: Order) -> tuple[float, float]:
    """(first start of a pay request of its owner that was not refused, first acknowledgement
    of one): its payment happened in between."""
    lo, hi = math.inf, math.inf
    for p in by_order(history, "pay").get(o.order_id, ()):
        if p.user != o.user_id or p.outcome == "fail":
            continue
        lo = min(lo, p.start)
        if p.outcome == "ok":
            hi = min(hi, p.end)
    return (lo if lo < math.inf else -math.inf), hi


def gifts(history: History, state: FinalState, rules: Rules) -> Result:
    """The first-N gift goes to exactly the first N payments of the sale, at most N."""
    res = Result("gifts", "the first-N gift goes to exactly the first N paid orders (by "
                 "payment rank), at most N")
    c = rules.campaign
    if c is None:
        res.skipped = "no campaign rules"
        return res
    n = c.first_orders_gift.count if c.first_orders_gift else 0
    gifted = [o for o in state.orders if o.gift]
    paid = [o for o in state.orders if o.ever_paid]
    res.checked += 1
    if len(gifted) > n:
        res.broken("too_many_gifts", gifts=len(gifted), n=n)
    for o in gifted:
        res.checked += 1
        if not o.ever_paid:
            res.broken("gift_unpaid", order_id=o.order_id)
    if state.has_paid_seq and paid:
        _by_paid_seq(history, state, res, n, paid)
        return res
    res.note = ("no paid_seq (contract 1.1): gifts counted, and order proven only where the "
                "history shows one payment acknowledged before another was sent")
    if len(gifted) != min(n, len(paid)) and len(gifted) <= n:
        res.broken("gift_count", gifts=len(gifted), n=n, paid=len(paid),
                   expected=min(n, len(paid)))
    # A payment acknowledged before a gifted order's first pay request was sent ranks ahead
    # of it, so it must have a gift too.
    early, early_ack = None, math.inf
    for o in paid:
        if not o.gift:
            hi = _pay_bounds(history, o)[1]
            if hi < early_ack:
                early, early_ack = o, hi
    if early is not None:
        for o in gifted:
            res.checked += 1
            lo = _pay_bounds(history, o)[0]
            if early_ack < lo:
                res.broken("gift_vs_time", late=o.order_id, n=n, early=early.order_id,
                           acked=early_ack, sent=lo)
    return res


def _by_paid_seq(history: History, state: FinalState, res: Result, n: int,
                 paid: list[Order]) -> None:
    res.note = "payments ranked by the store's paid_seq"
    seqs = Counter(o.paid_seq for o in paid)
    for seq, k in sorted(seqs.items(), key=lambda x: x[0] or 0):
        if k > 1:
            res.broken("paid_seq_duplicate", paid_seq=seq, count=k,
                       order_ids=sorted(o.order_id for o in paid if o.paid_seq == seq))
    ranks = sorted(s for s in seqs if s is not None)
    res.checked += 1
    if ranks and (ranks[0] != 1 or ranks[-1] != len(paid) or len(ranks) != len(paid)):
        res.broken("paid_seq_gaps", paid=len(paid), lo=ranks[0], hi=ranks[-1],
                   gaps=ranks[-1] - len(ranks))
    for o in state.orders:
        res.checked += 1
        if not o.ever_paid:
            if o.paid_seq is not None:
                res.broken("paid_seq_unpaid", order_id=o.order_id, paid_seq=o.paid_seq)
            continue
        want = o.paid_seq is not None and o.paid_seq <= n
        if o.gift != want:
            res.broken("gift_vs_seq", order_id=o.order_id, paid_seq=o.paid_seq, gift=o.gift,
                       n=n)
    # Real time: a payment acknowledged before another's first pay request was sent must
    # rank ahead of it. From the highest rank down, keep the earliest acknowledgement.
    best_ack, best = math.inf, None
    for o in sorted(paid, key=lambda x: x.paid_seq or 0, reverse=True):
        lo, hi = _pay_bounds(history, o)
        if best is not None and best_ack < lo:
            res.broken("paid_seq_vs_time", later=best.order_id, later_seq=best.paid_seq,
                       acked=best_ack, earlier=o.order_id, earlier_seq=o.paid_seq, sent=lo)
            break
        if hi < best_ack:
            best_ack, best = hi, o


def leader_rewards(history: History, state: FinalState, rules: Rules) -> Result:
    """Leader rewards equal the completed groups: the ledger's count, and (contract 1.2)
    each group's `leader_reward`: the scenario's reward if it completed, else 0."""
    res = Result("leader_rewards", "one leader reward per completed group, none for a failed "
                 "or open one")
    completed = sum(1 for g in state.groups if g.status == "completed")
    seen = state.ledger.groups.get("leader_rewards")
    if seen is not None:
        res.checked += 1
        if seen != completed:
            res.broken("leader_rewards_count", seen=seen, expected=completed)
    reward = rules.leader_reward_fen
    per_group = [g for g in state.groups if g.leader_reward is not None]
    for g in per_group:
        res.checked += 1
        want = reward if g.status == "completed" else 0
        if g.leader_reward != want:
            res.broken("leader_reward", group_id=g.group_id, status=g.status,
                       seen=g.leader_reward, expected=want)
    if state.groups and not per_group:
        res.note = "no per-group leader_reward (contract 1.1): the ledger's count only"
    return res


def refunds(history: History, state: FinalState, rules: Rules) -> Result:
    """Only paid orders of failed groups are refunded, and only under the refund policy."""
    res = Result("refunds", "refunds only for paid orders of failed groups under the refund "
                 "policy")
    groups = groups_by_id(state)
    for o in state.orders:
        refunded = o.status == "refunded" or any(m.kind == "refund" for m in o.movements)
        if not refunded:
            continue
        res.checked += 1
        if o.paid_at is None:
            res.broken("refund_unpaid", order_id=o.order_id)
        g = groups.get(o.group_id) if o.group_id else None
        why = None
        if g is None:
            why = "it is in no group" if o.group_id is None else f"its group {o.group_id} is " \
                "not in the export"
        elif g.status != "failed":
            why = f"its group {g.group_id} is {g.status}"
        elif rules.failure_policy != "refund":
            why = f"the failure policy is {rules.failure_policy}"
        if why:
            res.broken("refund_wrong", order_id=o.order_id, user=o.user_id, why=why)
    return res
