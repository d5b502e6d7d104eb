"""Sensitivity: Sobol and Morris find the parameter a KPI depends on (a model with a known
answer), constant KPIs are set aside, a failed run stops the analysis, and the command's
mistakes are one line, exit 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from campaign import Scenario
from groupbuy.cli import main
from sim.studies.executor import LocalExecutor
from sim.studies.params import parse_param
from sim.studies.runs import Model
from sim.studies.sensitivity import plan_sensitivity, run_sensitivity
from tests.support.scenarios import SMALL, SMALL_TOML

WINDOW = "campaign.groups.window_hours"
TOP_OFF = "campaign.groups.tiers[1].percent_off"
PARAMS = [parse_param(f"{WINDOW}=1:3", "--param"), parse_param(f"{TOP_OFF}=20:50", "--param")]


def known(scenario: Scenario, seed: np.random.SeedSequence) -> dict[str, float]:
    """profit depends on the window only, orders_paid on the discount only; gift_cost on
    neither; a little noise from the seed (the same at every point: common random numbers)."""
    g = scenario.campaign.groups
    assert g is not None
    noise = np.random.default_rng(seed).normal(0, 0.01)
    return {"profit": 1000 * g.window_hours ** 2 + noise,
            "orders_paid": 5 * g.tiers[1].percent_off + noise, "gift_cost": 7.0}


def broken_at_wide_windows(scenario: Scenario, seed: np.random.SeedSequence) -> dict[str, float]:
    g = scenario.campaign.groups
    assert g is not None
    if g.window_hours > 2.9:
        raise ValueError("window too wide for this model")
    return known(scenario, seed)


def analyse(tmp_path: Path, method: str, samples: int, model: Model = known):
    plan = plan_sensitivity(SMALL, "small.toml", PARAMS, method=method, samples=samples,
                            replications=2, seed=5)
    with LocalExecutor(1) as ex:
        return run_sensitivity(plan, executor=ex, out_dir=tmp_path, plot_kpis=["profit"],
                               model=model, progress=False)


def index(rows: list[dict], kpi: str, key: str, name: str) -> float:
    return next(r[name] for r in rows if r["kpi"] == kpi and r["param"] == key)


def test_sobol_total_index_singles_out_the_parameter_a_kpi_depends_on(tmp_path: Path) -> None:
    result = analyse(tmp_path, "sobol", 64)
    assert result.points == 64 * (2 + 2)
    rows = result.rows
    assert index(rows, "profit", WINDOW, "ST") > 0.9
    assert index(rows, "profit", TOP_OFF, "ST") < 0.05
    assert index(rows, "orders_paid", TOP_OFF, "ST") > 0.9
    assert index(rows, "orders_paid", WINDOW, "ST") < 0.05
    assert index(rows, "profit", WINDOW, "S1") > 0.8
    assert all(r["ST_conf"] >= 0 and r["S1_conf"] >= 0 for r in rows)
    assert result.constant == ["gift_cost"]
    with (tmp_path / "indices.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4  # 2 KPIs x 2 parameters
    saved = json.loads((tmp_path / "indices.json").read_text())
    assert saved["method"] == "sobol" and saved["constant_kpis"] == ["gift_cost"]
    assert (tmp_path / "indices_profit.png").stat().st_size > 1000


def test_morris_mu_star_ranks_the_parameters(tmp_path: Path) -> None:
    result = analyse(tmp_path, "morris", 10)
    assert result.points == 10 * (2 + 1)
    rows = result.rows
    assert index(rows, "profit", WINDOW, "mu_star") > 100 * index(rows, "profit", TOP_OFF,
                                                                 "mu_star")
    assert index(rows, "orders_paid", TOP_OFF, "mu_star") > 100 * index(
        rows, "orders_paid", WINDOW, "mu_star")


def test_a_failed_run_is_reported_and_no_indices_are_made_up(tmp_path: Path) -> None:
    result = analyse(tmp_path, "morris", 6, model=broken_at_wide_windows)
    assert result.failures and not result.rows
    assert all("ValueError: window too wide" in line and WINDOW in line
               for line in result.failures)
    assert not (tmp_path / "indices.csv").exists()


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_TOML)
    return path


@pytest.mark.parametrize(("args", "expected"), [
    (["--param", f"{WINDOW}=1:3", "--samples", "48"], "Sobol needs a power of two"),
    (["--param", f"{WINDOW}=1,3"], "sensitivity needs a range"),
    (["--param", f"{WINDOW}=3:1"], "a range needs lo < hi"),
    (["--param", f"{WINDOW}=0:3"], f"{WINDOW}=0: Input should be greater than 0"),
    (["--param", f"{WINDOW}=1:3", "--kpi", "profitt"], "unknown KPI 'profitt'"),
    ([], "give at least one KEY=lo:hi"),
])
def test_cli_mistakes_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], small_file: Path, tmp_path: Path,
        args: list[str], expected: str) -> None:
    code = main(["sensitivity", str(small_file), "--jobs", "1", "--out", str(tmp_path / "o"),
                 *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_cli_morris_on_the_real_model(capsys: pytest.CaptureFixture[str], small_file: Path,
                                      tmp_path: Path) -> None:
    code = main(["sensitivity", str(small_file), "--method", "morris", "--samples", "4",
                 "--param", f"{TOP_OFF}=25:45", "--param", "audience.arrivals_per_hour.burst=20:80",
                 "--jobs", "2", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    assert "morris: 12 sample points" in out and "mu_star" in out
    assert (tmp_path / "o" / "indices.csv").exists()
