"""Once only: one idempotency key, one effect; a key reused with another request is refused;
a request whose outcome the client never learned took effect at most once.

Claims are matched by key when the claim export carries it (contract 1.2); a 1.1 export
does not, and then claims are counted per user and coupon instead, which cannot tell one key
taking effect twice from two keys taking effect once each (the note says so).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from loadtests.checker.acknowledged import claim_keys, differs
from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import creates_by_key, orders_by_id
from loadtests.history import History, Op
from loadtests.state import FinalState

KEYLESS_NOTE = ("claims carry no idempotency key (contract 1.1): checked per user and coupon "
                "only, so a key that took effect twice while another of the same user and "
                "coupon took none goes unseen")

templates({
    "key_results": "user {user}, key {key}: {count} results {ids}",
    "keyless_claims": "user {user} holds {held} claim(s) of coupon {coupon_id} from {keys} "
                      "distinct claim key(s) not refused",
    "replay_differs": "user {user}: {op} with key {key} acknowledged with different results "
                      "{results}",
    "altered_accepted": "user {user}, key {key}: a {op} naming {second} was accepted under a "
                        "key first used for {first} (want idempotency_key_reused)",
    "unknown_twice": "user {user}, key {key}: unknown {op} took effect {count} times",
    "unknown_claims": "user {user}, coupon {coupon_id}: {held} claim(s) beyond the "
                      "acknowledged ones, but only {keys} claim key(s) with an unknown outcome",
})


def body(op: Op) -> tuple[object, ...]:
    """What a create request asked for (the part the idempotency fingerprint covers)."""
    group = op.group_id if op.op == "join" else None
    return (op.op, op.sku_id, op.quantity, op.coupon_id, group)


def idempotency(history: History, state: FinalState, rules: Rules) -> Result:
    """One idempotency key (per user) produces at most one order or claim; every acknowledged
    replay returned the same order or claim; a key reused for a different request is refused
    (or at most replays the first answer, changing nothing)."""
    res = Result("idempotency", "one order or claim per user and idempotency key; replays "
                 "return the first answer; a reused key with another request changes nothing")
    per_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for o in state.orders:
        per_key[(o.user_id, o.idempotency_key)].append(o.order_id)
    for c in state.claims:
        if c.idempotency_key is not None:
            per_key[(c.user_id, "claim:" + c.idempotency_key)].append(c.claim_id)
    for (user, key), ids in sorted(per_key.items()):
        res.checked += 1
        if len(ids) > 1:
            res.broken("key_results", user=user, key=key, count=len(ids), ids=sorted(ids))
    keyless = Counter((c.user_id, c.coupon_id) for c in state.claims
                      if c.idempotency_key is None)
    if keyless:
        sent = claim_keys(history)
        for (user, cid), n in sorted(keyless.items()):
            res.checked += 1
            if n > len(sent[(user, cid)]):
                res.broken("keyless_claims", user=user, held=n, coupon_id=cid,
                           keys=len(sent[(user, cid)]))
        res.note = KEYLESS_NOTE
    answers: dict[tuple[str, str, str | None], set[str | None]] = defaultdict(set)
    for r in history.ops:
        if r.outcome == "ok" and r.key is not None:
            answers[(r.user, r.op, r.key)].add(r.claim_id if r.op == "claim" else r.order_id)
    for (user, op, key), got in sorted(answers.items(), key=str):
        res.checked += 1
        if len(got) > 1:
            res.broken("replay_differs", user=user, op=op, key=key,
                       results=sorted(str(g) for g in got))
    orders = orders_by_id(state)
    for (user, key), ops in creates_by_key(history).items():
        first = body(ops[0])
        for r in ops[1:]:
            if r.outcome == "ok" and body(r) != first:
                res.checked += 1
                # Replaying the first request's order unchanged is no effect; anything else is.
                o = orders.get(r.order_id) if r.order_id is not None else None
                replay = (ops[0].outcome == "ok" and r.order_id == ops[0].order_id) or (
                    ops[0].outcome != "ok" and o is not None and not differs(ops[0], o))
                if not replay:
                    res.broken("altered_accepted", user=user, key=key, op=r.op,
                               second=_named(r), first=_named(ops[0]))
    return res


def _named(op: Op) -> str:
    parts = [f"{op.sku_id} x{op.quantity}"]
    if op.coupon_id:
        parts.append(f"coupon {op.coupon_id}")
    if op.op == "join" and op.group_id:
        parts.append(f"group {op.group_id}")
    return ", ".join(parts)


def unknown_outcomes(history: History, state: FinalState, rules: Rules) -> Result:
    """A request whose outcome the client never learned (timeout, lost connection, a fault)
    may have taken effect or not, but never twice."""
    res = Result("unknown_outcomes", "a request with an unknown outcome took effect at most once")
    orders = Counter((o.user_id, o.idempotency_key) for o in state.orders)
    claims = Counter((c.user_id, c.idempotency_key) for c in state.claims
                     if c.idempotency_key is not None)
    keyless = any(c.idempotency_key is None for c in state.claims)
    took = by_key = unknown_claims = 0
    seen: set[tuple[str, str | None]] = set()
    for r in history.ops:
        if r.outcome != "unknown" or not (r.creates or r.op == "claim"):
            continue
        k = (r.user, r.key)
        if k in seen:
            continue
        seen.add(k)
        if r.op == "claim" and keyless:
            unknown_claims += 1
            continue  # counted per user and coupon below
        res.checked += 1
        by_key += 1
        n = claims[k] if r.op == "claim" else orders[k]
        took += n > 0
        if n > 1:
            res.broken("unknown_twice", user=r.user, key=r.key, op=r.op, count=n)
    res.note = f"{took} of {by_key} took effect"
    if keyless:
        _keyless_claims(history, state, res)
        if unknown_claims:
            res.add_note(f"{unknown_claims} unknown claim(s): {KEYLESS_NOTE}")
    return res


def _keyless_claims(history: History, state: FinalState, res: Result) -> None:
    """Claims acknowledged by id are accounted for; the rest of a user's claims of a coupon
    must not outnumber their claim keys that only ever had an unknown outcome."""
    acked_ids: set[str] = set()
    ok_keys: dict[tuple[str, str | None], set[str | None]] = defaultdict(set)
    for r in history.ops:
        if r.op == "claim" and r.outcome == "ok" and r.claim_id:
            acked_ids.add(r.claim_id)
            ok_keys[(r.user, r.coupon_id)].add(r.key)
    sent = claim_keys(history)
    rest = Counter((c.user_id, c.coupon_id) for c in state.claims
                   if c.idempotency_key is None and c.claim_id not in acked_ids)
    for user, cid in sorted(set(sent) | set(rest), key=str):
        unknown_only = len(sent.get((user, cid), set()) - ok_keys[(user, cid)])
        if not unknown_only and not rest[(user, cid)]:
            continue
        res.checked += 1
        if rest[(user, cid)] > unknown_only:
            res.broken("unknown_claims", user=user, coupon_id=cid, held=rest[(user, cid)],
                       keys=unknown_only)
