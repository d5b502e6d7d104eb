"""Screenshot every planner report in headless Chromium, to look at them as a planner would.

    .venv/bin/python docs/report_screenshots.py [--out DIR]

Runs `groupbuy simulate`, `sweep`, `tune`, `compare` and `sensitivity` on the shipped
scenarios with small settings (about a minute on two cores), writes each report.html under
DIR (default results/report-screenshots/) and a full-page PNG beside it (`<command>.png`).

Needs Chromium (Debian: `apt-get install -y chromium`). Chromium finds the CJK font the
project ships (the noto-cjk-sans-otc package) through a private fontconfig file, so Chinese
names render as text even where no system CJK font is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sim.plotstyle import packaged_font

ROOT = Path(__file__).resolve().parents[1]
GROUPBUY = [sys.executable, "-m", "groupbuy"]
LADDER = "scenarios/group_buy_ladder.toml"
COMMANDS: dict[str, list[str]] = {
    "simulate": ["simulate", LADDER, "-n", "4"],
    "sweep": ["sweep", LADDER, "--vary", "campaign.groups.window_hours=2,8,24",
              "--vary", "campaign.groups.tiers[2].percent_off=35,45,55", "--replications", "3",
              "--constraint", "group_completion_rate>=0.5", "--constraint",
              "subsidy_spent<60000"],
    "tune": ["tune", LADDER, "--param", "campaign.groups.window_hours=0.1:12",
             "--param", "campaign.groups.tiers[2].percent_off=35:60",
             "--objective", "gross_profit", "--constraint", "group_completion_rate>=0.5",
             "--trials", "12", "--replications", "2", "--fresh-replications", "4"],
    "compare": ["compare", "scenarios/group_buy_two_tier.toml", LADDER, "-n", "4"],
    "sensitivity": ["sensitivity", LADDER, "--param", "campaign.groups.window_hours=1:24",
                    "--param", "campaign.groups.tiers[2].percent_off=35:60",
                    "--samples", "8"],
}


def chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                               "google-chrome")) if p), None)


def _fontconfig(tmp: Path) -> Path:
    """A fontconfig file: the system's fonts plus the CJK font the project ships."""
    font = packaged_font()
    dirs = f"<dir>{font.parent}</dir>" if font is not None else ""
    conf = tmp / "fonts.conf"
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
                    '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
                    f"{dirs}<cachedir>{tmp / 'cache'}</cachedir></fontconfig>")
    return conf


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2400) -> Path:
    """A PNG of `html` as headless Chromium draws it; RuntimeError when Chromium is missing
    or draws nothing."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("Chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FONTCONFIG_FILE": str(_fontconfig(Path(tmp))), "HOME": tmp,
               "PATH": "/usr/bin:/bin"}
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={tmp}/profile", f"--screenshot={png.resolve()}",
                        f"--window-size={width},{height}", html.resolve().as_uri()],
                       env=env, capture_output=True, timeout=180, check=False)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot of {html}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "report-screenshots")
    parser.add_argument("--only", choices=list(COMMANDS), action="append",
                        help="just these commands (repeatable; default: all)")
    args = parser.parse_args(argv)
    if chromium() is None:
        print("Chromium is not installed (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    for name in args.only or COMMANDS:
        out = args.out / name
        cmd = [*GROUPBUY, *COMMANDS[name], "--out", str(out)]
        if name == "tune":
            cmd += ["--study", "report-screenshots"]
            (ROOT / "results" / "tuning" / "report-screenshots.db").unlink(missing_ok=True)
        print(f"$ groupbuy {' '.join(cmd[3:])}", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        png = screenshot(out / "report.html", args.out / f"{name}.png")
        print(f"  {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
