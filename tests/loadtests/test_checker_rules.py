"""The money, rules, liveness, ordering and adversarial invariants on hand-written runs: each
holds on a correct run and breaks on one made wrong in exactly one way, with a finding that
says which order, expected against seen."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from campaign.rules import CampaignRules
from loadtests.checker import (
    Report,
    Rules,
    check,
    render,
    rules_from_campaign,
    sale_mismatch,
    to_text,
)
from loadtests.history import History, HistoryHeader
from loadtests.state import FinalState
from tests.support.checkout import CAMPAIGN, T0

LATER = T0 + 2 * 3600  # past the first-hour discount


def rules_for(campaign: dict[str, Any] = CAMPAIGN, **timing: float) -> Rules:
    return rules_from_campaign(CampaignRules.model_validate(campaign), start=T0,
                               **({"payment_timeout": 60.0, "group_window": 300.0} | timing))


class Run:
    """A run built step by step: history records and the state a correct server exports,
    with movement seq and paid_seq (contract 1.2). `t` is the run's clock."""

    def __init__(self) -> None:
        self.t = LATER
        self.ops: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.claims: list[dict[str, Any]] = []
        self.seq = self.paid = 0
        self.rewards = 0

    def tick(self, dt: float = 1.0) -> float:
        self.t += dt
        return self.t

    def op(self, user: str, op: str, outcome: str = "ok", **kw: Any) -> dict[str, Any]:
        start = self.tick()
        r = {"worker": 0, "arrival": len(self.ops), "journey": "test", "user": user, "op": op,
             "key": kw.pop("key", None), "intended": start, "start": start,
             "end": start + 0.1, "outcome": outcome, "status": None, "code": None}
        r.update(kw)
        self.ops.append(r)
        return r

    def move(self, o: dict[str, Any], kind: str) -> None:
        self.seq += 1
        o["movements"].append({"kind": kind, "quantity": o["quantity"], "at": self.t,
                               "seq": self.seq})

    def reserve(self, oid: str, user: str, sku: str, amount: int, *, group: str | None = None,
                coupon: str | None = None, op: str = "reserve") -> dict[str, Any]:
        key = f"k-{oid}"
        self.op(user, op, key=key, sku_id=sku, quantity=1, order_id=oid, group_id=group,
                coupon_id=coupon)
        o = {"order_id": oid, "user_id": user, "sku_id": sku, "quantity": 1,
             "status": "reserved", "group_id": group, "coupon_id": coupon,
             "idempotency_key": key, "amount": amount,
             "list_amount": 10000 if sku == "hot" else 5000, "gift": False,
             "created_at": self.t, "expires_at": self.t + 60, "paid_at": None,
             "closed_at": None, "paid_seq": None, "movements": []}
        self.move(o, "reserve")
        self.orders[oid] = o
        return o

    def pay(self, oid: str) -> None:
        o = self.orders[oid]
        self.op(o["user_id"], "pay", order_id=oid)
        self.paid += 1
        o.update(status="paid", paid_at=self.t, paid_seq=self.paid, gift=self.paid <= 2)

    def cancel(self, oid: str) -> None:
        o = self.orders[oid]
        self.op(o["user_id"], "cancel", order_id=oid)
        o.update(status="cancelled", closed_at=self.t)
        self.move(o, "release")

    def claim(self, cid: str, user: str, order_id: str | None = None) -> None:
        self.op(user, "claim", key=f"kc-{cid}", coupon_id="c10", claim_id=cid)
        self.claims.append({"claim_id": cid, "coupon_id": "c10", "user_id": user,
                            "claimed_at": self.t, "order_id": order_id,
                            "idempotency_key": f"kc-{cid}"})

    def group(self, gid: str, leader: str, status: str, order_ids: list[str]) -> None:
        active = [i for i in order_ids if self.orders[i]["status"] in ("reserved", "paid")]
        paid = [i for i in order_ids if self.orders[i]["status"] == "paid"]
        self.groups[gid] = {
            "group_id": gid, "sku_id": "grp", "leader_id": leader, "status": status,
            "deadline": T0 + 9 * 3600, "members": len(active), "paid_members": len(paid),
            "top_size": 3, "min_size": 2, "tier_reached": len(paid) if status == "completed"
            else None, "order_ids": order_ids, "closed_at": self.t,
            "leader_reward": 500 if status == "completed" else 0}
        if status == "completed":
            self.rewards += 1

    def ledger(self) -> dict[str, Any]:
        skus = {}
        for sku, stock in (("hot", 5), ("grp", 50)):
            mine = [o for o in self.orders.values() if o["sku_id"] == sku]
            n = lambda st, m=mine: sum(o["status"] == st for o in m)  # noqa: E731
            skus[sku] = {"initial": stock, "available": stock - n("reserved") - n("paid"),
                         "reserved": n("reserved"), "sold": n("paid"),
                         "released": n("cancelled") + n("expired"), "refunded": n("refunded")}
        gs = list(self.groups.values())
        return {"sale": "rules", "sale_id": "s-1", "start": T0, "now": self.t + 1,
                "payment_timeout_seconds": 60.0, "group_window_seconds": 300.0, "skus": skus,
                "coupons": {"c10": {"pool": 3, "issued": len(self.claims), "per_user": 1}},
                "groups": {"open": 0, "completed": sum(g["status"] == "completed" for g in gs),
                           "failed": sum(g["status"] == "failed" for g in gs),
                           "leader_rewards": self.rewards},
                "orders": {s: sum(o["status"] == s for o in self.orders.values())
                           for s in ("reserved", "paid", "cancelled", "expired", "refunded")}}

    def state(self, *, strip_seq: bool = False) -> FinalState:
        orders = copy.deepcopy(list(self.orders.values()))
        if strip_seq:  # what a contract 1.1 server exports
            for o in orders:
                o.pop("paid_seq")
                for m in o["movements"]:
                    m.pop("seq")
        return FinalState.from_json(self.ledger(), orders, list(self.groups.values()),
                                    self.claims, expiry_ran=True)

    def check(self, rules: Rules | None = None, **kw: Any) -> Report:
        return check(History.of(self.ops), self.state(**kw), rules or rules_for())


