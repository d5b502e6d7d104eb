"""Reports that give the answer: every planner command writes report.html with the answer on top,
values carry their units, a tier has one name everywhere, Chinese display names work (ids stay
ASCII, and the error says so), plots render CJK text, and progress bars stay off logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from campaign.errors import ScenarioError
from campaign.scenario import load_scenario
from groupbuy.cli import main
from groupbuy.commands import tune as tune_cmd
from sim.labels import Names, fmt_kpi, tier_name
from sim.progress import bars_wanted

# A small campaign with Chinese display names: ids are ASCII, labels and SKU names are not.
SMALL_CN = """
[campaign]
name = "小型拼团 small ladder"
subsidy_budget = 20000
fixed_cost = 1000
skus = [{ id = "tea", name = "乌龙茶礼盒", stock = 600, list_price = 99.0, unit_cost = 42.0 }]
phases = [{ name = "warm-up", label = "预热期", hours = 4 },
          { name = "burst", label = "爆发期", hours = 2 }]

[campaign.groups]
window_hours = 2
leader_reward = 5.0
tiers = [{ size = 2, percent_off = 20 }, { size = 3, percent_off = 30 },
         { size = 5, percent_off = 40 }]

[audience]
arrivals_per_hour = { warm-up = 300, burst = 1200 }

