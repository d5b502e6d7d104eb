"""Inventory: stock is conserved, never oversold (at the end or at any moment the history can
prove), never negative, and each order moves stock exactly once each way.

Moments are ordered by the store's own movement `seq` (contract 1.2): sorting every movement
of a SKU by `seq` replays its stock exactly as the store applied it, so an oversell that healed
a moment later is still seen, whatever the clocks. Against a 1.1 server (no `seq`) the replay
falls back to the server's `at` timestamps with CLOCK_SLACK_SECONDS of slack, which can miss
an oversell shorter than the slack; the result's note says which order was used.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from loadtests.checker.base import Result, Rules, templates
from loadtests.checker.views import INF, order_acks, release_hi, reserve_hi, reserve_lo
from loadtests.history import History
from loadtests.state import FinalState, Order

CLOCK_SLACK_SECONDS = 2.0
"""1.1 fallback only: how far movement timestamps may stray from the store's order (they are
taken when a request starts, and worker clocks differ a little); restores count this early."""
SEQ_NOTE = "moments ordered by the store's movement seq"
AT_NOTE = (f"no movement seq (contract 1.1): moments ordered by server timestamps with "
           f"{CLOCK_SLACK_SECONDS:g} s slack, so an oversell shorter than that can go unseen")

templates({
    "sku_missing": "sku {sku}: missing from the ledger",
    "initial_differs": "sku {sku}: ledger initial {seen} != scenario stock {expected}",
    "ledger_unbalanced": "sku {sku}: ledger initial {initial} != available {available} + "
                         "reserved {reserved} + sold {sold} (= {total})",
    "ledger_vs_export": "sku {sku}: ledger reserved {ledger_reserved} / sold {ledger_sold}, but "
                        "the order export holds reserved {reserved} / paid {paid}",
    "moves_vs_available": "sku {sku}: initial {initial} - reserve movements {out} + "
                          "release/refund movements {back} = {expected}, but the ledger says "
                          "available {seen}",
    "order_count": "ledger counts {seen} {status} order(s), the export {expected}",
    "oversold_end": "sku {sku} oversold by {over} unit(s): orders hold {held} (paid {paid}) of "
                    "{initial}",
    "oversold_offered": "sku {sku} oversold by {over} unit(s): orders hold {held} and the "
                        "ledger still offers {offered}, of {initial}",
    "oversold_seq": "sku {sku} oversold by {over} unit(s) for a while: orders held {held} of "
                    "{initial} after movement seq {seq} (order {order_id}'s reserve)",
    "oversold_at": "sku {sku} oversold by {over} unit(s) for a while: orders held {held} of "
                   "{initial} at {at:.3f} (by their movements' timestamps)",
    "oversold_ledger": "sku {sku} oversold in the ledger: reserved + sold = {held} > initial "
                       "{initial}",
    "negative": "{where}: {field} = {value}",
    "bad_quantity": "order {order_id}: quantity {quantity}",
    "bad_amount": "order {order_id}: amount {amount}",
    "movements_shape": "order {order_id}: movements {kinds} (want exactly one reserve, first)",
    "reserve_quantity": "order {order_id}: reserve moved {moved} unit(s) for quantity "
                        "{quantity}",
    "movements_status": "order {order_id} is {status} with movements {kinds} (want {want})",
    "restore_quantity": "order {order_id}: {movement} moved {moved} unit(s) for quantity "
                        "{quantity}",
    "ledger_restores": "sku {sku}: ledger {field} {seen} != {movement} movements {expected}",
    "seq_duplicate": "movement seq {seq} appears {count} times (orders {order_ids})",
    "seq_vs_time": "sku {sku}: order {later}'s {later_kind} (seq {later_seq}) was acknowledged "
                   "at {acked:.3f}, before order {earlier}'s request (seq {earlier_seq}, a "
                   "lower one) was sent at {sent:.3f}: the seq is not the order the store "
                   "applied them in",
})


def units(orders: Iterable[Order], statuses: tuple[str, ...]) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in orders:
        if o.status in statuses:
            out[o.sku_id] += o.quantity
    return out


def moved(orders: Iterable[Order], kind: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in orders:
        for m in o.movements:
            if m.kind == kind:
                out[o.sku_id] += m.quantity
    return out


def conservation(history: History, state: FinalState, rules: Rules) -> Result:
    """Per SKU: initial = available + reserved + sold in the ledger; the ledger's initial is
    the scenario's stock; reserved and sold agree with the order export; and stock moved by the
    orders' movements accounts for what is no longer available."""
    res = Result("conservation", "initial stock = available + reserved + sold, in the ledger "
                 "and in the order export")
    skus = state.ledger.skus
    reserved, sold = units(state.orders, ("reserved",)), units(state.orders, ("paid",))
    out = moved(state.orders, "reserve")
    back = moved(state.orders, "release") + moved(state.orders, "refund")
    for sku in sorted(set(skus) | set(rules.stock)):
        res.checked += 1
        row = skus.get(sku)
        if row is None:
            res.broken("sku_missing", sku=sku)
            continue
        if sku in rules.stock and row.initial != rules.stock[sku]:
            res.broken("initial_differs", sku=sku, seen=row.initial, expected=rules.stock[sku])
        total = row.available + row.reserved + row.sold
        if row.initial != total:
            res.broken("ledger_unbalanced", sku=sku, initial=row.initial,
                       available=row.available, reserved=row.reserved, sold=row.sold,
                       total=total)
        if row.reserved != reserved[sku] or row.sold != sold[sku]:
            res.broken("ledger_vs_export", sku=sku, ledger_reserved=row.reserved,
                       ledger_sold=row.sold, reserved=reserved[sku], paid=sold[sku])
        by_moves = row.initial - out[sku] + back[sku]
        if by_moves != row.available:
            res.broken("moves_vs_available", sku=sku, initial=row.initial, out=out[sku],
                       back=back[sku], expected=by_moves, seen=row.available)
    if state.ledger.orders:
        export = Counter(o.status for o in state.orders)
        for status, n in sorted(state.ledger.orders.items()):
            res.checked += 1
            if n != export.get(status, 0):
                res.broken("order_count", status=status, seen=n, expected=export.get(status, 0))
    return res