def good() -> Run:
    """Buys, a coupon, a cancel, a group completed at the top tier (re-priced) and one failed
    (refunded), the first two payments gifted."""
    r = Run()
    r.reserve("o1", "u1", "hot", 10000)
    r.pay("o1")
    r.claim("c1", "u2")
    r.reserve("o2", "u2", "hot", 9000, coupon="c10")
    r.claims[0]["order_id"] = "o2"
    r.pay("o2")
    r.reserve("o3", "u3", "hot", 10000)
    r.cancel("o3")
    for i, u in enumerate(("g1", "g2", "g3")):
        r.reserve(f"go{i}", u, "grp", 4000, group="G1", op="open_group" if i == 0 else "join")
    for i in range(3):
        r.pay(f"go{i}")
        r.orders[f"go{i}"]["amount"] = 3500  # completed at 3: re-priced at 30% off
    r.group("G1", "g1", "completed", ["go0", "go1", "go2"])
    r.reserve("fo", "f1", "grp", 4000, group="G2", op="open_group")
    r.pay("fo")
    fo = r.orders["fo"]
    fo.update(status="refunded", closed_at=r.tick())
    r.move(fo, "refund")
    r.group("G2", "f1", "failed", ["fo"])
    return r


def broken(report: Report) -> dict[str, list[str]]:
    return {x.name: [render(f) for f in x.findings] for x in report.broken}


def test_a_correct_run_holds_with_and_without_seq() -> None:
    for strip in (False, True):
        report = good().check(strip_seq=strip)
        assert report.verdict == "held", to_text(report)
        names = {x.name: x for x in report.results}
        assert names["gifts"].note.startswith("payments ranked" if not strip else "no paid_seq")


def test_prices_are_recomputed_and_a_missed_reprice_is_caught() -> None:
    r = good()
    r.orders["go1"]["amount"] = 4000  # still the 2-person price after completing at 3
    assert broken(r.check()) == {"prices": [
        "order go1 of g2 (group G1 completed with 3 paid): amount 4000, but pricing says 3500"]}


def test_a_coupon_twice_or_without_a_claim_is_priced_wrong() -> None:
    r = good()
    r.orders["o2"]["amount"] = 8000
    assert "amount 8000, but pricing says 9000" in broken(r.check())["prices"][0]
    r = good()
    r.claims[0]["order_id"] = None  # the claim says no order used it
    found = broken(r.check())
    assert "coupon c10 not backed by a claim of theirs" in found["prices"][0]
    assert "pricing says 10000" in found["prices"][0]


def test_the_time_discount_counts_from_the_sale_start() -> None:
    r = Run()
    r.t = T0 + 600  # inside the first hour: 50% off
    r.reserve("o9", "u9", "hot", 5000)
    assert r.check().verdict == "held"
    r.orders["o9"]["amount"] = 10000
    assert "pricing says 5000" in broken(r.check())["prices"][0]
    unknown_start = rules_for()
    object.__setattr__(unknown_start, "start", None)
    state = r.state()
    led = {**state.raw["ledger"]}
    led.pop("start")
    report = check(History.of(r.ops), FinalState.from_json(led, state.raw["orders"],
                                                           state.raw["groups"],
                                                           state.raw["claims"]), unknown_start)
    assert next(x for x in report.results if x.name == "prices").skipped


