"""`groupbuy check --host URL --history FILE`: the invariant checker, standalone, against any
server that speaks the checkout contract."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check the invariants from a load test's history and a "
                       "server's final state")
    p.add_argument("--host", metavar="URL", required=True, help="the server, e.g. "
                   "http://127.0.0.1:8000")
    p.add_argument("--history", metavar="FILE", required=True, help="history.jsonl of the run")
    p.add_argument("--scenario", metavar="FILE", default=None, help="scenario whose sale the "
                   "server runs (default: the one named in plan.json beside the history)")
    p.add_argument("--admin-token", default=None, help="admin token (default: "
                   "$GROUPBUY_ADMIN_TOKEN)")
    p.add_argument("--expire", action="store_true", help="run expiry first (POST "
                   "/v1/admin/expire) and flag reservations and groups left past their deadline")
    p.add_argument("--out", metavar="DIR", default=None, help="where invariants.json and "
                   "invariants.txt go (default: beside the history)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from campaign.scenario import load_scenario
    from groupbuy.cli import UsageError
    from loadtests.api import AdminClient, ServerError
    from loadtests.checker import check, rules_from_campaign, save_report
    from loadtests.history import read_history
    from loadtests.plan import Plan

    token = args.admin_token or os.environ.get("GROUPBUY_ADMIN_TOKEN")
    if not token:
        raise UsageError("the server's admin token is needed (--admin-token or "
                         "GROUPBUY_ADMIN_TOKEN)")
    history_path = Path(args.history)
    try:
        history = read_history(history_path)
    except FileNotFoundError:
        raise UsageError(f"--history: {history_path} not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--history: {exc}") from None
    scenario = args.scenario
    plan_file = history_path.parent / "plan.json"
    if scenario is None and plan_file.is_file():
        scenario = Plan.load(plan_file).scenario
    if scenario is None:
        raise UsageError(f"--scenario is needed (no plan.json beside {history_path})")
    rules = rules_from_campaign(load_scenario(scenario).campaign)
    try:
        with AdminClient(args.host, token) as admin:
            if args.expire:
                admin.expire()
            state = admin.final_state()
    except ServerError as exc:
        print(f"groupbuy check: {exc}", file=sys.stderr)
        return 2
    report = check(history, state, rules, expiry_ran=args.expire)
    out = Path(args.out) if args.out else history_path.parent
    out.mkdir(parents=True, exist_ok=True)
    save_report(report, out / "invariants.json", out / "invariants.txt")
    print(report.to_text())
    print(f"report: {out / 'invariants.txt'} and invariants.json")
    return 0 if report.held else 1
