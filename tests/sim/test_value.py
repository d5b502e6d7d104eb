"""After-campaign value (repurchases, LTV, CAC, payback, break-even) and the event log."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from campaign.audience import CHANNELS, AfterCampaign
from campaign.errors import ScenarioError
from campaign.scenario import load_scenario, parse_scenario, read_scenario_data
from groupbuy.cli import main
from sim import simulate_once
from sim.events import COLUMNS, EVENT_KINDS, write_events
from sim.model.after import Cohort, after_campaign, first_day
from tests.support import SCENARIOS


def _cohort(n: int, channel: int = 4, list_fen: int = 10000, goods_fen: int = 6000,
            subsidy_fen: int = 1000) -> Cohort:
    c = Cohort()
    for i in range(n):
        c.add(i, 0, channel, 0, list_fen, goods_fen, subsidy_fen)
    return c


def _value(params: AfterCampaign, n: int, seed: int = 1, **kw):
    rules = load_scenario(SCENARIOS / "default.toml").campaign
    spend = kw.pop("spend_fen", n * 2000)
    profit = kw.pop("profit_fen", 0)
    return after_campaign(_cohort(n, **kw), params, ["new"], rules, np.random.default_rng(seed),
                          spend_fen=spend, profit_fen=profit)


def _p_repurchase(p: float, rho: float, c: float, k: int) -> float:
    """P(at least one repurchase in k periods): active in period 1, then with rho, then each
    later period with 1 - c; one Bernoulli(p) per active period."""
    none = 0.0
    for length in range(1, k + 1):  # active for exactly `length` periods
        if length == 1:
            w = 1 - rho if k > 1 else 1.0
        elif length < k:
            w = rho * (1 - c) ** (length - 2) * c
        else:
            w = rho * (1 - c) ** (length - 2)
        none += w * (1 - p) ** length
    return 1 - none


def test_repurchase_share_and_orders_match_the_closed_form():
    params = AfterCampaign(retention=0.3, churn=0.2, repurchase=0.15, margin=0.4)
    n = 20_000
    v = _value(params, n)
    expected = _p_repurchase(0.15, 0.3, 0.2, 12)
    half = stats.norm.ppf(0.975) * np.sqrt(expected * (1 - expected) / n)
    assert abs(v.kpis["repurchase_rate"] - expected) < half * 1.5
    assert abs(v.kpis["retention"] - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)
    orders = 0.15 * (1 + 0.3 * sum(0.8 ** j for j in range(11)))
    assert v.kpis["repurchase_orders"] / n == pytest.approx(orders, rel=0.05)


def test_ltv_is_list_margin_plus_discounted_repurchase_margin():
    # Everyone stays and orders every month: LTV = 40 + 12 orders × 100 × 0.5, discounted.
    params = AfterCampaign(retention=1, churn=0, repurchase=1, margin=0.5, order_value=100,
                           annual_discount_rate=0.2)
    v = _value(params, 4000)
    # E[(1+r)^(-day/365)] with day uniform over each 30-day period, in closed form
    a = np.log(1.2) / 365
    pv = sum((np.exp(-a * 30 * k) - np.exp(-a * 30 * (k + 1))) / (a * 30) for k in range(12))
    assert v.kpis["ltv"] == pytest.approx(40 + 50 * pv, rel=0.002)
    assert v.kpis["repurchase_rate"] == 1.0 and v.kpis["repurchase_orders"] == 12 * 4000


def test_cac_shares_the_spend_and_payback_is_the_day_value_reaches_it():
    params = AfterCampaign(retention=1, churn=0, repurchase=1, margin=0.5, order_value=100,
                           annual_discount_rate=0)
    v = _value(params, 1000, spend_fen=1000 * 9000)  # CAC 90 yuan; day 0 is worth 40
    ch = v.channels["regular"]
    assert ch["cac"] == pytest.approx(90) and v.kpis["ltv_to_cac"] == pytest.approx(ch["ltv"] / 90)
    # 50 yuan per month: 40 + 50 reaches 90 once everyone's first repurchase is in (day 30)
    assert 20 < ch["payback_days"] <= 30
    assert first_day(np.array([0.0, 1.0, 2.0]), 5) == 2  # never: the horizon


def test_break_even_counts_the_days_until_repurchases_cover_the_loss():
    params = AfterCampaign(retention=1, churn=0, repurchase=1, margin=0.5, order_value=100,
                           annual_discount_rate=0)
    v = _value(params, 100, profit_fen=-100 * 50 * 100 * 3)  # a loss of 3 months' margin
    assert 60 < v.kpis["break_even_days"] <= 90
    assert v.kpis["lifetime_profit"] == pytest.approx(-15000 + 100 * 12 * 50)
    assert v.kpis["break_even_daily_orders"] == pytest.approx(15000 / 50 / 360)
    never = _value(params.model_copy(update={"repurchase": 0.0}), 100, profit_fen=-10)
    assert never.kpis["break_even_days"] == 360


def test_channels_multiply_repurchase():
    params = AfterCampaign.model_validate({"retention": 1, "churn": 0, "repurchase": 0.5,
                                           "channels": {"invite": {"repurchase": 2}}})
    v = _value(params, 200, channel=CHANNELS.index("invite"))
    assert v.kpis["repurchase_orders"] == 200 * 12  # 0.5 × 2: every month


def test_every_run_reports_value_by_channel_and_the_cac_adds_up():
    sc = load_scenario(SCENARIOS / "default.toml")
    run = simulate_once(sc, 3)
    k, after = run.kpis, run.after
    assert after is not None and set(after.channels) <= set(CHANNELS)
    buyers = sum(c["buyers"] for c in after.channels.values())
    assert buyers == k["acquired_buyers"]
    spend = sum(c["buyers"] * c["cac"] for c in after.channels.values())
    assert spend == pytest.approx(k["subsidy_spent"] + sc.campaign.fixed_cost)
    assert k["ltv_to_cac"] == pytest.approx(k["ltv"] / k["cost_per_acquired_buyer"])
    assert 0.15 < k["retention"] < 0.45 and 0.1 < k["repurchase_rate"] < 0.4


def test_a_losing_campaign_says_how_many_repurchases_would_break_even():
    run = simulate_once(load_scenario(SCENARIOS / "referral_fission.toml"), 1)
    k = run.kpis
    assert k["profit"] < 0 and k["break_even_daily_orders"] > 0
    assert k["lifetime_profit"] > k["profit"]


@pytest.mark.parametrize(("after", "message"), [
    ({"segments": {"newbies": {"churn": 0.1}}},
     "audience.after_campaign.segments.newbies: unknown segment"),
    ({"horizon_days": 20}, "audience.after_campaign.horizon_days: shorter than one period"),
    ({"channels": {"tv": {"repurchase": 1}}}, "audience.after_campaign.channels.tv: unknown key"),
    ({"retention": 1.5}, "audience.after_campaign.retention: Input should be less than or equal"),
    ({"segments": {"new": {"repurchase": -1}}},
     "audience.after_campaign.segments.new.repurchase: Input should be greater"),
])
def test_bad_after_campaign_keys_give_one_line_naming_the_key(after, message):
    data = read_scenario_data(SCENARIOS / "default.toml")
    data["audience"]["after_campaign"] = after
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "x.toml")
    assert len(err.value.problems) == 1 and err.value.lines()[0].startswith(f"x.toml: {message}")


def test_the_after_campaign_section_is_optional():
    data = read_scenario_data(SCENARIOS / "default.toml")
    del data["audience"]["after_campaign"]
    assert parse_scenario(data).audience.after_campaign == AfterCampaign()


# -- the event log ------------------------------------------------------------------------


def _log(tmp_path: Path, name: str = "default.toml", seed: int = 2):
    sc = load_scenario(SCENARIOS / name)
    run = simulate_once(sc, seed, events=True)
    path = tmp_path / "events.csv"
    write_events(path, sc, run.event_log)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return run, rows, path


def test_the_event_log_counts_what_the_kpis_count(tmp_path):
    run, rows, path = _log(tmp_path)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    kinds = [r["event"] for r in rows]
    k = run.kpis
    assert set(kinds) <= set(EVENT_KINDS)
    assert kinds.count("visit") == k["arrivals"]
    assert kinds.count("invite_arrival") == k["invitee_arrivals"]
    assert kinds.count("order_kept") == k["orders_paid"]
    assert kinds.count("expire") == k["expired_reservations"]
    assert kinds.count("group_open") == k["groups_opened"]
    assert kinds.count("group_complete") == k["groups_completed"]
    assert kinds.count("repurchase") == k["repurchase_orders"]
    assert kinds.count("reserve") == kinds.count("pay") + kinds.count("expire")
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times)
    kept = sum(float(r["amount"]) for r in rows if r["event"] == "order_kept")
    assert kept == pytest.approx(k["revenue"], abs=0.01 * k["orders_paid"])
    assert {r["detail"] for r in rows if r["event"] == "order_kept"} <= set(CHANNELS)


def test_a_user_reserves_before_paying_and_pays_before_the_order_is_kept(tmp_path):
    _, rows, _ = _log(tmp_path)
    seen: dict[str, set[str]] = {}
    for r in rows:
        before = seen.setdefault(r["user"], set())
        if r["event"] == "pay":
            assert "reserve" in before
        if r["event"] == "order_kept":
            assert "pay" in before
        if r["event"] == "repurchase":
            assert "order_kept" in before
        before.add(r["event"])


def test_keeping_the_event_log_changes_no_number():
    sc = load_scenario(SCENARIOS / "default.toml")
    assert simulate_once(sc, 5).kpis == simulate_once(sc, 5, events=True).kpis


def test_simulate_events_writes_one_log_per_replication(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", str(SCENARIOS / "default.toml"), "-n", "2", "--events",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in (out / "events").iterdir()) == ["replication-0.csv",
                                                                  "replication-1.csv"]
    assert "After the campaign: value of acquired buyers by channel" in text
    assert "LTV ÷ CAC" in text


def test_value_kpis_are_objectives_for_compare_sweep_and_tune():
    from sim import KPI_NAMES, compare_scenarios
    from sim.studies.params import parse_constraint, parse_objective, parse_param

    assert parse_objective("ltv_to_cac", KPI_NAMES).direction == "maximize"
    assert parse_objective("lifetime_profit:max", KPI_NAMES).kpi == "lifetime_profit"
    assert parse_constraint("payback_days<=180", KPI_NAMES).bound == 180
    assert parse_param("audience.after_campaign.repurchase=0.05:0.3", "--param").is_range
    data = read_scenario_data(SCENARIOS / "default.toml")
    a = parse_scenario(data)
    b = parse_scenario({**data, "audience": {**data["audience"], "after_campaign": {
        **data["audience"]["after_campaign"], "repurchase": 0.3}}})
    cmp = compare_scenarios(a, b, replications=5, seed=1)
    # more repurchase: the same campaign (common random numbers), more value afterwards
    assert cmp.diff["buyers"].mean == 0 and cmp.diff["ltv"].ci_low > 0
    assert cmp.significant("lifetime_profit") and cmp.significant("ltv_to_cac")


@settings(max_examples=40, deadline=None)
@given(retention=st.floats(0, 1), churn=st.floats(0, 1), repurchase=st.floats(0, 1),
       rate=st.floats(0, 1), horizon=st.integers(1, 400), period=st.integers(1, 60),
       n=st.integers(0, 60), channel=st.integers(0, 4), spend=st.integers(0, 10**6),
       profit=st.integers(-10**6, 10**6))
def test_value_invariants_hold_for_any_parameters(retention, churn, repurchase, rate, horizon,
                                                  period, n, channel, spend, profit):
    period = min(period, horizon)
    params = AfterCampaign(retention=retention, churn=churn, repurchase=repurchase,
                           annual_discount_rate=rate, horizon_days=horizon, period_days=period)
    v = _value(params, n, channel=channel, spend_fen=spend, profit_fen=profit)
    k = v.kpis
    assert all(np.isfinite(x) for x in k.values())
    assert 0 <= k["retention"] <= 1 and 0 <= k["repurchase_rate"] <= 1
    assert 0 <= k["payback_days"] <= horizon and 0 <= k["break_even_days"] <= horizon
    assert k["repurchase_orders"] <= n * -(-horizon // period)  # at most one a period
    assert k["lifetime_profit"] >= profit / 100 - 1e-9  # repurchases only add
    for curve in v.curves.values():
        assert len(curve) == horizon + 1 and np.all(np.diff(curve) >= -1e-9)
    if n:
        total = sum(c["buyers"] * c["cac"] for c in v.channels.values())
        assert total == pytest.approx(spend / 100)
    days = v.repurchases[1]
    assert np.all((days >= 0) & (days < horizon))
