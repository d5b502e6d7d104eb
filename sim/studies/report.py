"""report.html for sweeps, tuning and sensitivity analysis: the answer on top (the best point
with its CI, the feasible region, what it costs and earns in yuan), then every point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.labels import Names, fmt_kpi, kpi_axis, kpi_name
from sim.page import Answer, Measured, Page, Table, with_ci
from sim.report import money_rows
from sim.stats import KpiSummary
from sim.studies.params import Constraint, Param
from sim.studies.runs import SweepResult

if TYPE_CHECKING:
    from sim.studies.sensitivity import SensitivityPlan, SensitivityResult
    from sim.studies.sweep import SweepPlan
    from sim.studies.tune import TuneResult, TuneSettings

MAX_ROWS = 40
"""Rows of a points or trials table; the CSV files have them all."""


def _budget(base: Mapping[str, Any], params: Mapping[str, Any]) -> float | None:
    """The subsidy budget at a point (it may be one of the parameters)."""
    value = params.get("campaign.subsidy_budget",
                       base.get("campaign", {}).get("subsidy_budget"))
    return float(value) if value else None


def _rule(constraints: Sequence[Constraint]) -> str:
    return " and ".join(c.text() for c in constraints)


def region(names: Names, params: Sequence[Param], ok: Sequence[Mapping[str, Any]],
           bad: Sequence[Mapping[str, Any]]) -> str:
    """Where the feasible points lie, parameter by parameter (`group window 2 h – 12 h`), and
    on which side of that range the infeasible ones are when one parameter separates them."""
    parts = []
    for p in params:
        values = [r[p.key] for r in ok if isinstance(r.get(p.key), int | float)]
        other = [r[p.key] for r in bad if isinstance(r.get(p.key), int | float)]
        if not values:
            continue
        lo, hi = min(values), max(values)
        text = f"{names.name(p.key)} {names.value(p.key, lo)} – {names.value(p.key, hi)}"
        if other and max(other) < lo:
            text += f" (every point at {names.value(p.key, max(other))} or less fails)"
        elif other and min(other) > hi:
            text += f" (every point at {names.value(p.key, min(other))} or more fails)"
        parts.append(text)
    return "; ".join(parts)


def _constraint_rows(summary: Mapping[str, KpiSummary],
                     constraints: Sequence[Constraint]) -> list[tuple[str, str]]:
    return [(f"{kpi_name(c.kpi)} (needs {c.text().removeprefix(kpi_name(c.kpi)).strip()})",
             with_ci(c.kpi, summary[c.kpi])) for c in constraints if c.kpi in summary]


def _base_name(base: Mapping[str, Any], source: str) -> str:
    return str(base.get("campaign", {}).get("name") or Path(source).stem)


def sweep_page(sweep: SweepResult, plan: SweepPlan, figures: Sequence[Path]) -> Page:
    """The sweep's report: the best feasible point, where the feasible region is, every point."""
    names, obj = sweep.names, plan.objective
    best = sweep.best
    done = [p for p in sweep.points if p.summary]
    ok = [p for p in done if p.feasible is not False]
    if done and obj.kpi not in done[0].summary:
        answer = Answer(f"The runs report no {kpi_name(obj.kpi)} to rank the points by",
                        warnings=["choose a KPI the model reports with --objective"])
    elif best is None:
        answer = Answer("No point meets the constraints" if done else "No point ran",
                        warnings=["loosen the constraints or sweep other values "
                                  "(points.csv, column 'feasible')"] if done else [])
    else:
        way = "highest" if obj.direction == "maximize" else "lowest"
        answer = Answer(f"Best point: {names.point(best.params)}",
                        [(f"{kpi_name(obj.kpi)} ({way} of the feasible points)",
                          with_ci(obj.kpi, best.summary[obj.kpi]))])
        answer.rows += money_rows(best.summary, _budget(plan.base, best.params))
        answer.rows += _constraint_rows(best.summary, plan.constraints)
        close = [p for p in ok if p is not best and _overlaps(p.summary[obj.kpi],
                                                               best.summary[obj.kpi])]
        answer.rows.append(("as good within noise", f"{len(close)} other feasible point(s) whose "
                            "95% CI overlaps the best's" if close else "no other point: the "
                            "best is clearly ahead"))
    if plan.constraints:
        bad = [p for p in done if p.feasible is False]
        where = region(names, plan.params, [p.params for p in ok], [p.params for p in bad])
        answer.rows.append(("feasible region", f"{len(ok)} of {len(done)} points meet "
                            f"{_rule(plan.constraints)}" + (f": {where}" if ok else "")))
    facts = [("scenario file", plan.source),
             ("varied", "; ".join(f"{names.param(p.key)} [{p.key}]" for p in plan.params)),
             ("points x replications", f"{len(plan.points)} x {plan.replications} "
                                        "(common random numbers)"),
             ("seed", str(plan.seed)), ("objective", f"{obj.direction[:3]} {kpi_axis(obj.kpi)}")]
    if plan.constraints:
        facts.append(("constraints", _rule(plan.constraints)))
    return Page(f"Sweep: {_base_name(plan.base, plan.source)}", answer, facts,
                [_points_table(sweep, plan)],
                [(f, _caption(f)) for f in figures])


