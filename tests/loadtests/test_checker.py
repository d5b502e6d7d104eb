"""The invariant checker on hand-written histories and final states: every invariant holds on a
correct run and breaks on a run that violates it, with a counterexample naming the culprit.

Fixtures are JSON as a server exports it and a load test records it; `run_check` parses them
into the typed history and state, as `groupbuy check` does."""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from loadtests.checker import (
    INVARIANTS,
    Report,
    Rules,
    check,
    render,
    save_report,
    summary_lines,
    to_text,
)
from loadtests.history import History
from loadtests.state import FinalState

NOW = 1_800_000_100.0
RULES = Rules(stock={"tea": 10, "pot": 5}, per_user_limit=2, coupons={"c1": (2, 1)},
              failure_policy="refund", min_size=2, top_size=3)


@dataclass
class Snap:
    """A final state as the server's JSON (mutable, for tests to break)."""

    ledger: dict[str, Any]
    orders: list[dict[str, Any]]
    groups: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)


def order(oid: str, user: str, sku: str, status: str, key: str, *, qty: int = 1,
          group: str | None = None, coupon: str | None = None) -> dict[str, Any]:
    moves = [{"kind": "reserve", "quantity": qty, "at": NOW - 90}]
    if status in ("cancelled", "expired"):
        moves.append({"kind": "release", "quantity": qty, "at": NOW - 50})
    if status == "refunded":
        moves.append({"kind": "refund", "quantity": qty, "at": NOW - 40})
    return {"order_id": oid, "user_id": user, "sku_id": sku, "quantity": qty, "status": status,
            "group_id": group, "coupon_id": coupon, "idempotency_key": key, "amount": 1000,
            "list_amount": 2000, "gift": False, "created_at": NOW - 90, "expires_at": NOW + 60,
            "paid_at": NOW - 80 if status in ("paid", "refunded") else None,
            "closed_at": None, "movements": moves}