def seq_replay(orders: Iterable[Order]) -> dict[str, list[tuple[int, int, str, str]]]:
    """Per SKU, every movement as (seq, units taken (+) or given back (-), order id, kind),
    in the store's order."""
    out: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for o in orders:
        for m in o.movements:
            assert m.seq is not None
            delta = m.quantity if m.kind == "reserve" else -m.quantity
            out[o.sku_id].append((m.seq, delta, o.order_id, m.kind))
    for moves in out.values():
        moves.sort()
    return out


def peak_by_at(orders: Iterable[Order], acked: dict[str, float]) -> tuple[int, float | None]:
    """1.1 fallback: the most units these orders held at once by their movements' server
    timestamps, and when. Restores count CLOCK_SLACK_SECONDS early, and a reserve no earlier
    than its acknowledgement arrived, so a correct server is never blamed for a timestamp
    taken before a lock was won."""
    events: list[tuple[float, int]] = []
    for o in orders:
        for m in o.movements:
            if m.kind == "reserve":
                events.append((max(m.at, acked.get(o.order_id, m.at)), m.quantity))
            else:
                events.append((m.at - CLOCK_SLACK_SECONDS, -m.quantity))
    held, peak, when = 0, 0, None
    for at, q in sorted(events):  # restores first on ties
        held += q
        if held > peak:
            peak, when = held, at
    return peak, when


def no_oversell(history: History, state: FinalState, rules: Rules) -> Result:
    """No SKU hands out more units than it had: units held by orders (reserved + paid) plus
    units still offered never exceed the initial stock, at the end or at any moment before."""
    res = Result("no_oversell", "units held by orders (reserved + paid) + units still "
                 "available <= initial stock, at the end and at every moment")
    active, paid = units(state.orders, ("reserved", "paid")), units(state.orders, ("paid",))
    by_seq = state.has_seq
    replay = seq_replay(state.orders) if by_seq else {}
    by_sku: dict[str, list[Order]] = defaultdict(list)
    if not by_seq:
        for o in state.orders:
            by_sku[o.sku_id].append(o)
    acked = order_acks(history)
    for sku, row in sorted(state.ledger.skus.items()):
        res.checked += 1
        init = row.initial
        if active[sku] > init:
            res.broken("oversold_end", sku=sku, over=active[sku] - init, held=active[sku],
                       paid=paid[sku], initial=init)
        if active[sku] + row.available > init:
            res.broken("oversold_offered", sku=sku, over=active[sku] + row.available - init,
                       held=active[sku], offered=row.available, initial=init)
        if by_seq:
            held = 0
            for seq, delta, oid, _ in replay.get(sku, ()):
                held += delta
                if held > init:
                    res.broken("oversold_seq", sku=sku, over=held - init, held=held,
                               initial=init, seq=seq, order_id=oid)
                    break
        else:
            peak, when = peak_by_at(by_sku.get(sku, []), acked)
            if peak > init and active[sku] <= init:
                res.broken("oversold_at", sku=sku, over=peak - init, held=peak, initial=init,
                           at=when)
        if row.reserved + row.sold > init:
            res.broken("oversold_ledger", sku=sku, held=row.reserved + row.sold, initial=init)
    res.note = SEQ_NOTE if by_seq else AT_NOTE
    return res


