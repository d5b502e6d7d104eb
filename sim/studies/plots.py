"""Figures for sweeps, tuning and sensitivity analysis (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from sim.labels import Names, compact, fmt_kpi, kpi_axis, kpi_unit
from sim.plotstyle import cjk_font
from sim.studies.runs import PointResult, SweepResult

cjk_font()  # Chinese SKU, phase and segment names render as text

MAX_LINES = 8


def _kpi(name: str) -> str:
    """A KPI's name with its unit: `gross profit (yuan)`, `group completion rate (%)`."""
    return kpi_axis(name)


def _ticks(kpi: str, *, say_yuan: bool = True) -> FuncFormatter:
    """Tick labels in the KPI's unit: `28.8k yuan`, `56%` (on a crowded x axis `28.8k`, the
    axis label saying yuan)."""
    unit = kpi_unit(kpi)
    if unit == "%":
        return FuncFormatter(lambda v, _: f"{v:.0%}")
    if unit == "yuan" and say_yuan:
        return FuncFormatter(lambda v, _: f"{compact(v)} yuan" if v else "0")
    return FuncFormatter(lambda v, _: compact(v))


def _grid(n: int, width: float = 4.6, height: float = 3.4) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_plots(sweep: SweepResult, kpis: Sequence[str]) -> list[Path]:
    """KPI vs each numeric parameter (with CI bands), a heat map over the first two numeric
    parameters, and the feasible region when constraints are given."""
    points = [p for p in sweep.points if p.summary]
    numeric = [p.key for p in sweep.params
               if all(_is_number(pt.params[p.key]) for pt in sweep.points)]
    kpis = [k for k in kpis if points and k in points[0].summary]
    files: list[Path] = []
    if not points or not kpis:
        return files
    names = sweep.names
    for key in numeric:
        files.append(_kpi_vs_param(points, key, [k for k in numeric if k != key], kpis,
                                   sweep.out_dir / f"kpi_vs_{_slug(key)}.png", names,
                                   sweep.best))
    if len(numeric) >= 2:
        files.append(_heatmaps(points, numeric[0], numeric[1], kpis,
                               sweep.out_dir / "heatmap.png", names, sweep.best))
    if sweep.constraints and numeric:
        files.append(_feasible(points, numeric[:2], sweep, sweep.out_dir / "feasible.png"))
    return files


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _slug(key: str) -> str:
    """`campaign.groups.tiers[1].percent_off` -> `tiers_1_percent_off` for file names."""
    parts = key.split(".")
    short = ".".join(parts[-2:]) if len(parts) > 2 else key
    return "".join(c if c.isalnum() else "_" for c in short).strip("_")


def _kpi_vs_param(points: Sequence[PointResult], key: str, others: list[str],
                  kpis: Sequence[str], path: Path, names: Names,
                  best: PointResult | None) -> Path:
    groups: dict[tuple[Any, ...], list[PointResult]] = {}
    for p in points:
        groups.setdefault(tuple(p.params[k] for k in others), []).append(p)
    # A grid gives a few lines (one per setting of the other parameters); a sampled design
    # gives scattered points, shown with their CIs as error bars.
    as_lines = len(groups) <= MAX_LINES and all(len(g) > 1 for g in groups.values())
    fig, axes = _grid(len(kpis))
    for ax, kpi in zip(axes, kpis, strict=True):
        if as_lines:
            for label, group in sorted(groups.items()):
                group = sorted(group, key=lambda p: p.params[key])
                x = [p.params[key] for p in group]
                s = [p.summary[kpi] for p in group]
                name = names.point(dict(zip(others, label, strict=True)))
                line, = ax.plot(x, [v.mean for v in s], marker="o", label=name or None)
                ax.fill_between(x, [v.ci_low for v in s], [v.ci_high for v in s],
                                color=line.get_color(), alpha=0.2)
            if others:
                ax.legend(fontsize=6)
        else:
            x = np.array([p.params[key] for p in points], dtype=float)
            s = [p.summary[kpi] for p in points]
            mean = np.array([v.mean for v in s])
            err = np.array([[v.mean - v.ci_low for v in s], [v.ci_high - v.mean for v in s]])
            ax.errorbar(x, mean, yerr=err, fmt="o", ms=3, capsize=2, alpha=0.8)
        if best is not None:
            ax.plot([best.params[key]], [best.mean(kpi)], marker="*", ms=14, color="tab:red",
                    linestyle="none", label="best feasible point", zorder=5)
        ax.set_xlabel(names.param(key), fontsize=8)
        ax.yaxis.set_major_formatter(_ticks(kpi))
        ax.set_title(_kpi(kpi), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"KPI means vs {names.param(key)} (bands/bars: 95% CI; "
                 "red star: the best feasible point)", fontsize=10)
    return _save(fig, path)