def _overlaps(a: KpiSummary, b: KpiSummary) -> bool:
    return a.ci_high >= b.ci_low and b.ci_high >= a.ci_low


def _caption(path: Path) -> str:
    if path.name == "heatmap.png":
        return "KPI means over the first two parameters; the red box is the best feasible point"
    if path.name == "feasible.png":
        return "Which points meet the constraints"
    return "KPI means against one parameter (bands: 95% CI); the red star is the best point"


def _points_table(sweep: SweepResult, plan: SweepPlan) -> Table:
    obj = plan.objective
    have = next((p.summary for p in sweep.points if p.summary), {})
    kpis = [k for k in dict.fromkeys([obj.kpi, *(c.kpi for c in plan.constraints),
                                      "subsidy_spent", "revenue"]) if k in have]
    sign = -1 if obj.direction == "maximize" else 1
    points = sorted((p for p in sweep.points if p.summary),
                    key=lambda p: (p.feasible is False,
                                   sign * p.mean(obj.kpi) if obj.kpi in have else p.index))
    head = ("point", *(sweep.names.param(p.key) for p in plan.params),
            *(kpi_axis(k) for k in kpis), *(("meets constraints",) if plan.constraints else ()))
    rows = [(str(p.index), *(sweep.names.value(k.key, p.params[k.key]) for k in plan.params),
             *(Measured(k, p.summary[k]) for k in kpis),
             *((("yes" if p.feasible else "no"),) if plan.constraints else ()))
            for p in points[:MAX_ROWS]]
    more = f" The first {MAX_ROWS} of {len(points)} are shown." if len(points) > MAX_ROWS else ""
    return ("Every point, best first", head, rows,
            f"Mean [95% CI] over the replications; points.csv and runs.csv have every value.{more}")


def tune_page(result: TuneResult, settings: TuneSettings, base: Mapping[str, Any],
              source: str) -> Page:
    """The tuning report: the best trial re-estimated on fresh replications (one objective) or
    the Pareto front (two), the feasible region, and the best trials."""
    names = Names(base)
    complete = [r for r in result.rows if r["state"] == "COMPLETE"]
    ok, bad = result.feasible_rows, result.infeasible_rows
    figures: list[tuple[Path, str]] = []
    if len(settings.objectives) == 1:
        answer = _best_answer(result.best, settings, names, base)
        figures += [(f, "The objective per trial; the line is the best feasible so far")
                    for f in result.files if f.name == "history.png"]
    else:
        answer = _front_answer(result.front, settings, names)
        figures += [(f, "Every trial and the Pareto front (feasible, non-dominated)")
                    for f in result.files if f.name == "pareto.png"]
    if settings.constraints:
        answer.rows.append(("feasible region", f"{len(ok)} of {len(complete)} trials meet "
                            f"{_rule(settings.constraints)}"
                            + (f": {region(names, settings.params, ok, bad)}" if ok else "")))
    facts = [("scenario file", source), ("study", f"{result.study} ({result.storage})"),
             ("searched", "; ".join(f"{names.param(p.key)} [{p.key}]"
                                    for p in settings.params)),
             ("objectives", ", ".join(f"{o.direction[:3]} {kpi_axis(o.kpi)}"
                                      for o in settings.objectives)),
             ("trials x replications", f"{len(result.rows)} x {settings.replications}"),
             ("seed", str(settings.seed))]
    if settings.constraints:
        facts.append(("constraints", _rule(settings.constraints)))
    return Page(f"Tuning: {_base_name(base, source)}", answer, facts,
                [_trials_table(result, settings, names)], figures)


