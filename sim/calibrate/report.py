"""The fit report: every estimate with its 95% interval, and the log against the fitted
scenario's simulation by hour, by group tier and by after-campaign cohort, each curve with a
goodness-of-fit figure (Pearson χ² over its bins, `chi_square`)."""

from __future__ import annotations

import base64
import csv
import html
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
import numpy as np
from scipy import stats

from campaign.audience import CHANNELS
from campaign.scenario import Scenario
from sim.calibrate.fit import Calibration, acquired_buyers
from sim.calibrate.log import Events

MIN_EXPECTED = 5.0
"""Bins expecting fewer events are pooled out of the χ² (its approximation needs a few)."""


@dataclass(frozen=True)
class Fit:
    """Goodness of fit of one curve: Pearson χ², its degrees of freedom and p-value."""

    curve: str
    chi2: float
    dof: int
    p_value: float

    def __str__(self) -> str:
        if not self.dof:
            return f"{self.curve}: too few events to judge"
        return f"{self.curve}: χ² = {self.chi2:.1f} on {self.dof} bins, p = {self.p_value:.2f}"


def chi_square(curve: str, observed: np.ndarray, expected: np.ndarray, replications: int,
               logs: int = 1) -> Fit:
    """Pearson χ² of counts observed over `logs` campaigns against `logs` × the simulated mean
    of `replications` runs. That mean is itself noisy, so each bin's variance is
    E × (1 + logs / replications)."""
    o, e = np.ravel(observed).astype(float), np.ravel(expected).astype(float)
    use = e >= MIN_EXPECTED
    if use.sum() < 2:
        return Fit(curve, 0.0, 0, 1.0)
    chi2 = float((((o[use] - e[use]) ** 2) / (e[use] * (1 + logs / replications))).sum())
    dof = int(use.sum())
    return Fit(curve, chi2, dof, float(stats.chi2.sf(chi2, dof)))


@dataclass(frozen=True)
class _Scaled:
    """A simulated log standing for `times` campaigns (its counts multiplied)."""

    events: Events
    times: int


def _hourly(ev: Events | _Scaled, kind: str, hours: int) -> np.ndarray:
    if isinstance(ev, _Scaled):
        return _hourly(ev.events, kind, hours) * ev.times
    t = ev.time[ev.of(kind)]
    t = t[t < hours]
    return np.bincount(t.astype(np.int64), minlength=hours)[:hours].astype(float)


def _tiers(ev: Events | _Scaled, labels: list[str]) -> np.ndarray:
    if isinstance(ev, _Scaled):
        return _tiers(ev.events, labels) * ev.times
    done = ev.of("group_complete")
    counts = [float((ev.detail[done] == lab).sum()) for lab in labels[:-1]]
    return np.array([*counts, float(len(ev.of("group_fail")))])


