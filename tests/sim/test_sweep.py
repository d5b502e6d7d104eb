"""Sweeps: designs, validation before anything runs, common random numbers, failed runs kept
apart, output files, and the `groupbuy sweep` command's errors (one line each, exit 2)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign import Scenario, ScenarioError
from groupbuy.cli import main
from sim import simulate_once
from sim.studies.executor import DaskExecutor, LocalExecutor
from sim.studies.params import Param, parse_constraint, parse_param
from sim.studies.runs import simulate_kpis
from sim.studies.sweep import design_points, plan_sweep, run_sweep
from tests.support.scenarios import SMALL, SMALL_TOML
from tests.support.servers import refused_port

WINDOW = "campaign.groups.window_hours"
TOP_OFF = "campaign.groups.tiers[1].percent_off"


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_TOML)
    return path


def fails_at_window_3(scenario: Scenario, seed: np.random.SeedSequence) -> dict[str, float]:
    """The real model, except that it raises for one parameter value."""
    assert scenario.campaign.groups is not None
    if scenario.campaign.groups.window_hours == 3:
        raise RuntimeError("model blew up")
    return simulate_once(scenario, seed).kpis


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def sweep(tmp_path: Path, params: list[Param], **kw: Any):
    out = tmp_path / kw.pop("name", "out")
    out.mkdir()
    jobs, model = kw.pop("jobs", 1), kw.pop("model", simulate_kpis)
    plan = plan_sweep(SMALL, "small.toml", params, **kw)
    with LocalExecutor(jobs) as ex:
        return run_sweep(plan, executor=ex, out_dir=out, model=model, progress=False)


# --- designs --------------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_in_order() -> None:
    pts = design_points([parse_param(f"{WINDOW}=1,2,4"), parse_param(f"{TOP_OFF}=30,40")],
                        "grid", 0, 1)
    assert [(p[WINDOW], p[TOP_OFF]) for p in pts] == [
        (1, 30), (1, 40), (2, 30), (2, 40), (4, 30), (4, 40)]


@settings(max_examples=40, deadline=None)
@given(lo=st.floats(0.5, 50), width=st.floats(0.5, 100), size_hi=st.integers(4, 9),
       n=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_lhs_points_stay_in_range_and_integer_keys_are_integers(
        lo: float, width: float, size_hi: int, n: int, seed: int) -> None:
    window = Param(WINDOW, low=lo, high=lo + width)
    size = parse_param(f"campaign.groups.tiers[1].size=3:{size_hi}")
    assert size.integer and not window.integer
    pts = design_points([window, size], "lhs", n, seed)
    assert len(pts) == n
    for p in pts:
        assert lo <= p[WINDOW] <= lo + width
        assert isinstance(p["campaign.groups.tiers[1].size"], int)
        assert 3 <= p["campaign.groups.tiers[1].size"] <= size_hi
    # Latin hypercube: each of the n equal slices of the float range holds exactly one point.
    slices = sorted(int((p[WINDOW] - lo) / width * n - 1e-9) for p in pts)
    assert slices == list(range(n))


def test_designs_reject_the_wrong_kind_of_spec() -> None:
    with pytest.raises(ScenarioError, match="grid needs a list"):
        design_points([parse_param(f"{WINDOW}=1:4")], "grid", 0, 1)
    with pytest.raises(ScenarioError, match="needs a range"):
        design_points([parse_param(f"{WINDOW}=1,4")], "lhs", 5, 1)
    with pytest.raises(ScenarioError, match="more than once"):
        design_points([parse_param(f"{WINDOW}=1,4"), parse_param(f"{WINDOW}=2")], "grid", 0, 1)


# --- running --------------------------------------------------------------------------------

def test_sweep_writes_points_runs_and_plots_with_ci(tmp_path: Path) -> None:
    profitable = parse_constraint("gross_profit>=0", ["gross_profit"])
    result = sweep(tmp_path, [parse_param(f"{WINDOW}=0.5,4"), parse_param(f"{TOP_OFF}=25,45")],
                   replications=3, constraints=[profitable])
    out = result.out_dir
    points, runs = read_rows(out / "points.csv"), read_rows(out / "runs.csv")
    assert len(points) == 4 and len(runs) == 12
    for row in points:
        assert float(row["profit_ci_low"]) <= float(row["profit_mean"]) <= float(
            row["profit_ci_high"])
        assert row["runs_ok"] == "3" and row["feasible"] in ("True", "False")
    for name in ("kpi_vs_groups_window_hours.png", "kpi_vs_tiers_1__percent_off.png",
                 "heatmap.png", "feasible.png"):
        assert (out / name).stat().st_size > 1000, name


def test_common_random_numbers_same_seed_same_runs_points_differ_only_by_parameters(
        tmp_path: Path) -> None:
    params = [parse_param(f"{TOP_OFF}=25,45")]
    a = sweep(tmp_path, params, replications=3, seed=7, name="a")
    b = sweep(tmp_path, params, replications=3, seed=7, name="b", jobs=2)
    assert (a.out_dir / "runs.csv").read_bytes() == (b.out_dir / "runs.csv").read_bytes()
    runs = read_rows(a.out_dir / "runs.csv")
    by_rep = {}
    for row in runs:
        by_rep.setdefault(row["replication"], []).append(row)
    for rows in by_rep.values():
        # The top tier's discount cannot change who arrives: the same arrivals at both points.
        assert rows[0]["arrivals"] == rows[1]["arrivals"]
        assert rows[0]["revenue"] != rows[1]["revenue"]
    # Different replications do differ (they are independent draws).
    assert len({rows[0]["arrivals"] for rows in by_rep.values()}) > 1
    c = sweep(tmp_path, params, replications=3, seed=8, name="c")
    assert (c.out_dir / "runs.csv").read_bytes() != (a.out_dir / "runs.csv").read_bytes()


def test_a_run_that_raises_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    result = sweep(tmp_path, [parse_param(f"{WINDOW}=2,3,4")], replications=2,
                   model=fails_at_window_3, jobs=2)
    failed = result.failures
    assert [(p.params[WINDOW], o.replication) for p, o in failed] == [(3, 0), (3, 1)]
    assert all("RuntimeError: model blew up" in o.error for _, o in failed)
    points = read_rows(result.out_dir / "points.csv")
    assert [r["runs_ok"] for r in points] == ["2", "0", "2"]
    assert points[0]["profit_mean"] and not points[1].get("profit_mean")
    runs = read_rows(result.out_dir / "runs.csv")
    assert sum(1 for r in runs if r["error"]) == 2 and len(runs) == 6


# --- the command ----------------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "expected"), [
    (["--vary", "campaign.groups.windw_hours=1,2"], "campaign.groups.windw_hours: unknown key"),
    (["--vary", f"{WINDOW}=2,-1"], f"{WINDOW}=-1: Input should be greater than 0"),
    (["--vary", f"{WINDOW}=2:1", "--design", "lhs"], "a range needs lo < hi"),
    (["--vary", f"{WINDOW}=a:b", "--design", "lhs"], "range bounds must be numbers"),
    (["--vary", f"{WINDOW}=1:3"], "a grid needs a list of values"),
    (["--vary", f"{WINDOW}"], "expected KEY=V1,V2"),
    (["--vary", f"{WINDOW}=1,2", "--constraint", "profitt>=1"], "unknown KPI 'profitt'"),
    (["--vary", f"{WINDOW}=1,2", "--constraint", "profit=1"], "expected KPI>=X"),
    (["--vary", f"{WINDOW}=1,2", "--kpi", "nope"], "unknown KPI 'nope'"),
    (["--vary", "campaign.groups.tiers[5].size=3"],
     "campaign.groups.tiers[5].size: campaign.groups.tiers has no item [5]"),
])
def test_cli_mistakes_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], small_file: Path, tmp_path: Path,
        args: list[str], expected: str) -> None:
    code, _, err = cli(capsys, "sweep", str(small_file), "--jobs", "1",
                         "--out", str(tmp_path / "o"), *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "runs.csv").exists()  # nothing ran


def test_cli_reports_every_bad_value_before_running(
        capsys: pytest.CaptureFixture[str], small_file: Path, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "sweep", str(small_file), "--out", str(tmp_path / "o"),
                       "--vary", f"{WINDOW}=-1,2,0", "--vary", f"{TOP_OFF}=30,101",
                       "--vary", "campaign.groups.leader_rewrd=1,2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{small_file}: ") for line in lines)
    # The unknown key is named once and does not hide the other settings' problems.
    assert {line.split(": ")[1] for line in lines} == {
        f"{WINDOW}=-1", f"{WINDOW}=0", f"{TOP_OFF}=101", "campaign.groups.leader_rewrd"}


def test_cli_unreachable_dask_is_one_line_exit_2(
        capsys: pytest.CaptureFixture[str], small_file: Path, tmp_path: Path) -> None:
    with refused_port() as port:
        code, _, err = cli(capsys, "sweep", str(small_file), "--out", str(tmp_path / "o"),
                           "--vary", f"{WINDOW}=1,2", "--executor", f"dask://127.0.0.1:{port}")
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler" in err


def test_cli_sweep_end_to_end(
        groupbuy_exe: str, small_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [groupbuy_exe, "sweep", str(small_file), "--vary", f"{WINDOW}=1,2",
         "--vary", f"{TOP_OFF}=25,35", "--replications", "2", "--jobs", "2",
         "--constraint", "group_completion_rate>=0.5", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 points x 2 replications: 8 runs ok, 0 failed" in proc.stdout
    assert "of 4 points meet group completion rate ≥ 50%" in proc.stdout
    assert "Best point" in proc.stdout or "No point meets the constraints" in proc.stdout
    assert 'id=answer' in (tmp_path / "o" / "report.html").read_text()
    assert len(read_rows(tmp_path / "o" / "points.csv")) == 4


def test_dask_local_cluster_gives_the_same_runs_as_local(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    plan = plan_sweep(SMALL, "small.toml", [parse_param(f"{TOP_OFF}=25,45")], replications=2,
                      seed=11)
    local = sweep(tmp_path, [parse_param(f"{TOP_OFF}=25,45")], replications=2, seed=11,
                  name="local")
    (tmp_path / "dask").mkdir()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            DaskExecutor(cluster.scheduler_address) as ex:
        remote = run_sweep(plan, executor=ex, out_dir=tmp_path / "dask", progress=False)
    assert (remote.out_dir / "runs.csv").read_bytes() == (local.out_dir / "runs.csv").read_bytes()
    assert (remote.out_dir / "points.csv").read_bytes() == (
        local.out_dir / "points.csv").read_bytes()
