"""`groupbuy demo [SCENARIO]`: the main job. Simulate the scenario, serve it on SQLite,
load-test it with the simulated arrival curve, check the invariants, say where it all is."""

from __future__ import annotations

import argparse
import sys

from groupbuy.commands._common import DEFAULT_SCENARIO, add_scenario_arg, number, run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline: simulate, serve (SQLite), load-test "
                       "with the simulated arrivals, check")
    add_scenario_arg(p, nargs="?")
    p.add_argument("--replications", "-n", type=number(int, 1), default=5, metavar="N",
                   help="simulation replications")
    p.add_argument("--seed", type=number(int, 0), default=1, metavar="S",
                   help="random seed of the simulation and the load test")
    p.add_argument("--workers", type=number(int, 1), default=2, metavar="N",
                   help="server worker processes")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: results/<scenario>-demo-<timestamp>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loadtests.harness import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM unwinds like Ctrl-C: every child is stopped
            return _demo(args)
    except KeyboardInterrupt:
        print("groupbuy demo: interrupted; every process it started is stopped",
              file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    from loadtests.api import ServerError
    from loadtests.harness import run_loadtest, summary_lines
    from loadtests.plan import ScenarioFile
    from loadtests.server import ServerStartError
    from sim import load_simulatable, run_simulation
    from sim.report import detail_rows, kpi_table

    scenario_path = args.scenario or str(DEFAULT_SCENARIO)
    scenario = load_simulatable(scenario_path)  # a bad file fails before a folder is made
    source = ScenarioFile.read(scenario_path)  # what the load test serves and drives
    out = run_dir(scenario_path, args.out, "demo")
    print(f"1/2 simulating {scenario.campaign.name!r} ({args.replications} replications) …",
          flush=True)
    sim = run_simulation(scenario_path, replications=args.replications, seed=args.seed,
                         out_dir=out / "simulation", progress=True)
    print(kpi_table(sim.summary, detail_rows(sim.scenario, sim.results)))
    curve = (scenario.load is None or scenario.load.arrivals == "simulation")
    print(f"\n2/2 load-testing the reference server (SQLite, {args.workers} workers) with "
          f"{'the simulated arrival curve' if curve else 'the [load] phases'} …", flush=True)
    try:
        res = run_loadtest(source, source.schedule(sim.arrivals_csv), out / "loadtest",
                           workers=args.workers, seed=args.seed)
    except (ServerError, ServerStartError) as exc:
        print(f"groupbuy demo: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(res):
        print(line)
    for line in res.problems:
        print(line, file=sys.stderr)
    print(f"\n{'PASSED' if res.passed else 'FAILED'}; results: {out}")
    print(f"  simulation: {out / 'simulation' / 'report.html'}")
    print(f"  load test:  {out / 'loadtest' / 'locust_report.html'}, invariants.txt, "
          "latency.png")
    return 0 if res.passed else 1
