"""`groupbuy sweep SCENARIO --vary KEY=V1,V2 …`: run a grid or Latin hypercube of scenario
variants with replications (common random numbers) and write points.csv, runs.csv, plots."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from campaign.scenario import read_scenario_data
from groupbuy.cli import UsageError
from groupbuy.commands._common import add_scenario_arg, number, run_dir

if TYPE_CHECKING:
    from sim.studies.executor import Executor


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """`--executor local|dask://HOST:PORT` and `--jobs J` (shared by sweep, tune, sensitivity)."""
    p.add_argument("--executor", default="local", metavar="local|dask://HOST:PORT",
                   help="where runs execute: local processes or a Dask scheduler")
    p.add_argument("--jobs", type=number(int, 1), default=None, metavar="J",
                   help="local processes (default: all cores; 1 runs in this process)")


def open_executor(args: argparse.Namespace) -> Executor:
    """The executor the arguments ask for; a one-line usage error if it cannot be used."""
    from sim.studies.executor import ExecutorError, make_executor

    try:
        return make_executor(args.executor, args.jobs)
    except ExecutorError as exc:
        raise UsageError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid / Latin hypercube of scenario variants",
                       description=__doc__)
    add_scenario_arg(p)
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,…|KEY=lo:hi",
                   help="a dotted scenario key and its values (grid) or range (lhs); repeatable")
    p.add_argument("--design", choices=("grid", "lhs"), default="grid",
                   help="grid: every combination of the --vary values; lhs: --samples points "
                   "of a Latin hypercube over the --vary ranges")
    p.add_argument("--samples", type=number(int, 1), default=20, metavar="N", help="points for lhs")
    p.add_argument("--replications", type=number(int, 1), default=5, metavar="R",
                   help="replications per point (common random numbers)")
    p.add_argument("--seed", type=number(int, 0), default=1, metavar="S",
                   help="random seed; the same seed gives the same numbers")
    p.add_argument("--constraint", action="append", default=[], metavar="KPI>=X",
                   help="feasibility rule on KPI means, e.g. group_completion_rate>=0.6")
    p.add_argument("--objective", default="gross_profit", metavar="KPI[:max|min]",
                   help="what the best point maximises (or minimises) in report.html and on "
                        "the plots")
    p.add_argument("--kpi", action="append", default=[], metavar="KPI",
                   help="KPI to plot (repeatable; default: profit, completion, subsidy …)")
    add_executor_args(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: results/<scenario>-sweep-<timestamp>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim import KPI_NAMES
    from sim.page import answer_text
    from sim.studies.params import (
        check_kpi,
        format_params,
        parse_constraint,
        parse_objective,
        parse_param,
    )
    from sim.studies.sweep import plan_sweep, run_sweep

    data = read_scenario_data(args.scenario)
    params = [parse_param(v, "--vary") for v in args.vary]
    constraints = [parse_constraint(c, KPI_NAMES) for c in args.constraint]
    kpis = [check_kpi(k, KPI_NAMES, "--kpi") for k in args.kpi]
    objective = parse_objective(args.objective, KPI_NAMES)
    plan = plan_sweep(data, args.scenario, params, design=args.design, samples=args.samples,
                      replications=args.replications, seed=args.seed, constraints=constraints,
                      objective=objective)
    with open_executor(args) as executor:
        out = run_dir(args.scenario, args.out, "sweep")
        print(f"sweep: {len(plan.points)} points x {args.replications} replications on "
              f"{executor.name}", file=sys.stderr)
        result = run_sweep(plan, executor=executor, out_dir=out, plot_kpis=kpis)
    for point, run in result.failures:
        print(f"run failed: point {point.index} replication {run.replication} "
              f"({format_params(point.params)}): {run.error}", file=sys.stderr)
    n_runs = sum(len(p.runs) for p in result.points)
    print(f"{len(result.points)} points x {args.replications} replications: "
          f"{n_runs - len(result.failures)} runs ok, {len(result.failures)} failed")
    print(answer_text(result.page.answer))
    print(f"wrote {', '.join(f.name for f in result.files)} to {out}  (open report.html)")
    return 1 if result.failures else 0
