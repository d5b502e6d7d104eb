"""The SimPy model's rules: groups, failure policies, stock, limits, budget, rewards, seeds."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign import load_scenario, parse_scenario
from campaign.pricing import PriceContext, price_order
from sim import KPI_NAMES, replicate, simulate_once, summarize

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def scenario(*, rate: float = 200.0, hours: float = 4.0, segment: dict[str, Any] | None = None,
             stock: int = 100_000, list_price: float = 100.0,
             groups: dict[str, Any] | None = None, referral: dict[str, Any] | None = None,
             **campaign: Any):
    """A one-SKU, one-phase, one-segment scenario; keyword arguments go into [campaign]."""
    seg = {"name": "new", "share": 1.0, "base_conversion": 0.5, "price_sensitivity": 0.0,
           "pay_probability": 1.0, **(segment or {})}
    data: dict[str, Any] = {
        "campaign": {"name": "model test", "skus": [{"id": "x", "stock": stock,
                                                      "list_price": list_price,
                                                      "unit_cost": 40.0}],
                     "phases": [{"name": "sale", "hours": hours}], **campaign},
        "audience": {"arrivals_per_hour": {"sale": rate}, "segments": [seg]},
    }
    if groups is not None:
        data["campaign"]["groups"] = groups
    if referral is not None:
        data["audience"]["referral"] = referral
    return parse_scenario(data, "model test")


def test_every_kpi_is_a_finite_float_for_every_shipped_scenario():
    for path in sorted(SCENARIOS.glob("*.toml")):
        sc = load_scenario(path)
        if sc.audience is None:
            continue  # a server-only scenario
        kpis = simulate_once(sc, 1).kpis
        assert list(kpis)[: len(KPI_NAMES)] == list(KPI_NAMES), path
        assert all(isinstance(v, float) and math.isfinite(v) for v in kpis.values()), path


def test_same_seed_same_numbers_other_seed_other_numbers():
    sc = load_scenario(SCENARIOS / "default.toml")
    a, b, c = simulate_once(sc, 42).kpis, simulate_once(sc, 42).kpis, simulate_once(sc, 43).kpis
    assert a == b
    assert a != c
    seq = np.random.SeedSequence(7)
    assert simulate_once(sc, seq).kpis == simulate_once(sc, seq).kpis  # reusing it is safe


def test_replication_i_uses_spawned_child_i():
    sc = load_scenario(SCENARIOS / "referral_fission.toml")
    runs = replicate(sc, 3, seed=5)
    children = np.random.SeedSequence(5).spawn(3)
    assert [r.kpis for r in runs] == [simulate_once(sc, s).kpis for s in children]
    assert runs[0].kpis != runs[1].kpis
    pickle.loads(pickle.dumps(simulate_once))  # shipped to worker processes by the sweeps


def test_common_random_numbers_make_the_difference_less_noisy():
    base = load_scenario(SCENARIOS / "referral_fission.toml")
    data = base.model_dump(mode="json", exclude_none=True)
    data["campaign"]["skus"][0]["list_price"] = 79.0
    dearer = parse_scenario(data)
    a = [r.kpis["revenue"] for r in replicate(base, 12, seed=9)]
    b_crn = [r.kpis["revenue"] for r in replicate(dearer, 12, seed=9)]
    b_indep = [r.kpis["revenue"] for r in replicate(dearer, 12, seed=10)]
    crn = np.std(np.subtract(b_crn, a), ddof=1)
    indep = np.std(np.subtract(b_indep, a), ddof=1)
    assert crn < indep / 2


def test_conversion_rises_with_the_discount_as_documented():
    plain = scenario(rate=2000, hours=2, segment={"base_conversion": 0.1,
                                                 "price_sensitivity": 4.0})
    half_off = scenario(rate=2000, hours=2, segment={"base_conversion": 0.1,
                                                    "price_sensitivity": 4.0},
                        time_discounts=[{"start_hour": 0, "end_hour": 2, "percent_off": 50}])
    for sc, p in ((plain, 0.1), (half_off, 0.1 * (1 + 4.0 * 0.5))):
        s = summarize([{"p": r.kpis["orders_paid"] / r.kpis["arrivals"]}
                       for r in replicate(sc, 20, seed=4)])["p"]
        assert s.ci_low <= p <= s.ci_high, (p, s)


def test_single_buyer_prices_come_from_price_order():
    sc = scenario(rate=300, spend_thresholds=[{"spend": 90, "off": 15}],
                  time_discounts=[{"start_hour": 1, "end_hour": 2, "percent_off": 20}],
                  per_user_limit=3, segment={"quantity": 2})
    k = simulate_once(sc, 2).kpis
    assert k["units_sold"] == 2 * k["orders_paid"]
    sku = sc.campaign.skus[0]
    lo = price_order(sc.campaign, PriceContext(sku=sku, quantity=2, hour=1.5)).total / 100
    hi = price_order(sc.campaign, PriceContext(sku=sku, quantity=2, hour=3.0)).total / 100
    assert (lo, hi) == (145.0, 185.0)
    assert lo * k["orders_paid"] < k["revenue"] < hi * k["orders_paid"]
    assert k["gmv"] == 200.0 * k["orders_paid"]
    assert math.isclose(k["revenue"] + k["discount_cost"] + k["coupon_cost"], k["gmv"])


def test_per_user_limit_caps_the_quantity():
    k = simulate_once(scenario(segment={"quantity": 5}, per_user_limit=2), 1).kpis
    assert k["orders_paid"] > 0
    assert k["units_sold"] == 2 * k["orders_paid"]


def test_limited_stock_sells_out_and_turns_shoppers_away():
    run = simulate_once(scenario(rate=1000, stock=50), 1)
    k = run.kpis
    assert k["units_sold"] == 50 and k["stock_left"] == 0
    assert k["turned_away"] > 0
    (hour,) = run.sell_out
    assert hour is not None and 0 < hour < 4.0 and k["skus_sold_out"] == 1
    never = simulate_once(scenario(rate=10, stock=10_000), 1)
    assert never.sell_out == [None] and never.kpis["turned_away"] == 0  # not sold out
    assert never.kpis["skus_sold_out"] == 0
    empty = simulate_once(scenario(stock=0), 1)
    assert empty.sell_out == [0.0] and empty.kpis["units_sold"] == 0
    assert empty.kpis["turned_away"] > 0


def test_unpaid_reservations_expire_and_release_stock():
    k = simulate_once(scenario(rate=500, stock=100, segment={"pay_probability": 0.0}), 1).kpis
    assert k["orders_paid"] == 0 and k["units_sold"] == 0
    assert k["expired_reservations"] > 100  # the same units were reserved again and again
    assert k["stock_left"] == 100


GROUP = {"tiers": [{"size": 2, "percent_off": 20}, {"size": 3, "percent_off": 30}],
         "window_hours": 0.5}


def test_groups_complete_at_their_tier_price():
    sc = scenario(rate=400, segment={"group_propensity": 1.0}, groups=GROUP)
    k = simulate_once(sc, 3, record=True).kpis
    run = simulate_once(sc, 3, record=True)
    assert run.recording is not None
    groups = run.recording.groups
    assert len(groups) == k["groups_opened"] > 0
    assert all(g.members <= 3 for g in groups)
    done = [g for g in groups if g.outcome == "completed"]
    assert len(done) == k["groups_completed"]
    assert all(g.tier == (3 if g.members >= 3 else 2) for g in done)
    paid_units = sum(g.members for g in done)
    tier3 = sum(g.members for g in done if g.tier == 3)
    assert k["units_sold"] == paid_units
    assert math.isclose(k["revenue"], 70.0 * tier3 + 80.0 * (paid_units - tier3))
    assert k["group_completion_rate"] == k["groups_completed"] / k["groups_opened"]


def test_failed_groups_are_refunded():
    sc = scenario(rate=20, segment={"group_propensity": 1.0},
                  groups={"tiers": [{"size": 50, "percent_off": 50}], "window_hours": 0.5})
    k = simulate_once(sc, 1).kpis
    assert k["groups_opened"] > 0 and k["groups_failed"] == k["groups_opened"]
    assert k["group_completion_rate"] == 0.0
    assert k["units_sold"] == 0 and k["revenue"] == 0 and k["stock_left"] == 100_000


@pytest.mark.parametrize("take_up", [0.0, 0.4, 1.0])
def test_failed_groups_fall_back_to_the_fallback_price(take_up: float):
    sc = scenario(rate=20, segment={"group_propensity": 1.0},
                  groups={"tiers": [{"size": 50, "percent_off": 50}], "window_hours": 0.5,
                          "failure_policy": "fallback_price", "fallback_percent_off": 10,
                          "fallback_take_up": take_up})
    shares = []
    for r in replicate(sc, 10, seed=2, record=True):
        k = r.kpis
        assert r.recording is not None
        members = sum(g.members for g in r.recording.groups)
        assert all(g.outcome == "fallback" for g in r.recording.groups)
        assert k["revenue"] == 90.0 * k["orders_paid"]  # 10% off, every kept order
        assert k["units_sold"] + k["stock_left"] == 100_000  # the others were refunded
        shares.append({"kept": k["orders_paid"] / members})
    s = summarize(shares)["kept"]
    assert s.ci_low <= take_up <= s.ci_high or s.mean == take_up, s


def test_no_groups_means_completion_rate_zero_and_no_new_buyers_means_cost_zero():
    k = simulate_once(scenario(segment={"name": "loyal"}), 1).kpis
    assert k["groups_opened"] == 0 and k["group_completion_rate"] == 0.0
    assert k["acquired_buyers"] == 0 and k["cost_per_acquired_buyer"] == 0.0


def test_subsidies_stop_when_the_budget_is_spent():
    discounted = {"time_discounts": [{"start_hour": 0, "end_hour": 4, "percent_off": 50}]}
    free = simulate_once(scenario(**discounted), 1).kpis
    capped = simulate_once(scenario(subsidy_budget=2000, **discounted), 1).kpis
    assert free["subsidy_spent"] > 10_000
    assert 2000 <= capped["subsidy_spent"] < 2000 + 50  # the crossing order is honoured
    assert capped["revenue"] > free["revenue"] - free["subsidy_spent"]
    none = simulate_once(scenario(subsidy_budget=0, **discounted), 1).kpis
    assert none["subsidy_spent"] == 0 and none["revenue"] == none["gmv"]


REFERRAL = {"invites_per_sharer": 3.0, "invite_delay_minutes": 5.0, "invitee_conversion": 0.5,
            "depth_cap": 2, "inviter_reward": 20.0, "invitee_reward": 3.0}


def test_referral_rewards_are_paid_per_first_paid_order_of_an_invitee():
    sc = scenario(rate=50, segment={"share_propensity": 0.5, "name": "active"},
                  referral=REFERRAL)
    run = simulate_once(sc, 6, record=True)
    k = run.kpis
    assert run.recording is not None
    invitee_buyers = sum(size - 1 for size, _ in run.recording.trees)
    assert invitee_buyers > 0
    assert k["acquired_buyers"] == invitee_buyers  # segment "active": only invitees are new
    assert k["reward_cost"] == 23.0 * invitee_buyers
    assert k["max_referral_depth"] == 2
    assert math.isclose(k["invited_buyer_share"], invitee_buyers / k["buyers"])
    assert k["invited_buyers"] == invitee_buyers
    assert math.isclose(k["invite_conversion"], invitee_buyers / k["invites_sent"])
    unpaid = simulate_once(scenario(rate=50, segment={"share_propensity": 0.5,
                                                      "pay_probability": 0.0},
                                    referral=REFERRAL), 6).kpis
    assert unpaid["invitee_arrivals"] == 0 and unpaid["reward_cost"] == 0


def test_fission_masters_earn_the_bonus_beyond_the_threshold():
    ref = {**REFERRAL, "invites_per_sharer": 12.0, "invitee_conversion": 1.0, "depth_cap": 1,
           "inviter_reward": 0.0, "invitee_reward": 0.0, "bonus_after_invites": 5,
           "bonus_per_invite": 5.0}
    run = simulate_once(scenario(rate=5, segment={"share_propensity": 1.0}, referral=ref), 3,
                        record=True)
    assert run.recording is not None
    bonus = sum(max(0, size - 1 - 5) for size, _ in run.recording.trees) * 5.0
    assert bonus > 0 and run.kpis["reward_cost"] == bonus


def test_money_adds_up():
    sc = scenario(rate=300, segment={"group_propensity": 0.5, "share_propensity": 0.3},
                  groups={**GROUP, "leader_reward": 2.0}, referral=REFERRAL, fixed_cost=1000,
                  coupons=[{"id": "c10", "value": 10, "min_spend": 50, "pool": 50}],
                  first_orders_gift={"count": 20, "gift_cost": 3.0},
                  spend_thresholds=[{"spend": 100, "off": 5}])
    k = simulate_once(sc, 12).kpis
    assert min(k["discount_cost"], k["coupon_cost"], k["reward_cost"], k["gift_cost"]) > 0
    assert math.isclose(k["subsidy_spent"], k["discount_cost"] + k["coupon_cost"]
                        + k["reward_cost"] + k["gift_cost"])
    assert math.isclose(k["revenue"], k["gmv"] - k["discount_cost"] - k["coupon_cost"])
    assert math.isclose(k["gross_profit"], k["revenue"] - k["goods_cost"] - k["reward_cost"]
                        - k["gift_cost"])
    assert k["goods_cost"] == 40.0 * k["units_sold"]
    assert math.isclose(k["profit"], k["gross_profit"] - 1000)
    assert math.isclose(k["roi"], k["profit"] / (k["subsidy_spent"] + 1000))
    assert math.isclose(k["cost_per_acquired_buyer"],
                        (k["subsidy_spent"] + 1000) / k["acquired_buyers"])
    assert k["coupon_cost"] == 50 * 10.0  # the whole pool, one coupon per order
    assert k["gift_cost"] == 20 * 3.0  # the first 20 paid orders


def test_a_scenario_without_audience_cannot_be_simulated():
    sc = parse_scenario({"campaign": {"name": "x", "skus": [{"id": "a", "stock": 1,
                                                             "list_price": 1, "unit_cost": 0}],
                                      "phases": [{"name": "p", "hours": 1}]}})
    with pytest.raises(ValueError, match="audience"):
        simulate_once(sc, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stock=st.integers(0, 60), rate=st.floats(10, 800), pay=st.floats(0, 1),
       group=st.floats(0, 1), quantity=st.integers(1, 3), policy=st.sampled_from(
           ["refund", "fallback_price"]), budget=st.one_of(st.none(), st.floats(0, 3000)),
       seed=st.integers(0, 2**32 - 1))
def test_invariants_hold_for_any_campaign(stock, rate, pay, group, quantity, policy, budget,
                                          seed):
    sc = scenario(rate=rate, hours=1.0, stock=stock, subsidy_budget=budget, per_user_limit=2,
                  segment={"pay_probability": pay, "group_propensity": group,
                           "quantity": quantity, "share_propensity": 0.3},
                  groups={**GROUP, "window_hours": 0.1, "failure_policy": policy,
                          "fallback_percent_off": 5},
                  referral=REFERRAL, payment_timeout_minutes=5)
    run = simulate_once(sc, seed, trace=True)
    k = run.kpis
    assert run.recording is not None
    for _, _, available, reserved, sold in run.recording.stock_trace:
        assert available + reserved + sold == stock and min(available, reserved, sold) >= 0
    assert k["units_sold"] + k["stock_left"] == stock  # nothing is left reserved at the end
    assert k["groups_completed"] + k["groups_failed"] == k["groups_opened"]
    assert 0 <= k["revenue"] <= k["gmv"]
    assert all(math.isfinite(v) for v in k.values())
