"""Adversarial requests: each probe an adversarial journey sent (`Op.probe`) was refused or
had no effect, and only an order's owner ever pays or cancels it.

A probe's preconditions are set up by its journey with a shopper id of its own (so no other
arrival's claims or orders interfere) and checked again here from the history and the state:

- `unclaimed_coupon`: an order naming a coupon its (fresh) buyer never claimed;
- `used_coupon`: a second order naming the coupon whose only claim an earlier order used;
- `foreign_pay` / `foreign_cancel`: paying or cancelling another shopper's order;
- `closed_group`: joining a group the server had shown completed or failed;
- `full_group`: joining a group shown full (may succeed if a seat was freed since: counted);
- `late_pay`: paying after the payment timeout has provably passed (see `deadlines`);
- `altered_retry`: the same idempotency key with another body (see `idempotency`).
"""

from __future__ import annotations

from collections import Counter

from loadtests.checker.acknowledged import differs
from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.idempotency import body
from loadtests.checker.views import (
    by_order,
    claims_by_key,
    creates_by_key,
    orders_by_id,
    orders_by_key,
    reserve_hi,
)
from loadtests.history import History, Op
from loadtests.state import FinalState

templates({
    "probe_accepted": "{probe}: {user}'s {op} was accepted ({detail})",
    "probe_took_effect": "{probe}: {user}'s {op} had an unknown outcome and took effect "
                         "({detail})",
    "foreign_effect": "order {order_id} of {owner} was {what} by {user} ({outcome})",
    "not_owner_cancel": "order {order_id} of {owner} is cancelled, but its owner sent no cancel "
                        "that was not refused and it is in no group",
})


def adversarial(history: History, state: FinalState, rules: Rules) -> Result:
    """Every adversarial probe was refused or had no effect; only owners pay or cancel."""
    res = Result("adversarial", "every adversarial request was refused or had no effect; only "
                 "an order's owner pays or cancels it")
    orders, by_key = orders_by_id(state), orders_by_key(state)
    tally: Counter[tuple[str, str]] = Counter()
    for op in history.ops:
        if op.op in ("pay", "cancel") and op.order_id is not None:
            o = orders.get(op.order_id)
            if o is not None and o.user_id != op.user:
                res.checked += 1
                if op.outcome == "ok":
                    res.broken("foreign_effect", order_id=o.order_id, owner=o.user_id,
                               what="paid" if op.op == "pay" else "cancelled", user=op.user,
                               outcome="acknowledged")
        if op.probe is None:
            continue
        res.checked += 1
        verdict = _probe(op, history, state, rules, orders, by_key, res)
        tally[(op.probe, verdict)] += 1
    if history.complete:
        _owner_cancels(history, state, res)
    probes = sorted({p for p, _ in tally})
    res.note = "; ".join(
        f"{p}: " + ", ".join(f"{tally[(p, v)]} {v}" for v in ("refused", "no effect",
                                                              "accepted (allowed)",
                                                              "not applicable", "broken")
                             if tally[(p, v)]) for p in probes) or "no adversarial requests"
    return res


