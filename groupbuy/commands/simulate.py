"""`groupbuy simulate SCENARIO`: replications of the SimPy model, KPI table, output folder."""

from __future__ import annotations

import argparse

from groupbuy.commands._common import add_scenario_arg, number, run_dir


def add_run_options(p: argparse.ArgumentParser, default_out: str) -> None:
    """--replications, --seed and --out, shared with `groupbuy compare`."""
    p.add_argument("--replications", "-n", metavar="N", type=number(int, 1), default=20,
                   help="independent replications")
    p.add_argument("--seed", type=number(int, 0), default=1,
                   help="random seed; the same seed gives the same numbers")
    p.add_argument("--out", metavar="DIR", default=None,
                   help=f"output folder (default: {default_out})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a campaign (SimPy): KPIs with 95%% CIs, "
                       "plots, report.html")
    add_scenario_arg(p)
    add_run_options(p, "results/<scenario>-<timestamp>")
    p.add_argument("--events", action="store_true",
                   help="also write each replication's event log, events/replication-<i>.csv "
                   "(the format groupbuy calibrate reads; docs/calibration.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim import load_simulatable, run_simulation
    from sim.page import answer_text
    from sim.report import detail_rows, kpi_table, simulation_answer, text_table, value_table

    load_simulatable(args.scenario)  # a bad file fails before a folder is made
    out = run_dir(args.scenario, args.out)
    result = run_simulation(args.scenario, replications=args.replications, seed=args.seed,
                            out_dir=out, progress=True, events=args.events)
    print(f"{result.scenario.campaign.name}: {args.replications} replication(s), "
          f"seed {args.seed}, {result.seconds:.1f} s")
    print(kpi_table(result.summary, detail_rows(result.scenario, result.results)))
    print()
    print(text_table(value_table(result.scenario, result.results)))
    print()
    print(answer_text(simulation_answer(result.scenario, result.summary, result.results)))
    if args.events:
        print(f"\nevent logs: {out / 'events'}/replication-0.csv … "
              f"replication-{args.replications - 1}.csv")
    print(f"\nresults: {out}  (open report.html)")
    return 0
