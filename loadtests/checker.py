"""The invariant checker: the operation history and the server's final state → a report.

Pure functions over plain data (history records, the admin ledger, the order, group and claim
exports), so every invariant is unit-tested with hand-written fixtures. `loadtests.api` reads
the final state over HTTP. Each invariant is held or broken, with capped counterexamples.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from campaign.rules import CampaignRules
from loadtests.history import CREATE_OPS

MAX_EXAMPLES = 10
ACTIVE = ("reserved", "paid")
"""Order statuses that hold stock."""


@dataclass(frozen=True)
class Rules:
    """What the checker needs to know about the sale."""

    stock: dict[str, int]
    per_user_limit: int
    coupons: dict[str, tuple[int, int]] = field(default_factory=dict)
    """coupon id -> (pool, per_user)"""
    failure_policy: str | None = None
    min_size: int = 0
    top_size: int = 0


def rules_from_campaign(campaign: CampaignRules) -> Rules:
    """The checker's view of a scenario's `[campaign]`."""
    g = campaign.groups
    return Rules(
        stock={s.id: s.stock for s in campaign.skus},
        per_user_limit=campaign.per_user_limit,
        coupons={c.id: (c.pool, c.per_user) for c in campaign.coupons},
        failure_policy=g.failure_policy if g else None,
        min_size=g.min_size if g else 0,
        top_size=g.top_size if g else 0,
    )


@dataclass(frozen=True)
class FinalState:
    """The server's state after the run, as the admin endpoints export it."""

    ledger: dict[str, Any]
    orders: list[dict[str, Any]]
    groups: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    """One invariant: held or broken, with up to MAX_EXAMPLES counterexamples."""

    name: str
    description: str
    checked: int = 0
    violations: int = 0
    counterexamples: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def held(self) -> bool:
        return self.violations == 0

    def broken(self, example: str) -> None:
        self.violations += 1
        if len(self.counterexamples) < MAX_EXAMPLES:
            self.counterexamples.append(example)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "held": self.held,
                "checked": self.checked, "violations": self.violations,
                "counterexamples": self.counterexamples, "note": self.note}


