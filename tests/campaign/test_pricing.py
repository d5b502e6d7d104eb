"""The one pricing function: examples from the campaign plans, and its invariants (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from campaign import PriceContext, parse_scenario, price_order, to_cents
from campaign.pricing import unit_price_candidates
from campaign.rules import CampaignRules


def rules(**campaign: object) -> CampaignRules:
    base: dict = {
        "name": "t",
        "skus": [{"id": "a", "stock": 10, "list_price": 199, "unit_cost": 80,
                  "member_prices": {"gold": 179}}],
        "phases": [{"name": "burst", "hours": 4}],
        "member_tiers": ["ordinary", "gold"],
    }
    base.update(campaign)
    return parse_scenario({"campaign": base}).campaign


LADDER = {"window_hours": 24, "tiers": [{"size": 2, "percent_off": 20},
                                        {"size": 3, "percent_off": 30}]}


def test_two_people_20_off_three_people_30_off() -> None:
    r = rules(groups=LADDER)
    sku = r.skus[0]
    assert price_order(r, PriceContext(sku)).total == 19900
    assert price_order(r, PriceContext(sku, group_members=1)).total == 19900
    two = price_order(r, PriceContext(sku, group_members=2))
    assert (two.total, two.offer) == (15920, "group:2")
    three = price_order(r, PriceContext(sku, group_members=3))
    assert (three.total, three.offer, three.discount) == (13930, "group:3", 5970)


def test_unit_price_offers_do_not_stack_the_best_one_wins() -> None:
    r = rules(groups=LADDER, time_discounts=[
        {"name": "first-hour", "start_hour": 0, "end_hour": 1, "percent_off": 50}])
    sku = r.skus[0]
    q = price_order(r, PriceContext(sku, group_members=3, hour=0.5, member_tier="gold"))
    assert (q.unit_price, q.offer) == (9950, "time:first-hour")  # 50% off, not 50% then 30%
    later = price_order(r, PriceContext(sku, group_members=3, hour=1.0, member_tier="gold"))
    assert (later.unit_price, later.offer) == (13930, "group:3")
    member = price_order(r, PriceContext(sku, hour=2.0, member_tier="gold"))
    assert (member.unit_price, member.offer) == (17900, "member")


def test_best_single_spend_threshold_then_coupon() -> None:
    r = rules(spend_thresholds=[{"spend": 100, "off": 10}, {"spend": 300, "off": 40}],
              coupons=[{"id": "c", "value": 20, "min_spend": 300, "pool": 5}])
    sku, coupon = r.skus[0], r.coupons[0]
    one = price_order(r, PriceContext(sku, quantity=1, coupon=coupon))
    assert (one.threshold_off, one.coupon_off, one.total) == (1000, 0, 18900)  # 189 < 300
    two = price_order(r, PriceContext(sku, quantity=2, coupon=coupon))
    # 398 reaches 满300减40 only (thresholds do not add up); 358 still reaches the coupon's 300
    assert (two.threshold_off, two.coupon_off, two.total) == (4000, 2000, 33800)


def test_fallback_price_replaces_the_tiers_of_a_failed_group() -> None:
    r = rules(groups={**LADDER, "failure_policy": "fallback_price", "fallback_percent_off": 10})
    q = price_order(r, PriceContext(r.skus[0], group_members=1, group_failed_fallback=True))
    assert (q.total, q.offer) == (17910, "fallback")


def test_first_n_orders_get_the_gift() -> None:
    r = rules(first_orders_gift={"count": 100, "gift_cost": 6})
    sku = r.skus[0]
    assert price_order(r, PriceContext(sku, order_seq=100)).gift
    assert not price_order(r, PriceContext(sku, order_seq=101)).gift
    assert not price_order(r, PriceContext(sku)).gift


def test_to_cents_rounds_half_up() -> None:
    assert [to_cents(x) for x in (0.0, 0.1, 19.99, 0.005, 99.995)] == [0, 10, 1999, 1, 10000]


money = st.decimals(min_value="0.01", max_value="5000", places=2).map(float)


@st.composite
def priced_cases(draw: st.DrawFn) -> tuple[CampaignRules, dict]:
    list_price = draw(money)
    offs = sorted(draw(st.lists(st.floats(1, 95), min_size=1, max_size=4)))
    tiers = [{"size": i + 2, "percent_off": round(o, 2)} for i, o in enumerate(offs)]
    thresholds = [{"spend": s, "off": round(s * f, 2)} for s, f in draw(st.lists(
        st.tuples(st.floats(1, 3000), st.floats(0.01, 0.9)), max_size=3))]
    for t in thresholds:
        t["spend"] = round(t["spend"], 2)
        if t["off"] >= t["spend"] or t["off"] <= 0:
            t["off"] = round(t["spend"] / 2, 2) or 0.01
    coupons = [{"id": "c", "value": draw(money), "min_spend": draw(st.sampled_from([0, 50, 300])),
                "pool": 10}]
    time_off = draw(st.floats(1, 95))
    r = rules(
        skus=[{"id": "a", "stock": 1, "list_price": list_price, "unit_cost": 0,
               "member_prices": {"gold": round(list_price * draw(st.floats(0, 1)), 2)}}],
        groups={"window_hours": 1, "tiers": tiers, "failure_policy": "fallback_price",
                "fallback_percent_off": draw(st.floats(0, 90))},
        spend_thresholds=[t for t in thresholds if 0 < t["off"] < t["spend"]],
        time_discounts=[{"start_hour": 0, "end_hour": 1, "percent_off": round(time_off, 2)}],
        coupons=coupons,
    )
    ctx = {
        "sku": r.skus[0],
        "quantity": draw(st.integers(1, 5)),
        "hour": draw(st.sampled_from([0.5, 2.0])),
        "member_tier": draw(st.sampled_from(["ordinary", "gold"])),
        "coupon": draw(st.sampled_from([None, r.coupons[0]])),
        "group_failed_fallback": draw(st.booleans()),
    }
    return r, ctx


@settings(max_examples=300, deadline=None)
@given(priced_cases(), st.integers(1, 7), st.integers(0, 3))
def test_price_is_never_negative_and_never_above_list(case, members, extra) -> None:
    r, ctx = case
    for group in (None, members, members + extra):
        q = price_order(r, PriceContext(**ctx, group_members=group))
        assert 0 <= q.total <= q.list_total
        assert q.total == q.subtotal - q.threshold_off - q.coupon_off
        assert q.discount == q.list_total - q.total >= 0


@settings(max_examples=300, deadline=None)
@given(priced_cases(), st.integers(1, 7), st.integers(0, 3))
def test_a_larger_group_is_never_dearer(case, members, extra) -> None:
    r, ctx = case
    ctx = {**ctx, "group_failed_fallback": False}
    smaller = price_order(r, PriceContext(**ctx, group_members=members))
    larger = price_order(r, PriceContext(**ctx, group_members=members + extra))
    single = price_order(r, PriceContext(**ctx))
    assert larger.total <= smaller.total <= single.total


@settings(max_examples=300, deadline=None)
@given(priced_cases())
def test_stacking_unit_offers_pick_one_then_threshold_then_coupon(case) -> None:
    r, ctx = case
    pc = PriceContext(**ctx, group_members=3)
    q = price_order(r, pc)
    # the chosen unit price is one of the offers, never a product of two discounts
    assert (q.offer, q.unit_price) in unit_price_candidates(r, pc)
    best_threshold = max((to_cents(t.off) for t in r.spend_thresholds
                          if q.subtotal >= to_cents(t.spend)), default=0)
    assert q.threshold_off == best_threshold
    if ctx["coupon"] is None:
        assert q.coupon_off == 0
    elif q.coupon_off:
        assert q.subtotal - q.threshold_off >= to_cents(ctx["coupon"].min_spend)
