"""`groupbuy loadtest SCENARIO`: serve, load-test (open workload) with faults if asked, check
invariants and thresholds; everything lands in one results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from groupbuy.commands._common import (
    add_admin_token_args,
    add_scenario_arg,
    admin_token_from,
    number,
    run_dir,
)
from reference_server.stores import SCHEMES

INTERRUPTED = 130


def _times(text: str) -> list[float]:
    """`5,12.5` -> [5.0, 12.5] (seconds into the load)."""
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of seconds: {text!r} (e.g. 5,12)") from None
    if not out or any(t < 0 for t in out):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return out


def _fields(spec: str, names: tuple[str, ...], example: str) -> dict[str, Any]:
    def parse(text: str) -> dict[str, Any]:
        parts = text.split(":", len(names) - 1)
        if len(parts) != len(names):
            raise argparse.ArgumentTypeError(f"{text!r}: want {spec}, e.g. {example}")
        out: dict[str, Any] = {}
        for name, part in zip(names, parts, strict=True):
            if name == "command":
                out[name] = part
                continue
            try:
                out[name] = float(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r}: {name} {part!r} is not a number "
                                                 f"(want {spec})") from None
        return out
    return parse  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loadtest", help="load-test a checkout server with an open workload and "
                       "check the invariants")
    add_scenario_arg(p)
    p.add_argument("--store", metavar="URL", default=None, help="store of the server started "
                   "for the run (default: a fresh SQLite file in the results folder); "
                   "e.g. postgresql://…?schema=s, redis://…?prefix=p, unsafe:///path")
    p.add_argument("--workers", type=number(int, 0, exclusive=True), default=2, metavar="N",
                   help="worker processes of the server the run starts")
    p.add_argument("--host", metavar="URL", default=None, help="test this running server "
                   "instead of starting one (needs --admin-token-file or GROUPBUY_ADMIN_TOKEN; "
                   "default: start the reference server)")
    add_admin_token_args(p, "the --host server's")
    p.add_argument("--duration", type=number(float, 0, exclusive=True), metavar="S", default=None,
                   help="squeeze or stretch the arrival schedule to S seconds (default: its "
                   "own length)")
    p.add_argument("--rate-scale", type=number(float, 0, exclusive=True), metavar="X", default=1.0,
                   help="multiply every arrival rate by X")
    p.add_argument("--processes", type=number(int, 0, exclusive=True), metavar="P", default=1,
                   help="Locust load processes (more than 1 runs Locust distributed)")
    p.add_argument("--arrivals", metavar="CSV", default=None, help="arrivals.csv a simulation "
                   "wrote (for [load] arrivals = 'simulation'; default: the scenario's own "
                   "[audience] curve)")
    p.add_argument("--locustfile", metavar="FILE", default=None, help="locustfile to run "
                   "(default: loadtests/scenario.py, the scenario's own mix)")
    p.add_argument("--seed", type=int, default=None, help="seed for shoppers and journeys "
                   "(default: a new one each run, saved in plan.json)")
    p.add_argument("--allow-unsafe-durability", action="store_true",
                   help="passed to the server the run starts: serve even on a store whose "
                   "settings can lose acknowledged orders (e.g. a Redis without persistence)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: results/<scenario>-loadtest-<timestamp>)")
    f = p.add_argument_group("faults (any of these replaces the scenario's [faults]; times are "
                             "seconds from the first arrival)")
    f.add_argument("--kill-server", type=_times, metavar="S[,S…]", default=None,
                   help="kill -9 every server process at these times, restart on the same store")
    f.add_argument("--kill-worker", type=_times, metavar="S[,S…]", default=None,
                   help="kill -9 one server worker at these times (uvicorn starts another)")
    f.add_argument("--pause-worker", action="append", metavar="AT:SECONDS", default=None,
                   type=_fields("AT:SECONDS", ("at", "seconds"), "6:2"),
                   help="SIGSTOP one worker at AT for SECONDS, then SIGCONT (repeatable)")
    f.add_argument("--restart-store", action="append", metavar="AT:COMMAND", default=None,
                   type=_fields("AT:COMMAND", ("at", "command"), "'10:systemctl restart redis'"),
                   help="run COMMAND (a shell command restarting the store) at AT (repeatable)")
    f.add_argument("--proxy", action="append", metavar="AT:SECONDS:DELAY_MS:DROP", default=None,
                   type=_fields("AT:SECONDS:DELAY_MS:DROP", ("at", "seconds", "delay_ms",
                                                             "drop"), "3:2:200:0.3"),
                   help="through a proxy: from AT for SECONDS delay each request DELAY_MS and "
                   "cut a share DROP of them (repeatable)")
    f.add_argument("--proxy-delay-ms", type=number(float, 0), metavar="MS", default=None,
                   help="latency the proxy adds all run long (default: the scenario's "
                   "[faults], else 0)")
    f.add_argument("--restart-delay", type=number(float, 0), metavar="S", default=None,
                   help="how long a killed server stays down (default: the scenario's "
                   "[faults], else 1)")
    f.add_argument("--no-faults", action="store_true", help="ignore the scenario's [faults]")
    p.set_defaults(func=run)


FAULT_FLAGS = {"kill_server": "kill_server", "kill_worker": "kill_worker",
               "pause_worker": "pause_worker", "restart_store": "restart_store",
               "proxy": "proxy", "proxy_delay_ms": "proxy_delay_ms",
               "restart_delay": "restart_delay_seconds"}


def faults_from_args(args: argparse.Namespace) -> Any:
    """The faults the flags ask for (None: the scenario's own); UsageError when they do not
    fit together."""
    from pydantic import ValidationError

    from campaign.errors import problems_from_validation
    from campaign.load import Faults
    from groupbuy.cli import UsageError

    given = {key: getattr(args, flag) for flag, key in FAULT_FLAGS.items()
             if getattr(args, flag) is not None}
    if args.no_faults:
        if given:
            raise UsageError("--no-faults and fault flags do not go together")
        return Faults()
    if not given:
        return None
    try:
        return Faults(**given)
    except ValidationError as exc:
        raise UsageError("fault flags: " + "; ".join(problems_from_validation(exc))) from None


def run(args: argparse.Namespace) -> int:
    from groupbuy.cli import UsageError
    from loadtests.api import AdminClient, ServerError
    from loadtests.harness import run_loadtest, sigterm_as_interrupt, summary_lines
    from loadtests.plan import ScenarioFile
    from loadtests.schedule import ScheduleError
    from loadtests.server import ServerStartError

    source = ScenarioFile.read(args.scenario)  # read once; bad files fail before a folder is made
    scenario = source.scenario
    try:
        sched = source.schedule(args.arrivals, duration=args.duration,
                                rate_scale=args.rate_scale)
    except ScheduleError as exc:
        raise UsageError(f"--arrivals: {exc}") from None
    token, _ = admin_token_from(args)
    if args.host and not token:
        raise UsageError("--host needs the server's admin token (--admin-token-file FILE or "
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
    faults = faults_from_args(args)
    own = (faults if faults is not None else scenario.faults)
    if args.host and own is not None and own.needs_own_server:
        raise UsageError(f"{', '.join(own.needs_own_server)}: these faults need a server the "
                         "run starts, not --host")
    if args.host:
        try:
            with AdminClient(args.host, token) as admin:
                admin.health()
        except ServerError as exc:
            raise UsageError(f"--host: {exc}") from None
    out = run_dir(args.scenario, args.out, "loadtest")
    extra = {"locustfile": locustfile.resolve()} if locustfile else {}
    try:
        with sigterm_as_interrupt():
            res = run_loadtest(source, sched, out, host=args.host, store=args.store,
                               workers=args.workers, admin_token=token,
                               processes=args.processes, seed=args.seed, faults=faults,
                               allow_unsafe_durability=args.allow_unsafe_durability,
                               **extra)
    except KeyboardInterrupt:
        print(f"groupbuy loadtest: interrupted; every process it started is stopped; results "
              f"(incomplete): {out}", file=sys.stderr)
        return INTERRUPTED
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