def _best_answer(best: dict[str, Any] | None, settings: TuneSettings, names: Names,
                 base: Mapping[str, Any]) -> Answer:
    if best is None:
        return Answer("No feasible trial", warnings=[
            "nothing meets the constraints: loosen them or widen the ranges (trials.csv, "
            "column 'violated')"])
    obj = settings.objectives[0]
    fresh = {k: KpiSummary(**v) for k, v in best["kpis"].items()}
    answer = Answer(f"Best point (trial {best['trial']}): {names.point(best['params'])}")
    if obj.kpi in fresh:
        answer.rows.append((f"{kpi_name(obj.kpi)} on {best['fresh_replications']} fresh "
                            "replications", with_ci(obj.kpi, fresh[obj.kpi])))
    answer.rows.append(("the same during the search (optimistic: it was picked as the best)",
                        fmt_kpi(obj.kpi, best["objective"]["tuning_mean"])))
    if fresh:
        answer.rows += money_rows(fresh, _budget(base, best["params"]))
        answer.rows += _constraint_rows(fresh, settings.constraints)
    if not best["feasible_on_fresh_replications"]:
        answer.warnings.append("on fresh replications the best point does not meet every "
                               "constraint: it sits at the edge; re-tune with more replications")
    return answer


def _front_answer(front: Sequence[dict[str, Any]], settings: TuneSettings,
                  names: Names) -> Answer:
    if not front:
        return Answer("No feasible trial: the Pareto front is empty",
                      warnings=["loosen the constraints or widen the ranges"])
    a, b = (o.kpi for o in settings.objectives)
    answer = Answer(f"Pareto front: {len(front)} trials where neither {kpi_name(a)} nor "
                    f"{kpi_name(b)} can improve without the other getting worse")
    for r in front:
        point = names.point({p.key: r[p.key] for p in settings.params})
        answer.rows.append((f"trial {r['trial']}: {point}",
                            f"{fmt_kpi(a, r[a], short=False)}, {fmt_kpi(b, r[b], short=False)}"))
    return answer


def _trials_table(result: TuneResult, settings: TuneSettings, names: Names) -> Table:
    obj = settings.objectives[0]
    kpis = list(dict.fromkeys([*(o.kpi for o in settings.objectives),
                               *(c.kpi for c in settings.constraints), "subsidy_spent"]))
    sign = -1 if obj.direction == "maximize" else 1
    rows = sorted((r for r in result.rows if r["state"] == "COMPLETE"),
                  key=lambda r: (not r["feasible"], sign * r[obj.kpi]))
    head = ("trial", *(names.param(p.key) for p in settings.params),
            *(kpi_axis(k) for k in kpis), "meets constraints")
    cells = [(str(r["trial"]), *(names.value(p.key, r[p.key]) for p in settings.params),
              *(fmt_kpi(k, r[f"mean_{k}"], short=False) for k in kpis),
              "yes" if r["feasible"] else "no: " + _broken(r, settings.constraints))
             for r in rows[:MAX_ROWS]]
    more = f" The first {MAX_ROWS} of {len(rows)} are shown." if len(rows) > MAX_ROWS else ""
    return ("Trials, best first", head, cells,
            "KPI means over the trial's replications (common random numbers); trials.csv has "
            f"every KPI.{more}")


