"""`groupbuy simulate` and `groupbuy compare`: output files, reproducibility, user mistakes."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest

from groupbuy.cli import main
from groupbuy.commands import _common
from sim import KPI_NAMES, SimulationRun, run_simulation
from tests.support import SCENARIOS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The shape of scenarios/default.toml, frozen here so that editing the shipped scenarios does
# not change what these tests expect: a flash SKU that sells out, a group SKU, a coupon pool.
DOUBLE11 = """
[campaign]
name = "Double-11 tea sale"
per_user_limit = 2
payment_timeout_minutes = 15
subsidy_budget = 40000
fixed_cost = 6000
skus = [
  { id = "flash-teapot", stock = 300, list_price = 199.0, unit_cost = 80.0 },
  { id = "group-tea", stock = 2000, list_price = 89.0, unit_cost = 36.0 },
]
phases = [{ name = "warm-up", hours = 6 }, { name = "burst", hours = 2 },
          { name = "tail", hours = 16 }]
time_discounts = [{ name = "first-hour", start_hour = 6, end_hour = 7, percent_off = 50 }]
first_orders_gift = { count = 100, gift_cost = 6.0 }
spend_thresholds = [{ spend = 100, off = 10 }, { spend = 300, off = 40 }]
coupons = [{ id = "new-20", value = 20, min_spend = 50, pool = 150 }]

[campaign.groups]
window_hours = 4
leader_reward = 5.0
failure_policy = "fallback_price"
fallback_percent_off = 10
fallback_take_up = 0.6
tiers = [{ size = 2, percent_off = 20 }, { size = 3, percent_off = 30 }]

[audience]
arrivals_per_hour = { warm-up = 300, burst = 6000, tail = 400 }

[[audience.segments]]
name = "new"
share = 0.5
base_conversion = 0.02
price_sensitivity = 5.0
share_propensity = 0.1
group_propensity = 0.6
pay_probability = 0.8

[[audience.segments]]
name = "active"
share = 0.35
base_conversion = 0.04
price_sensitivity = 3.0
share_propensity = 0.2
group_propensity = 0.5
pay_probability = 0.9

[[audience.segments]]
name = "loyal"
share = 0.15
base_conversion = 0.06
price_sensitivity = 1.5
share_propensity = 0.4
group_propensity = 0.4
pay_probability = 0.95

