"""Helpers shared by the sub-commands: scenario arguments and result folders."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where runs write unless --out says otherwise; GROUPBUY_RESULTS moves it (the doc tests do).
RESULTS = Path(os.environ.get("GROUPBUY_RESULTS") or REPO_ROOT / "results")
DEFAULT_SCENARIO = REPO_ROOT / "scenarios" / "default.toml"


def add_scenario_arg(parser: argparse.ArgumentParser, nargs: str | None = None) -> None:
    parser.add_argument("scenario", nargs=nargs, metavar="SCENARIO",
                        help="scenario file (TOML), e.g. scenarios/flash_sale.toml")


def run_dir(scenario: str | Path, out: str | Path | None, kind: str = "") -> Path:
    """The folder a run writes into: `--out` if given, else results/<scenario>[-kind]-<time>."""
    if out is not None:
        path = Path(out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(scenario).stem + (f"-{kind}" if kind else "")
        path = RESULTS / f"{name}-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def number(kind: type[int] | type[float], minimum: float, *,
           exclusive: bool = False) -> Callable[[str], int | float]:
    """argparse type: an int or float of at least `minimum` (more than it, if `exclusive`);
    argparse turns the error into one line and exit code 2."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {noun}: {text!r}") from None
        if value < minimum or (exclusive and value == minimum):
            bound = "more than" if exclusive else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g} (got {text})")
        return value

    return parse