[[audience.segments]]
name = "price-sensitive"
label = "价格敏感"
share = 1.0
base_conversion = 0.04
price_sensitivity = 3.0
share_propensity = 0.3
group_propensity = 0.8
"""
WINDOW = "campaign.groups.window_hours"
TOP_OFF = "campaign.groups.tiers[2].percent_off"


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tune_cmd, "RESULTS", tmp_path / "results")
    path = tmp_path / "small_cn.toml"
    path.write_text(SMALL_CN, encoding="utf-8")
    return path


def answer_of(report: Path) -> str:
    """The text of the answer box at the top of a report.html."""
    page = report.read_text(encoding="utf-8")
    match = re.search(r"<section class=answer id=answer>(.*?)</section>", page, re.S)
    assert match, f"{report} has no answer section"
    assert page.index("id=answer") < page.index("<h2>Set-up</h2>"), "the answer comes first"
    return re.sub(r"<[^>]+>", " ", match.group(1))


# --- every command writes report.html with the answer ---------------------------------------

def test_simulate_report_has_the_answer_prices_budget_and_stock(small: Path,
                                                               tmp_path: Path) -> None:
    assert main(["simulate", str(small), "-n", "3", "--out", str(tmp_path / "s")]) == 0
    report = tmp_path / "s" / "report.html"
    answer = answer_of(report)
    assert "Profit after fixed cost" in answer and "95% CI" in answer
    assert re.search(r"of a 20k yuan budget \(\d+%\)", answer)
    page = report.read_text(encoding="utf-8")
    # Prices: list price and each tier's unit price (99 yuan at 20/30/40% off).
    assert "99.00 yuan" in page and "79.20 yuan" in page and "69.30 yuan" in page
    assert "59.40 yuan" in page
    assert "Budget: spent vs budget" in page and "20,000 yuan" in page
    assert "Stock and sell-out per SKU" in page and "600 units" in page
    # Chinese display names are shown; the ids stay what the file says.
    assert "乌龙茶礼盒" in page and "预热期" in page and "价格敏感" in page


def test_sweep_report_names_the_best_point_and_the_feasible_region(small: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "w"
    assert main(["sweep", str(small), "--vary", f"{WINDOW}=1,4", "--vary",
                 f"{TOP_OFF}=35,50", "--replications", "2", "--jobs", "1",
                 "--constraint", "subsidy_spent<20000", "--out", str(out)]) == 0
    answer = answer_of(out / "report.html")
    assert "Best point: group window" in answer and "5-person tier discount" in answer
    assert re.search(r"gross profit \(highest of the feasible points\)\s+[\d.]+k yuan "
                     r"\(95% CI", answer)
    assert "feasible region" in answer and "of 4 points meet subsidy spent" in answer


def test_tune_report_gives_the_fresh_estimate_and_money(small: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    out = tmp_path / "t"
    assert main(["tune", str(small), "--param", f"{WINDOW}=0.5:4", "--objective",
                 "gross_profit", "--constraint", "group_completion_rate>=0.1", "--trials", "4",
                 "--replications", "1", "--fresh-replications", "3", "--jobs", "1",
                 "--out", str(out)]) == 0
    answer = answer_of(out / "report.html")
    assert "Best point (trial" in answer and "on 3 fresh replications" in answer
    assert "earns: revenue" in answer and "costs: subsidy" in answer
    assert "feasible region" in answer
    assert "Best point (trial" in capsys.readouterr().out  # the terminal shows the same answer


def test_compare_report_says_which_earns_more(small: Path, tmp_path: Path) -> None:
    deeper = tmp_path / "deeper.toml"
    deeper.write_text(SMALL_CN.replace("percent_off = 40", "percent_off = 60"), encoding="utf-8")
    out = tmp_path / "c"
    assert main(["compare", str(small), str(deeper), "-n", "3", "--out", str(out)]) == 0
    answer = answer_of(out / "report.html")
    assert re.search(r"B earns [\d.]+k? yuan (more|less) profit than A|No clear difference",
                     answer)
    assert "profit after fixed cost, B − A" in answer and " pp (95% CI" in answer
    assert (out / "money_diff.png").exists()


def test_sensitivity_report_names_the_driver(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    assert main(["sensitivity", str(small), "--param", f"{WINDOW}=0.5:4", "--param",
                 f"{TOP_OFF}=35:60", "--samples", "4", "--jobs", "1", "--out", str(out)]) == 0
    answer = answer_of(out / "report.html")
    assert "depends most on" in answer
    assert re.search(r"gross profit across the sampled settings\s+[\d.]+k yuan to", answer)


# --- units, and one name per tier -----------------------------------------------------------

def test_values_carry_their_units() -> None:
    assert fmt_kpi("gross_profit", 28812) == "28.8k yuan"
    assert fmt_kpi("gross_profit", 28812, short=False) == "28,812 yuan"
    assert fmt_kpi("group_completion_rate", 0.5634) == "56%"
    assert fmt_kpi("orders_paid", 1444) == "1.44k orders"
    names = Names({})
    assert names.value(WINDOW, 4.3639) == "4.36 h"
    assert names.value("campaign.subsidy_budget", 60000) == "60,000 yuan"


def test_heat_map_cells_have_units_and_the_best_point_is_marked(
        small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.patches import Rectangle

    from sim.studies import plots

    seen: dict[str, list] = {}
    save = plots._save

    def keep(fig, path):  # what each figure shows, before it is closed
        seen[Path(path).name] = [(ax.get_title(), [t.get_text() for t in ax.texts],
                                  [p for p in ax.patches if isinstance(p, Rectangle)
                                   and p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)],
                                  ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    assert main(["sweep", str(small), "--vary", f"{WINDOW}=1,4", "--vary",
                 f"{TOP_OFF}=35,50", "--replications", "1", "--jobs", "1",
                 "--kpi", "gross_profit", "--kpi", "group_completion_rate",
                 "--out", str(tmp_path / "h")]) == 0
    profit, completion = (ax for ax in seen["heatmap.png"] if ax[0])
    assert profit[0] == "gross profit (yuan)" and len(profit[1]) == 4
    assert all(re.fullmatch(r"-?[\d.]+k? yuan", t) for t in profit[1]), profit[1]
    assert all(re.fullmatch(r"\d+%", t) for t in completion[1]), completion[1]
    assert len(profit[2]) == 1, "the best point is boxed in red"
    assert profit[3] == "group window (h)" and profit[4] == "5-person tier discount (% off)"
    assert "e+0" not in " ".join(profit[1] + completion[1])


def test_a_tier_has_one_name_in_reports_tables_and_plots(small: Path, tmp_path: Path) -> None:
    names = Names({"campaign": {"groups": {"tiers": [{"size": 2}, {"size": 3}, {"size": 5}]}}})
    assert tier_name(5) == "5-person tier"
    assert names.param(TOP_OFF) == "5-person tier discount (% off)"
    assert names.param("campaign.groups.tiers[2].size") == "size of the 5-person tier (people)"
    assert main(["simulate", str(small), "-n", "2", "--out", str(tmp_path / "s")]) == 0
    page = (tmp_path / "s" / "report.html").read_text(encoding="utf-8")
    assert "5-person tier (40% off)" in page  # the price table's column and the outcome rows
    assert "groups: 5-person tier (40% off)" in page
    assert not re.search(r"tier \d|tiers\[\d\]|\d people \(", page)


@pytest.mark.parametrize(("key", "name"), [
    (WINDOW, "group window (h)"),
    ("campaign.phases[0].hours", "phase 预热期 length (h)"),
    ("audience.arrivals_per_hour.burst", "arrivals per hour in 爆发期 (visitors/h)"),
    ("campaign.skus[0].list_price", "SKU 乌龙茶礼盒: list price (yuan)"),
    ("audience.segments[0].share", "segment 价格敏感: share"),
])
def test_settings_are_shown_by_what_they_are(key: str, name: str) -> None:
    import tomllib

    assert Names(tomllib.loads(SMALL_CN)).param(key) == name


# --- Chinese display names, ASCII ids ---------------------------------------------------------

def test_chinese_display_names_are_accepted(small: Path) -> None:
    scenario = load_scenario(small)
    assert [p.label for p in scenario.campaign.phases] == ["预热期", "爆发期"]
    assert scenario.campaign.skus[0].name == "乌龙茶礼盒"
    assert scenario.audience is not None and scenario.audience.segments[0].label == "价格敏感"


@pytest.mark.parametrize(("old", "new", "key", "display"), [
    ('name = "warm-up", label = "预热期"', 'name = "预热"', "campaign.phases[0].name", "label"),
    ('id = "tea"', 'id = "乌龙茶"', "campaign.skus[0].id", "name"),
    ('name = "price-sensitive"', 'name = "价格敏感"', "audience.segments[0].name", "label"),
])
def test_a_chinese_id_is_refused_in_plain_words(tmp_path: Path, old: str, new: str, key: str,
                                                display: str) -> None:
    path = tmp_path / "bad.toml"
    text = SMALL_CN.replace(old, new)
    if "warm-up" in old:
        text = text.replace("{ warm-up = 300", '{ "预热" = 300')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    value = new.split('"')[1]
    problem = next(p for p in exc.value.problems if p.startswith(key))
    assert problem == (f'{key}: "{value}" is not an id: ids are ASCII (letters, digits, _ . -, '
                       f"1 to 64 characters); keep an ASCII id here and put the display name, "
                       f'which may be Chinese, in {display} = "{value}"')
    assert "pattern" not in problem and "^[" not in problem


def test_plots_render_chinese_without_missing_glyphs(tmp_path: Path) -> None:
    from sim.plotstyle import cjk_font

    assert cjk_font(), "no CJK font: install the project (noto-cjk-sans-otc)"
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("预热期 乌龙茶礼盒 价格敏感 warm-up")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        fig.savefig(tmp_path / "cjk.png")
    plt.close(fig)


# --- progress bars: a terminal only, and TQDM_DISABLE --------------------------------------

def test_bars_only_on_a_terminal_and_never_with_tqdm_disable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert bars_wanted() and not bars_wanted(False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not bars_wanted()
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not bars_wanted()


@pytest.mark.parametrize(("disable", "bar"), [(None, True), ("1", False)])
def test_a_terminal_shows_the_bar_unless_tqdm_disable(groupbuy_exe: str, small: Path,
                                                      tmp_path: Path, disable: str | None,
                                                      bar: bool) -> None:
    import fcntl
    import pty
    import struct
    import termios

    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    if disable is not None:
        env["TQDM_DISABLE"] = disable
    main_fd, tty_fd = pty.openpty()
    # An 80-column terminal: tqdm sizes its bar to the terminal, and a new pty has 0 columns.
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.run([groupbuy_exe, "simulate", str(small), "-n", "3", "--out",
                               str(tmp_path / "r")], stdout=subprocess.DEVNULL, stderr=tty_fd,
                              env=env, timeout=120, check=True)
        os.close(tty_fd)
        chunks = []
        while True:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main_fd)
    assert proc.returncode == 0
    assert ("replications" in b"".join(chunks).decode(errors="replace")) is bar


# --- the report in a browser ------------------------------------------------------------------

def _screenshots_module():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "report_screenshots.py"
    spec = importlib.util.spec_from_file_location("report_screenshots", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_opens_in_headless_chromium(small: Path, tmp_path: Path) -> None:
    shots = _screenshots_module()
    if shots.chromium() is None:
        reason = "Chromium is not installed (Debian: apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must open the reports in a browser")
        pytest.skip(reason)
    from PIL import Image

    assert main(["simulate", str(small), "-n", "2", "--out", str(tmp_path / "s")]) == 0
    png = shots.screenshot(tmp_path / "s" / "report.html", tmp_path / "report.png",
                           height=900)
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 900)
    # The answer box (background #eef6ee, a green bar at its left) is drawn near the top.
    colours = {c for _, c in image.crop((0, 0, 1280, 400)).getcolors(maxcolors=1 << 20)}
    assert (0xEE, 0xF6, 0xEE) in colours and (0x2C, 0xA0, 0x2C) in colours