def _probe(op: Op, history: History, state: FinalState, rules: Rules, orders: dict,
           by_key: dict, res: Result) -> str:
    """Judge one probe; returns how it went (refused, no effect, …, broken)."""
    probe = op.probe
    made = by_key.get((op.user, op.key), []) if op.creates else []
    if op.outcome == "fail":
        return "refused"
    if probe in ("unclaimed_coupon", "used_coupon"):
        claims = [c for c in state.claims if c.user_id == op.user and c.coupon_id == op.coupon_id]
        asked = [c for c in claims_by_key_for(history, op.user) if c.coupon_id == op.coupon_id]
        if probe == "unclaimed_coupon" and (claims or asked):
            return "not applicable"
        if probe == "used_coupon" and not (len(claims) == 1 and claims[0].order_id
                                           and all(o.order_id != claims[0].order_id
                                                   for o in made)):
            return "not applicable"
        took = [o for o in made if o.coupon_id == op.coupon_id]
        return _verdict(op, bool(took), res, f"order {[o.order_id for o in took] or op.order_id}"
                        f" with coupon {op.coupon_id}")
    if probe in ("foreign_pay", "foreign_cancel"):
        o = orders.get(op.order_id) if op.order_id else None
        if o is None or o.user_id == op.user:
            return "not applicable"
        # Acknowledged foreign requests are reported above; an unknown one had an effect if
        # the order shows it and its owner never asked for it.
        if op.outcome == "ok":
            return "broken"
        want = "pay" if probe == "foreign_pay" else "cancel"
        owner_asked = any(p.user == o.user_id and p.outcome != "fail"
                          for p in by_order(history, want).get(o.order_id, ()))
        shows = o.ever_paid if want == "pay" else o.status == "cancelled"
        if shows and not owner_asked and history.complete:
            res.broken("foreign_effect", order_id=o.order_id, owner=o.user_id,
                       what="paid" if want == "pay" else "cancelled", user=op.user,
                       outcome="unknown outcome")
            return "broken"
        return "no effect"
    if probe == "closed_group":
        seen = [v for v in history.ops if v.op == "view_group" and v.user == op.user
                and v.group_id == op.group_id and v.outcome == "ok"
                and v.seen_status in ("completed", "failed") and v.end < op.start]
        if not seen:
            return "not applicable"
        return _verdict(op, bool(made), res, f"joined {op.group_id} after seeing it "
                        f"{seen[0].seen_status}")
    if probe == "full_group":
        return "accepted (allowed)" if op.outcome == "ok" else "no effect"
    if probe == "late_pay":
        o = orders.get(op.order_id) if op.order_id else None
        if o is None or o.user_id != op.user or rules.payment_timeout is None:
            return "not applicable"
        early = [p for p in by_order(history, "pay").get(o.order_id, ())
                 if p.probe is None and p.outcome != "fail"]
        if early or op.start - reserve_hi(history, o) < rules.payment_timeout:
            return "not applicable"
        return _verdict(op, o.ever_paid, res, f"paid order {o.order_id} "
                        f"{op.start - reserve_hi(history, o):.3f} s after its reservation was "
                        f"acknowledged (timeout {rules.payment_timeout:g} s)")
    if probe == "altered_retry":
        sent = creates_by_key(history).get((op.user, op.key), [])
        first = sent[0] if sent else None
        if first is None or first is op or body(first) == body(op):
            return "not applicable"
        detail = f"key {op.key} first used for {first.sku_id} x{first.quantity}"
        if op.outcome == "ok":
            replayed = (first.outcome == "ok" and op.order_id == first.order_id) or any(
                o.order_id == op.order_id and not differs(first, o) for o in made)
            if replayed:
                return "no effect"
            return _verdict(op, True, res, detail)
        return _verdict(op, any(differs(first, o) and not differs(op, o) for o in made), res,
                        detail)
    return "not applicable"


def claims_by_key_for(history: History, user: str) -> list[Op]:
    """Claim requests of one user that were not refused."""
    return [op for (u, _), ops in claims_by_key(history).items() if u == user for op in ops
            if op.outcome != "fail"]


def _verdict(op: Op, took_effect: bool, res: Result, detail: str) -> str:
    if op.outcome == "ok":
        res.broken("probe_accepted", probe=op.probe, user=op.user, op=op.op, detail=detail)
        return "broken"
    if took_effect:
        res.broken("probe_took_effect", probe=op.probe, user=op.user, op=op.op, detail=detail)
        return "broken"
    return "no effect"


def _owner_cancels(history: History, state: FinalState, res: Result) -> None:
    """A single-buyer order is cancelled only by its owner's cancel (expiry says expired)."""
    cancels = by_order(history, "cancel")
    for o in state.orders:
        if o.status != "cancelled" or o.group_id is not None:
            continue
        res.checked += 1
        if not any(c.user == o.user_id and c.outcome != "fail"
                   for c in cancels.get(o.order_id, ())):
            res.broken("not_owner_cancel", order_id=o.order_id, owner=o.user_id)
