"""`groupbuy loadtest SCENARIO`: serve, load-test (open workload), check invariants and
thresholds; everything lands in one results folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from groupbuy.commands._common import add_scenario_arg, number, run_dir
from reference_server.stores import SCHEMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loadtest", help="load-test a checkout server with an open workload and "
                       "check the invariants")
    add_scenario_arg(p)
    p.add_argument("--store", metavar="URL", default=None, help="store of the server started "
                   "for the run (default: a fresh SQLite file in the results folder); "
                   "e.g. postgresql://…?schema=s, redis://…?prefix=p, unsafe:///path")
    p.add_argument("--workers", type=number(int, 0, exclusive=True), default=2,
                   help="server worker processes (default 2)")
    p.add_argument("--host", metavar="URL", default=None, help="test this running server "
                   "instead of starting one (needs --admin-token or GROUPBUY_ADMIN_TOKEN)")
    p.add_argument("--admin-token", default=None, help="admin token of the --host server")
    p.add_argument("--duration", type=number(float, 0, exclusive=True), metavar="S", default=None,
                   help="squeeze or stretch the arrival schedule to S seconds")
    p.add_argument("--rate-scale", type=number(float, 0, exclusive=True), metavar="X", default=1.0,
                   help="multiply every arrival rate by X (default 1)")
    p.add_argument("--processes", type=number(int, 0, exclusive=True), metavar="P", default=1,
                   help="Locust load processes (default 1; > 1 runs Locust distributed)")
    p.add_argument("--arrivals", metavar="CSV", default=None, help="arrivals.csv a simulation "
                   "wrote (for [load] arrivals = 'simulation'; default: the scenario's own "
                   "[audience] curve)")
    p.add_argument("--locustfile", metavar="FILE", default=None, help="locustfile to run "
                   "(default loadtests/scenario.py: the scenario's own mix)")
    p.add_argument("--seed", type=int, default=None, help="seed for shoppers and journeys")
    p.add_argument("--allow-unsafe-durability", action="store_true",
                   help="passed to the server the run starts: serve even on a store whose "
                   "settings can lose acknowledged orders (e.g. a Redis without persistence)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default results/<scenario>-loadtest-<timestamp>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from campaign.scenario import load_scenario
    from groupbuy.cli import UsageError
    from loadtests.api import AdminClient, ServerError
    from loadtests.harness import run_loadtest, summary_lines
    from loadtests.schedule import ScheduleError, build_schedule
    from loadtests.server import ServerStartError

    scenario = load_scenario(args.scenario)  # bad files fail before a folder is made
    try:
        build_schedule(scenario, args.arrivals)
    except ScheduleError as exc:
        raise UsageError(f"--arrivals: {exc}") from None
    token = args.admin_token or os.environ.get("GROUPBUY_ADMIN_TOKEN")
    if args.host and not token:
        raise UsageError("--host needs the server's admin token (--admin-token or "
                         "GROUPBUY_ADMIN_TOKEN)")
    if args.host and args.store:
        raise UsageError("--store picks the store of a server the run starts; with --host "
                         "the server is already running")
    if args.store and urlsplit(args.store).scheme not in SCHEMES:
        raise UsageError(f"--store: {args.store!r} is not a store URL; use sqlite:///path, "
                         "postgresql://…, redis://… or unsafe:///path")
    locustfile = Path(args.locustfile) if args.locustfile else None
    if locustfile is not None and not locustfile.is_file():
        raise UsageError(f"--locustfile: {locustfile} not found")
    if args.host:
        try:
            with AdminClient(args.host, token) as admin:
                admin.health()
        except ServerError as exc:
            raise UsageError(f"--host: {exc}") from None
    out = run_dir(args.scenario, args.out, "loadtest")
    extra = {"locustfile": locustfile.resolve()} if locustfile else {}
    try:
        res = run_loadtest(args.scenario, out, host=args.host, store=args.store,
                           workers=args.workers, admin_token=token, duration=args.duration,
                           rate_scale=args.rate_scale, processes=args.processes,
                           arrivals_csv=args.arrivals, seed=args.seed,
                           allow_unsafe_durability=args.allow_unsafe_durability, **extra)
    except (ServerError, ServerStartError) as exc:
        print(f"groupbuy loadtest: {exc}", file=sys.stderr)
        print(f"results (incomplete): {out}", file=sys.stderr)
        return 1
    for line in summary_lines(res):
        print(line)
    for line in res.problems:
        print(line, file=sys.stderr)
    print(f"{'PASSED' if res.passed else 'FAILED'}; results: {res.run_dir}")
    return 0 if res.passed else 1