def _broken(row: Mapping[str, Any], constraints: Sequence[Constraint]) -> str:
    kpis = {c.kpi: row[f"mean_{c.kpi}"] for c in constraints}
    return "; ".join(c.text() for c in constraints if not c.holds(kpis))


def sensitivity_page(result: SensitivityResult, plan: SensitivityPlan,
                     kpi_means: Sequence[Mapping[str, float]], kpis: Sequence[str],
                     base: Mapping[str, Any], figures: Sequence[Path]) -> Page:
    """The sensitivity report: which parameter drives each KPI, and how far the money moves."""
    names = Names(base)
    first, total = ("S1", "ST") if plan.method == "sobol" else ("mu_star", "sigma")
    drivers: list[tuple[str, str]] = []
    for kpi in kpis:
        rows = sorted((r for r in result.rows if r["kpi"] == kpi), key=lambda r: -r[total])
        if rows:
            drivers.append((kpi_name(kpi), "; ".join(_index_text(r, total, plan.method, names)
                                                      for r in rows[:2])))
    main = next((k for k in kpis if any(r["kpi"] == k for r in result.rows)), None)
    if main is None:
        answer = Answer("No KPI varied over the design: nothing to attribute")
    else:
        top = max((r for r in result.rows if r["kpi"] == main), key=lambda r: r[total])
        answer = Answer(f"{kpi_name(main).capitalize()} depends most on "
                        f"{names.name(top['param'])}")
        if plan.method == "sobol" and top[f"{total}_conf"] > top[total]:
            answer.warnings.append(f"the indices are uncertain (95% interval ± "
                                   f"{_num(top[total + '_conf'])} around {_num(top[total])}): "
                                   "run more --samples before trusting the ranking")
    answer.rows += [(f"drives {k}", v) for k, v in drivers]
    for kpi in ("revenue", "subsidy_spent", "gross_profit", "profit"):
        values = [m[kpi] for m in kpi_means if kpi in m]
        if values:
            answer.rows.append((f"{kpi_name(kpi)} across the sampled settings",
                                f"{fmt_kpi(kpi, min(values))} to {fmt_kpi(kpi, max(values))}"))
    facts = [("scenario file", plan.source), ("method", plan.method),
             ("parameters", "; ".join(f"{names.param(p.key)} [{p.key}] "
                                      f"{names.value(p.key, p.low)} – {names.value(p.key, p.high)}"
                                      for p in plan.params)),
             ("sample points x replications", f"{len(plan.points)} x {plan.replications}"),
             ("seed", str(plan.seed))]
    head = ("KPI", "parameter", f"{first} (± 95%)", f"{total}" + (" (± 95%)" if plan.method ==
                                                                   "sobol" else ""))
    rows = [(kpi_name(r["kpi"]), names.param(r["param"]),
             f"{_num(r[first])} ± {_num(r[first + '_conf'])}",
             _num(r[total]) + (f" ± {_num(r[total + '_conf'])}" if f"{total}_conf" in r else ""))
            for r in result.rows if r["kpi"] in kpis]
    note = ("Sobol: S1 = the share of the KPI's variance the parameter explains alone, ST = with "
            "its interactions (0..1)." if plan.method == "sobol" else
            "Morris: mu* = mean absolute effect in the KPI's unit over the range; sigma = "
            "interactions and non-linearity.")
    return Page(f"Sensitivity: {_base_name(base, plan.source)}", answer, facts,
                [("Indices", head, rows, note + " indices.csv has every KPI.")],
                [(f, "Indices per parameter (bars: 95% confidence)") for f in figures])


def _index_text(row: Mapping[str, Any], total: str, method: str, names: Names) -> str:
    value = _num(row[total]) + (f" ± {_num(row[total + '_conf'])}" if method == "sobol" else "")
    return f"{names.name(row['param'])} ({total} {value})"


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"