[audience.referral]
invites_per_sharer = 2.0
invite_delay_minutes = 60
invitee_conversion = 0.15
invitee_segment = "new"
inviter_reward = 10
depth_cap = 2
"""


@pytest.fixture(scope="module")
def double11(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("scenario") / "double11.toml"
    path.write_text(DOUBLE11)
    return str(path)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, double11: str) -> Path:
    out = tmp_path_factory.mktemp("sim") / "run"
    assert main(["simulate", double11, "--replications", "3", "--seed", "5", "--out",
                 str(out)]) == 0
    return out


def test_simulate_prints_the_kpi_table_and_the_folder(tmp_path, capsys, double11):
    out = tmp_path / "run"
    assert main(["simulate", double11, "-n", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "95% CI" in text and "group completion rate" in text and str(out) in text
    assert re.search(r"profit after fixed cost \(yuan\)\s+-?[\d,.]+ yuan\s+\[", text)


def test_every_output_file_is_written(default_run: Path):
    names = {"summary.json", "kpis.csv", "timeseries.csv", "arrivals.csv", "report.html",
             "arrivals_orders.png", "stock.png", "group_outcomes.png", "referral_depth.png",
             "money_waterfall.png", "value_curves.png"}
    assert names <= {p.name for p in default_run.iterdir()}
    for png in default_run.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, png


def test_kpis_csv_has_one_row_per_replication(default_run: Path):
    rows = read_csv(default_run / "kpis.csv")
    assert len(rows) == 3
    assert list(rows[0]) == ["replication", *KPI_NAMES]
    assert [r["replication"] for r in rows] == ["0", "1", "2"]
    assert len({r["revenue"] for r in rows}) == 3  # independent replications differ


def test_summary_json_matches_kpis_csv(default_run: Path):
    summary = json.loads((default_run / "summary.json").read_text())
    rows = read_csv(default_run / "kpis.csv")
    assert summary["replications"] == 3 and summary["seed"] == 5
    assert summary["scenario"]["expected_arrivals"] == 20200
    teapot = summary["sell_out_by_sku"]["flash-teapot"]  # 300 units, half off in the burst
    assert teapot["replications_sold_out"] == 3 and 6 < teapot["mean_sell_out_hour"] < 8
    assert summary["sell_out_by_sku"]["group-tea"]["replications_sold_out"] == 0
    trees = summary["referral_trees_per_replication"]
    roots = sum(trees["by_size"].values())
    assert roots == pytest.approx(sum(trees["by_depth"].values()))
    buyers = summary["kpis"]["buyers"]["mean"]
    assert sum(int(k) * v for k, v in trees["by_size"].items()) == pytest.approx(buyers)
    assert list(summary["kpis"]) == list(KPI_NAMES)
    for k in KPI_NAMES:
        s = summary["kpis"][k]
        mean = sum(float(r[k]) for r in rows) / 3
        assert s["mean"] == pytest.approx(mean)
        assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == 3


def test_arrivals_csv_is_the_rate_curve_per_minute(default_run: Path):
    with (default_run / "arrivals.csv").open() as fh:
        assert fh.readline().strip() == "minute,start_hour,rate_per_hour,arrivals"
    rows = read_csv(default_run / "arrivals.csv")
    assert len(rows) == 24 * 60
    assert [int(r["minute"]) for r in rows] == list(range(24 * 60))
    rate = {m: float(rows[m]["rate_per_hour"]) for m in (0, 359, 360, 479, 480, 1439)}
    assert rate == {0: 300, 359: 300, 360: 6000, 479: 6000, 480: 400, 1439: 400}
    assert float(rows[60]["start_hour"]) == 1.0
    kpis = read_csv(default_run / "kpis.csv")
    simulated = sum(float(r["arrivals"]) + float(r["invitee_arrivals"]) for r in kpis) / 3
    assert sum(float(r["arrivals"]) for r in rows) == pytest.approx(simulated)


def test_timeseries_csv_per_minute(default_run: Path):
    rows = read_csv(default_run / "timeseries.csv")
    assert list(rows[0]) == ["minute", "start_hour", "arrivals", "reservations",
                             "paid_orders", "open_groups", "stock"]
    assert len(rows) == 24 * 60
    stock = [float(r["stock"]) for r in rows]
    assert max(stock) <= 2300 and stock[-1] < stock[0]
    assert max(float(r["open_groups"]) for r in rows) > 0
    burst = sum(float(r["reservations"]) for r in rows[360:480])
    warm = sum(float(r["reservations"]) for r in rows[:120])
    assert burst > 5 * warm  # the burst phase shows up where it should


def test_report_html_is_self_contained(default_run: Path):
    html = (default_run / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 6
    assert not re.search(r'src="(?!data:)', html)
    assert "Double-11 tea sale" in html and "95% confidence interval" in html


def test_same_seed_same_numbers_through_the_cli(tmp_path, default_run: Path, double11):
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["simulate", double11, "-n", "3", "--seed", "5", "--out", str(again)]) == 0
    assert main(["simulate", double11, "-n", "3", "--seed", "6", "--out", str(other)]) == 0
    first = (default_run / "kpis.csv").read_text()
    assert (again / "kpis.csv").read_text() == first
    assert (other / "kpis.csv").read_text() != first


def test_default_folder_is_results_scenario_timestamp(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    assert main(["simulate", str(SCENARIOS / "flash_sale.toml"), "-n", "1"]) == 0
    (folder,) = tmp_path.iterdir()
    assert re.fullmatch(r"flash_sale-\d{8}-\d{6}", folder.name)
    assert (folder / "arrivals.csv").exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    ("[campaign\nname=", "not valid TOML"),
    ('[campaign]\nname = "x"\nphases = [{ name = "p", hours = 1 }]\n'
     'skus = [{ id = "a", stock = 1, list_price = 1, unit_cost = 0 }]\n', "audience: missing"),
    (DOUBLE11.replace("[campaign]\n", '[campaign]\ncolour = "red"\n'),
     "campaign.colour: unknown key"),
])
def test_bad_scenario_files_give_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not out.exists()  # nothing written for a bad file


@pytest.mark.parametrize("args", [["-n", "0"], ["-n", "many"], ["--seed", "-1"]])
def test_bad_options_exit_2(capsys, args, double11):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", double11, *args])
    assert exc.value.code == 2
    assert "groupbuy simulate: error:" in capsys.readouterr().err


def test_the_installed_command_logs_no_bar_frames_and_no_traceback(groupbuy_exe, tmp_path,
                                                                  double11):
    ok = subprocess.run([groupbuy_exe, "simulate", double11, "-n", "2", "--out",
                         str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "replications" not in ok.stderr and "\r" not in ok.stderr  # a pipe: no tqdm bar
    bad = subprocess.run([groupbuy_exe, "simulate", str(tmp_path / "nope.toml")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"{tmp_path / 'nope.toml'}: file not found"


def test_compare_same_scenario_has_no_significant_difference(tmp_path, capsys, double11):
    out = tmp_path / "cmp"
    assert main(["compare", double11, double11, "-n", "3", "--out", str(out)]) == 0
    rows = read_csv(out / "compare.csv")
    assert [r["kpi"] for r in rows] == list(KPI_NAMES)
    assert all(float(r["diff"]) == 0 and r["significant"] == "False" for r in rows)
    assert "common random numbers" in capsys.readouterr().out


def test_compare_finds_the_effect_of_a_deeper_discount(tmp_path, capsys, double11):
    deeper = tmp_path / "deeper.toml"
    old = "tiers = [{ size = 2, percent_off = 20 }, { size = 3, percent_off = 30 }]"
    assert old in DOUBLE11
    deeper.write_text(DOUBLE11.replace(old, old.replace("20", "35").replace("30", "45")))
    out = tmp_path / "cmp"
    assert main(["compare", double11, str(deeper), "-n", "8", "--seed", "3", "--out",
                 str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["common_random_numbers"] is True and data["replications"] == 8
    by = {r["kpi"]: r for r in data["kpis"]}
    assert by["discount_cost"]["significant"] and by["discount_cost"]["diff"] > 0
    assert by["discount_cost"]["diff_ci_low"] > 0
    assert by["arrivals"]["diff"] == 0  # same arrivals: common random numbers
    text = capsys.readouterr().out
    assert re.search(r"discount cost \(yuan\).*\*$", text, re.M)


def test_compare_bad_file_exits_2(tmp_path, capsys, double11):
    assert main(["compare", double11, str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_run_simulation_api_returns_the_run_and_its_files(tmp_path):
    run = run_simulation(SCENARIOS / "group_buy_two_tier.toml", replications=2, seed=4,
                         out_dir=tmp_path / "api", progress=False)
    assert isinstance(run, SimulationRun)
    assert run.arrivals_csv == tmp_path / "api" / "arrivals.csv" and run.arrivals_csv.exists()
    assert all(p.exists() for p in run.files.values()) and len(run.files) == 11
    assert len(run.results) == 2 and run.summary["arrivals"].n == 2
    with pytest.raises(ValueError, match="at least 1"):
        run_simulation(SCENARIOS / "default.toml", replications=0, seed=1, out_dir=tmp_path / "x")