def _heatmaps(points: Sequence[PointResult], kx: str, ky: str, kpis: Sequence[str],
              path: Path, names: Names, best: PointResult | None) -> Path:
    xs = sorted({p.params[kx] for p in points})
    ys = sorted({p.params[ky] for p in points})
    is_grid = len(xs) * len(ys) <= len(points) and len(xs) <= 30 and len(ys) <= 30
    wide = is_grid and len(xs) > 3  # the unit goes under the number, to fit the cell
    fig, axes = _grid(len(kpis), max(4.6, 0.75 * len(xs) + 2.2) if is_grid else 4.6,
                      max(3.4, 0.45 * len(ys) + 2.2) if is_grid else 3.4)
    for ax, kpi in zip(axes, kpis, strict=True):
        if is_grid:
            # Mean over any further parameters: a cell is one (x, y) setting.
            cells: dict[tuple[Any, Any], list[float]] = {}
            for p in points:
                cells.setdefault((p.params[kx], p.params[ky]), []).append(p.mean(kpi))
            z = np.full((len(ys), len(xs)), np.nan)
            for (x, y), vals in cells.items():
                z[ys.index(y), xs.index(x)] = float(np.mean(vals))
            im = ax.imshow(z, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(xs)), [names.value(kx, v) for v in xs], fontsize=7)
            ax.set_yticks(range(len(ys)), [names.value(ky, v) for v in ys], fontsize=7)
            if z.size <= 64:
                mid = np.nanmin(z) + 0.6 * (np.nanmax(z) - np.nanmin(z))
                for (r, c), v in np.ndenumerate(z):
                    if not np.isnan(v):
                        text = fmt_kpi(kpi, v)
                        ax.text(c, r, text.replace(" ", "\n", 1) if wide else text,
                                ha="center", va="center", fontsize=7,
                                color="black" if v > mid else "white")
            if best is not None:
                bx, by = xs.index(best.params[kx]), ys.index(best.params[ky])
                ax.add_patch(Rectangle((bx - 0.5, by - 0.5), 1, 1, fill=False,
                                       edgecolor="red", linewidth=2.5))
        else:
            im = ax.scatter([p.params[kx] for p in points], [p.params[ky] for p in points],
                            c=[p.mean(kpi) for p in points], cmap="viridis", s=30)
            if best is not None:
                ax.plot([best.params[kx]], [best.params[ky]], marker="*", ms=16,
                        color="red", linestyle="none")
        bar = fig.colorbar(im, ax=ax, shrink=0.8, format=_ticks(kpi))
        bar.ax.tick_params(labelsize=7)
        ax.set_xlabel(names.param(kx), fontsize=8)
        ax.set_ylabel(names.param(ky), fontsize=8)
        ax.set_title(_kpi(kpi), fontsize=9)
    fig.suptitle("KPI means over two parameters" + (" (red box: the best feasible point)"
                                                    if best is not None else ""), fontsize=10)
    return _save(fig, path)


def _feasible(points: Sequence[PointResult], keys: list[str], sweep: SweepResult,
              path: Path) -> Path:
    ok = [p for p in points if p.feasible]
    bad = [p for p in points if not p.feasible]
    rule = " and ".join(c.text() for c in sweep.constraints)
    names = sweep.names
    if len(keys) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4.6))
        kx, ky = keys
        ax.scatter([p.params[kx] for p in bad], [p.params[ky] for p in bad], marker="x",
                   color="tab:red", label=f"infeasible ({len(bad)})")
        ax.scatter([p.params[kx] for p in ok], [p.params[ky] for p in ok], marker="o",
                   color="tab:green", label=f"feasible ({len(ok)})")
        if sweep.best is not None:
            ax.plot([sweep.best.params[kx]], [sweep.best.params[ky]], marker="*", ms=16,
                    color="tab:blue", linestyle="none", label="best feasible point")
        ax.set_xlabel(names.param(kx))
        ax.set_ylabel(names.param(ky))
        ax.legend(fontsize=7)
        ax.set_title(f"Feasible region: {rule}", fontsize=9)
        return _save(fig, path)
    # One parameter: each constrained KPI against it, with its bound.
    key = keys[0]
    fig, axes = _grid(len(sweep.constraints))
    for ax, c in zip(axes, sweep.constraints, strict=True):
        for group, style, label in ((ok, "o", "feasible"), (bad, "x", "infeasible")):
            ax.scatter([p.params[key] for p in group], [p.mean(c.kpi) for p in group],
                       marker=style, color="tab:green" if group is ok else "tab:red",
                       label=f"{label} ({len(group)})")
        ax.axhline(c.bound, color="grey", linestyle="--", label=c.text())
        ax.set_xlabel(names.param(key))
        ax.set_ylabel(_kpi(c.kpi))
        ax.yaxis.set_major_formatter(_ticks(c.kpi))
        ax.legend(fontsize=7)
    fig.suptitle(f"Feasible region: {rule}", fontsize=10)
    return _save(fig, path)


