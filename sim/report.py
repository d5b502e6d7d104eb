"""Human-readable results: the terminal KPI table and the self-contained report.html."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from campaign.scenario import Scenario
from sim.model import RunResult
from sim.outputs import outcome_label, sell_out_by_sku, value_by_channel
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
    "retention": "acquired buyers active after the first period",
    "repurchase_rate": "acquired buyers who repurchase within the horizon",
    "repurchase_orders": "repurchase orders within the horizon",
    "ltv": "LTV per acquired buyer (yuan)", "ltv_to_cac": "LTV ÷ CAC",
    "payback_days": "payback (days after the sale; the horizon = not within it)",
    "break_even_days": "break-even (days after the sale; the horizon = not within it)",
    "break_even_daily_orders": "break-even repurchase orders per day",
    "lifetime_profit": "profit incl. repurchases in the horizon (yuan)",
}

CHANNEL_LABELS = {"invite": "invited (came by a link)", "group": "group buy",
                  "coupon": "coupon", "flash_sale": "flash sale (time discount)",
                  "regular": "regular price offers"}


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


Cell = str | KpiSummary
Table = tuple[str, tuple[str, ...], list[tuple[Cell, ...]], str]
"""(title, header, rows, note) of a report table; a KpiSummary cell is shown as its mean and
95% CI (in the terminal as mean ± half-width, to stay narrow)."""


def value_table(scenario: Scenario, results: list[RunResult]) -> Table:
    """The acquired buyers' value per acquisition channel: buyers, CAC, LTV, LTV ÷ CAC,
    payback and repurchase, each as mean [95% CI] over the replications."""
    after = scenario.audience.after_campaign if scenario.audience else None
    horizon = after.horizon_days if after else 0
    n = len(results)
    rows = []
    for name, m in value_by_channel(results).items():
        pay = m["payback_days"]
        never = sum(1 for r in results if r.after is not None and name in r.after.channels
                    and r.after.channels[name]["payback_days"] >= horizon)
        if never == pay.n:
            payback = f"not within {horizon} d"
        else:
            payback = f"{pay.mean:.0f} d [{pay.ci_low:.0f}, {pay.ci_high:.0f}]"
            if never:
                payback += f"; {never}/{pay.n} not within"
        rows.append((CHANNEL_LABELS.get(name, name), m["buyers"], m["cac"], m["ltv"],
                     m["ltv_to_cac"],
                     payback, f"{m['repurchase_rate'].mean:.0%}"))
    note = (f"Acquired buyers (segment \"new\" and invitees) by how they came; mean [95% CI] over "
            f"the replications that acquired somebody by that channel (of {n}). CAC = their "
            "campaign orders' subsidy + an equal share of the rest of the campaign's spend "
            "(fixed cost, subsidy to existing customers); LTV = campaign order at list margin "
            f"+ discounted repurchase margin over {horizon} days; payback = the first day LTV "
            "so far reaches CAC.")
    header = ("channel", "buyers", "CAC (yuan)", "LTV (yuan)", "LTV ÷ CAC", "payback",
              "repurchase")
    return ("After the campaign: value of acquired buyers by channel", header, rows, note)


def _cell(cell: Cell) -> str:
    """A table cell for HTML: a summary shows its interval small, below its mean."""
    if isinstance(cell, str):
        return html.escape(cell)
    return f"{fmt(cell.mean)}<br><small>[{fmt(cell.ci_low)}, {fmt(cell.ci_high)}]</small>"


def _text(cell: Cell) -> str:
    if isinstance(cell, str):
        return cell
    return f"{fmt(cell.mean)} ± {fmt((cell.ci_high - cell.ci_low) / 2)}"


def text_table(table: Table) -> str:
    """A report table for the terminal."""
    title, header, cells, _ = table
    if not cells:
        return f"{title}: none"
    rows = [tuple(_text(c) for c in r) for r in cells]
    allrows = [header, *rows]
    w = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    lines = ["  ".join(f"{c:<{w[i]}}" if i == 0 else f"{c:>{w[i]}}" for i, c in enumerate(r))
             for r in allrows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([f"{title} (mean ± half the 95% CI)", *lines])


def kpi_table(summary: dict[str, KpiSummary], details: list[Row] = ()) -> str:
    """The KPI table for the terminal, then the per-SKU and per-tier rows."""
    rows = [("KPI", "mean", "95% CI"), *kpi_rows(summary), *details]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_report_html(path: Path, *, title: str, facts: list[tuple[str, str]],
                      summary: dict[str, KpiSummary], figures: list[tuple[Path, str]],
                      details: list[Row] = (), tables: list[Table] = ()) -> None:
    """One HTML file with the KPI table, any further tables and every figure embedded as a
    base64 PNG."""
    esc = html.escape
    extra = "".join(
        f"<h2>{esc(t)}</h2><table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>"
        + "".join("<tr>" + "".join(f"<td{'' if i == 0 else ' class=n'}>{_cell(c)}</td>"
                                   for i, c in enumerate(r)) + "</tr>" for r in rows)
        + f"</table><p class=note>{esc(note)}</p>" for t, head, rows, note in tables)
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
figcaption, p.note {{ color: #555; font-size: 90%; }}
small {{ color: #666; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{fact_rows}</table>
<h2>KPIs (mean over replications, 95% confidence interval)</h2>
<table><tr><th>KPI</th><th>mean</th><th>95% CI</th></tr>{kpis}</table>
{extra}
<h2>Figures</h2>{figs}
</body></html>
""", encoding="utf-8")
