"""Human-readable results: the terminal KPI table and the self-contained report.html."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from campaign.scenario import Scenario
from sim.model import RunResult
from sim.outputs import outcome_label, sell_out_by_sku
from sim.stats import KpiSummary, summarize_values

KPI_LABELS = {
    "arrivals": "first-time arrivals (visitors)", "invitee_arrivals": "invitee arrivals",
    "visitor_conversion": "conversion (buyers ÷ all visitors)", "buyers": "buyers",
    "organic_buyers": "organic buyers (came on their own)",
    "invited_buyers": "invited buyers (came by a link)", "orders_paid": "paid orders (kept)",
    "units_sold": "units sold", "turned_away": "turned away (no stock)",
    "expired_reservations": "expired reservations", "groups_opened": "groups opened",
    "groups_completed": "groups completed", "groups_failed": "groups failed",
    "group_completion_rate": "group completion rate",
    "top_tier_rate": "groups reaching the top tier",
    "mean_group_size": "mean group size (paid members)",
    "gmv": "GMV (yuan, list value)", "revenue": "revenue (yuan)",
    "goods_cost": "goods cost (yuan)", "discount_cost": "discount cost (yuan)",
    "reward_cost": "reward cost (yuan)", "coupon_cost": "coupon cost (yuan)",
    "gift_cost": "gift cost (yuan)", "subsidy_spent": "subsidy spent (yuan)",
    "subsidy_budget_left": "subsidy budget left (yuan)",
    "gross_profit": "gross profit (yuan)", "profit": "profit after fixed cost (yuan)",
    "acquired_buyers": "acquired buyers (new + invited)",
    "cost_per_acquired_buyer": "cost per acquired buyer (yuan)", "roi": "ROI",
    "invites_sent": "invites sent", "invite_conversion": "invite conversion (buyers ÷ invites)",
    "viral_coefficient": "viral coefficient K", "amplification": "amplification (buyers ÷ organic)",
    "invited_buyer_share": "share of buyers who were invited",
    "mean_referral_tree_size": "mean referral tree size",
    "max_referral_depth": "max referral depth", "skus_sold_out": "SKUs sold out",
    "stock_left": "stock left (units)",
}


def fmt(value: float) -> str:
    """A number for people: thousands separators, 3 significant decimals for small values."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}" if value else "0"


Row = tuple[str, str, str]


def kpi_rows(summary: dict[str, KpiSummary]) -> list[Row]:
    """(label, mean, 95% CI) per KPI."""
    return [(KPI_LABELS.get(k, k), fmt(s.mean), _ci(s)) for k, s in summary.items()]


def _ci(s: KpiSummary) -> str:
    return f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]"


def detail_rows(scenario: Scenario, results: list[RunResult]) -> list[Row]:
    """Per SKU its sell-out hour ("not sold out" when it never did), and per tier the share of
    groups that closed there, each with its 95% CI over the replications."""
    rows: list[Row] = []
    n = len(results)
    for sku, s in sell_out_by_sku(scenario, results).items():
        k = s["replications_sold_out"]
        if not k:
            rows.append((f"sell-out hour: {sku}", "not sold out", f"(0 of {n} replications)"))
            continue
        mean = f"{s['mean_sell_out_hour']:.1f} h"
        ci = f"[{s['ci_low']:.1f}, {s['ci_high']:.1f}]"
        rows.append((f"sell-out hour: {sku}", mean,
                     ci if k == n else f"{ci} in {k} of {n} replications; the rest: not sold out"))
    outcomes = sorted({o for r in results for o in r.group_outcomes},
                      key=lambda o: (o.startswith("failed"), len(o), o))
    for outcome in outcomes:
        shares = [r.group_outcomes.get(outcome, 0) / max(1, sum(r.group_outcomes.values()))
                  for r in results]
        s = summarize_values(shares)
        rows.append((f"groups: {outcome_label(scenario, outcome)}",
                     f"{s.mean:.1%}", f"[{s.ci_low:.1%}, {s.ci_high:.1%}]"))
    return rows


def kpi_table(summary: dict[str, KpiSummary], details: list[Row] = ()) -> str:
    """The KPI table for the terminal, then the per-SKU and per-tier rows."""
    rows = [("KPI", "mean", "95% CI"), *kpi_rows(summary), *details]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_report_html(path: Path, *, title: str, facts: list[tuple[str, str]],
                      summary: dict[str, KpiSummary], figures: list[tuple[Path, str]],
                      details: list[Row] = ()) -> None:
    """One HTML file with the KPI table and every figure embedded as a base64 PNG."""
    esc = html.escape
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    kpis = "".join(f"<tr><td>{esc(a)}</td><td class=n>{esc(b)}</td><td class=n>{esc(c)}</td></tr>"
                   for a, b, c in [*kpi_rows(summary), *details])
    figs = "".join(
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{esc(caption)}</figcaption>'
        "</figure>" for p, caption in figures)
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 90%; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{fact_rows}</table>
<h2>KPIs (mean over replications, 95% confidence interval)</h2>
<table><tr><th>KPI</th><th>mean</th><th>95% CI</th></tr>{kpis}</table>
<h2>Figures</h2>{figs}
</body></html>
""", encoding="utf-8")