def test_fallback_price_for_a_failed_group_under_the_fallback_policy() -> None:
    campaign = copy.deepcopy(CAMPAIGN)
    campaign["groups"].update(failure_policy="fallback_price", fallback_percent_off=10)
    r = good()
    fo = r.orders["fo"]
    fo.update(status="paid", amount=4500, closed_at=None)
    fo["movements"].pop()
    r.groups["G2"].update(members=1, paid_members=1)
    assert r.check(rules_for(campaign)).verdict == "held"
    fo["amount"] = 4000
    assert "pricing says 4500" in broken(r.check(rules_for(campaign)))["prices"][0]


@pytest.mark.parametrize("strip", [False, True])
def test_gifts_beyond_the_first_n_are_caught(strip: bool) -> None:
    r = good()
    r.orders["go0"]["gift"] = True  # a third gift (N = 2)
    found = broken(r.check(strip_seq=strip))["gifts"]
    assert "3 orders got the first-2 gift (at most 2)" in found


def test_gifts_follow_paid_seq_and_the_clients_order() -> None:
    r = good()
    r.orders["o1"]["paid_seq"], r.orders["o2"]["paid_seq"] = 2, 2
    assert any("paid_seq 2 was given to 2 orders" in f for f in broken(r.check())["gifts"])
    r = good()  # 1.1: go0's payment was acknowledged before o2's was sent, yet only o2 got
    sent = next(op for op in r.ops if op["op"] == "pay" and op["order_id"] == "o2")["start"]
    go0 = next(op for op in r.ops if op["op"] == "pay" and op["order_id"] == "go0")
    go0.update(start=sent - 0.5, intended=sent - 0.5, end=sent - 0.4)  # the gift
    found = broken(r.check(strip_seq=True))
    assert any("got the first-2 gift, but order" in f for f in found.get("gifts", [])), found


def test_a_leader_reward_for_a_failed_group_is_caught() -> None:
    r = good()
    r.rewards += 1
    r.groups["G2"]["leader_reward"] = 500
    found = broken(r.check())["leader_rewards"]
    assert "ledger counts 2 leader reward(s) for 1 completed group(s)" in found
    assert "group G2 (failed): leader_reward 500 fen, want 0" in found


def test_refunds_only_for_failed_groups_under_the_refund_policy() -> None:
    r = good()
    o1 = r.orders["o1"]
    o1.update(status="refunded")
    r.move(o1, "refund")
    assert broken(r.check())["refunds"] == [
        "order o1 of u1 was refunded, but it is in no group"]


def test_a_payment_at_or_after_the_deadline_is_caught_twice_over() -> None:
    r = good()
    r.reserve("late", "u7", "hot", 10000)
    r.tick(61)  # past the 60 s payment timeout by the client's own clock
    r.pay("late")
    found = broken(r.check())["payment_deadlines"]
    assert any(f.startswith("order late of u7 was paid at") for f in found)
    assert any("every pay request was sent at least 6" in f for f in found)
    r.orders["late"]["paid_at"] = r.orders["late"]["created_at"] + 30  # a server that lies
    assert any("every pay request was sent" in f for f in broken(r.check())["payment_deadlines"])


def refuse(r: Run, user: str, sku: str, code: str, **kw: Any) -> None:
    r.op(user, "reserve", "fail", key=f"k-refused-{len(r.ops)}", sku_id=sku, quantity=1,
         code=code, status=409, **kw)


@pytest.mark.parametrize("strip", [False, True])
def test_sold_out_while_stock_was_free_is_a_wrongful_refusal(strip: bool) -> None:
    r = good()
    refuse(r, "u8", "hot", "sold_out")  # hot: 5 units, 2 held
    found = broken(r.check(strip_seq=strip))["no_wrongful_refusal"]
    assert found[0].startswith("u8 was refused sold_out for 1 x hot")
    assert "at least 3 unit(s) were free throughout" in found[0]


def test_a_justified_sold_out_is_no_alarm_even_when_stock_came_back_unseen() -> None:
    r = good()
    for i in range(3):
        r.reserve(f"h{i}", f"h{i}", "hot", 10000)
    refuse(r, "u8", "hot", "sold_out")  # 5 of 5 held
    assert r.check().verdict == "held"
    # Expired a moment later by the server (no client saw when): still no alarm for a refusal
    # sent just after, since the history cannot place the expiry before it.
    h0 = r.orders["h0"]
    h0.update(status="expired")
    r.move(h0, "release")
    refuse(r, "u9", "hot", "sold_out")
    assert r.check().verdict == "held", to_text(r.check())


