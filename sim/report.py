"""Human-readable results: the terminal KPI table and the self-contained report.html."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from sim.stats import KpiSummary

KPI_LABELS = {
    "arrivals": "first-time arrivals", "invitee_arrivals": "invitee arrivals",
    "buyers": "buyers", "orders_paid": "paid orders (kept)", "units_sold": "units sold",
    "turned_away": "turned away (no stock)", "expired_reservations": "expired reservations",
    "groups_opened": "groups opened", "groups_completed": "groups completed",
    "groups_failed": "groups failed", "group_completion_rate": "group completion rate",
    "gmv": "GMV (yuan, list value)", "revenue": "revenue (yuan)",
    "goods_cost": "goods cost (yuan)", "discount_cost": "discount cost (yuan)",
    "reward_cost": "reward cost (yuan)", "coupon_cost": "coupon cost (yuan)",
    "gift_cost": "gift cost (yuan)", "subsidy_spent": "subsidy spent (yuan)",
    "gross_profit": "gross profit (yuan)", "profit": "profit after fixed cost (yuan)",
    "new_buyers": "new buyers", "cost_per_new_buyer": "cost per new buyer (yuan)",
    "roi": "ROI", "k_factor": "K-factor", "mean_referral_tree_size": "mean referral tree size",
    "max_referral_depth": "max referral depth", "sell_out_hour": "sell-out hour",
    "stock_left": "stock left (units)",
}


def fmt(value: float) -> str:
    """A number for people: thousands separators, 3 significant decimals for small values."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}" if value else "0"


def kpi_rows(summary: dict[str, KpiSummary]) -> list[tuple[str, str, str]]:
    """(label, mean, 95% CI) per KPI."""
    return [(KPI_LABELS.get(k, k), fmt(s.mean), f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]")
            for k, s in summary.items()]


def kpi_table(summary: dict[str, KpiSummary]) -> str:
    """The KPI table for the terminal."""
    rows = [("KPI", "mean", "95% CI"), *kpi_rows(summary)]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_report_html(path: Path, *, title: str, facts: list[tuple[str, str]],
                      summary: dict[str, KpiSummary], figures: list[tuple[Path, str]]) -> None:
    """One HTML file with the KPI table and every figure embedded as a base64 PNG."""
    esc = html.escape
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    kpis = "".join(f"<tr><td>{esc(a)}</td><td class=n>{esc(b)}</td><td class=n>{esc(c)}</td></tr>"
                   for a, b, c in kpi_rows(summary))
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