def _cohort(ev: Events | _Scaled, scenario: Scenario) -> np.ndarray:
    if isinstance(ev, _Scaled):
        return _cohort(ev.events, scenario) * ev.times
    """Repurchases per period after the sale, per acquisition channel: (channels, periods)."""
    after = scenario.audience.after_campaign  # type: ignore[union-attr]
    k = math.ceil(after.horizon_days / after.period_days)
    user, _, chan = acquired_buyers(ev, scenario)
    channel_of = np.full(ev.n_users, -1)
    channel_of[user] = chan
    rep = ev.of("repurchase")
    c = channel_of[ev.user[rep]]
    day = (ev.time[rep] - scenario.campaign.duration_hours) / 24
    ok = (c >= 0) & (day >= 0) & (day < after.horizon_days)
    out = np.zeros((len(CHANNELS), k))
    np.add.at(out, (c[ok], np.minimum((day[ok] // after.period_days).astype(np.int64), k - 1)), 1)
    return out


def write_fit_report(out_dir: Path, cal: Calibration, observed: Events, *, events_path: str,
                     base_path: str, fitted_path: str) -> tuple[list[Path], list[Fit]]:
    """estimates.csv, by_hour.png, by_tier.png, by_cohort.png and fit_report.html in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sc, r = cal.scenario, len(cal.simulated)
    # several logs read together: compare with as many simulated campaigns
    sims = [_Scaled(s, observed.logs) for s in cal.simulated]
    files = [out_dir / "estimates.csv"]
    with files[0].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "estimate", "ci_low", "ci_high", "base", "n", "method"])
        for e in cal.estimates:
            w.writerow([e.key, f"{e.value:.6g}", f"{e.ci_low:.6g}", f"{e.ci_high:.6g}",
                        "" if e.base is None else f"{e.base:.6g}", e.n, e.method])
    fits: list[Fit] = []
    hours = math.ceil(sc.campaign.duration_hours - 1e-9)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, kind, name in zip(axes, ("visit", "reserve", "pay"),
                              ("first-time visits", "reservations", "payments"), strict=True):
        obs = _hourly(observed, kind, hours)
        sim = np.array([_hourly(s, kind, hours) for s in sims])
        fit = chi_square(f"{name} by hour", obs, sim.mean(axis=0), r, observed.logs)
        fits.append(fit)
        x = np.arange(hours) + 0.5
        ax.fill_between(x, sim.min(axis=0), sim.max(axis=0), color="#1f77b4", alpha=0.2,
                        step="mid")
        ax.step(x, sim.mean(axis=0), where="mid", color="#1f77b4", label="fitted scenario")
        ax.plot(x, obs, "o", ms=3, color="#d62728", label="event log")
        ax.set_ylabel(f"{name} per hour")
        ax.set_title(str(fit), fontsize=9, loc="left")
    axes[0].legend(loc="upper right", fontsize=8, title=f"band: min–max of {r} runs",
                   title_fontsize=8)
    axes[-1].set_xlabel("hours since the sale started")
    files.append(_save(fig, out_dir / "by_hour.png"))
    groups = sc.campaign.groups
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if groups is not None:
        labels = [str(t.size) for t in groups.tiers] + ["failed"]
        obs = _tiers(observed, labels)
        sim = np.array([_tiers(s, labels) for s in sims])
        fit = chi_square("groups by tier", obs, sim.mean(axis=0), r, observed.logs)
        fits.append(fit)
        x = np.arange(len(labels))
        ax.bar(x - 0.2, obs, 0.4, color="#d62728", label="event log")
        ax.bar(x + 0.2, sim.mean(axis=0), 0.4, color="#1f77b4", label="fitted scenario (mean)")
        ax.set_xticks(x, [f"{lab} people" if lab != "failed" else lab for lab in labels])
        ax.set_ylabel("groups")
        ax.legend(fontsize=8)
        ax.set_title(str(fit), fontsize=9, loc="left")
    else:
        ax.text(0.5, 0.5, "no groups in this campaign", ha="center", va="center",
                transform=ax.transAxes)
    files.append(_save(fig, out_dir / "by_tier.png"))
    obs = _cohort(observed, sc)
    sim = np.array([_cohort(s, sc) for s in sims]).mean(axis=0)
    fit = chi_square("repurchases by cohort and period", obs, sim, r, observed.logs)
    if not fit.dof:  # cohorts too small to judge one by one: all cohorts together
        fit = chi_square("repurchases by period (cohorts pooled)", obs.sum(axis=0),
                         sim.sum(axis=0), r, observed.logs)
    fits.append(fit)
    fig, ax = plt.subplots(figsize=(9, 4))
    period = sc.audience.after_campaign.period_days  # type: ignore[union-attr]
    x = (np.arange(obs.shape[1]) + 0.5) * period
    for c, name in enumerate(CHANNELS):
        if obs[c].sum() or sim[c].sum():
            line, = ax.plot(x, sim[c], label=f"{name} (fitted)")
            ax.plot(x, obs[c], "o", ms=4, color=line.get_color())
    ax.set_xlabel("days after the sale")
    ax.set_ylabel("repurchases per period")
    ax.legend(fontsize=8, title="dots: event log", title_fontsize=8)
    ax.set_title(str(fit), fontsize=9, loc="left")
    files.append(_save(fig, out_dir / "by_cohort.png"))
    files.append(out_dir / "fit_report.html")
    _write_html(files[-1], cal, fits, files[1:-1], events_path=events_path,
                base_path=base_path, fitted_path=fitted_path, events=len(observed))
    return files, fits


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write_html(path: Path, cal: Calibration, fits: list[Fit], figures: list[Path], *,
                events_path: str, base_path: str, fitted_path: str, events: int) -> None:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(e.key)}</td><td class=n>{e.value:.4g}</td>"
        f"<td class=n>[{e.ci_low:.4g}, {e.ci_high:.4g}]</td>"
        f"<td class=n>{'' if e.base is None else f'{e.base:.4g}'}</td>"
        f"<td class=n>{e.n:,}</td><td>{esc(e.method)}</td></tr>" for e in cal.estimates)
    figs = "".join(f'<figure><img alt="{esc(p.stem)}" src="data:image/png;base64,'
                   f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in figures)
    gof = "".join(f"<li>{esc(str(f))}</li>" for f in fits)
    notes = "".join(f"<li>{esc(n)}</li>" for n in cal.notes)
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calibration: {esc(fitted_path)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 92%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Calibration: {esc(fitted_path)}</h1>
<p>Event log(s) <code>{esc(events_path)}</code> ({events:,} events), base scenario
<code>{esc(base_path)}</code>. The fitted scenario was simulated {len(cal.simulated)} times to
draw the curves below.</p>
<h2>Estimates (95% confidence intervals)</h2>
<table><tr><th>key</th><th>estimate</th><th>95% CI</th><th>base</th><th>n</th><th>how</th></tr>
{rows}</table>
<ul>{notes}</ul>
<h2>Observed against the fitted scenario</h2>
<p>Goodness of fit, Pearson χ² over the bins expecting at least {MIN_EXPECTED:g} events (each
bin's variance counts the simulated mean's own noise); a small p-value says the curve does
not match:</p>
<ul>{gof}</ul>
{figs}
</body></html>
""", encoding="utf-8")
