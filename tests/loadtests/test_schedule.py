"""Arrival schedules, the [load] schema, history files, outcome classification, thresholds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign.errors import ScenarioError
from campaign.load import Checks, Load
from campaign.scenario import load_scenario, parse_scenario, read_scenario_data
from loadtests.history import Op
from loadtests.journeys import classify
from loadtests.metrics import history_figures, percentile, threshold_problems
from loadtests.schedule import (
    Piece,
    Schedule,
    ScheduleError,
    arrival_times,
    build_schedule,
    read_arrivals_csv,
    squeeze,
)
from tests.support import SCENARIOS


def test_flash_sale_phases_become_the_schedule() -> None:
    sched = build_schedule(load_scenario(SCENARIOS / "flash_sale.toml"))
    assert [(p.start, p.end, p.rate) for p in sched.pieces] == [
        (0, 10, 10), (10, 25, 60), (25, 40, 15)]
    times = arrival_times(sched)
    assert len(times) == 10 * 10 + 15 * 60 + 15 * 15
    assert sum(10 <= t < 25 for t in times) == 900  # the burst holds its rate exactly


def test_duration_and_rate_scale_reshape_the_schedule() -> None:
    sched = build_schedule(load_scenario(SCENARIOS / "flash_sale.toml"), duration=20,
                           rate_scale=2)
    assert sched.seconds == pytest.approx(20)
    assert sched.peak_rate == 120
    assert sched.expected_arrivals == pytest.approx((10 * 10 + 15 * 60 + 15 * 15) / 2 * 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 20), st.floats(0, 80)), min_size=1, max_size=6),
       st.integers(1, 5))
def test_uniform_shares_add_up_to_the_whole_schedule(parts, shares) -> None:
    pieces, t = [], 0.0
    for secs, rate in parts:
        pieces.append(Piece(t, t + secs, rate))
        t += secs
    sched = Schedule(tuple(pieces))
    whole = arrival_times(sched)
    split = sorted(x for s in range(shares) for x in arrival_times(sched, share=s,
                                                                    shares=shares))
    assert split == pytest.approx(whole)
    assert abs(len(whole) - sched.expected_arrivals) <= 0.5 + 1e-6
    assert all(0 <= x <= sched.seconds + 1e-9 for x in whole)
    assert whole == sorted(whole)
    for p in pieces:  # each stretch gets its rate's share, to within one arrival
        inside = sum(p.start <= x < p.end for x in whole)
        assert abs(inside - (p.end - p.start) * p.rate) <= 1.5


def test_poisson_arrivals_follow_the_rate_and_differ_by_process() -> None:
    sched = Schedule((Piece(0, 100, 20),))
    a = arrival_times(sched, "poisson", share=0, shares=2, seed=7)
    b = arrival_times(sched, "poisson", share=1, shares=2, seed=7)
    assert a != b
    assert abs(len(a) + len(b) - 2000) < 5 * 2000 ** 0.5
    assert a == arrival_times(sched, "poisson", share=0, shares=2, seed=7)


def test_a_simulated_curve_is_squeezed_with_its_peak_at_peak_rate(tmp_path: Path) -> None:
    csv = tmp_path / "arrivals.csv"
    csv.write_text("minute,start_hour,rate_per_hour,arrivals\n"
                   "0,0.0,60,1.0\n1,0.0167,240,4.0\n2,0.0333,120,2.0\n3,0.05,0,0\n")
    sc = load_scenario(SCENARIOS / "default.toml")
    sched = build_schedule(sc, csv)
    peak = sc.load.peak_rate
    assert sched.seconds == pytest.approx(sc.load.duration_seconds)
    assert [p.rate for p in sched.pieces] == pytest.approx([peak / 4, peak, peak / 2, 0])


def test_without_arrivals_csv_the_audience_curve_is_used() -> None:
    sc = load_scenario(SCENARIOS / "default.toml")
    sched = build_schedule(sc)
    peak, seconds = sc.load.peak_rate, sc.load.duration_seconds
    assert len(sched.pieces) == 24 * 60
    assert sched.peak_rate == pytest.approx(peak)
    burst = sched.rate_at(seconds * 7 / 24)  # hour 7 of 24 is in the burst
    tail = sched.rate_at(seconds - 0.1)
    assert burst == pytest.approx(peak) and tail == pytest.approx(peak * 400 / 6000)


@pytest.mark.parametrize(("text", "message"), [
    ("minute,arrivals\n0,1\n", "missing column(s) ['start_hour', 'rate_per_hour']"),
    ("minute,start_hour,rate_per_hour,arrivals\n0,0,1,many\n", "line 2: start_hour and "
     "arrivals must be numbers"),
    ("minute,start_hour,rate_per_hour,arrivals\n", "has no rows"),
    ("minute,start_hour,rate_per_hour,arrivals\n0,0,1,-1\n", "must be finite and >= 0"),
])
def test_bad_arrivals_csv_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    csv = tmp_path / "arrivals.csv"
    csv.write_text(text)
    with pytest.raises(ScheduleError, match=re.escape(message)):
        read_arrivals_csv(csv)


def test_missing_arrivals_csv_and_flat_curve() -> None:
    with pytest.raises(ScheduleError, match="file not found"):
        read_arrivals_csv("/nonexistent/arrivals.csv")
    with pytest.raises(ScheduleError, match="zero everywhere"):
        squeeze([(0, 0.0), (1, 0.0)], 10, 5)


def test_load_section_rejects_unknown_behaviours_and_empty_phases() -> None:
    data = read_scenario_data(SCENARIOS / "flash_sale.toml")
    data["load"]["mix"] = {"buy": 1, "fly": 1}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "x.toml")
    assert err.value.lines()[0].startswith("x.toml: load.mix.fly: unknown behaviour")
    data["load"]["mix"] = {"buy": 0}
    with pytest.raises(ScenarioError, match=re.escape("load.mix: weights must not all be zero")):
        parse_scenario(data, "x.toml")
    data["load"] = {"arrivals": "phases"}
    with pytest.raises(ScenarioError, match=re.escape("load.phases: arrivals = 'phases' needs")):
        parse_scenario(data, "x.toml")


def test_outcomes_are_classified_by_what_the_client_can_know() -> None:
    assert classify(201, {"order_id": "o1"}).outcome == "ok"
    refused = classify(409, {"error": {"code": "sold_out", "message": "…"}})
    assert (refused.outcome, refused.code) == ("fail", "sold_out")
    assert (classify(500, {}).outcome, classify(500, {}).code) == ("unknown", "http_500")
    assert classify(404, {}).outcome == "unknown"  # not a contract answer
    assert (classify(None, {}, "timeout").outcome, classify(None, {}, "timeout").code) == (
        "unknown", "timeout")


def test_thresholds_name_what_was_missed() -> None:
    base = {"worker": 0, "arrival": 0, "journey": "buy", "user": "u1", "op": "reserve",
            "key": "k", "status": None, "code": None}
    history = [Op.from_json({**base, "outcome": "ok", "intended": 0.0, "start": 0.5,
                             "end": 1.0}),
               Op.from_json({**base, "outcome": "unknown", "intended": 1.0, "start": 1.0,
                             "end": 1.2}),
               Op.from_json({**base, "outcome": "unknown", "intended": 1.0, "start": 1.0,
                             "end": 1.001, "client_timeout": 0.001})]
    fig = history_figures(history)
    assert fig["errors"] == 1 and fig["client_timeouts"] == 1
    assert fig["p99_ms"] == pytest.approx(1000)
    problems = threshold_problems(Checks(max_error_rate=0.1, p99_ms=500, min_throughput=100),
                                  fig)
    assert [p.split(":")[1].strip().split(" ")[0:2] for p in problems] == [
        ["error", "rate"], ["p99", "latency"], ["throughput", "4.3"]]
    assert threshold_problems(Checks(max_error_rate=0.5, p99_ms=2000), fig) == []


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        50, 95, 100)


def test_load_defaults_are_valid() -> None:
    load = Load()
    assert load.arrivals == "simulation" and load.planned_seconds == 60
