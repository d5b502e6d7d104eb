"""`groupbuy check RUN_DIR`: the invariant checker, standalone: a run folder's whole history
(every load process) against the server's final state — read live from `--host`, or the
`state.json` the run saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groupbuy.commands._common import add_admin_token_args, admin_token_from

EXIT_INCOMPLETE = 3
"""Nothing broken, but not everything could be checked (a partial history, say)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check the invariants from a load test's history and a "
                       "server's final state",
                       description="Exit 0: every invariant held; 1: one broke; 2: a mistake "
                       "in the command or a history that cannot be read; 3: nothing broke, but "
                       "the history is incomplete so some things were not checked.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a load test's results folder "
                   "(history-*.jsonl, plan.json, state.json)")
    p.add_argument("--history", metavar="FILE", default=None, help="one history file instead "
                   "of a run folder's")
    p.add_argument("--host", metavar="URL", default=None, help="read the final state from this "
                   "server (default: the run folder's state.json)")
    p.add_argument("--scenario", metavar="FILE", default=None, help="scenario whose sale the "
                   "server runs (default: the one named in the run folder's plan.json)")
    add_admin_token_args(p, "the --host server's")
    p.add_argument("--expire", action="store_true", help="with --host: run expiry first (POST "
                   "/v1/admin/expire) and flag reservations and groups left past their deadline")
    p.add_argument("--out", metavar="DIR", default=None, help="where invariants.json and "
                   "invariants.txt go (default: the run folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from campaign.scenario import load_scenario
    from groupbuy.cli import UsageError
    from loadtests.api import AdminClient, ServerError
    from loadtests.checker import (
        check,
        rules_from_campaign,
        sale_mismatch,
        save_report,
        to_text,
    )
    from loadtests.history import HistoryError, read_history_file, read_run
    from loadtests.plan import Plan
    from loadtests.state import FinalState, StateError

    token, _ = admin_token_from(args)  # a token on the command line is refused first
    if (args.run_dir is None) == (args.history is None):
        raise UsageError("give a run folder (RUN_DIR) or --history FILE, not both")
    folder = Path(args.run_dir) if args.run_dir else Path(args.history).parent
    if args.run_dir and not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    try:
        history = read_run(folder) if args.run_dir else read_history_file(args.history)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    plan = None
    if (folder / "plan.json").is_file():
        try:
            plan = Plan.load(folder / "plan.json")
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{folder / 'plan.json'}: {exc}") from None
    scenario = args.scenario or (plan.scenario if plan else None)
    if scenario is None:
        raise UsageError(f"--scenario is needed (no plan.json in {folder})")
    if args.expire and not args.host:
        raise UsageError("--expire runs expiry on a live server: it needs --host")
    try:
        if args.host:
            if not token:
                raise UsageError("--host needs the server's admin token (--admin-token-file "
                                 "FILE or GROUPBUY_ADMIN_TOKEN)")
            with AdminClient(args.host, token) as admin:
                if args.expire:
                    admin.expire()
                state = admin.final_state(expiry_ran=args.expire)
        elif (folder / "state.json").is_file():
            try:
                state = FinalState.load(folder / "state.json")
            except StateError as exc:  # a damaged file, not a server's answer
                raise UsageError(f"{folder / 'state.json'}: {exc}") from None
        else:
            raise UsageError(f"no state.json in {folder}: give --host to read the server's "
                             "final state")
    except ServerError as exc:
        print(f"groupbuy check: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"groupbuy check: the final state breaks the contract: {exc}", file=sys.stderr)
        return 1
    mismatch = sale_mismatch(history, state)
    if mismatch:
        raise UsageError(mismatch)
    rules = rules_from_campaign(
        load_scenario(scenario).campaign, start=plan.sale_start if plan else None,
        payment_timeout=plan.payment_timeout if plan else None,
        group_window=plan.group_window if plan else None)
    report = check(history, state, rules)
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    save_report(report, out / "invariants.json", out / "invariants.txt")
    print(to_text(report))
    print(f"report: {out / 'invariants.txt'} and invariants.json")
    return {"held": 0, "broken": 1}.get(report.verdict, EXIT_INCOMPLETE)
