"""`groupbuy calibrate EVENTS --scenario BASE.toml --out FITTED.toml`: fit a scenario's audience
and behaviour to an event log; writes the fitted scenario and a fit report."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from groupbuy.commands._common import RESULTS, number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a scenario to an event log (95%% CIs, fit report)",
                       description=__doc__)
    p.add_argument("events", metavar="EVENTS", nargs="+",
                   help="event log(s) (CSV; docs/calibration.md), e.g. from simulate --events; "
                   "several logs of the same campaign are fitted together")
    p.add_argument("--scenario", required=True, metavar="BASE.toml",
                   help="the scenario to fit: its rules, prices and shapes are kept")
    p.add_argument("--out", required=True, metavar="FITTED.toml",
                   help="where to write the fitted scenario")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="fit report folder (default: results/<fitted>-calibration-<time>)")
    p.add_argument("--replications", type=number(int, 1), default=None, metavar="R",
                   help="simulations per round for the conversion fit and the report "
                   "(default: 4, or as many as there are logs)")
    p.add_argument("--iterations", type=number(int, 1), default=2, metavar="K",
                   help="rounds of the conversion fit")
    p.add_argument("--seed", type=number(int, 0), default=1, metavar="S",
                   help="random seed of the simulations; the same seed gives the same fit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.calibrate import EventLogError, run_calibration

    def say(message: str) -> None:
        print(f"calibrate: {message}", file=sys.stderr, flush=True)

    # made only when there is something to write in it
    report = Path(args.report) if args.report else \
        RESULTS / f"{Path(args.out).stem}-calibration-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        result = run_calibration(args.events, args.scenario, args.out, report,
                                 replications=args.replications or max(4, len(args.events)),
                                 seed=args.seed,
                                 iterations=args.iterations, say=say)
    except EventLogError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    rows = [("key", "estimate", "95% CI", "base", "n")]
    for e in result.calibration.estimates:
        rows.append((e.key, f"{e.value:.4g}", f"[{e.ci_low:.4g}, {e.ci_high:.4g}]",
                     "" if e.base is None else f"{e.base:.4g}", f"{e.n:,}"))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"{result.events:,} events: read in {result.read_seconds:.1f} s, fitted in "
          f"{result.fit_seconds:.1f} s")
    for i, r in enumerate(rows):
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}  {r[4]:>{w[4]}}")
        if i == 0:
            print("-" * (sum(w) + 8))
    for note in result.calibration.notes:
        print(note)
    print("\ngoodness of fit (fitted scenario simulated against the log):")
    for fit in result.fits:
        print(f"  {fit}")
    layout = "the base's comments and layout kept" if result.kept_layout else \
        "written plainly (the base's layout could not be kept)"
    print(f"\nwrote {result.fitted_path} ({layout}; it passes groupbuy validate)")
    print(f"fit report: {report / 'fit_report.html'}")
    return 0