def non_negative(history: History, state: FinalState, rules: Rules) -> Result:
    """No counter, quantity or amount below zero."""
    res = Result("non_negative", "no stock counter, coupon counter, quantity or amount < 0")
    led = state.ledger
    for sku, row in sorted(led.skus.items()):
        for name in ("initial", "available", "reserved", "sold", "released", "refunded"):
            res.checked += 1
            if getattr(row, name) < 0:
                res.broken("negative", where=f"sku {sku}", field=name, value=getattr(row, name))
    for cid, c in sorted(led.coupons.items()):
        for name in ("pool", "issued", "per_user"):
            res.checked += 1
            if getattr(c, name) < 0:
                res.broken("negative", where=f"coupon {cid}", field=name, value=getattr(c, name))
    for section, counts in (("groups", led.groups), ("orders", led.orders)):
        for name, v in sorted(counts.items()):
            res.checked += 1
            if v < 0:
                res.broken("negative", where=f"ledger {section}", field=name, value=v)
    for o in state.orders:
        res.checked += 1
        if o.quantity < 1:
            res.broken("bad_quantity", order_id=o.order_id, quantity=o.quantity)
        if o.amount < 0:
            res.broken("bad_amount", order_id=o.order_id, amount=o.amount)
    return res


WANT_AFTER_RESERVE = {"reserved": (), "paid": (), "cancelled": ("release",),
                      "expired": ("release",), "refunded": ("refund",)}


def stock_movements(history: History, state: FinalState, rules: Rules) -> Result:
    """Each order: exactly one reserve, first, of its quantity; at most one release or refund,
    matching its status; the ledger's released/refunded equal the movement sums. With `seq`:
    no seq twice, and the seq agrees with what the clients saw happen first."""
    res = Result("stock_movements", "one deduction per order, at most one restore per cancel, "
                 "expiry or refund, and ledger restores equal the movements")
    for o in state.orders:
        res.checked += 1
        kinds = [m.kind for m in o.movements]
        if not kinds or kinds[0] != "reserve" or kinds.count("reserve") != 1:
            res.broken("movements_shape", order_id=o.order_id, kinds=kinds)
            continue
        if o.movements[0].quantity != o.quantity:
            res.broken("reserve_quantity", order_id=o.order_id, moved=o.movements[0].quantity,
                       quantity=o.quantity)
        want = WANT_AFTER_RESERVE[o.status]
        if tuple(kinds[1:]) != want:
            res.broken("movements_status", order_id=o.order_id, status=o.status, kinds=kinds,
                       want=["reserve", *want])
        for m in o.movements[1:]:
            if m.quantity != o.quantity:
                res.broken("restore_quantity", order_id=o.order_id, movement=m.kind,
                           moved=m.quantity, quantity=o.quantity)
    released, refunded = moved(state.orders, "release"), moved(state.orders, "refund")
    for sku, row in sorted(state.ledger.skus.items()):
        res.checked += 1
        if row.released != released[sku]:
            res.broken("ledger_restores", sku=sku, field="released", seen=row.released,
                       movement="release", expected=released[sku])
        if row.refunded != refunded[sku]:
            res.broken("ledger_restores", sku=sku, field="refunded", seen=row.refunded,
                       movement="refund", expected=refunded[sku])
    if state.has_seq and state.orders:
        _seq_checks(history, state, res)
    return res


def _seq_checks(history: History, state: FinalState, res: Result) -> None:
    owners: dict[int, list[str]] = defaultdict(list)
    for o in state.orders:
        for m in o.movements:
            owners[m.seq].append(o.order_id)  # type: ignore[index]
    for seq, ids in sorted(owners.items()):
        res.checked += 1
        if len(ids) > 1:
            res.broken("seq_duplicate", seq=seq, count=len(ids), order_ids=sorted(ids))
    # Real time: a movement acknowledged before another's request was even sent must come
    # first in the seq. Scanning each SKU from the highest seq down, keep the earliest
    # acknowledgement seen so far; a lower seq whose request started after it contradicts it.
    orders = {o.order_id: o for o in state.orders}
    for sku, moves in seq_replay(state.orders).items():
        best_hi, best = INF, None
        for seq, _, oid, kind in reversed(moves):
            o = orders[oid]
            lo = reserve_lo(history, o)
            if best is not None and best_hi < lo:
                res.broken("seq_vs_time", sku=sku, later=best[0], later_kind=best[1],
                           later_seq=best[2], acked=best_hi, earlier=oid, earlier_seq=seq,
                           sent=lo)
                break
            hi = reserve_hi(history, o) if kind == "reserve" else (
                release_hi(history, o) if kind == "release" else INF)
            if hi < best_hi:
                best_hi, best = hi, (oid, kind, seq)
