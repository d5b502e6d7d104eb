"""`groupbuy validate SCENARIO...`: check scenario files and say what is wrong."""

from __future__ import annotations

import argparse
import sys

from campaign.errors import ScenarioError
from campaign.scenario import load_scenario
from groupbuy.commands._common import add_scenario_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check scenario files (one line per problem)")
    add_scenario_arg(p, nargs="+")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.scenario:
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            bad += 1
            for line in exc.lines():
                print(line, file=sys.stderr)
            continue
        extra = f", {sc.expected_arrivals():,.0f} expected arrivals" if sc.audience else ""
        print(f"{path}: ok ({sc.campaign.name}: {len(sc.campaign.skus)} SKU(s), "
              f"{sc.campaign.duration_hours:g} h{extra})")
    return 2 if bad else 0