def test_limit_group_full_and_pool_refusals_are_judged() -> None:
    r = good()
    refuse(r, "u1", "hot", "limit_reached")  # u1 holds 1 of 2: unjustified
    r.op("g9", "join", "fail", key="kj", sku_id="grp", quantity=1, group_id="G2",
         code="group_full")  # G2 never had more than 1 member
    r.op("u5", "claim", "fail", key="kcx", coupon_id="c10", code="coupon_exhausted")
    found = broken(r.check())["no_wrongful_refusal"]
    assert any("refused limit_reached for 1 x hot" in f and "held at most 1" in f
               for f in found)
    assert any("refused group_full joining group G2" in f for f in found)
    assert any("refused coupon_exhausted for coupon c10" in f and "at most 1 of 3" in f
               for f in found)


def test_a_payment_in_time_refused_and_a_run_that_sells_nothing() -> None:
    r = Run()
    r.reserve("o1", "u1", "hot", 10000)
    r.op("u1", "pay", "fail", order_id="o1", code="order_closed")
    found = broken(r.check())
    assert "payment of order o1 was refused order_closed" in found["no_wrongful_refusal"][0]
    r = Run()
    for i in range(3):
        refuse(r, f"u{i}", "hot", "limit_reached")
    assert broken(r.check())["progress"] == [
        "buyers' 3 answered request(s) for hot, which had 5 unit(s), made not one order"]


def test_an_oversell_healed_a_moment_later_is_caught_by_seq_only() -> None:
    r = good()
    for i in range(4):  # hot: 2 held + 4 = 6 of 5, then one cancelled straight away
        r.reserve(f"x{i}", f"x{i}", "hot", 10000)
    r.cancel("x3")
    assert broken(r.check())["no_oversell"] == [
        "sku hot oversold by 1 unit(s) for a while: orders held 6 of 5 after movement seq 13 "
        "(order x3's reserve)"]
    # Without seq the release counts 2 s early and the overlap (1 s) is within the slack.
    assert "no_oversell" not in broken(r.check(strip_seq=True))


def test_a_seq_that_contradicts_what_clients_saw_is_caught() -> None:
    r = good()
    r.orders["o1"]["movements"][0]["seq"] = 99  # acknowledged first, numbered last
    found = broken(r.check())["stock_movements"]
    assert any("order o1's reserve (seq 99) was acknowledged" in f for f in found)
    r = good()
    r.orders["o3"]["movements"][1]["seq"] = 1
    assert any("movement seq 1 appears 2 times" in f for f in broken(r.check())["stock_movements"])


def test_adversarial_probes_must_be_refused() -> None:
    r = good()
    r.op("x1", "reserve", "fail", key="kx1", sku_id="hot", quantity=1, coupon_id="c10",
         code="coupon_unavailable", probe="unclaimed_coupon")
    r.op("x2", "pay", "fail", order_id="o3", code="forbidden", probe="foreign_pay")
    report = r.check()
    assert report.verdict == "held", to_text(report)
    note = next(x.note for x in report.results if x.name == "adversarial")
    assert "foreign_pay: 1 refused" in note and "unclaimed_coupon: 1 refused" in note
    r.ops[-1].update(outcome="ok", code=None)  # someone else's payment accepted …
    r.ops[-2].update(outcome="ok", code=None, order_id="ox")  # … and an unclaimed coupon
    r.reserve("ox", "x1", "hot", 9000, coupon="c10")
    r.ops.pop()  # (the record above stands for the reservation)
    found = broken(r.check())
    assert "order o3 of u3 was paid by x2 (acknowledged)" in found["adversarial"]
    assert any(f.startswith("unclaimed_coupon: x1's reserve was accepted")
               for f in found["adversarial"])
    assert "coupons" in found and "prices" in found


def test_a_key_reused_for_another_request_must_change_nothing() -> None:
    r = good()
    first = next(op for op in r.ops if op.get("order_id") == "o1" and op["op"] == "reserve")
    r.ops.append({**first, "arrival": 77, "sku_id": "grp", "start": r.tick(), "end": r.t + 0.1,
                  "intended": r.t, "probe": "altered_retry"})
    assert r.check().verdict == "held"  # replayed o1 unchanged: no effect
    r.ops[-1]["order_id"] = "o-new"
    r.reserve("o-new", "u1", "grp", 5000)
    r.orders["o-new"]["idempotency_key"] = "k-o1"
    r.ops.pop()
    found = broken(r.check())
    assert any("a reserve naming grp x1 was accepted under a key first used for hot x1" in f
               for f in found["idempotency"]), found


def test_a_history_of_another_sale_is_refused() -> None:
    r = good()
    history = History.of(r.ops)
    history.headers = [HistoryHeader("run", "s-old", 0, 1, T0)]
    assert "the history is of sale s-old, but the server now runs sale s-1" in (
        sale_mismatch(history, r.state()) or "")
    history.headers = [HistoryHeader("run", "s-1", 0, 1, T0)]
    assert sale_mismatch(history, r.state()) is None