@dataclass
class Report:
    """Every invariant's result plus counts that help read them."""

    results: list[Result]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return all(r.held for r in self.results)

    @property
    def broken(self) -> list[Result]:
        return [r for r in self.results if not r.held]

    def to_json(self) -> dict[str, Any]:
        return {"held": self.held, "broken": [r.name for r in self.broken],
                "invariants": [r.to_json() for r in self.results], "stats": self.stats}

    def to_text(self) -> str:
        lines = [f"invariants: {'ALL HELD' if self.held else f'{len(self.broken)} BROKEN'} "
                 f"({len(self.results)} checked)"]
        for r in self.results:
            lines.append(f"  {'held  ' if r.held else 'BROKEN'}  {r.name}: {r.description} "
                         f"({r.checked} checked{', ' + r.note if r.note else ''})")
            if not r.held:
                lines.append(f"          {r.violations} violation(s); first "
                             f"{len(r.counterexamples)}:")
                lines.extend(f"          - {ex}" for ex in r.counterexamples)
        if self.stats:
            lines.append("history: " + ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        return "\n".join(lines)

    def summary_lines(self) -> list[str]:
        """One line per broken invariant, with its first counterexample."""
        return [f"invariant broken: {r.name} ({r.violations} violation(s)), e.g. "
                f"{r.counterexamples[0] if r.counterexamples else '?'}" for r in self.broken]


def save_report(report: Report, json_path: Any, text_path: Any) -> None:
    """Write invariants.json and invariants.txt."""
    with open(json_path, "w") as fh:
        json.dump(report.to_json(), fh, indent=2)
    with open(text_path, "w") as fh:
        fh.write(report.to_text() + "\n")


# --- helpers -------------------------------------------------------------------------------

def _units(orders: Iterable[dict[str, Any]], statuses: tuple[str, ...]) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in orders:
        if o.get("status") in statuses:
            out[o["sku_id"]] += int(o.get("quantity", 0))
    return out


def _moved(orders: Iterable[dict[str, Any]], kind: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in orders:
        for m in o.get("movements") or []:
            if m.get("kind") == kind:
                out[o["sku_id"]] += int(m.get("quantity", 0))
    return out


def _ops(history: list[dict[str, Any]], *ops: str) -> list[dict[str, Any]]:
    return [r for r in history if r.get("op") in ops]


# --- the invariants ------------------------------------------------------------------------

def check_conservation(rules: Rules, state: FinalState) -> Result:
    """Per SKU: initial = available + reserved + sold in the ledger; the ledger's initial is the
    scenario's stock; reserved and sold agree with the order export; and stock moved by the
    orders' movements accounts for what is no longer available."""
    res = Result("conservation", "initial stock = available + reserved + sold, in the ledger "
                 "and in the order export")
    skus = state.ledger.get("skus", {})
    reserved, sold = _units(state.orders, ("reserved",)), _units(state.orders, ("paid",))
    out, back = _moved(state.orders, "reserve"), (_moved(state.orders, "release")
                                                  + _moved(state.orders, "refund"))
    for sku_id in sorted(set(skus) | set(rules.stock)):
        res.checked += 1
        row = skus.get(sku_id)
        if row is None:
            res.broken(f"sku {sku_id}: missing from the ledger")
            continue
        init, avail = row.get("initial", 0), row.get("available", 0)
        led_res, led_sold = row.get("reserved", 0), row.get("sold", 0)
        if sku_id in rules.stock and init != rules.stock[sku_id]:
            res.broken(f"sku {sku_id}: ledger initial {init} != scenario stock "
                       f"{rules.stock[sku_id]}")
        if init != avail + led_res + led_sold:
            res.broken(f"sku {sku_id}: ledger initial {init} != available {avail} + reserved "
                       f"{led_res} + sold {led_sold} (= {avail + led_res + led_sold})")
        if led_res != reserved[sku_id] or led_sold != sold[sku_id]:
            res.broken(f"sku {sku_id}: ledger reserved {led_res} / sold {led_sold}, but the "
                       f"order export holds reserved {reserved[sku_id]} / paid {sold[sku_id]}")
        by_moves = init - out[sku_id] + back[sku_id]
        if by_moves != avail:
            res.broken(f"sku {sku_id}: initial {init} - reserve movements {out[sku_id]} + "
                       f"release/refund movements {back[sku_id]} = {by_moves}, but the ledger "
                       f"says available {avail}")
    counts = state.ledger.get("orders")
    if isinstance(counts, dict):
        export = Counter(o.get("status") for o in state.orders)
        for status, n in sorted(counts.items()):
            res.checked += 1
            if n != export.get(status, 0):
                res.broken(f"ledger counts {n} {status} order(s), the export "
                           f"{export.get(status, 0)}")
    return res


CLOCK_SLACK_SECONDS = 2.0
"""How far apart servers' movement timestamps may be from their commit order (they are taken
when a request starts, and worker clocks differ a little); restores count this much early."""


def ack_times(history: Iterable[dict[str, Any]] | None) -> dict[str, float]:
    """Order id -> when the first answer acknowledging its creation arrived: the latest moment
    the server can have taken the stock."""
    out: dict[str, float] = {}
    for r in history or ():
        if r.get("op") in CREATE_OPS and r.get("outcome") == "ok" and r.get("order_id") and \
                r.get("end") is not None:
            oid = r["order_id"]
            out[oid] = min(out.get(oid, r["end"]), r["end"])
    return out


def peak_held(orders: Iterable[dict[str, Any]], sku_id: str, user_id: str | None = None,
              acked: dict[str, float] | None = None) -> tuple[int, float | None]:
    """The most units of a SKU that orders (of one user, if given) held at any one moment, by
    their movements, and when.

    Restores are counted CLOCK_SLACK_SECONDS early, and a reserve of an order acknowledged in
    the history (`acked`, from `ack_times`) no earlier than its acknowledging answer arrived,
    so a correct server is never blamed for a timestamp taken before a lock was won, however
    long the request queued."""
    acked = acked or {}
    events: list[tuple[float, int]] = []
    for o in orders:
        if o.get("sku_id") != sku_id:
            continue
        if user_id is not None and o.get("user_id") != user_id:
            continue
        for m in o.get("movements") or []:
            at, q = float(m.get("at") or 0.0), int(m.get("quantity", 0))
            if m.get("kind") == "reserve":
                events.append((max(at, acked.get(o.get("order_id"), at)), q))
            elif m.get("kind") in ("release", "refund"):
                events.append((at - CLOCK_SLACK_SECONDS, -q))
    held, peak, when = 0, 0, None
    for at, q in sorted(events, key=lambda e: (e[0], e[1])):  # restores first on ties
        held += q
        if held > peak:
            peak, when = held, at
    return peak, when


def check_no_oversell(state: FinalState,
                      history: list[dict[str, Any]] | None = None) -> Result:
    """No SKU hands out more units than it had: units held by orders (reserved + paid) plus
    units still offered never exceed the initial stock, at the end or at any moment before."""
    res = Result("no_oversell", "units held by orders (reserved + paid) + units still "
                 "available <= initial stock")
    active = _units(state.orders, ACTIVE)
    paid = _units(state.orders, ("paid",))
    acked = ack_times(history)
    for sku_id, row in sorted(state.ledger.get("skus", {}).items()):
        res.checked += 1
        init = row.get("initial", 0)
        if active[sku_id] > init:
            res.broken(f"sku {sku_id} oversold by {active[sku_id] - init} unit(s): orders hold "
                       f"{active[sku_id]} (paid {paid[sku_id]}) of {init}")
        offered = row.get("available", 0)
        if active[sku_id] + offered > init:
            res.broken(f"sku {sku_id} oversold by {active[sku_id] + offered - init} unit(s): "
                       f"orders hold {active[sku_id]} and the ledger still offers {offered}, of "
                       f"{init}")
        peak, when = peak_held(state.orders, sku_id, acked=acked)
        if peak > init and active[sku_id] <= init:
            res.broken(f"sku {sku_id} oversold by {peak - init} unit(s) for a while: orders "
                       f"held {peak} of {init} at {when:.3f} (by their movements)")
        held = row.get("reserved", 0) + row.get("sold", 0)
        if held > init:
            res.broken(f"sku {sku_id} oversold in the ledger: reserved + sold = {held} > "
                       f"initial {init}")
    return res


def check_non_negative(state: FinalState) -> Result:
    """No counter, quantity or amount below zero."""
    res = Result("non_negative", "no stock counter, coupon counter, quantity or amount < 0")
    led = state.ledger
    for sku_id, row in sorted(led.get("skus", {}).items()):
        for key, v in row.items():
            if isinstance(v, int | float):
                res.checked += 1
                if v < 0:
                    res.broken(f"sku {sku_id}: {key} = {v}")
    for cid, row in sorted(led.get("coupons", {}).items()):
        for key, v in row.items():
            if isinstance(v, int | float):
                res.checked += 1
                if v < 0:
                    res.broken(f"coupon {cid}: {key} = {v}")
    for section in ("groups", "orders"):
        for key, v in sorted((led.get(section) or {}).items()):
            res.checked += 1
            if isinstance(v, int | float) and v < 0:
                res.broken(f"ledger {section}.{key} = {v}")
    for o in state.orders:
        res.checked += 1
        if int(o.get("quantity", 0)) < 1:
            res.broken(f"order {o.get('order_id')}: quantity {o.get('quantity')}")
        if (o.get("amount") or 0) < 0:
            res.broken(f"order {o.get('order_id')}: amount {o.get('amount')}")
    return res


def check_no_lost_acknowledged(history: list[dict[str, Any]], state: FinalState) -> Result:
    """Every acknowledged (2xx) write is visible in the final state."""
    res = Result("no_lost_acknowledged", "every acknowledged order, group, claim, payment and "
                 "cancel is in the final state")
    orders = {o["order_id"]: o for o in state.orders}
    groups = {g["group_id"] for g in state.groups}
    claims = {c["claim_id"] for c in state.claims}
    for r in history:
        if r.get("outcome") != "ok":
            continue
        op, oid = r.get("op"), r.get("order_id")
        if op in CREATE_OPS:
            res.checked += 1
            o = orders.get(oid)
            if o is None:
                res.broken(f"order {oid} acknowledged to user {r.get('user')} (key "
                           f"{r.get('key')}) is missing")
            elif o.get("user_id") != r.get("user") or o.get("idempotency_key") != r.get("key"):
                res.broken(f"order {oid} acknowledged to user {r.get('user')} (key "
                           f"{r.get('key')}) belongs to {o.get('user_id')} (key "
                           f"{o.get('idempotency_key')})")
            if op == "open_group":
                res.checked += 1
                if r.get("group_id") not in groups:
                    res.broken(f"group {r.get('group_id')} opened by {r.get('user')} is missing")
        elif op == "claim":
            res.checked += 1
            if r.get("claim_id") not in claims:
                res.broken(f"claim {r.get('claim_id')} acknowledged to {r.get('user')} is missing")
        elif op in ("pay", "cancel"):
            res.checked += 1
            o = orders.get(oid)
            want = ("paid", "refunded") if op == "pay" else ("cancelled",)
            if o is None:
                res.broken(f"order {oid}: {op} acknowledged, order missing")
            elif o.get("status") not in want:
                res.broken(f"order {oid}: {op} acknowledged to {r.get('user')}, final status "
                           f"{o.get('status')}")
    return res


def check_no_phantom(history: list[dict[str, Any]], state: FinalState) -> Result:
    """Everything in the final state traces to a request the load test sent and that was not
    refused: orders and claims by user + idempotency key, payments by a pay request, groups by
    their leader's open request."""
    res = Result("no_phantom", "every order, payment, group and claim traces to a request that "
                 "was not refused")
    creates: dict[tuple[str, str], list[str]] = defaultdict(list)
    requests: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    claim_keys = _claim_keys(history)
    paid_sent: set[str] = set()
    opened: dict[str, list[str]] = defaultdict(list)
    for r in history:
        op, outcome = r.get("op"), r.get("outcome")
        if op in CREATE_OPS:
            creates[(r.get("user"), r.get("key"))].append(outcome)
            if outcome != "fail":
                requests[(r.get("user"), r.get("key"))].append(r)
        if op == "pay" and outcome in ("ok", "unknown"):
            paid_sent.add(r.get("order_id"))
        if op == "open_group":
            opened[r.get("user")].append(outcome)
    for o in state.orders:
        res.checked += 1
        who, key = o.get("user_id"), o.get("idempotency_key")
        outcomes = creates.get((who, key))
        if not outcomes:
            res.broken(f"order {o.get('order_id')} (user {who}, key {key}) matches no request "
                       "in the history")
        elif all(x == "fail" for x in outcomes):
            res.broken(f"order {o.get('order_id')} (user {who}, key {key}) exists although "
                       "every request for it was refused")
        else:
            sent = requests[(who, key)]
            res.checked += 1
            if not any(not _differs(r, o) for r in sent):
                res.broken(f"order {o.get('order_id')} (user {who}, key {key}) differs from "
                           f"its request: {_differs(sent[0], o)}")
        if o.get("status") in ("paid", "refunded") or o.get("paid_at"):
            res.checked += 1
            if o.get("order_id") not in paid_sent:
                res.broken(f"order {o.get('order_id')} of {who} is {o.get('status')} but no pay "
                           "request for it was sent (or all were refused)")
    # The claim export need not carry the idempotency key: count per user and coupon instead.
    claimed = Counter((c.get("user_id"), c.get("coupon_id")) for c in state.claims)
    for (user, cid), n in sorted(claimed.items()):
        res.checked += 1
        sent = len(claim_keys.get((user, cid), ()))
        if n > sent:
            res.broken(f"user {user} holds {n} claim(s) of coupon {cid} but sent {sent} claim "
                       "request(s) that were not refused")
    # Groups: each matches an acknowledged open request by group id, or else an open request
    # of its leader whose outcome is unknown; a leader never has more groups than open
    # requests (distinct keys) that were not refused.
    acked: dict[str, str] = {}
    keys_ok: dict[str, set[str]] = defaultdict(set)
    keys_sent: dict[str, set[str]] = defaultdict(set)
    for r in history:
        if r.get("op") != "open_group" or r.get("outcome") == "fail":
            continue
        keys_sent[r.get("user")].add(r.get("key"))
        if r.get("outcome") == "ok" and r.get("group_id"):
            keys_ok[r.get("user")].add(r.get("key"))
            acked[r["group_id"]] = r.get("user")
    unmatched: Counter[str] = Counter()
    led: Counter[str] = Counter()
    for g in state.groups:
        res.checked += 1
        gid, leader = g.get("group_id"), g.get("leader_id")
        led[leader] += 1
        outcomes = opened.get(leader, [])
        if not outcomes or all(x == "fail" for x in outcomes):
            res.broken(f"group {gid} led by {leader} matches no open request that was not "
                       "refused")
        elif gid in acked and acked[gid] != leader:
            res.broken(f"group {gid} is led by {leader} but was acknowledged to {acked[gid]}")
        elif gid not in acked:
            unmatched[leader] += 1
    for leader in sorted(led, key=str):
        res.checked += 1
        unknown_only = len(keys_sent[leader] - keys_ok[leader])
        if unmatched[leader] > unknown_only:
            res.broken(f"{unmatched[leader]} group(s) led by {leader} match no acknowledged "
                       f"open request, and only {unknown_only} of theirs had an unknown outcome")
        elif led[leader] > len(keys_sent[leader]) and opened.get(leader):
            res.broken(f"user {leader} leads {led[leader]} groups but sent "
                       f"{len(keys_sent[leader])} open request(s) that were not refused")
    return res


def _differs(r: dict[str, Any], o: dict[str, Any]) -> str:
    """How an order differs from the create request behind it ('' when it does not): the SKU,
    quantity, coupon and group it names (the group an open request got back, if known)."""
    out = []
    for f in ("sku_id", "quantity"):
        if r.get(f) is not None and o.get(f) != r[f]:
            out.append(f"{f} {o.get(f)!r}, requested {r[f]!r}")
    if o.get("coupon_id") != r.get("coupon_id"):
        out.append(f"coupon_id {o.get('coupon_id')!r}, requested {r.get('coupon_id')!r}")
    op = r.get("op")
    want_group = r.get("group_id")
    if op == "reserve" and o.get("group_id") is not None:
        out.append(f"group_id {o.get('group_id')!r} from a reserve without a group")
    elif op in ("join", "open_group") and want_group is not None and \
            o.get("group_id") != want_group:
        out.append(f"group_id {o.get('group_id')!r}, requested or acknowledged {want_group!r}")
    elif op in ("join", "open_group") and o.get("group_id") is None:
        out.append(f"no group_id from a {op} request")
    return "; ".join(out)


def check_stock_movements(rules: Rules, state: FinalState) -> Result:
    """Each order: exactly one reserve, first, of its quantity; at most one release or refund,
    matching its status; the ledger's released/refunded equal the movement sums."""
    res = Result("stock_movements", "one deduction per order, at most one restore per cancel, "
                 "expiry or refund, and ledger restores equal the movements")
    want = {"reserved": (), "paid": (), "cancelled": ("release",), "expired": ("release",),
            "refunded": ("refund",)}
    for o in state.orders:
        res.checked += 1
        oid, moves = o.get("order_id"), o.get("movements") or []
        kinds = [m.get("kind") for m in moves]
        if not kinds or kinds[0] != "reserve" or kinds.count("reserve") != 1:
            res.broken(f"order {oid}: movements {kinds} (want exactly one reserve, first)")
            continue
        if moves[0].get("quantity") != o.get("quantity"):
            res.broken(f"order {oid}: reserve moved {moves[0].get('quantity')} unit(s) for "
                       f"quantity {o.get('quantity')}")
        status = o.get("status")
        if status in want and tuple(kinds[1:]) != want[status]:
            res.broken(f"order {oid} is {status} with movements {kinds} (want "
                       f"{['reserve', *want[status]]})")
        for m in moves[1:]:
            if m.get("quantity") != o.get("quantity"):
                res.broken(f"order {oid}: {m.get('kind')} moved {m.get('quantity')} unit(s) for "
                           f"quantity {o.get('quantity')}")
    released, refunded = _moved(state.orders, "release"), _moved(state.orders, "refund")
    for sku_id, row in sorted(state.ledger.get("skus", {}).items()):
        res.checked += 1
        if row.get("released", 0) != released[sku_id]:
            res.broken(f"sku {sku_id}: ledger released {row.get('released')} != release "
                       f"movements {released[sku_id]}")
        if row.get("refunded", 0) != refunded[sku_id]:
            res.broken(f"sku {sku_id}: ledger refunded {row.get('refunded')} != refund "
                       f"movements {refunded[sku_id]}")
    return res


def check_per_user_limits(rules: Rules, state: FinalState,
                          history: list[dict[str, Any]] | None = None) -> Result:
    """Per user and SKU, reserved + paid units never exceed the per-user limit."""
    res = Result("per_user_limits", f"reserved + paid units per user per SKU <= "
                 f"{rules.per_user_limit}")
    held: Counter[tuple[str, str]] = Counter()
    for o in state.orders:
        if o.get("status") in ACTIVE:
            held[(o.get("user_id"), o["sku_id"])] += int(o.get("quantity", 0))
    for (user, sku_id), units in sorted(held.items()):
        res.checked += 1
        if units > rules.per_user_limit:
            res.broken(f"user {user} holds {units} unit(s) of {sku_id} (limit "
                       f"{rules.per_user_limit})")
    # Over time too: a user may have held too many for a while and given some back since.
    acked = ack_times(history)
    by_pair: defaultdict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for o in state.orders:  # grouped once: scanning every order per pair is quadratic
        by_pair[(o.get("user_id"), o.get("sku_id"))].append(o)
    for user, sku_id in sorted(by_pair, key=lambda p: (str(p[0]), str(p[1]))):
        res.checked += 1
        peak, when = peak_held(by_pair[(user, sku_id)], sku_id, user, acked)
        if peak > rules.per_user_limit and held[(user, sku_id)] <= rules.per_user_limit:
            res.broken(f"user {user} held {peak} unit(s) of {sku_id} for a while (limit "
                       f"{rules.per_user_limit}) at {when:.3f} (by their orders' movements)")
    return res


def check_idempotency(history: list[dict[str, Any]], state: FinalState) -> Result:
    """One idempotency key (per user) produces at most one order or claim, and every
    acknowledged replay of it returned the same order or claim."""
    res = Result("idempotency", "one order or claim per user and idempotency key; replays "
                 "return the first answer")
    per_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for o in state.orders:
        per_key[(o.get("user_id"), o.get("idempotency_key"))].append(o.get("order_id"))
    for c in state.claims:
        if c.get("idempotency_key"):
            per_key[(c.get("user_id"), "claim:" + c["idempotency_key"])].append(c.get("claim_id"))
    for (user, key), ids in sorted(per_key.items()):
        res.checked += 1
        if len(ids) > 1:
            res.broken(f"user {user}, key {key}: {len(ids)} results {sorted(ids)}")
    # Claims exported without their key: per user and coupon, no more claims than distinct
    # keys of claim requests that were acknowledged or whose outcome is unknown.
    keyless = Counter((c.get("user_id"), c.get("coupon_id")) for c in state.claims
                      if not c.get("idempotency_key"))
    sent = _claim_keys(history)
    for (user, cid), n in sorted(keyless.items(), key=str):
        res.checked += 1
        if n > len(sent[(user, cid)]):
            res.broken(f"user {user} holds {n} claim(s) of coupon {cid} from "
                       f"{len(sent[(user, cid)])} distinct claim key(s) not refused")
    if keyless:
        res.note = ("claims carry no idempotency key: checked per user and coupon only, so a "
                    "key that took effect twice while another of the same user and coupon "
                    "took none goes unseen")
    answers: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in history:
        if r.get("outcome") == "ok" and r.get("key"):
            got = r.get("claim_id") if r.get("op") == "claim" else r.get("order_id")
            answers[(r.get("user"), r.get("op"), r.get("key"))].add(got)
    for (user, op, key), got in sorted(answers.items()):
        res.checked += 1
        if len(got) > 1:
            res.broken(f"user {user}: {op} with key {key} acknowledged with different results "
                       f"{sorted(str(g) for g in got)}")
    return res


def check_groups(rules: Rules, state: FinalState, *, expiry_ran: bool = False) -> Result:
    """Groups: active members <= top size and equal to the export; completed groups reached
    the smallest tier; a failed group's paid orders were refunded exactly once (refund policy)
    or stayed paid (fallback); closed groups keep no reservation; no open group past its
    deadline once expiry ran."""
    res = Result("groups", "members <= top size; failed groups' paid orders refunded once; "
                 "closed groups hold no reservation")
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in state.orders:
        if o.get("group_id"):
            by_group[o["group_id"]].append(o)
    known = {g.get("group_id") for g in state.groups}
    for gid in sorted(set(by_group) - known):
        res.broken(f"orders {[o['order_id'] for o in by_group[gid]]} name group {gid}, which "
                   "is not in the group export")
    now = state.ledger.get("now")
    for g in state.groups:
        res.checked += 1
        gid, status = g.get("group_id"), g.get("status")
        orders = by_group.get(gid, [])
        active = [o for o in orders if o.get("status") in ACTIVE]
        top = rules.top_size or g.get("top_size")
        for what, mine in (("top_size", rules.top_size), ("min_size", rules.min_size)):
            if mine and g.get(what) is not None and g[what] != mine:
                res.broken(f"group {gid}: export says {what} {g[what]}, the scenario {mine}")
        if top and len(active) > top:
            res.broken(f"group {gid}: {len(active)} active members > top size {top} "
                       f"(users {sorted(o.get('user_id') for o in active)})")
        if g.get("members") is not None and g["members"] != len(active):
            res.broken(f"group {gid} ({status}): says {g['members']} member(s), but "
                       f"{len(active)} of its orders are active (reserved or paid)")
        paid = [o for o in orders if o.get("status") == "paid"]
        if status in ("completed", "failed"):
            left = [o["order_id"] for o in orders if o.get("status") == "reserved"]
            if left:
                res.broken(f"group {gid} is {status} but orders {left} are still reserved")
        if status == "completed":
            need = rules.min_size or g.get("min_size")
            if len(paid) < need:
                res.broken(f"group {gid} completed with {len(paid)} paid member(s) < min size "
                           f"{need}")
        if status == "failed" and rules.failure_policy == "refund":
            for o in orders:
                kinds = [m.get("kind") for m in o.get("movements") or []]
                if o.get("status") == "paid" or (o.get("paid_at") and kinds.count("refund") != 1):
                    res.broken(f"group {gid} failed: paid order {o['order_id']} of "
                               f"{o.get('user_id')} is {o.get('status')} with movements {kinds} "
                               "(want refunded exactly once)")
        if status == "failed" and rules.failure_policy == "fallback_price":
            for o in orders:
                if o.get("status") == "refunded":
                    res.broken(f"group {gid} failed under the fallback policy, yet order "
                               f"{o['order_id']} was refunded")
        if expiry_ran and status == "open" and now is not None and g.get("deadline", now) < now:
            res.broken(f"group {gid} is still open {now - g['deadline']:.1f} s after its "
                       "deadline, although expiry ran")
    outcomes = Counter(g.get("status") for g in state.groups)
    res.note = ", ".join(f"{outcomes[s]} {s}" for s in ("open", "completed", "failed"))
    return res


def check_coupons(rules: Rules, state: FinalState) -> Result:
    """Coupons: claims <= pool and <= per-user limit; the ledger's issued equals the claims;
    every order using a coupon has a claim of its own behind it; a claim's order used it."""
    res = Result("coupons", "coupons issued <= pool and <= per-user limit; every coupon used "
                 "was claimed")
    claims = Counter(c.get("coupon_id") for c in state.claims)
    per_user = Counter((c.get("coupon_id"), c.get("user_id")) for c in state.claims)
    ledger = state.ledger.get("coupons", {})
    for cid in sorted(set(rules.coupons) | set(ledger) | set(claims)):
        res.checked += 1
        row = ledger.get(cid, {})
        # The scenario's rules are the truth; the ledger's copy is only checked against them.
        if cid in rules.coupons:
            pool, limit = rules.coupons[cid]
            for what, mine in (("pool", pool), ("per_user", limit)):
                if row.get(what) is not None and row[what] != mine:
                    res.broken(f"coupon {cid}: ledger {what} {row[what]} != scenario {what} "
                               f"{mine}")
        else:
            pool, limit = row.get("pool"), row.get("per_user")
        issued = row.get("issued")
        if pool is not None and claims[cid] > pool:
            res.broken(f"coupon {cid} over-issued: {claims[cid]} claims for a pool of {pool}")
        if issued is not None and issued != claims[cid]:
            res.broken(f"coupon {cid}: ledger issued {issued}, claim export {claims[cid]}")
        if pool is not None and issued is not None and issued > pool:
            res.broken(f"coupon {cid}: ledger issued {issued} > pool {pool}")
        if limit is not None:
            for (c2, user), n in sorted(per_user.items()):
                if c2 == cid and n > limit:
                    res.broken(f"user {user} claimed coupon {cid} {n} times (per-user limit "
                               f"{limit})")
    # A claim is used by the first order naming its coupon and stays used (CONTRACT 1.1), so
    # orders naming a coupon, whatever their status, never outnumber the user's claims of it.
    used = Counter((o.get("coupon_id"), o.get("user_id")) for o in state.orders
                   if o.get("coupon_id"))
    for (cid, user), n in sorted(used.items()):
        res.checked += 1
        if n > per_user[(cid, user)]:
            res.broken(f"user {user} has {n} order(s) using coupon {cid} but "
                       f"{per_user[(cid, user)]} claim(s)")
    orders = {o.get("order_id"): o for o in state.orders}
    for c in state.claims:
        oid = c.get("order_id")
        if oid is None:
            continue
        res.checked += 1
        o = orders.get(oid)
        if o is None or o.get("coupon_id") != c.get("coupon_id") or \
                o.get("user_id") != c.get("user_id"):
            res.broken(f"claim {c.get('claim_id')} of {c.get('user_id')} says order {oid} used "
                       f"coupon {c.get('coupon_id')}, but that order "
                       f"{'does not exist' if o is None else 'is not theirs with that coupon'}")
    return res


def check_unknown_outcomes(history: list[dict[str, Any]], state: FinalState) -> Result:
    """A request whose outcome the client never learned (timeout, lost connection) may have
    taken effect or not, but never twice."""
    res = Result("unknown_outcomes", "a request with an unknown outcome took effect at most once")
    orders: Counter[tuple[str, str]] = Counter((o.get("user_id"), o.get("idempotency_key"))
                                               for o in state.orders)
    # Claims are matched by key when the export carries it, else per user and coupon below.
    claims: Counter[tuple[str, str]] = Counter((c.get("user_id"), c.get("idempotency_key"))
                                               for c in state.claims if c.get("idempotency_key"))
    keyless = [c for c in state.claims if not c.get("idempotency_key")]
    took, seen, by_key, unknown_claims = 0, set(), 0, 0
    for r in history:
        if r.get("outcome") != "unknown" or r.get("op") not in (*CREATE_OPS, "claim"):
            continue
        k = (r.get("user"), r.get("key"))
        if k in seen:
            continue
        seen.add(k)
        if r.get("op") == "claim" and keyless:
            unknown_claims += 1
            continue  # counted per user and coupon below
        res.checked += 1
        by_key += 1
        n = claims[k] if r.get("op") == "claim" else orders[k]
        took += n > 0
        if n > 1:
            res.broken(f"user {k[0]}, key {k[1]}: unknown {r.get('op')} took effect {n} times")
    res.note = f"{took} of {by_key} took effect"
    if keyless:
        # Fallback without keys: claims acknowledged by id are accounted for; the rest of a
        # user's claims of a coupon must not outnumber their claim keys that only ever had
        # an unknown outcome.
        acked_ids: set[str] = set()
        ok_keys: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in history:
            if r.get("op") == "claim" and r.get("outcome") == "ok" and r.get("claim_id"):
                acked_ids.add(r["claim_id"])
                ok_keys[(r.get("user"), r.get("coupon_id"))].add(r.get("key"))
        sent = _claim_keys(history)
        rest = Counter((c.get("user_id"), c.get("coupon_id")) for c in keyless
                       if c.get("claim_id") not in acked_ids)
        for user, cid in sorted(set(sent) | set(rest), key=str):
            unknown_only = len(sent.get((user, cid), set()) - ok_keys[(user, cid)])
            if not unknown_only and not rest[(user, cid)]:
                continue
            res.checked += 1
            if rest[(user, cid)] > unknown_only:
                res.broken(f"user {user}, coupon {cid}: {rest[(user, cid)]} claim(s) beyond "
                           f"the acknowledged ones, but only {unknown_only} claim key(s) with "
                           "an unknown outcome")
        if unknown_claims:
            res.note += (f"; {unknown_claims} unknown claim(s): claims carry no idempotency "
                         "key, so unknown claims are checked per user and coupon only (one "
                         "key taking effect twice while another of the same user and coupon "
                         "took none goes unseen)")
    return res


def _claim_keys(history: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """Per (user, coupon): distinct keys of claim requests acknowledged or with unknown
    outcome."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in history:
        if r.get("op") == "claim" and r.get("outcome") in ("ok", "unknown"):
            out[(r.get("user"), r.get("coupon_id"))].add(r.get("key"))
    return out


def check_expiry(state: FinalState) -> Result:
    """After expiry ran, no reservation is still held past its payment deadline."""
    res = Result("expiry", "no reservation held past its payment deadline once expiry ran")
    now = state.ledger.get("now")
    for o in state.orders:
        if o.get("status") != "reserved":
            continue
        res.checked += 1
        if now is not None and o.get("expires_at") is not None and o["expires_at"] < now:
            res.broken(f"order {o['order_id']} of {o.get('user_id')} still reserved "
                       f"{now - o['expires_at']:.1f} s after its deadline")
    return res


def history_stats(history: list[dict[str, Any]]) -> dict[str, int]:
    """Counts by outcome, to read the invariants against."""
    c = Counter(r.get("outcome") for r in history)
    return {"operations": len(history), "ok": c["ok"], "fail": c["fail"],
            "unknown": c["unknown"]}


def check(history: list[dict[str, Any]], state: FinalState, rules: Rules, *,
          expiry_ran: bool = False) -> Report:
    """Run every invariant. `expiry_ran`: expiry was run after every deadline had passed, so
    reservations and groups past their deadlines are violations too."""
    checks: list[Callable[[], Result]] = [
        lambda: check_conservation(rules, state),
        lambda: check_no_oversell(state, history),
        lambda: check_non_negative(state),
        lambda: check_no_lost_acknowledged(history, state),
        lambda: check_no_phantom(history, state),
        lambda: check_stock_movements(rules, state),
        lambda: check_per_user_limits(rules, state, history),
        lambda: check_idempotency(history, state),
        lambda: check_groups(rules, state, expiry_ran=expiry_ran),
        lambda: check_coupons(rules, state),
        lambda: check_unknown_outcomes(history, state),
    ]
    if expiry_ran:
        checks.append(lambda: check_expiry(state))
    return Report([c() for c in checks], history_stats(history))
