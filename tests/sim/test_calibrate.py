"""`groupbuy calibrate`: parameter recovery, the fitted scenario, the fit report, bad logs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from campaign.scenario import apply_overrides, load_scenario, parse_scenario, read_scenario_data
from groupbuy.cli import main
from sim import simulate_once
from sim.calibrate.estimate import exponential_mean, poisson_rate, proportion
from sim.calibrate.fit import _repurchase_loglik
from sim.calibrate.recovery import recover, true_value
from sim.calibrate.toml_out import dump, fitted_toml
from sim.events import COLUMNS, write_events
from tests.support import SCENARIOS

DEFAULT = SCENARIOS / "default.toml"


def wrong_base() -> dict:
    """The default scenario with every fitted parameter moved well away from the truth (the
    held ones, shapes and prices, stay)."""
    data = read_scenario_data(DEFAULT)
    over = {"audience.arrivals_per_hour.burst": 4000.0,
            "audience.referral.invitee_conversion": 0.08,
            "audience.referral.invites_per_sharer": 3.0, "audience.groups.look_share": 0.8,
            "audience.after_campaign.retention": 0.5, "audience.after_campaign.churn": 0.3}
    for i, s in enumerate(data["audience"]["segments"]):
        over |= {f"audience.segments[{i}].base_conversion": s["base_conversion"] * 1.5,
                 f"audience.segments[{i}].group_propensity": 0.3,
                 f"audience.segments[{i}].pay_probability": 0.7,
                 f"audience.segments[{i}].share_propensity": 0.3}
    return apply_overrides(data, over)


def test_recovered_intervals_cover_the_true_values():
    """The honest test: simulate with known parameters, calibrate a wrong base on the events;
    over several seeds the 95% intervals must cover the truth for at least 90% of the
    (parameter, seed) pairs (about 95% expected)."""
    rows = recover(read_scenario_data(DEFAULT), wrong_base(), seeds=[11, 12, 13, 14, 15])
    covered = sum(r.covered for r in rows)
    assert len({r.key for r in rows}) >= 25  # every kind of parameter is in the test
    assert covered / len(rows) >= 0.90, [r for r in rows if not r.covered]


def test_the_wrong_base_was_really_wrong():
    truth, base = load_scenario(DEFAULT), wrong_base()
    from campaign.scenario import parse_scenario
    wrong = parse_scenario(base)
    keys = ["audience.segments[0].base_conversion", "audience.groups.look_share",
            "audience.after_campaign.segments.new.retention"]
    assert all(true_value(truth, k) != true_value(wrong, k) for k in keys)


def test_closed_form_intervals():
    value, lo, hi = poisson_rate(100, 10.0)
    assert value == 10 and lo < 10 < hi and hi - lo == pytest.approx(2 * 1.96, rel=0.05)
    value, lo, hi = proportion(30, 100)
    assert value == 0.3 and lo < 0.3 < hi
    value, lo, hi = exponential_mean(300.0, 100)
    assert value == 3 and lo < 3 < hi


def test_the_repurchase_likelihood_sums_to_one_over_all_patterns():
    # every pattern of 3 periods, one buyer each: the probabilities add up to 1
    patterns = np.array([[(m >> k) & 1 for k in range(3)] for m in range(8)], dtype=bool)
    last = np.where(patterns.any(axis=1), 2 - np.argmax(patterns[:, ::-1], axis=1), -1)
    x = np.array([0.3, -1.0, -0.5])
    total = sum(np.exp(_repurchase_loglik(x, patterns[i:i + 1], last[i:i + 1], np.ones(1),
                                          np.ones(3))) for i in range(8))
    assert total == pytest.approx(1.0)


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("logs")
    assert main(["simulate", str(DEFAULT), "-n", "3", "--events", "--out", str(out)]) == 0
    return sorted((out / "events").glob("*.csv"))


def test_calibrate_writes_a_valid_scenario_that_keeps_the_base_comments(tmp_path, logs, capsys):
    fitted, report = tmp_path / "fitted.toml", tmp_path / "report"
    assert main(["calibrate", str(logs[0]), "--scenario", str(DEFAULT), "--out", str(fitted),
                 "--report", str(report), "--replications", "2"]) == 0
    out = capsys.readouterr().out
    assert "audience.segments[0].base_conversion" in out and "95% CI" in out
    assert "goodness of fit" in out and "χ²" in out
    text = fitted.read_text()
    assert "# Fitted by `groupbuy calibrate" in text
    assert "# the hot SKU: little stock, big discount" in text  # a base comment, kept
    assert "base_conversion = " in text and "# fitted: 95% CI [" in text
    assert main(["validate", str(fitted)]) == 0
    for name in ("fit_report.html", "estimates.csv", "by_hour.png", "by_tier.png",
                 "by_cohort.png"):
        assert (report / name).exists(), name
    fit = load_scenario(fitted)
    base = load_scenario(DEFAULT)
    assert fit.campaign == base.campaign.model_copy(update={"groups": fit.campaign.groups})
    assert fit.audience.after_campaign.segments["new"].retention is not None


def test_several_logs_are_fitted_together(tmp_path, logs, capsys):
    fitted = tmp_path / "fitted.toml"
    assert main(["calibrate", *map(str, logs), "--scenario", str(DEFAULT), "--out", str(fitted),
                 "--report", str(tmp_path / "r"), "--replications", "2"]) == 0
    out = capsys.readouterr().out
    visits = sum(sum(1 for line in p.open() if ",visit," in line) for p in logs)
    assert f"{visits:,}" in out  # the share estimate counts every log's visits
    rate = load_scenario(fitted).audience.arrivals_per_hour["burst"]
    assert 5500 < rate < 6500  # per hour of one campaign, not of three


def _bad(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\n" + body)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("1.0,visit,u1,new,group-tea,,,,\n0.5,visit,u2,new,group-tea,,,,\n",
     "line 3: time 0.5 is earlier than a row before it"),
    ("1.0,party,u1,new,group-tea,,,,\n", "line 2: unknown event kind 'party'"),
    ("1.0,visit,u1,new,group-tea,,,,\n1.5,pay,u1,new,group-tea,,,,\n",
     "line 3: pay by a user with no earlier reserve"),
    ("soon,visit,u1,new,group-tea,,,,\n", "line 2: time 'soon' is not a number of hours"),
    ("1.0,visit,u1,newbie,group-tea,,,,\n", "line 2: segment 'newbie' is not in the base"),
    ("1.0,visit,u1,new,tea,,,,\n", "line 2: SKU 'tea' is not in the base"),
    ("1.0,order_kept,u1,new,group-tea,,,lots,\n", "line 2: amount 'lots' is not a number"),
])
def test_bad_logs_get_one_line_naming_the_row_and_exit_2(tmp_path, capsys, body, message):
    path = _bad(tmp_path, body)
    assert main(["calibrate", str(path), "--scenario", str(DEFAULT), "--out",
                 str(tmp_path / "f.toml"), "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    problems = [line for line in err if not line.startswith("calibrate:")]
    assert problems == [line for line in problems if line.startswith(f"{path}: ")]
    assert any(message in line for line in problems), problems
    assert not (tmp_path / "f.toml").exists()


def test_a_log_without_columns_is_refused(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("time,event,user\n1,visit,a\n")
    assert main(["calibrate", str(path), "--scenario", str(DEFAULT), "--out",
                 str(tmp_path / "f.toml"), "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "line 1: missing column(s) segment, sku, group, inviter, amount, detail" in err


def test_a_missing_log_and_a_missing_option_exit_2(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "nope.csv"), "--scenario", str(DEFAULT),
                 "--out", str(tmp_path / "f.toml"), "--report", str(tmp_path / "r")]) == 2
    assert "nope.csv: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(tmp_path / "nope.csv")])
    assert exit_.value.code == 2


def test_the_installed_command_shows_no_traceback_on_a_bad_log(groupbuy_exe, tmp_path):
    path = _bad(tmp_path, "2,visit,u1,new,group-tea,,,,\n1,visit,u2,new,group-tea,,,,\n")
    proc = subprocess.run([groupbuy_exe, "calibrate", str(path), "--scenario", str(DEFAULT),
                           "--out", str(tmp_path / "f.toml")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "line 3: time 1 is earlier" in proc.stderr


def test_a_simulated_log_round_trips_through_the_csv(tmp_path):
    from sim.calibrate.log import events_from_log, read_events
    sc = load_scenario(DEFAULT)
    run = simulate_once(sc, 4, events=True)
    path = tmp_path / "e.csv"
    write_events(path, sc, run.event_log)
    from_csv = read_events(path)
    direct = events_from_log(run.event_log, [s.name for s in sc.audience.segments],
                             [s.id for s in sc.campaign.skus], sc.campaign.duration_hours)
    assert (from_csv.kind == direct.kind).all()
    assert np.allclose(from_csv.time, direct.time, atol=1e-6)


def test_the_fitted_file_falls_back_to_plain_toml_when_the_layout_cannot_be_kept():
    data = read_scenario_data(DEFAULT)
    text, kept = fitted_toml("[campaign]\nname = 'x'\n", data, [], "header")
    assert not kept and text.startswith("# header")
    import tomllib
    assert tomllib.loads(dump(data)) == data


def test_poisson_interval_coverage_is_near_95_percent():
    rng = np.random.default_rng(3)
    counts = rng.poisson(40.0, 2000)
    covered = np.mean([lo <= 4.0 <= hi for lo, hi in
                       (poisson_rate(int(c), 10.0)[1:] for c in counts)])
    assert covered >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / 2000)  # exact intervals: at least 95%


def test_an_hourly_curve_scenario_is_fitted_hour_by_hour(tmp_path):
    data = read_scenario_data(DEFAULT)
    rates = {"warm-up": 300, "burst": 6000, "tail": 400}
    curve = [rates[name] for p in data["campaign"]["phases"] for name in [p["name"]]
             for _ in range(p["hours"])]
    del data["audience"]["arrivals_per_hour"]
    data["audience"]["hourly_curve"] = curve
    base = tmp_path / "hourly.toml"
    base.write_text(dump(data))
    sc = load_scenario(base)
    run = simulate_once(sc, 1, events=True)
    log = tmp_path / "e.csv"
    write_events(log, sc, run.event_log)
    fitted = tmp_path / "fitted.toml"
    assert main(["calibrate", str(log), "--scenario", str(base), "--out", str(fitted),
                 "--report", str(tmp_path / "r"), "--replications", "2"]) == 0
    got = load_scenario(fitted).audience.hourly_curve
    assert len(got) == 24 and 5000 < got[6] < 7000 and 200 < got[0] < 400


# -- invites per sharer: the base rate the sharing formula scales -------------------------------


def _events(sc, seed: int):
    from sim.calibrate.log import events_from_log
    run = simulate_once(sc, seed, events=True)
    return events_from_log(run.event_log, [s.name for s in sc.audience.segments],
                           [s.id for s in sc.campaign.skus], sc.campaign.duration_hours)


@pytest.mark.parametrize("name", ["default.toml", "group_buy_ladder.toml",
                                  "referral_fission.toml"])
def test_each_share_exposure_from_the_log_is_the_models_own(name, monkeypatch):
    # The model's mean invites for every share (recorded as it draws them) against μ × the
    # exposure calibration recomputes from the log: the discount still to be won, the inviter
    # reward, the fission chance and a leader's chance of completing, to the last digit.
    import sim.model.campaign as model
    from sim.calibrate.fit import _shares_in_log, fit_invites, share_exposure
    from sim.model.behaviour import Sharing
    means: list[float] = []
    draw = model.poisson_quantile
    monkeypatch.setattr(model, "poisson_quantile",
                        lambda u, mean: means.append(mean) or draw(u, mean))
    sc = load_scenario(SCENARIOS / name)
    ev = _events(sc, 3)
    sharing, ref = Sharing.of(sc), sc.audience.referral
    rebuilt = [sharing.invites * share_exposure(sharing, ref, sh)
               for sh in _shares_in_log(ev, sc, sharing)]
    assert len(means) == len(rebuilt) > 50
    assert rebuilt == pytest.approx(means, rel=1e-12)
    assert any(m != sharing.before_rewards(0.0) for m in means)  # rewards moved someone
    # from a base far off (μ = 6), the fixed point finds the same rate as from the truth
    off = parse_scenario(apply_overrides(sc.model_dump(mode="json", exclude_none=True),
                                         {"audience.referral.invites_per_sharer": 6.0}))
    a, b = fit_invites(ev, sc), fit_invites(ev, off)
    assert a is not None and b is not None
    assert (b.value, b.ci_low, b.ci_high) == pytest.approx((a.value, a.ci_low, a.ci_high),
                                                           rel=1e-8)


def test_invites_per_sharer_is_recovered_when_rewards_move_sharing():
    # The referral scenario with a large reward and a fission master in reach: without the
    # exposure the rewards add (ρ ≈ 0.48), invites ÷ shares would say about 5.8, twice the
    # truth (3).
    sc = parse_scenario(apply_overrides(
        read_scenario_data(SCENARIOS / "referral_fission.toml"),
        {"audience.referral.inviter_reward": 30.0, "audience.referral.bonus_after_invites": 1,
         "audience.referral.bonus_per_invite": 10.0}))
    from sim.calibrate.fit import fit_invites
    truth = sc.audience.referral.invites_per_sharer
    hits = 0
    for seed in range(1, 11):
        est = fit_invites(_events(sc, seed), sc)
        assert est is not None
        hits += est.covers(truth)
    assert hits >= 8  # 95% intervals: 8 or more of 10 with probability 0.99