def ledger_for(orders: list[dict[str, Any]], groups: list[dict[str, Any]],
               claims: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledger a correct server would report for these orders."""
    skus = {}
    for sku, init in RULES.stock.items():
        mine = [o for o in orders if o["sku_id"] == sku]
        units = lambda st, m=mine: sum(o["quantity"] for o in m if o["status"] == st)  # noqa: E731
        moved = lambda k, m=mine: sum(x["quantity"] for o in m for x in o["movements"]  # noqa: E731
                                      if x["kind"] == k)
        skus[sku] = {"initial": init, "reserved": units("reserved"), "sold": units("paid"),
                     "available": init - units("reserved") - units("paid"),
                     "released": moved("release"), "refunded": moved("refund")}
    statuses = Counter(o["status"] for o in orders)
    gstat = Counter(g["status"] for g in groups)
    return {"sale": "test", "now": NOW, "skus": skus,
            "coupons": {"c1": {"pool": 2, "issued": len(claims), "per_user": 1}},
            "groups": {"open": gstat["open"], "completed": gstat["completed"],
                       "failed": gstat["failed"], "leader_rewards": gstat["completed"]},
            "orders": {s: statuses[s] for s in ("reserved", "paid", "cancelled", "expired",
                                                 "refunded")}}


def rec(user: str, op: str, outcome: str = "ok", **kw: Any) -> dict[str, Any]:
    r = {"worker": 0, "arrival": 0, "journey": "test", "user": user, "op": op,
         "key": kw.pop("key", None), "intended": NOW - 95, "start": NOW - 95, "end": NOW - 94,
         "outcome": outcome, "status": 201 if outcome == "ok" else None, "code": None}
    r.update(kw)
    return r


def claim(cid: str, user: str, *, order_id: str | None = None, at: float = NOW - 92,
          coupon: str = "c1") -> dict[str, Any]:
    return {"claim_id": cid, "coupon_id": coupon, "user_id": user, "claimed_at": at,
            "order_id": order_id}


def good_run() -> tuple[list[dict[str, Any]], Snap]:
    """A small correct run: single buys, a cancel, an expiry, a completed and a failed group,
    a coupon, a refused reservation, and an unknown outcome retried with the same key."""
    orders = [
        order("o1", "u1", "tea", "paid", "k1"),
        order("o2", "u2", "tea", "cancelled", "k2"),
        order("o3", "u3", "tea", "expired", "k3"),
        order("o4", "u1", "pot", "reserved", "k4"),
        order("o5", "u4", "pot", "paid", "k5", group="g1"),
        order("o6", "u5", "pot", "paid", "k6", group="g1"),
        order("o7", "u6", "tea", "refunded", "k7", group="g2"),
        order("o8", "u7", "tea", "paid", "k8", coupon="c1"),
        order("o9", "u8", "tea", "paid", "k9"),
    ]
    groups = [
        {"group_id": "g1", "sku_id": "pot", "leader_id": "u4", "status": "completed",
         "deadline": NOW - 10, "members": 2, "paid_members": 2, "top_size": 3, "min_size": 2,
         "tier_reached": 2, "order_ids": ["o5", "o6"], "closed_at": NOW - 30},
        {"group_id": "g2", "sku_id": "tea", "leader_id": "u6", "status": "failed",
         "deadline": NOW - 10, "members": 0, "paid_members": 1, "top_size": 3, "min_size": 2,
         "tier_reached": None, "order_ids": ["o7"], "closed_at": NOW - 10},
    ]
    claims = [claim("cl1", "u7", order_id="o8")]
    history = [
        rec("u1", "reserve", key="k1", sku_id="tea", order_id="o1"),
        rec("u1", "pay", order_id="o1"),
        rec("u2", "reserve", key="k2", sku_id="tea", order_id="o2"),
        rec("u2", "cancel", order_id="o2"),
        rec("u3", "reserve", key="k3", sku_id="tea", order_id="o3"),
        rec("u1", "reserve", key="k4", sku_id="pot", order_id="o4"),
        rec("u4", "open_group", key="k5", sku_id="pot", order_id="o5", group_id="g1"),
        rec("u4", "pay", order_id="o5"),
        rec("u5", "join", key="k6", sku_id="pot", order_id="o6", group_id="g1"),
        rec("u5", "pay", order_id="o6"),
        rec("u6", "open_group", key="k7", sku_id="tea", order_id="o7", group_id="g2"),
        rec("u6", "pay", order_id="o7"),
        rec("u7", "claim", key="kc1", coupon_id="c1", claim_id="cl1"),
        rec("u7", "reserve", key="k8", sku_id="tea", coupon_id="c1", order_id="o8"),
        rec("u7", "pay", order_id="o8"),
        rec("u8", "reserve", "unknown", key="k9", sku_id="tea", code="timeout",
            client_timeout=0.001),
        rec("u8", "reserve", key="k9", sku_id="tea", order_id="o9"),
        rec("u8", "pay", "unknown", order_id="o9", code="timeout"),
        # u1 already holds one pot: two more would pass the limit of 2, a justified refusal.
        rec("u1", "reserve", "fail", key="k10", sku_id="pot", quantity=2, status=409,
            code="limit_reached"),
    ]
    return history, Snap(ledger_for(orders, groups, claims), orders, groups, claims)


def run_check(history: list[dict[str, Any]], snap: Snap, rules: Rules = RULES, *,
              expiry_ran: bool = True, complete: bool = True) -> Report:
    state = FinalState.from_json(snap.ledger, snap.orders, snap.groups, snap.claims,
                                 expiry_ran=expiry_ran)
    return check(History.of(history, complete=complete), state, rules)


def broken_names(history: list[dict[str, Any]], state: Snap, *,
                 expiry_ran: bool = True, rules: Rules = RULES) -> set[str]:
    return {r.name for r in run_check(history, state, rules, expiry_ran=expiry_ran).broken}


def examples(history: list[dict[str, Any]], state: Snap, name: str,
             rules: Rules = RULES) -> list[str]:
    report = run_check(history, state, rules)
    return [render(f) for f in next(r for r in report.results if r.name == name).findings]


def rebuilt(state: Snap, orders: list[dict[str, Any]] | None = None,
            groups: list[dict[str, Any]] | None = None,
            claims: list[dict[str, Any]] | None = None) -> Snap:
    """The state with new rows and the ledger a correct server would keep for them."""
    o = state.orders if orders is None else orders
    g = state.groups if groups is None else groups
    c = state.claims if claims is None else claims
    return Snap(ledger_for(o, g, c), o, g, c)


def test_a_correct_run_holds_every_invariant() -> None:
    history, state = good_run()
    report = run_check(history, state)
    assert report.held, to_text(report)
    assert {r.name for r in report.results} == set(INVARIANTS)
    # Money needs the campaign (tests/test_checker_money.py); the rest all ran.
    assert {r.name for r in report.skipped} == {"prices", "gifts"}
    assert all(r.checked > 0 for r in report.results
               if not r.skipped and r.name != "adversarial"), to_text(report)
    unknown = next(r for r in report.results if r.name == "unknown_outcomes")
    assert unknown.note == "1 of 1 took effect"


def test_conservation_breaks_when_the_ledger_loses_a_unit() -> None:
    history, state = good_run()
    state.ledger["skus"]["tea"]["available"] -= 1
    assert "conservation" in broken_names(history, state)
    assert any("sku tea: ledger initial 10" in e
               for e in examples(history, state, "conservation"))


def test_conservation_breaks_when_the_ledger_disagrees_with_the_orders() -> None:
    history, state = good_run()
    state.ledger["skus"]["tea"]["sold"] += 1
    state.ledger["skus"]["tea"]["available"] -= 1
    assert broken_names(history, state) == {"conservation"}
    assert "order export holds reserved 0 / paid 3" in " ".join(
        examples(history, state, "conservation"))


def test_oversell_is_reported_with_the_units_oversold() -> None:
    history, state = good_run()
    # A lost update: two buyers read the same stock, both wrote it back minus one.
    extra = order("o10", "u9", "pot", "paid", "k11")
    history += [rec("u9", "reserve", key="k11", sku_id="pot", order_id="o10"),
                rec("u9", "pay", order_id="o10")]
    state = rebuilt(state, orders=[*state.orders, extra])
    state.ledger["skus"]["pot"]["available"] += 1
    state.ledger["skus"]["pot"]["sold"] -= 1
    assert "no_oversell" in broken_names(history, state)
    assert examples(history, state, "no_oversell") == [
        "sku pot oversold by 1 unit(s): orders hold 4 and the ledger still offers 2, of 5"]


def test_oversell_beyond_the_stock_is_reported() -> None:
    history, state = good_run()
    extra = [order(f"x{i}", f"v{i}", "pot", "paid", f"kx{i}") for i in range(3)]
    history += [rec(f"v{i}", op, key=f"kx{i}" if op == "reserve" else None, sku_id="pot",
                    order_id=f"x{i}") for i in range(3) for op in ("reserve", "pay")]
    state = rebuilt(state, orders=state.orders + extra)
    assert "no_oversell" in broken_names(history, state)
    assert ("sku pot oversold by 1 unit(s): orders hold 6 (paid 5) of 5"
            in examples(history, state, "no_oversell"))


def test_negative_counters_break_non_negative() -> None:
    history, state = good_run()
    state.ledger["coupons"]["c1"]["issued"] = -1
    assert "non_negative" in broken_names(history, state)
    assert "coupon c1: issued = -1" in examples(history, state, "non_negative")


def test_a_lost_acknowledged_order_is_named() -> None:
    history, state = good_run()
    state = rebuilt(state, orders=[o for o in state.orders if o["order_id"] != "o1"])
    assert "no_lost_acknowledged" in broken_names(history, state)
    assert any(e.startswith("order o1 acknowledged to user u1 (key k1) is missing")
               for e in examples(history, state, "no_lost_acknowledged"))


def test_an_acknowledged_payment_that_did_not_stick_is_lost() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    orders[0]["status"] = "expired"
    orders[0]["movements"].append({"kind": "release", "quantity": 1, "at": NOW})
    state = rebuilt(state, orders=orders)
    assert "no_lost_acknowledged" in broken_names(history, state)
    assert ("order o1: pay acknowledged to u1, final status expired"
            in examples(history, state, "no_lost_acknowledged"))


def test_a_lost_claim_and_a_lost_group_are_named() -> None:
    history, state = good_run()
    state = rebuilt(state, claims=[], groups=state.groups[1:])
    got = examples(history, state, "no_lost_acknowledged")
    assert "claim cl1 acknowledged to u7 is missing" in got
    assert "group g1 opened by u4 is missing" in got


def test_an_order_nobody_asked_for_is_a_phantom() -> None:
    history, state = good_run()
    state = rebuilt(state, orders=[*state.orders, order("o99", "u1", "tea", "reserved", "kz")])
    assert "no_phantom" in broken_names(history, state)
    assert ("order o99 (user u1, key kz) matches no request in the history"
            in examples(history, state, "no_phantom"))


def test_an_order_from_a_refused_request_is_a_phantom() -> None:
    history, state = good_run()
    state = rebuilt(state, orders=[*state.orders, order("o98", "u1", "pot", "reserved", "k10")])
    assert any("exists although every request for it was refused" in e
               for e in examples(history, state, "no_phantom"))


def test_a_payment_nobody_sent_is_a_phantom() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    orders[3]["status"] = "paid"  # o4 was only reserved
    state = rebuilt(state, orders=orders)
    assert "no_phantom" in broken_names(history, state)
    assert any(e.startswith("order o4 of u1 is paid but its owner sent no pay request")
               for e in examples(history, state, "no_phantom"))


def test_a_claim_nobody_sent_is_a_phantom() -> None:
    history, state = good_run()
    extra = claim("cl2", "u1", at=NOW)
    state = rebuilt(state, claims=[*state.claims, extra])
    assert ("user u1 holds 1 claim(s) of coupon c1 but sent 0 claim request(s) that were not "
            "refused") in examples(history, state, "no_phantom")


def test_a_double_restore_breaks_stock_movements() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    orders[1]["movements"].append({"kind": "release", "quantity": 1, "at": NOW})
    state = Snap(state.ledger, orders, state.groups, state.claims)
    assert "stock_movements" in broken_names(history, state)
    got = examples(history, state, "stock_movements")
    assert "order o2 is cancelled with movements ['reserve', 'release', 'release'] (want " \
           "['reserve', 'release'])" in got
    assert "sku tea: ledger released 2 != release movements 3" in got


def test_a_second_deduction_breaks_stock_movements() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    orders[0]["movements"].append({"kind": "reserve", "quantity": 1, "at": NOW})
    state = Snap(state.ledger, orders, state.groups, state.claims)
    assert "order o1: movements ['reserve', 'reserve'] (want exactly one reserve, first)" in \
        examples(history, state, "stock_movements")


def test_per_user_limit_breaks_when_a_user_holds_too_many() -> None:
    history, state = good_run()
    extra = order("o20", "u1", "tea", "paid", "k20", qty=2)
    history += [rec("u1", "reserve", key="k20", sku_id="tea", order_id="o20"),
                rec("u1", "pay", order_id="o20")]
    state = rebuilt(state, orders=[*state.orders, extra])
    assert broken_names(history, state) == {"per_user_limits"}
    assert examples(history, state, "per_user_limits") == [
        "user u1 holds 3 unit(s) of tea (limit 2)"]


def test_two_orders_under_one_key_break_idempotency() -> None:
    history, state = good_run()
    dup = order("o30", "u1", "pot", "cancelled", "k4")
    state = rebuilt(state, orders=[*state.orders, dup])
    assert "idempotency" in broken_names(history, state)
    assert "user u1, key k4: 2 results ['o30', 'o4']" in examples(history, state, "idempotency")


def test_a_replay_answered_with_another_order_breaks_idempotency() -> None:
    history, state = good_run()
    history.append(rec("u1", "reserve", key="k1", sku_id="tea", order_id="o2"))
    assert "idempotency" in broken_names(history, state)


def test_groups_break_above_top_size() -> None:
    history, state = good_run()
    orders = list(state.orders)
    groups = copy.deepcopy(state.groups)
    for i in range(2):
        orders.append(order(f"gx{i}", f"w{i}", "pot", "paid", f"kg{i}", group="g1"))
        history += [rec(f"w{i}", "join", key=f"kg{i}", sku_id="pot", order_id=f"gx{i}",
                        group_id="g1"), rec(f"w{i}", "pay", order_id=f"gx{i}")]
    groups[0]["members"] = 4
    state = rebuilt(state, orders=orders, groups=groups)
    assert "groups" in broken_names(history, state)
    assert any(e.startswith("group g1: 4 active members > top size 3")
               for e in examples(history, state, "groups"))


def test_a_failed_group_must_refund_its_paid_orders() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    o7 = next(o for o in orders if o["order_id"] == "o7")
    o7["status"], o7["movements"] = "paid", o7["movements"][:1]
    groups = copy.deepcopy(state.groups)
    groups[1]["members"] = 1
    state = rebuilt(state, orders=orders, groups=groups)
    assert broken_names(history, state) == {"groups"}
    assert examples(history, state, "groups") == [
        "group g2 failed: paid order o7 of u6 is paid with movements ['reserve'] (want "
        "refunded exactly once)"]


def test_fallback_policy_keeps_failed_groups_paid() -> None:
    history, state = good_run()
    fallback = Rules(**{**RULES.__dict__, "failure_policy": "fallback_price"})
    assert "groups" in broken_names(history, state, rules=fallback)  # o7 was refunded
    orders = copy.deepcopy(state.orders)
    o7 = next(o for o in orders if o["order_id"] == "o7")
    o7["status"], o7["movements"] = "paid", o7["movements"][:1]
    groups = copy.deepcopy(state.groups)
    groups[1]["members"] = 1
    state = rebuilt(state, orders=orders, groups=groups)
    assert "groups" not in broken_names(history, state, rules=fallback)


def test_an_open_group_past_its_deadline_breaks_groups_once_expiry_ran() -> None:
    history, state = good_run()
    groups = copy.deepcopy(state.groups)
    groups[0]["status"] = "open"
    state = rebuilt(state, groups=groups)
    assert "groups" in broken_names(history, state, expiry_ran=True)
    assert "groups" not in broken_names(history, state, expiry_ran=False)


def test_coupon_over_issue_and_per_user_limit() -> None:
    history, state = good_run()
    claims = [*state.claims] + [claim(f"cl{i}", "u7", at=NOW) for i in (2, 3)]
    history += [rec("u7", "claim", key=f"kc{i}", coupon_id="c1", claim_id=f"cl{i}")
                for i in (2, 3)]
    state = rebuilt(state, claims=claims)
    assert broken_names(history, state) == {"coupons"}
    got = examples(history, state, "coupons")
    assert "coupon c1 over-issued: 3 claims for a pool of 2" in got
    assert "user u7 claimed coupon c1 3 times (per-user limit 1)" in got


def test_a_coupon_used_without_a_claim_breaks_coupons() -> None:
    history, state = good_run()
    state = rebuilt(state, claims=[])
    history = [r for r in history if r["op"] != "claim"]
    assert "user u7 has 1 order(s) using coupon c1 but 0 claim(s)" in examples(
        history, state, "coupons")


def test_an_unknown_outcome_that_took_effect_twice_is_caught() -> None:
    history, state = good_run()
    dup = order("o40", "u8", "tea", "expired", "k9")
    state = rebuilt(state, orders=[*state.orders, dup])
    assert "unknown_outcomes" in broken_names(history, state)
    assert examples(history, state, "unknown_outcomes") == [
        "user u8, key k9: unknown reserve took effect 2 times"]


def test_a_reservation_left_past_its_deadline_breaks_expiry() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    orders[3]["expires_at"] = NOW - 5
    state = Snap(state.ledger, orders, state.groups, state.claims)
    assert broken_names(history, state) == {"expiry"}
    assert broken_names(history, state, expiry_ran=False) == set()


def test_counterexamples_are_capped_but_counted() -> None:
    history, state = good_run()
    extra = [order(f"p{i}", "u1", "tea", "reserved", f"kp{i}") for i in range(25)]
    state = rebuilt(state, orders=state.orders + extra)
    phantom = next(r for r in run_check(history, state).results if r.name == "no_phantom")
    assert phantom.violations == 25
    assert len(phantom.findings) == 10


def test_report_files_say_which_invariant_broke(tmp_path) -> None:
    history, state = good_run()
    state.ledger["skus"]["tea"]["available"] -= 1
    report = run_check(history, state)
    save_report(report, tmp_path / "invariants.json", tmp_path / "invariants.txt")
    data = json.loads((tmp_path / "invariants.json").read_text())
    assert data["held"] is False
    assert data["broken"] == ["conservation"]
    text = (tmp_path / "invariants.txt").read_text()
    assert "BROKEN  conservation" in text and "held    no_phantom" in text
    assert summary_lines(report)[0].startswith("invariant broken: conservation (2 violation(s))")
    # Findings are data: kind plus the figures, in the JSON beside the text.
    conservation = next(r for r in data["invariants"] if r["name"] == "conservation")
    assert {"kind": "ledger_unbalanced", "sku": "tea", "initial": 10, "available": 6,
            "reserved": 0, "sold": 3, "total": 9} in conservation["findings"]


@pytest.mark.parametrize("field", ["available", "reserved", "sold"])
def test_every_ledger_counter_is_checked(field: str) -> None:
    history, state = good_run()
    state.ledger["skus"]["pot"][field] += 1
    assert "conservation" in broken_names(history, state)


def test_an_oversell_that_was_later_released_is_still_caught() -> None:
    history, state = good_run()
    # pot has 5 units: three more orders held them at once, then were cancelled.
    extra = []
    for i in range(3):
        o = order(f"y{i}", f"z{i}", "pot", "cancelled", f"ky{i}")
        o["movements"][0]["at"] = NOW - 85  # after o4-o6 reserved (NOW - 90)
        o["movements"][1]["at"] = NOW - 20
        extra.append(o)
        history += [rec(f"z{i}", "reserve", key=f"ky{i}", sku_id="pot", order_id=f"y{i}"),
                    rec(f"z{i}", "cancel", order_id=f"y{i}")]
    state = rebuilt(state, orders=state.orders + extra)
    assert broken_names(history, state) == {"no_oversell"}
    assert examples(history, state, "no_oversell") == [
        f"sku pot oversold by 1 unit(s) for a while: orders held 6 of 5 at {NOW - 85:.3f} (by "
        "their movements' timestamps)"]


def test_timestamps_a_little_out_of_order_are_not_an_oversell() -> None:
    history, state = good_run()
    # A release stamped when its request started, a reserve of the freed unit stamped earlier.
    orders = copy.deepcopy(state.orders)
    o4 = next(o for o in orders if o["order_id"] == "o4")
    o4["status"] = "cancelled"
    o4["movements"].append({"kind": "release", "quantity": 1, "at": NOW - 50})
    orders += [order(f"q{i}", f"r{i}", "pot", "paid", f"kq{i}") for i in range(3)]
    for o in orders[-3:]:
        o["movements"][0]["at"] = NOW - 52.5
    history += [rec(f"r{i}", op, key=f"kq{i}" if op == "reserve" else None, sku_id="pot",
                    order_id=f"q{i}") for i in range(3) for op in ("reserve", "pay")]
    history.append(rec("u1", "cancel", order_id="o4"))
    state = rebuilt(state, orders=orders)
    # pot: o5, o6 + q0..q2 paid = 5 of 5. Stamped 2.5 s before o4's release, q* overlap it
    # by more than the clock slack: that is an oversell …
    assert "no_oversell" in broken_names(history, state)
    for o in orders[-3:]:
        o["movements"][0]["at"] = NOW - 51.5  # … stamped 1.5 s before it is within the slack
    assert broken_names(history, rebuilt(state, orders=orders)) == set()


def test_a_group_count_that_disagrees_with_its_orders_breaks_groups() -> None:
    history, state = good_run()
    groups = copy.deepcopy(state.groups)
    groups[1]["members"] = 1  # g2 failed and was refunded: nothing of it is active any more
    state = rebuilt(state, groups=groups)
    assert examples(history, state, "groups") == [
        "group g2 (failed): says 1 member(s), but 0 of its orders are active (reserved or paid)"]


def test_a_claim_spent_twice_or_on_someone_elses_order_breaks_coupons() -> None:
    history, state = good_run()
    orders = [*state.orders, order("o50", "u7", "tea", "cancelled", "k50", coupon="c1")]
    history += [rec("u7", "reserve", key="k50", sku_id="tea", coupon_id="c1",
                    order_id="o50"), rec("u7", "cancel", order_id="o50")]
    claims = [{**state.claims[0], "order_id": "o1"}]  # o1 is u1's and names no coupon
    state = rebuilt(state, orders=orders, claims=claims)
    assert broken_names(history, state) == {"coupons"}
    assert examples(history, state, "coupons") == [
        "user u7 has 2 order(s) using coupon c1 but 1 claim(s)",
        "claim cl1 of u7 says order o1 used coupon c1, but that order is not theirs with that "
        "coupon"]


def test_coupon_limits_come_from_the_scenario_not_the_ledger() -> None:
    history, state = good_run()
    extra = [claim(f"clx{i}", f"w{i}", at=NOW - 91) for i in range(3)]
    history += [rec(f"w{i}", "claim", key=f"kw{i}", coupon_id="c1", claim_id=f"clx{i}")
                for i in range(3)]
    state = rebuilt(state, claims=[*state.claims, *extra])
    state.ledger["coupons"]["c1"]["pool"] = 10  # the server misreports its pool
    ex = examples(history, state, "coupons")
    assert any("4 claims for a pool of 2" in e for e in ex), ex
    assert any("ledger pool 10 != scenario pool 2" in e for e in ex), ex


def test_coupon_per_user_limit_comes_from_the_scenario() -> None:
    history, state = good_run()
    history.append(rec("u7", "claim", key="kc2", coupon_id="c1", claim_id="cl2"))
    state = rebuilt(state, claims=[*state.claims, claim("cl2", "u7", at=NOW - 91)])
    state.ledger["coupons"]["c1"]["per_user"] = 5
    ex = examples(history, state, "coupons")
    assert any("u7 claimed coupon c1 2 times (per-user limit 1)" in e for e in ex), ex


def test_group_sizes_come_from_the_scenario_not_the_export() -> None:
    history, state = good_run()
    extra = [order(f"m{i}", f"m{i}", "pot", "paid", f"km{i}", group="g1") for i in range(2)]
    history += [r for i in range(2) for r in (
        rec(f"m{i}", "join", key=f"km{i}", sku_id="pot", order_id=f"m{i}", group_id="g1"),
        rec(f"m{i}", "pay", order_id=f"m{i}"))]
    groups = copy.deepcopy(state.groups)
    groups[0].update(members=4, paid_members=4, top_size=6)
    state = rebuilt(state, orders=[*state.orders, *extra], groups=groups)
    ex = examples(history, state, "groups")
    assert any("4 active members > top size 3" in e for e in ex), ex
    assert any("export says top_size 6, the scenario 3" in e for e in ex), ex


def test_a_group_completed_below_the_scenarios_min_size_is_caught() -> None:
    history, state = good_run()
    orders = [o for o in state.orders if o["order_id"] != "o6"]
    history = [r for r in history if r.get("order_id") != "o6"]
    groups = copy.deepcopy(state.groups)
    groups[0].update(members=1, paid_members=1, min_size=1, order_ids=["o5"])
    state = rebuilt(state, orders=orders, groups=groups)
    ex = examples(history, state, "groups")
    assert any("completed with 1 paid member(s) < min size 2" in e for e in ex), ex


def test_a_per_user_limit_exceeded_for_a_while_is_caught() -> None:
    history, state = good_run()
    extra = [order("p1", "u1", "tea", "expired", "kp1"), order("p2", "u1", "tea", "expired",
                                                                  "kp2")]
    history += [rec("u1", "reserve", key="kp1", sku_id="tea", order_id="p1"),
                rec("u1", "reserve", key="kp2", sku_id="tea", order_id="p2")]
    state = rebuilt(state, orders=[*state.orders, *extra])
    ex = examples(history, state, "per_user_limits")
    assert ex and "u1 held 3 unit(s) of tea for a while" in ex[0], ex


def test_a_per_user_sequence_within_the_limit_is_not_flagged() -> None:
    """Reserve, cancel, reserve again (timestamps a little out of order): never over."""
    history, state = good_run()
    p1 = order("p1", "u1", "tea", "cancelled", "kp1")
    p1["movements"][1]["at"] = NOW - 30
    p2 = order("p2", "u1", "tea", "reserved", "kp2")
    p2["movements"][0]["at"] = NOW - 31  # taken before the lock the release held was won
    history += [rec("u1", "reserve", key="kp1", sku_id="tea", order_id="p1"),
                rec("u1", "cancel", order_id="p1"),
                rec("u1", "reserve", key="kp2", sku_id="tea", order_id="p2")]
    state = rebuilt(state, orders=[*state.orders, p1, p2])
    assert "per_user_limits" not in broken_names(history, state)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("sku_id", "pot", "sku_id 'pot', requested 'tea'"),
    ("quantity", 2, "quantity 2, requested 1"),
    ("coupon_id", "c1", "coupon_id 'c1', requested None"),
    ("group_id", "g1", "from a reserve without a group"),
])
def test_an_order_that_differs_from_its_request_is_a_phantom(field: str, value: Any,
                                                              words: str) -> None:
    history, state = good_run()
    for r in history:
        if r.get("key") == "k9":
            r["quantity"] = 1
    orders = copy.deepcopy(state.orders)
    o9 = next(o for o in orders if o["order_id"] == "o9")
    o9[field] = value
    ex = examples(history, rebuilt(state, orders=orders), "no_phantom")
    assert any("order o9" in e and words in e for e in ex), ex


def test_a_join_landing_in_another_group_is_a_phantom() -> None:
    history, state = good_run()
    orders = copy.deepcopy(state.orders)
    next(o for o in orders if o["order_id"] == "o6")["group_id"] = "g2"
    ex = examples(history, rebuilt(state, orders=orders), "no_phantom")
    assert any("order o6" in e and "requested or acknowledged 'g1'" in e for e in ex), ex


def phantom_group(gid: str, leader: str) -> dict[str, Any]:
    return {"group_id": gid, "sku_id": "pot", "leader_id": leader, "status": "open",
            "deadline": NOW + 100, "members": 0, "paid_members": 0, "top_size": 3,
            "min_size": 2, "tier_reached": None, "order_ids": [], "closed_at": None}


def test_a_group_the_leader_never_asked_for_is_a_phantom() -> None:
    history, state = good_run()
    state = rebuilt(state, groups=[*state.groups, phantom_group("g3", "u4")])
    ex = examples(history, state, "no_phantom")
    assert any("led by u4 match no acknowledged open request" in e for e in ex), ex


def test_a_group_from_an_unknown_open_request_is_not_a_phantom() -> None:
    history, state = good_run()
    history.append(rec("u4", "open_group", "unknown", key="kg3", sku_id="pot", code="timeout"))
    state = rebuilt(state, groups=[*state.groups, phantom_group("g3", "u4")])
    assert "no_phantom" not in broken_names(history, state)
    state = rebuilt(state, groups=[*state.groups, phantom_group("g4", "u4")])
    assert "no_phantom" in broken_names(history, state)  # one unknown request, two groups


def keyless_claims(user: str, n: int) -> list[dict[str, Any]]:
    return [claim(f"cz{user}{i}", user, at=NOW - 91) for i in range(n)]


def test_an_unknown_claim_that_took_effect_twice_is_caught_without_keys() -> None:
    rules = Rules(stock=RULES.stock, per_user_limit=2, coupons={"c1": (5, 3)},
                  failure_policy="refund", min_size=2, top_size=3)
    history, state = good_run()
    history += [rec("z1", "claim", "unknown", key="kz1", coupon_id="c1", code="timeout"),
                rec("z1", "claim", "fail", key="kz2", coupon_id="c1", status=409,
                    code="in_flight")]
    state = rebuilt(state, claims=[*state.claims, *keyless_claims("z1", 2)])
    state.ledger["coupons"]["c1"].update(pool=5, per_user=3)
    report = run_check(history, state, rules)
    broken = {r.name: r for r in report.broken}
    assert "unknown_outcomes" in broken and "idempotency" in broken, to_text(report)
    assert "z1" in render(broken["unknown_outcomes"].findings[0])
    note = next(r.note for r in report.results if r.name == "unknown_outcomes")
    assert "checked per user and coupon only" in note
    # One claim from the one unknown request is fine.
    state = rebuilt(state, claims=[*state.claims[:1], *keyless_claims("z1", 1)])
    state.ledger["coupons"]["c1"].update(pool=5, per_user=3)
    assert not run_check(history, state, rules).broken


def test_a_reserve_that_queued_past_a_release_is_not_an_oversell() -> None:
    """Overload: u2's reserve took its clock at +7.5 s, waited for the lock, and committed
    after u1's cancel (+10 s) freed the only unit; its answer came at +10.03 s. Correct."""
    t = NOW - 50
    rules = Rules(stock={"tea": 1}, per_user_limit=1)
    o1 = order("o1", "u1", "tea", "cancelled", "k1")
    o1["movements"] = [{"kind": "reserve", "quantity": 1, "at": t},
                       {"kind": "release", "quantity": 1, "at": t + 10}]
    o2 = order("o2", "u2", "tea", "paid", "k2")
    o2["movements"] = [{"kind": "reserve", "quantity": 1, "at": t + 7.5}]
    history = [rec("u1", "reserve", key="k1", sku_id="tea", order_id="o1", start=t,
                   end=t + 0.01),
               rec("u2", "reserve", key="k2", sku_id="tea", order_id="o2", start=t + 7.5,
                   end=t + 10.03),
               rec("u1", "cancel", order_id="o1", start=t + 10, end=t + 10.02),
               rec("u2", "pay", order_id="o2", start=t + 11, end=t + 11.01)]
    ledger = {"sale": "test", "now": NOW,
              "skus": {"tea": {"initial": 1, "available": 0, "reserved": 0, "sold": 1,
                               "released": 1, "refunded": 0}},
              "orders": {"reserved": 0, "paid": 1, "cancelled": 1, "expired": 0,
                         "refunded": 0}}
    state = Snap(ledger, [o1, o2])
    assert not run_check(history, state, rules).broken
    # Had the answer come before the release, the unit really was held twice.
    history[1]["end"] = t + 7.6
    assert "no_oversell" in {r.name for r in run_check(history, state, rules).broken}
