"""The SimPy model's rules: groups, failure policies, stock, limits, budget, rewards, seeds."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign import load_scenario, parse_scenario
from campaign.pricing import PriceContext, price_order
from campaign.scenario import apply_overrides
from sim import KPI_NAMES, replicate, simulate_once, summarize
from sim.model.behaviour import Ladder, Sharing
from sim.model.campaign import _Campaign
from sim.model.groups import GroupBook
from tests.support import SCENARIOS
from tests.support.scenarios import one_sku


def scenario(*, rate: float = 200.0, hours: float = 4.0, segment: dict[str, Any] | None = None,
             stock: int = 100_000, list_price: float = 100.0,
             groups: dict[str, Any] | None = None, referral: dict[str, Any] | None = None,
             behaviour: dict[str, Any] | None = None, **campaign: Any):
    """A one-SKU, one-phase, one-segment scenario; keyword arguments go into [campaign]."""
    seg = {"name": "new", "share": 1.0, "base_conversion": 0.5, "price_sensitivity": 0.0,
           "pay_probability": 1.0, **(segment or {})}
    return one_sku("model test", [("sale", hours, rate)], seg, stock=stock,
                   list_price=list_price, unit_cost=40.0, groups=groups, referral=referral,
                   behaviour=behaviour, **campaign)


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


SHAPES = [
    ({}, 1 + 4.0 * 0.5),  # linear: 1 + s*d
    ({"demand_shape": "saturating", "reference_discount": 0.3},
     1 + 4.0 * 0.3 * (1 - math.exp(-0.5 / 0.3))),  # 1 + s*r*(1 - exp(-d/r))
    ({"demand_shape": "reference", "reference_discount": 0.3},
     1 + 4.0 * 0.3),  # deeper than r stops helping
    ({"demand_shape": "reference", "reference_discount": 0.3, "deep_discount_penalty": 1.0},
     1 + 4.0 * 0.3 - 4.0 * 0.2),  # ... or hurts
]


@pytest.mark.parametrize(("shape", "lift"), SHAPES)
def test_conversion_follows_the_segment_demand_shape(shape: dict[str, Any], lift: float):
    seg = {"base_conversion": 0.1, "price_sensitivity": 4.0, **shape}
    plain = scenario(rate=2000, hours=2, segment=seg)
    half_off = scenario(rate=2000, hours=2, segment=seg,
                        time_discounts=[{"start_hour": 0, "end_hour": 2, "percent_off": 50}])
    for sc, p in ((plain, 0.1), (half_off, 0.1 * lift)):
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
    if budget is not None:
        assert k["subsidy_spent"] <= budget + 1e-9  # the budget holds, whatever the campaign
    for _, _, available, reserved, sold in run.recording.stock_trace:
        assert available + reserved + sold == stock and min(available, reserved, sold) >= 0
    assert k["units_sold"] + k["stock_left"] == stock  # nothing is left reserved at the end
    assert k["groups_completed"] + k["groups_failed"] == k["groups_opened"]
    assert 0 <= k["revenue"] <= k["gmv"]
    assert all(math.isfinite(v) for v in k.values())


# --- group formation, the expected price, the budget (issue 8) --------------------------------

def test_expected_discount_matches_a_hand_computation():
    # E[d] = d_fail + sum_i P(N >= s_i) (d_i - d_{i-1}), N = members + Poisson(joiners)
    ladder = Ladder((2, 3, 5), (0.2, 0.3, 0.4), 0.0)
    e = math.exp(-1.5)
    p1, p2, p4 = 1 - e, 1 - e * (1 + 1.5), 1 - e * (1 + 1.5 + 1.125 + 0.5625)
    assert (p1, p2, p4) == pytest.approx((0.77687, 0.44217, 0.06564), abs=1e-5)
    assert ladder.expected_discount(1, 1.5) == pytest.approx(0.2 * p1 + 0.1 * p2 + 0.1 * p4)
    assert ladder.expected_discount(1, 1.5) == pytest.approx(0.206155, abs=1e-6)
    fallback = Ladder((2, 3, 5), (0.2, 0.3, 0.4), 0.1)  # a failed group pays 10% off
    assert fallback.expected_discount(1, 1.5) == pytest.approx(
        0.1 + 0.1 * p1 + 0.1 * p2 + 0.1 * p4)
    # a 3-member group is sure of 30% off and needs 2 more of Poisson(0.5) for 40%
    assert ladder.expected_discount(3, 0.5) == pytest.approx(
        0.3 + 0.1 * (1 - math.exp(-0.5) * 1.5))
    assert ladder.expected_discount(5, 0.0) == pytest.approx(0.4)
    assert ladder.expected_discount(1, 0.0) == 0.0  # nobody will join: it fails, refunded
    assert [ladder.gain_to_next(m) for m in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.2, 0.1, 0.1, 0.1, 0.0])
    assert [ladder.missing(m) for m in (1, 2, 3, 4, 5)] == [1, 1, 2, 1, 0]


def test_expected_joiners_match_the_documented_formula():
    # Λ = q·F(τ)·(invites on their way + π·μ for a shopper who will share)
    #     + stranger rate · τ / open groups of the SKU
    sc = scenario(rate=100, hours=10, segment={"group_propensity": 0.8, "share_propensity": 0.5,
                                               "base_conversion": 0.05},
                  groups={**GROUP, "window_hours": 2.0},
                  referral={"invites_per_sharer": 3.0, "invite_delay_minutes": 60,
                            "invitee_conversion": 0.2, "depth_cap": 2},
                  behaviour={"look_share": 0.4})
    campaign = _Campaign(sc, 1, record=False, trace=False)
    f = 1 - math.exp(-2.0 / 1.0)  # an invite arrives within the 2-hour window
    strangers = 100 * 0.8 * 0.05 * 0.4  # lookers per hour who would buy, one SKU
    assert campaign.expected_joiners(0, None, 0, 0, True) == pytest.approx(
        0.2 * f * 0.5 * 3.0 + strangers * 2.0 / 1)
    assert campaign.expected_joiners(0, None, 0, 2, True) == pytest.approx(
        strangers * 2.0)  # at the depth cap: the shopper will not share
    # strangers spread over the open groups of the shopper's own SKU (before the fix, a shopper
    # opening a group counted the first SKU's, whatever its own)
    data = sc.model_dump(mode="json", exclude_none=True)
    data["campaign"]["skus"].append({**data["campaign"]["skus"][0], "id": "y"})
    two = _Campaign(parse_scenario(data), 1, record=False, trace=False)
    assert two.groups is not None
    two.groups.open(0, 0.0, 2.0, "a leader on SKU 0")
    half = strangers / 2 * 2.0  # two SKUs share the lookers
    assert two.expected_joiners(0, None, 0, 2, True) == pytest.approx(half / 2)
    assert two.expected_joiners(1, None, 0, 2, True) == pytest.approx(half / 1)


def test_the_product_page_offers_the_group_closest_to_its_next_tier():
    book = GroupBook(1, (2, 3, 5), "closest")
    old = book.open(0, 0.0, 1.0, "a")
    book.join(old, "b")  # 2 members: 1 missing to 3 people
    young = book.open(0, 0.5, 1.0, "c")  # 1 member: 1 missing to 2 people, closes later
    assert book.pick(0) is old  # the same gap: the one closing soonest
    book.join(old, "d")  # 3 members: 2 missing to 5
    assert book.pick(0) is young
    book.close(young)
    assert book.pick(0) is old and book.open_count(0) == 1
    assert GroupBook(1, (2, 3, 5), "oldest").pick(0) is None


def test_friends_join_the_group_their_link_carries():
    base = {"rate": 40, "hours": 24, "groups": {**GROUP, "window_hours": 6},
            "segment": {"group_propensity": 1.0, "share_propensity": 1.0,
                        "base_conversion": 0.5},
            "referral": {"invites_per_sharer": 3.0, "invite_delay_minutes": 30,
                         "invitee_conversion": 0.5, "depth_cap": 1}}
    linked = simulate_once(scenario(**base, behaviour={"look_share": 0.0}), 2, record=True)
    assert linked.recording is not None
    led_by_organic = [g for g in linked.recording.groups if g.leader_depth == 0]
    # nobody looks for a group, so every second member came by the leader's link
    assert sum(g.members > 1 for g in led_by_organic) > 0.5 * len(led_by_organic)
    alone = simulate_once(scenario(**{**base, "referral": None},
                                   behaviour={"look_share": 0.0}), 2, record=True)
    assert alone.recording is not None and alone.kpis["groups_opened"] > 100
    assert all(g.members == 1 for g in alone.recording.groups)  # no links, no joiners


def test_a_deeper_top_tier_sells_more_not_only_costs_more():
    ladder = load_scenario(SCENARIOS / "group_buy_ladder.toml")
    data = ladder.model_dump(mode="json", exclude_none=True)
    data["campaign"]["groups"]["tiers"][-1]["percent_off"] = 50.0
    deeper = parse_scenario(data)
    a = [r.kpis for r in replicate(ladder, 10, seed=3)]
    b = [r.kpis for r in replicate(deeper, 10, seed=3)]
    diff = summarize([{k: y[k] - x[k] for k in ("orders_paid", "discount_cost")}
                      for x, y in zip(a, b, strict=True)])
    assert diff["orders_paid"].ci_low > 0, diff["orders_paid"]  # common random numbers
    assert diff["discount_cost"].ci_low > 0


STEEP = {"tiers": [{"size": 2, "percent_off": 10}, {"size": 4, "percent_off": 20},
                   {"size": 6, "percent_off": 30}, {"size": 8, "percent_off": 40},
                   {"size": 10, "percent_off": 50}],
         "window_hours": 3, "leader_reward": 5.0}


def steep_ladder(budget: float, **campaign: Any):
    """The issue's overrun case: a 2→10-person ladder, 10%→50% off, a 5,000-yuan budget;
    strangers pile into open groups so many climb to the top while the budget runs out."""
    return scenario(rate=400, hours=8, subsidy_budget=budget,
                    segment={"group_propensity": 0.9, "share_propensity": 0.5,
                             "base_conversion": 0.2, "price_sensitivity": 2.0},
                    groups=STEEP, behaviour={"look_share": 0.9, "members_share": True},
                    referral={**REFERRAL, "invite_delay_minutes": 20},
                    coupons=[{"id": "c10", "value": 10, "min_spend": 50, "pool": 30}],
                    first_orders_gift={"count": 20, "gift_cost": 3.0}, **campaign)


def test_the_budget_holds_in_every_replication_of_a_steep_ladder():
    runs = replicate(steep_ladder(5000), 40, seed=1)
    spent = [r.kpis["subsidy_spent"] for r in runs]
    assert max(spent) <= 5000, max(spent)
    # The budget binds: holds for worst cases (a 50%-off top tier, rewards, a coupon, a gift)
    # stop new subsidies while some of it is still unspent, so most but not all is spent.
    assert min(spent) > 3000
    assert all(r.kpis["top_tier_rate"] > 0 for r in runs)  # groups do climb the ladder
    unlimited = simulate_once(steep_ladder(1e9), 1).kpis
    assert unlimited["subsidy_spent"] > 3 * 5000  # without the cap it would be far more


def test_budget_policy_stop_selling_sells_nothing_past_the_budget():
    listed = simulate_once(steep_ladder(5000), 4).kpis
    stopped = simulate_once(steep_ladder(5000, budget_policy="stop_selling"), 4).kpis
    assert stopped["subsidy_spent"] <= 5000 and listed["subsidy_spent"] <= 5000
    # at list price the sale goes on without subsidy; stopped, it sells far less
    assert stopped["orders_paid"] < listed["orders_paid"]
    assert stopped["gmv"] - stopped["revenue"] == pytest.approx(stopped["subsidy_spent"]
                                                                - stopped["reward_cost"]
                                                                - stopped["gift_cost"])


# --- rewards move behaviour, not only cost ---------------------------------------------------

def test_the_sharing_formula_matches_a_hand_computation():
    # mean = μ·(1 + e·(g + w·ρ)), ρ = (R + B·φ + c·R_lead) / L, φ = P(Poisson(q·μ·(1 + e·g)) ≥ n)
    s = Sharing(invites=3.0, effort=2.0, weight=1.0, inviter_reward=20.0, bonus=5.0,
                bonus_after=5, conversion=0.6, leader_reward=5.0)
    m = 0.6 * 3.0 * (1 + 2.0 * 0.2)  # a friend buys with 0.6 of μ·(1 + e·g) = 4.2 invites
    assert m == pytest.approx(2.52)
    phi = 1 - math.exp(-m) * (1 + m + m**2 / 2 + m**3 / 6 + m**4 / 24)
    # by hand: 1 − e^−2.52 · (1 + 2.52 + 3.1752 + 2.66717 + 1.68032) = 1 − 0.080460 · 11.04268
    assert phi == pytest.approx(0.11151, abs=1e-5)
    assert s.fission_chance(0.2) == pytest.approx(phi)
    rho = (20.0 + 5.0 * phi + 0.5 * 5.0) / 100.0  # a leader whose group completes with 0.5
    assert s.stake(0.2, 100.0, completion=0.5) == pytest.approx(rho)
    assert s.mean(0.2, 100.0, completion=0.5) == pytest.approx(3.0 * (1 + 2.0 * (0.2 + rho)))
    assert s.mean(0.2, 100.0, completion=0.5) == pytest.approx(5.58345, abs=1e-5)
    # w = 0, or no rewards, is the formula before rewards moved anybody: μ·(1 + e·g), exactly
    for before in (replace(s, weight=0.0), replace(s, inviter_reward=0.0, bonus=0.0,
                                                   leader_reward=0.0)):
        assert before.mean(0.2, 100.0, completion=0.5) == 3.0 * (1.0 + 2.0 * 0.2)
    assert replace(s, bonus_after=None).fission_chance(0.2) == 0.0
    assert Ladder((3, 5), (0.2, 0.3), 0.0).completion_chance(1, 1.5) == pytest.approx(
        1 - math.exp(-1.5) * (1 + 1.5))
    assert Ladder((3, 5), (0.2, 0.3), 0.0).completion_chance(3, 0.0) == 1.0


def shares_and_kpis(sc, seed: int) -> tuple[float, dict[str, float]]:
    """(shares, KPIs) of one run: the shares are counted but are not a KPI."""
    campaign = _Campaign(sc, seed, record=False, trace=False)
    kpis = campaign.run().kpis
    return campaign.recorder.counts["shares"], kpis


def paired(a: list[dict[str, float]], b: list[dict[str, float]], *keys: str) -> dict:
    """Per KPI, the 95% CI of B − A over paired replications (common random numbers)."""
    return summarize([{k: y[k] - x[k] for k in keys} for x, y in zip(a, b, strict=True)])


def with_values(path: Path, values: dict[str, Any]):
    data = load_scenario(path).model_dump(mode="json", exclude_none=True)
    return parse_scenario(apply_overrides(data, values))


def test_a_larger_inviter_reward_brings_more_invites_and_invited_buyers():
    path = SCENARIOS / "referral_fission.toml"
    keys = ("invites_sent", "invited_buyers", "reward_cost", "buyers")
    none = [r.kpis for r in replicate(with_values(path, {
        "audience.referral.inviter_reward": 0.0}), 10, seed=2)]
    some = [r.kpis for r in replicate(with_values(path, {
        "audience.referral.inviter_reward": 20.0}), 10, seed=2)]
    diff = paired(none, some, *keys)
    for k in keys:
        assert diff[k].ci_low > 0, (k, diff[k])
    # switched off (reward_weight = 0), the reward only costs: the same invites and buyers
    off = [r.kpis for r in replicate(with_values(path, {
        "audience.referral.inviter_reward": 20.0, "audience.referral.reward_weight": 0.0}),
        10, seed=2)]
    assert [k["invites_sent"] for k in off] == [k["invites_sent"] for k in none]
    assert [k["buyers"] for k in off] == [k["buyers"] for k in none]
    assert all(k["reward_cost"] > 0 for k in off)


def fission(after: int, bonus: float):
    """Every buyer shares Poisson(8) product links; a friend buys with 0.6; rewards only the
    fission bonus after `after` successes."""
    return scenario(rate=20, hours=10, segment={"share_propensity": 1.0},
                    referral={"invites_per_sharer": 8.0, "invite_delay_minutes": 1.0,
                              "invitee_conversion": 0.6, "depth_cap": 1,
                              "bonus_after_invites": after, "bonus_per_invite": bonus})


def test_the_fission_bonus_makes_sharers_near_the_threshold_push_harder():
    # Near: 4.8 friends expected to buy, threshold 5 (φ ≈ 0.52) -> a sharer sends more invites.
    # Far: threshold 40, out of reach (φ ≈ 0) -> the bonus moves nobody (and costs nothing).
    for after, moves in ((5, True), (40, False)):
        a = [shares_and_kpis(fission(after, 0.0), s) for s in range(1, 11)]
        b = [shares_and_kpis(fission(after, 20.0), s) for s in range(1, 11)]
        per_share = summarize([{"d": kb["invites_sent"] / nb - ka["invites_sent"] / na}
                               for (na, ka), (nb, kb) in zip(a, b, strict=True)])["d"]
        if moves:
            assert per_share.ci_low > 0.5, per_share  # about 8 × 2 × 20 × 0.52 / 100 = 1.7
            assert sum(kb["reward_cost"] for _, kb in b) > 0
        else:
            assert abs(per_share.mean) < 0.01, per_share


def test_a_larger_leader_reward_completes_more_groups():
    # Groups of 3 fill by the leader's link only: a leader who stands to earn 30 yuan (on a
    # 100-yuan order, times the chance its group completes) invites more friends.
    def leading(reward: float):
        return scenario(rate=60, hours=24,
                        segment={"group_propensity": 1.0, "share_propensity": 1.0,
                                 "base_conversion": 0.1},
                        groups={"tiers": [{"size": 3, "percent_off": 20}], "window_hours": 2.0,
                                "leader_reward": reward},
                        referral={"invites_per_sharer": 2.0, "invite_delay_minutes": 30,
                                  "invitee_conversion": 0.5, "depth_cap": 1},
                        behaviour={"look_share": 0.0})
    a = [r.kpis for r in replicate(leading(0.0), 20, seed=5)]
    b = [r.kpis for r in replicate(leading(30.0), 20, seed=5)]
    diff = paired(a, b, "group_completion_rate", "invites_sent", "groups_completed")
    assert diff["invites_sent"].ci_low > 0, diff["invites_sent"]
    assert diff["group_completion_rate"].ci_low > 0, diff["group_completion_rate"]


def test_a_larger_invitee_reward_converts_more_invitees():
    # The invitee's 10 yuan off is part of the price it responds to (the segment's shape lifts
    # its conversion); the sharers' invites are the same, so the difference is conversion.
    def rewarded(reward: float):
        return scenario(rate=50, segment={"share_propensity": 0.5, "price_sensitivity": 2.0},
                        referral={**REFERRAL, "inviter_reward": 0.0, "invitee_reward": reward,
                                  "invitee_conversion": 0.3, "depth_cap": 1})
    a = [r.kpis for r in replicate(rewarded(0.0), 10, seed=3)]
    b = [r.kpis for r in replicate(rewarded(10.0), 10, seed=3)]
    assert [k["invites_sent"] for k in a] == [k["invites_sent"] for k in b]
    diff = paired(a, b, "invite_conversion", "invited_buyers")
    assert diff["invite_conversion"].ci_low > 0 and diff["invited_buyers"].ci_low > 0, diff


def test_a_deeper_depth_cap_brings_more_invited_buyers_and_costs_more_rewards():
    # Every buyer shares; with a 10-yuan reward on a 100-yuan product it sends 2 × 1.2 invites,
    # each bought with 0.4: about one buyer per buyer, so each level the cap allows adds nearly
    # as many invited buyers (and rewards) as the one before.
    def capped(cap: int):
        return scenario(rate=30, segment={"share_propensity": 1.0},
                        referral={"invites_per_sharer": 2.0, "invite_delay_minutes": 5.0,
                                  "invitee_conversion": 0.4, "depth_cap": cap,
                                  "inviter_reward": 10.0})
    runs = {cap: [r.kpis for r in replicate(capped(cap), 10, seed=4)] for cap in (1, 2, 3)}
    for lo, hi in ((1, 2), (2, 3)):
        diff = paired(runs[lo], runs[hi], "invited_buyers", "reward_cost")
        assert diff["invited_buyers"].ci_low > 0 and diff["reward_cost"].ci_low > 0, (lo, diff)
    for cap in (1, 2, 3):
        assert max(k["max_referral_depth"] for k in runs[cap]) == cap
        assert all(k["reward_cost"] == 10.0 * k["invited_buyers"] for k in runs[cap])
    # the shipped referral scenario: chains rarely pass depth 2 there, so caps 1 and 2 differ
    path = SCENARIOS / "referral_fission.toml"
    one, two = ([r.kpis for r in replicate(with_values(path, {
        "audience.referral.depth_cap": cap}), 10, seed=4)] for cap in (1, 2))
    diff = paired(one, two, "invited_buyers", "reward_cost")
    assert diff["invited_buyers"].ci_low > 0 and diff["reward_cost"].ci_low > 0, diff
