"""Acknowledged means durable, and nothing appears that nobody asked for.

`no_lost_acknowledged` holds on any history, however partial: what a client was told happened
must be in the final state. `no_phantom` asks the reverse — everything in the state traces to
a request that was not refused — which only a complete history can answer: with a load
process's records missing, its orders would look unexplained, so those findings are withheld
(the note says so) rather than reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import by_order, creates_by_key, orders_by_id
from loadtests.history import History, Op
from loadtests.state import FinalState, Order

PARTIAL_NOTE = ("the history is incomplete: nothing is called a phantom for want of a "
                "request (only orders whose requests are all here are matched)")

templates({
    "lost_order": "order {order_id} acknowledged to user {user} (key {key}) is missing",
    "order_owner": "order {order_id} acknowledged to user {user} (key {key}) belongs to "
                   "{owner} (key {owner_key})",
    "lost_group": "group {group_id} opened by {user} is missing",
    "lost_claim": "claim {claim_id} acknowledged to {user} is missing",
    "lost_effect": "order {order_id}: {op} acknowledged, order missing",
    "lost_status": "order {order_id}: {op} acknowledged to {user}, final status {status}",
    "unexplained_order": "order {order_id} (user {user}, key {key}) matches no request in the "
                         "history",
    "refused_order": "order {order_id} (user {user}, key {key}) exists although every request "
                     "for it was refused",
    "order_differs": "order {order_id} (user {user}, key {key}) differs from its request: "
                     "{diff}",
    "unexplained_payment": "order {order_id} of {user} is {status} but its owner sent no pay "
                           "request for it that was not refused",
    "unexplained_claims": "user {user} holds {held} claim(s) of coupon {coupon_id} but sent "
                          "{sent} claim request(s) that were not refused",
    "unexplained_group": "group {group_id} led by {leader} matches no open request that was "
                         "not refused",
    "group_leader": "group {group_id} is led by {leader} but was acknowledged to {acked_to}",
    "groups_unexplained": "{count} group(s) led by {leader} match no acknowledged open "
                          "request, and only {unknown} of theirs had an unknown outcome",
    "too_many_groups": "user {leader} leads {led} groups but sent {sent} open request(s) "
                       "that were not refused",
})


def no_lost_acknowledged(history: History, state: FinalState, rules: Rules) -> Result:
    """Every acknowledged (2xx) write is visible in the final state."""
    res = Result("no_lost_acknowledged", "every acknowledged order, group, claim, payment and "
                 "cancel is in the final state")
    if not history.one_run:
        res.skipped = ("the history has no header, so it may hold an earlier run's records "
                       "(appended), whose orders a reloaded sale no longer has: nothing is "
                       "called lost")
        return res
    orders = orders_by_id(state)
    groups = {g.group_id for g in state.groups}
    claims = {c.claim_id for c in state.claims}
    for r in history.ops:
        if r.outcome != "ok":
            continue
        op, oid = r.op, r.order_id
        if r.creates:
            res.checked += 1
            o = orders.get(oid) if oid is not None else None
            if o is None:
                res.broken("lost_order", order_id=oid, user=r.user, key=r.key)
            elif o.user_id != r.user or o.idempotency_key != r.key:
                res.broken("order_owner", order_id=oid, user=r.user, key=r.key,
                           owner=o.user_id, owner_key=o.idempotency_key)
            if op == "open_group":
                res.checked += 1
                if r.group_id not in groups:
                    res.broken("lost_group", group_id=r.group_id, user=r.user)
        elif op == "claim":
            res.checked += 1
            if r.claim_id not in claims:
                res.broken("lost_claim", claim_id=r.claim_id, user=r.user)
        elif op in ("pay", "cancel") and r.probe is None:
            res.checked += 1
            o = orders.get(oid) if oid is not None else None
            want = ("paid", "refunded") if op == "pay" else ("cancelled",)
            if o is None:
                res.broken("lost_effect", order_id=oid, op=op)
            elif o.status not in want:
                res.broken("lost_status", order_id=oid, op=op, user=r.user, status=o.status)
    return res


def differs(r: Op, o: Order) -> str:
    """How an order differs from the create request behind it ('' when it does not): the SKU,
    quantity, coupon and group it names (the group an open request got back, if known)."""
    out = []
    if r.sku_id is not None and o.sku_id != r.sku_id:
        out.append(f"sku_id {o.sku_id!r}, requested {r.sku_id!r}")
    if r.quantity is not None and o.quantity != r.quantity:
        out.append(f"quantity {o.quantity!r}, requested {r.quantity!r}")
    if o.coupon_id != r.coupon_id:
        out.append(f"coupon_id {o.coupon_id!r}, requested {r.coupon_id!r}")
    if r.op == "reserve" and o.group_id is not None:
        out.append(f"group_id {o.group_id!r} from a reserve without a group")
    elif r.op in ("join", "open_group") and r.group_id is not None and o.group_id != r.group_id:
        out.append(f"group_id {o.group_id!r}, requested or acknowledged {r.group_id!r}")
    elif r.op in ("join", "open_group") and o.group_id is None:
        out.append(f"no group_id from a {r.op} request")
    return "; ".join(out)


def claim_keys(history: History) -> dict[tuple[str, str | None], set[str | None]]:
    """Per (user, coupon): distinct keys of claim requests acknowledged or with unknown
    outcome."""
    out: dict[tuple[str, str | None], set[str | None]] = defaultdict(set)
    for r in history.ops:
        if r.op == "claim" and r.outcome in ("ok", "unknown"):
            out[(r.user, r.coupon_id)].add(r.key)
    return out


def no_phantom(history: History, state: FinalState, rules: Rules) -> Result:
    """Everything in the final state traces to a request the load test sent and that was not
    refused: orders and claims by user + idempotency key, payments by a pay request of the
    order's owner, groups by their leader's open request."""
    res = Result("no_phantom", "every order, payment, group and claim traces to a request that "
                 "was not refused")
    full = history.complete
    creates = creates_by_key(history)
    pays = by_order(history, "pay")
    for o in state.orders:
        res.checked += 1
        sent = creates.get((o.user_id, o.idempotency_key))
        if not sent:
            if full:
                res.broken("unexplained_order", order_id=o.order_id, user=o.user_id,
                           key=o.idempotency_key)
        elif all(r.outcome == "fail" for r in sent):
            res.broken("refused_order", order_id=o.order_id, user=o.user_id,
                       key=o.idempotency_key)
        else:
            live = [r for r in sent if r.outcome != "fail"]
            if all(differs(r, o) for r in live):
                res.broken("order_differs", order_id=o.order_id, user=o.user_id,
                           key=o.idempotency_key, diff=differs(live[0], o))
        if o.ever_paid and (full or sent):
            res.checked += 1
            if not any(p.user == o.user_id and p.outcome != "fail"
                       for p in pays.get(o.order_id, ())):
                res.broken("unexplained_payment", order_id=o.order_id, user=o.user_id,
                           status=o.status)
    if full:
        _claims(history, state, res)
        _groups(history, state, res)
    else:
        res.note = PARTIAL_NOTE
    return res


def _claims(history: History, state: FinalState, res: Result) -> None:
    keys = claim_keys(history)
    claimed = Counter((c.user_id, c.coupon_id) for c in state.claims)
    for (user, cid), n in sorted(claimed.items()):
        res.checked += 1
        sent = len(keys.get((user, cid), ()))
        if n > sent:
            res.broken("unexplained_claims", user=user, held=n, coupon_id=cid, sent=sent)


def _groups(history: History, state: FinalState, res: Result) -> None:
    """Each group matches an acknowledged open request by group id, or else an open request of
    its leader whose outcome is unknown; a leader never has more groups than open requests
    (distinct keys) that were not refused."""
    opened: dict[str, list[str]] = defaultdict(list)
    acked: dict[str, str] = {}
    keys_ok: dict[str, set[str | None]] = defaultdict(set)
    keys_sent: dict[str, set[str | None]] = defaultdict(set)
    for r in history.ops:
        if r.op != "open_group":
            continue
        opened[r.user].append(r.outcome)
        if r.outcome == "fail":
            continue
        keys_sent[r.user].add(r.key)
        if r.outcome == "ok" and r.group_id:
            keys_ok[r.user].add(r.key)
            acked[r.group_id] = r.user
    unmatched: Counter[str] = Counter()
    led: Counter[str] = Counter()
    for g in state.groups:
        res.checked += 1
        led[g.leader_id] += 1
        outcomes = opened.get(g.leader_id, [])
        if not outcomes or all(x == "fail" for x in outcomes):
            res.broken("unexplained_group", group_id=g.group_id, leader=g.leader_id)
        elif g.group_id in acked and acked[g.group_id] != g.leader_id:
            res.broken("group_leader", group_id=g.group_id, leader=g.leader_id,
                       acked_to=acked[g.group_id])
        elif g.group_id not in acked:
            unmatched[g.leader_id] += 1
    for leader in sorted(led):
        res.checked += 1
        unknown_only = len(keys_sent[leader] - keys_ok[leader])
        if unmatched[leader] > unknown_only:
            res.broken("groups_unexplained", count=unmatched[leader], leader=leader,
                       unknown=unknown_only)
        elif led[leader] > len(keys_sent[leader]) and opened.get(leader):
            res.broken("too_many_groups", leader=leader, led=led[leader],
                       sent=len(keys_sent[leader]))
