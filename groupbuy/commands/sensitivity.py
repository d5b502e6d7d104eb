"""`groupbuy sensitivity SCENARIO --param KEY=lo:hi …`: Sobol or Morris sensitivity indices of
every KPI to the given scenario parameters (SALib), with confidence intervals and bar plots."""

from __future__ import annotations

import argparse
import sys

from campaign.scenario import read_scenario_data
from groupbuy.commands._common import add_scenario_arg, number, run_dir
from groupbuy.commands.sweep import add_executor_args, open_executor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="Sobol / Morris sensitivity of KPIs to parameters",
                       description=__doc__)
    add_scenario_arg(p)
    p.add_argument("--param", action="append", default=[], metavar="KEY=lo:hi",
                   help="a dotted scenario key and its range; repeatable")
    p.add_argument("--method", choices=("sobol", "morris"), default="sobol",
                   help="Sobol indices (variance shares) or Morris elementary effects (a "
                   "cheaper screening)")
    p.add_argument("--samples", type=number(int, 1), default=64, metavar="N",
                   help="Sobol: base samples, a power of two (runs N x (params + 2)); "
                        "Morris: trajectories (runs N x (params + 1))")
    p.add_argument("--replications", type=number(int, 1), default=1, metavar="R",
                   help="runs averaged per sample point (common random numbers)")
    p.add_argument("--seed", type=number(int, 0), default=1, metavar="S",
                   help="random seed of the samples and the simulations")
    p.add_argument("--kpi", action="append", default=[], metavar="KPI",
                   help="KPI to plot (repeatable; every KPI is in indices.csv)")
    add_executor_args(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: results/<scenario>-sensitivity-<timestamp>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim import KPI_NAMES
    from sim.labels import Names, columns, ljust
    from sim.page import answer_text
    from sim.studies.params import check_kpi, parse_param
    from sim.studies.sensitivity import DEFAULT_PLOT_KPIS, plan_sensitivity, run_sensitivity

    data = read_scenario_data(args.scenario)
    params = [parse_param(p, "--param") for p in args.param]
    kpis = [check_kpi(k, KPI_NAMES, "--kpi") for k in args.kpi]
    plan = plan_sensitivity(data, args.scenario, params, method=args.method,
                            samples=args.samples, replications=args.replications, seed=args.seed)
    with open_executor(args) as executor:
        out = run_dir(args.scenario, args.out, "sensitivity")
        print(f"sensitivity: {len(plan.points)} points x {args.replications} on "
              f"{executor.name}", file=sys.stderr)
        result = run_sensitivity(plan, executor=executor, out_dir=out, plot_kpis=kpis)
    if result.failures:
        for line in result.failures:
            print(f"run failed: {line}", file=sys.stderr)
        print(f"{len(result.failures)} run(s) failed; every sample point is needed, so no "
              "indices were computed", file=sys.stderr)
        return 1
    first, total = ("S1", "ST") if args.method == "sobol" else ("mu_star", "sigma")
    shown = kpis or sorted({r["kpi"] for r in result.rows} & set(DEFAULT_PLOT_KPIS))
    print(f"{args.method}: {result.points} sample points x {args.replications} replication(s)")
    fmt = "{:.3f}" if args.method == "sobol" else "{:.4g}"  # Sobol indices are shares, 0..1
    second_head = total + (" ± 95%" if args.method == "sobol" else "")
    names = Names(data)
    width = max(columns(names.param(p.key)) for p in params)
    print(f"{'KPI':<24} {'parameter':<{width}} {first + ' ± 95%':>18} {second_head:>18}")
    for r in result.rows:
        if r["kpi"] in shown:
            conf = r.get(f"{total}_conf")
            second = fmt.format(r[total]) + (f" ± {fmt.format(conf)}" if conf is not None
                                              else "")
            print(f"{r['kpi']:<24} {ljust(names.param(r['param']), width)} "
                  f"{fmt.format(r[first]) + ' ± ' + fmt.format(r[first + '_conf']):>18} "
                  f"{second:>18}")
    if result.constant:
        print(f"constant over the design (no index): {', '.join(result.constant)}")
    if result.page is not None:
        print(answer_text(result.page.answer))
    print(f"wrote {', '.join(f.name for f in result.files)} to {out}  (open report.html)")
    return 0

