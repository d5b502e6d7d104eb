"""`groupbuy tune SCENARIO --param KEY=lo:hi … --objective KPI[:max|min]`: search scenario
settings with Optuna under KPI constraints; one objective gives the best point (re-estimated on
fresh replications), two give the Pareto front. Studies resume from results/tuning/<study>.db."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from campaign.scenario import read_scenario_data
from groupbuy.commands._common import RESULTS, add_scenario_arg, number, run_dir
from groupbuy.commands.sweep import add_executor_args, open_executor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="find the best settings with Optuna (constraints, Pareto)",
                       description=__doc__)
    add_scenario_arg(p)
    p.add_argument("--param", action="append", default=[], metavar="KEY=lo:hi",
                   help="a dotted scenario key and its range (or V1,V2,… choices); repeatable")
    p.add_argument("--objective", action="append", default=[], metavar="KPI[:max|min]",
                   help="KPI to maximise (:max, the default) or minimise (:min); one gives "
                   "the best point, two a Pareto front")
    p.add_argument("--constraint", action="append", default=[], metavar="KPI>=X",
                   help="a trial is feasible only if its KPI means meet every constraint")
    p.add_argument("--trials", type=number(int, 1), default=40, metavar="N",
                   help="trials in the study in total (a resumed study runs the missing ones)")
    p.add_argument("--replications", type=number(int, 1), default=3, metavar="R",
                   help="replications per trial (common random numbers)")
    p.add_argument("--fresh-replications", type=number(int, 1), default=10, metavar="F",
                   help="fresh replications to re-estimate the best point")
    p.add_argument("--seed", type=number(int, 0), default=1, metavar="S",
                   help="random seed of the sampler and the simulations")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="study name (default: scenario-objectives); stored in "
                        "results/tuning/NAME.db")
    add_executor_args(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: results/<scenario>-tune-<timestamp>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim import KPI_NAMES
    from sim.page import answer_text
    from sim.studies.params import parse_constraint, parse_objective, parse_param
    from sim.studies.tune import TuneSettings, check_settings, check_study_name, run_tune

    data = read_scenario_data(args.scenario)
    settings = TuneSettings(
        params=tuple(parse_param(p, "--param") for p in args.param),
        objectives=tuple(parse_objective(o, KPI_NAMES) for o in args.objective),
        constraints=tuple(parse_constraint(c, KPI_NAMES) for c in args.constraint),
        trials=args.trials, replications=args.replications,
        fresh_replications=args.fresh_replications, seed=args.seed)
    study = args.study or "-".join([Path(args.scenario).stem,
                                    *(o.kpi for o in settings.objectives)])
    check_study_name(study)
    check_settings(settings, data, args.scenario)
    storage = RESULTS / "tuning" / f"{study}.db"
    with open_executor(args) as executor:
        out = run_dir(args.scenario, args.out, "tune")
        print(f"tune: study {study} in {storage}, running on {executor.name}", file=sys.stderr)
        result = run_tune(data, args.scenario, settings, study_name=study, storage=storage,
                          executor=executor, out_dir=out)
    for line in result.failures:
        print(f"trial failed: {line}", file=sys.stderr)
    n_failed = sum(1 for r in result.rows if r["state"] == "FAIL")
    print(f"study {study}: {len(result.rows)} trials ({result.new_trials} new): "
          f"{len(result.feasible_rows)} feasible, {len(result.infeasible_rows)} infeasible, "
          f"{n_failed} failed")
    assert result.page is not None
    print(answer_text(result.page.answer))
    if len(settings.objectives) == 1 and result.best is not None:
        obj, value = settings.objectives[0], result.best["objective"]["tuning_mean"]
        better = [r for r in result.infeasible_rows
                  if (r[obj.kpi] > value if obj.direction == "maximize" else r[obj.kpi] < value)]
        if better:
            print(f"{len(better)} infeasible trial(s) scored better on {obj.kpi} but break a "
                  "constraint (trials.csv, column 'violated'); they are never returned")
    status = 0 if (result.best if len(settings.objectives) == 1 else result.front) else 1
    print(f"wrote {', '.join(f.name for f in result.files)} to {out}  (open report.html)")
    return status