def pareto_plot(trials: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]],
                objectives: Sequence[str], path: Path) -> Path:
    """All trials of a two-objective study (infeasible crossed out) with the Pareto front."""
    fx, fy = objectives
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    feas = [t for t in trials if t["feasible"]]
    infeas = [t for t in trials if not t["feasible"]]
    ax.scatter([t[fx] for t in feas], [t[fy] for t in feas], color="tab:blue", alpha=0.5,
               s=18, label=f"feasible trials ({len(feas)})")
    ax.scatter([t[fx] for t in infeas], [t[fy] for t in infeas], color="tab:red", marker="x",
               alpha=0.6, s=18, label=f"infeasible trials ({len(infeas)})")
    ordered = sorted(front, key=lambda t: t[fx])
    ax.plot([t[fx] for t in ordered], [t[fy] for t in ordered], color="black", marker="o",
            label=f"Pareto front ({len(front)})")
    ax.set_xlabel(_kpi(fx))
    ax.set_ylabel(_kpi(fy))
    ax.xaxis.set_major_formatter(_ticks(fx, say_yuan=False))
    ax.yaxis.set_major_formatter(_ticks(fy))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Pareto front (feasible, non-dominated trials)", fontsize=10)
    return _save(fig, path)


def history_plot(trials: Sequence[dict[str, Any]], objective: str, maximize: bool,
                 path: Path) -> Path:
    """Objective per trial (infeasible crossed out) and the best feasible value so far."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    feas = [t for t in trials if t["feasible"]]
    infeas = [t for t in trials if not t["feasible"]]
    ax.scatter([t["trial"] for t in feas], [t[objective] for t in feas], s=14,
               color="tab:blue", label="feasible")
    ax.scatter([t["trial"] for t in infeas], [t[objective] for t in infeas], s=14, marker="x",
               color="tab:red", label="infeasible")
    best, xs, ys = None, [], []
    for t in sorted(trials, key=lambda t: t["trial"]):
        if t["feasible"] and (best is None or (t[objective] > best if maximize
                                               else t[objective] < best)):
            best = t[objective]
        if best is not None:
            xs.append(t["trial"])
            ys.append(best)
    ax.step(xs, ys, where="post", color="black", label="best feasible so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(_kpi(objective))
    ax.yaxis.set_major_formatter(_ticks(objective))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def indices_plot(rows: Sequence[dict[str, Any]], kpi: str, method: str, path: Path,
                 names: Names) -> Path:
    """Bars per parameter: Sobol S1 and ST, or Morris mu* and sigma, with confidence bars."""
    labels = [names.param(r["param"]) for r in rows]
    first, total = (("S1", "ST") if method == "sobol" else ("mu_star", "sigma"))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(rows) + 2), 4.2))
    ax.bar(x - 0.2, [r[first] for r in rows], 0.4, label=first,
           yerr=[r[f"{first}_conf"] for r in rows], capsize=3)
    second_err = [r.get(f"{total}_conf", 0.0) for r in rows]
    ax.bar(x + 0.2, [r[total] for r in rows], 0.4, label=total, yerr=second_err, capsize=3)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    if method == "morris":
        ax.set_ylabel(f"effect on {_kpi(kpi)}", fontsize=8)
        ax.yaxis.set_major_formatter(_ticks(kpi) if kpi_unit(kpi) == "yuan"
                                     else FuncFormatter(lambda v, _: compact(v)))
    else:
        ax.set_ylabel("share of the KPI's variance", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(f"{method} indices: {_kpi(kpi)} (bars: 95% confidence)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
