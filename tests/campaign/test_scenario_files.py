"""Scenario files: the shipped ones load; bad ones give one clear line per problem, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from campaign import ScenarioError, load_scenario, parse_scenario
from campaign.scenario import apply_overrides, read_scenario_data
from tests.support import SCENARIOS

SHIPPED = sorted(SCENARIOS.glob("*.toml"))


def minimal() -> dict:
    return {
        "campaign": {
            "name": "t",
            "skus": [{"id": "a", "stock": 10, "list_price": 100, "unit_cost": 40}],
            "phases": [{"name": "burst", "hours": 2}],
        },
        "audience": {
            "arrivals_per_hour": {"burst": 100},
            "segments": [{"name": "all", "share": 1, "base_conversion": 0.1}],
        },
    }


def problems(data: dict) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source="x.toml")
    return info.value.problems


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.campaign.skus and sc.campaign.duration_hours > 0
    assert sc.audience is not None and sc.expected_arrivals() > 0


def test_at_least_the_three_documented_patterns_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"default", "group_buy_two_tier", "flash_sale", "referral_fission"} <= names
    group = load_scenario(SCENARIOS / "group_buy_two_tier.toml").campaign.groups
    assert group is not None
    assert [(t.size, t.percent_off) for t in group.tiers][:2] == [(2, 20), (3, 30)]
    assert group.window_hours == 24 and group.leader_reward == 5
    referral = load_scenario(SCENARIOS / "referral_fission.toml").audience.referral
    assert referral is not None
    assert (referral.inviter_reward, referral.depth_cap) == (20, 3)
    assert (referral.bonus_after_invites, referral.bonus_per_invite) == (5, 5)
    flash = load_scenario(SCENARIOS / "flash_sale.toml").campaign
    assert flash.time_discounts[0].percent_off == 50
    assert flash.first_orders_gift is not None and flash.first_orders_gift.count == 100


def test_unknown_key_is_an_error_naming_the_key() -> None:
    data = minimal()
    data["campaign"]["per_user_limt"] = 3
    assert problems(data) == ["campaign.per_user_limt: unknown key (check the spelling; "
                              "see the commented scenarios in scenarios/)"]


def test_tier_sizes_must_rise() -> None:
    data = minimal()
    data["campaign"]["groups"] = {"window_hours": 24, "tiers": [
        {"size": 3, "percent_off": 20}, {"size": 2, "percent_off": 30}]}
    assert problems(data) == ["campaign.groups.tiers[1].size: must be larger than the tier "
                              "before it"]


def test_larger_tier_may_not_be_dearer() -> None:
    data = minimal()
    data["campaign"]["groups"] = {"window_hours": 24, "tiers": [
        {"size": 2, "percent_off": 30}, {"size": 3, "percent_off": 20}]}
    (line,) = problems(data)
    assert line.startswith("campaign.groups.tiers[1].percent_off: must be at least")


def test_several_problems_are_all_reported() -> None:
    data = minimal()
    data["campaign"]["skus"][0]["stock"] = -1
    data["campaign"]["payment_timeout_minutes"] = "soon"
    lines = problems(data)
    assert any(x.startswith("campaign.skus[0].stock:") for x in lines)
    assert any(x.startswith("campaign.payment_timeout_minutes:") for x in lines)


def test_arrival_rates_must_name_real_phases() -> None:
    data = minimal()
    data["audience"]["arrivals_per_hour"] = {"burst": 100, "brust": 5}
    assert problems(data) == ["audience.arrivals_per_hour.brust: not a phase of the campaign; "
                              "phases are ['burst']"]


def test_every_phase_needs_a_rate() -> None:
    data = minimal()
    data["campaign"]["phases"].append({"name": "tail", "hours": 1})
    assert problems(data) == ["audience.arrivals_per_hour: no rate for phase(s) ['tail']"]


def test_hourly_curve_must_cover_the_sale() -> None:
    data = minimal()
    data["audience"] = {"hourly_curve": [10.0],
                        "segments": [{"name": "all", "share": 1, "base_conversion": 0.1}]}
    (line,) = problems(data)
    assert line.startswith("audience.hourly_curve: has 1 hours; the campaign lasts 2 h")


def test_segment_shares_add_up_to_one() -> None:
    data = minimal()
    data["audience"]["segments"][0]["share"] = 0.5
    assert problems(data) == ["audience.segments: shares must add up to 1 (they add up to 0.5)"]


def test_duplicate_sku_ids_are_rejected() -> None:
    data = minimal()
    data["campaign"]["skus"].append(dict(data["campaign"]["skus"][0]))
    assert problems(data) == ["campaign.skus[1].id: duplicate id 'a'"]


def test_member_price_needs_a_known_tier() -> None:
    data = minimal()
    data["campaign"]["skus"][0]["member_prices"] = {"gold": 90}
    (line,) = problems(data)
    assert line.startswith("campaign.skus[0].member_prices.gold: unknown member tier")


def test_expected_arrivals_is_the_integral_of_the_rate() -> None:
    data = minimal()
    data["campaign"]["phases"] = [{"name": "a", "hours": 2}, {"name": "b", "hours": 0.5}]
    data["audience"]["arrivals_per_hour"] = {"a": 100, "b": 1000}
    assert parse_scenario(data).expected_arrivals() == pytest.approx(700)


def test_overrides_set_nested_keys_and_list_items() -> None:
    data = minimal()
    data["campaign"]["groups"] = {"window_hours": 24, "tiers": [
        {"size": 2, "percent_off": 20}, {"size": 3, "percent_off": 30}]}
    out = apply_overrides(data, {"campaign.groups.window_hours": 6,
                                 "campaign.groups.tiers[1].percent_off": 35})
    sc = parse_scenario(out)
    assert sc.campaign.groups.window_hours == 6
    assert sc.campaign.groups.tiers[1].percent_off == 35
    assert data["campaign"]["groups"]["window_hours"] == 24  # the original is untouched


def test_override_of_a_missing_list_item_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError) as info:
        apply_overrides(minimal(), {"campaign.skus[3].stock": 5}, source="x.toml")
    assert info.value.problems == ["campaign.skus[3].stock: campaign.skus has no item [3]"]


def test_override_typo_is_caught_by_the_schema() -> None:
    out = apply_overrides(minimal(), {"campaign.grups.window_hours": 5})
    (line,) = problems(out)
    assert line.startswith("campaign.grups: unknown key")


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[campaign\nname = 1")
    with pytest.raises(ScenarioError) as info:
        read_scenario_data(bad)
    assert info.value.problems[0].startswith("not valid TOML")
    with pytest.raises(ScenarioError) as info:
        read_scenario_data(tmp_path / "missing.toml")
    assert info.value.problems == ["file not found"]


def test_validate_command_prints_one_line_per_problem(tmp_path: Path, groupbuy_exe: str) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text(
        '[campaign]\nname = "x"\nper_user_limt = 3\n'
        '[[campaign.skus]]\nid = "a"\nstock = 5\nlist_price = 10\nunit_cost = 1\n'
        '[[campaign.phases]]\nname = "p"\nhours = 1\n'
        '[campaign.groups]\nwindow_hours = 1\n'
        'tiers = [{size = 3, percent_off = 10}, {size = 2, percent_off = 20}]\n'
    )
    proc = subprocess.run([groupbuy_exe, "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{bad}: campaign.groups.tiers[1].size: must be larger than the tier before it",
        f"{bad}: campaign.per_user_limt: unknown key (check the spelling; see the commented "
        "scenarios in scenarios/)",
    ]
    ok = subprocess.run([groupbuy_exe, "validate", str(SCENARIOS / "default.toml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ": ok (" in ok.stdout


# --- simulation-only keys: group behaviour, demand shapes, budget policy ----------------------

def with_groups(data: dict) -> dict:
    data["campaign"]["groups"] = {"window_hours": 24, "tiers": [
        {"size": 2, "percent_off": 20}, {"size": 3, "percent_off": 30}]}
    return data


def test_group_behaviour_keys_load_with_their_defaults() -> None:
    data = with_groups(minimal())
    data["audience"]["groups"] = {"look_share": 0.3, "members_share": True}
    groups = parse_scenario(data).audience.groups
    assert groups is not None
    assert (groups.look_share, groups.choice, groups.members_share, groups.share_effort) == (
        0.3, "closest", True, 2.0)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("look_share", 1.5, "audience.groups.look_share: Input should be less than or equal to 1"),
    ("choice", "random", "audience.groups.choice: Input should be 'closest' or 'oldest'"),
    ("share_effort", -1, "audience.groups.share_effort: Input should be greater than or equal "
                         "to 0"),
    ("members_shar", True, "audience.groups.members_shar: unknown key"),
])
def test_bad_group_behaviour_keys_name_the_key(key: str, value: object, expected: str) -> None:
    data = with_groups(minimal())
    data["audience"]["groups"] = {key: value}
    (line,) = problems(data)
    assert line.startswith(expected), line


REFERRAL = {"invites_per_sharer": 2.0, "invite_delay_minutes": 60, "invitee_conversion": 0.1,
            "depth_cap": 2}


def test_reward_weight_defaults_to_one_and_may_be_switched_off() -> None:
    data = minimal()
    data["audience"]["referral"] = dict(REFERRAL)
    assert parse_scenario(data).audience.referral.reward_weight == 1.0
    data["audience"]["referral"]["reward_weight"] = 0
    assert parse_scenario(data).audience.referral.reward_weight == 0.0


@pytest.mark.parametrize(("value", "expected"), [
    (-0.5, "audience.referral.reward_weight: Input should be greater than or equal to 0"),
    (101, "audience.referral.reward_weight: Input should be less than or equal to 100"),
    ("a lot", "audience.referral.reward_weight: Input should be a valid number"),
])
def test_a_bad_reward_weight_names_the_key(value: object, expected: str) -> None:
    data = minimal()
    data["audience"]["referral"] = {**REFERRAL, "reward_weight": value}
    (line,) = problems(data)
    assert line.startswith(expected), line
    assert "\n" not in line


def test_group_behaviour_needs_group_rules() -> None:
    data = minimal()
    data["audience"]["groups"] = {"look_share": 0.5}
    assert problems(data) == ["audience.groups: the campaign has no [campaign.groups]; group "
                              "behaviour needs group rules"]


def test_demand_shapes_and_their_keys() -> None:
    data = minimal()
    seg = data["audience"]["segments"][0]
    seg |= {"demand_shape": "reference", "reference_discount": 0.4, "deep_discount_penalty": 1}
    parsed = parse_scenario(data).audience.segments[0]
    assert (parsed.demand_shape, parsed.reference_discount, parsed.deep_discount_penalty) == (
        "reference", 0.4, 1.0)
    seg["demand_shape"] = "saturating"
    assert problems(data) == ["audience.segments[0].deep_discount_penalty: only applies with "
                              "demand_shape 'reference'"]
    del seg["deep_discount_penalty"]
    seg["demand_shape"] = "linear"
    assert problems(data) == ["audience.segments[0].reference_discount: has no effect with "
                              "demand_shape 'linear'; use 'saturating' or 'reference'"]
    seg["demand_shape"] = "s-curve"
    (line,) = problems(data)
    assert line.startswith("audience.segments[0].demand_shape: Input should be 'linear', "
                           "'saturating' or 'reference'")


def test_budget_policy_needs_a_budget() -> None:
    data = minimal()
    data["campaign"]["budget_policy"] = "stop_selling"
    assert problems(data) == ["campaign.budget_policy: has no effect without subsidy_budget"]
    data["campaign"]["subsidy_budget"] = 1000
    assert parse_scenario(data).campaign.budget_policy == "stop_selling"
    data["campaign"]["budget_policy"] = "free_for_all"
    (line,) = problems(data)
    assert line.startswith("campaign.budget_policy: Input should be 'list_price' or "
                           "'stop_selling'")
