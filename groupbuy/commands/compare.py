"""`groupbuy compare A B`: two scenarios under common random numbers, KPI differences B - A."""

from __future__ import annotations

import argparse
from pathlib import Path

from groupbuy.commands._common import run_dir
from groupbuy.commands.simulate import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two scenarios: KPI differences B - A with 95%% "
                       "CIs (common random numbers)")
    p.add_argument("a", metavar="A", help="baseline scenario file (TOML)")
    p.add_argument("b", metavar="B", help="alternative scenario file (TOML)")
    add_run_options(p, "results/<A>-vs-<B>-compare-<timestamp>")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim import compare_scenarios, load_simulatable, write_comparison
    from sim.compare import compare_page
    from sim.page import answer_text
    from sim.report import KPI_LABELS, fmt

    a, b = load_simulatable(args.a), load_simulatable(args.b)
    cmp = compare_scenarios(a, b, replications=args.replications, seed=args.seed,
                            progress=True)
    out = run_dir(f"{Path(args.a).stem}-vs-{Path(args.b).stem}", args.out, kind="compare")
    write_comparison(out, cmp, args.a, args.b)
    page = compare_page(cmp, args.a, args.b, out)
    page.write(out / "report.html")
    rows = [("KPI", "A", "B", "B - A", "95% CI of B - A", "")]
    for k, d in cmp.diff.items():
        rows.append((KPI_LABELS.get(k, k), fmt(cmp.a_summary[k].mean), fmt(cmp.b_summary[k].mean),
                     fmt(d.mean), f"[{fmt(d.ci_low)}, {fmt(d.ci_high)}]",
                     "*" if cmp.significant(k) else ""))
    w = [max(len(r[i]) for r in rows) for i in range(6)]
    print(f"A = {args.a}\nB = {args.b}\n{args.replications} paired replication(s), seed "
          f"{args.seed} (common random numbers)\n")
    for i, r in enumerate(rows):
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  "
              f"{r[4]:<{w[4]}}  {r[5]}".rstrip())
        if i == 0:
            print("-" * (sum(w) + 10))
    print("\n* the 95% CI of B - A excludes 0\n")
    print(answer_text(page.answer))
    print(f"results: {out}  (open report.html)")
    return 0
