"""A simulation for people: the terminal KPI table and what the simulation's report.html shows
(the answer, prices, budget, per-SKU stock and sell-out, KPIs)."""

from __future__ import annotations

from campaign.scenario import Scenario
from sim.labels import KPI_LABELS, fmt_ci, fmt_kpi, kpi_label, kpi_name
from sim.model import RunResult
from sim.outputs import outcome_label, sell_out_by_sku, sku_label, value_by_channel
from sim.page import Answer, Measured, Table, fmt, text_table, with_ci
from sim.stats import KpiSummary, summarize_values

__all__ = ["KPI_LABELS", "fmt", "text_table"]  # re-exported: the docs scripts use them here

CHANNEL_LABELS = {"invite": "invited (came by a link)", "group": "group buy",
                  "coupon": "coupon", "flash_sale": "flash sale (time discount)",
                  "regular": "regular price offers"}


Row = tuple[str, str, str]


def kpi_rows(summary: dict[str, KpiSummary]) -> list[Row]:
    """(label, mean with its unit, 95% CI) per KPI."""
    return [(kpi_label(k), fmt_kpi(k, s.mean, short=False),
             f"[{fmt_ci(k, s.ci_low, s.ci_high, short=False).replace(' – ', ', ')}]")
            for k, s in summary.items()]


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


def kpi_table(summary: dict[str, KpiSummary], details: list[Row] = ()) -> str:
    """The KPI table for the terminal, then the per-SKU and per-tier rows."""
    rows = [("KPI", "mean", "95% CI"), *kpi_rows(summary), *details]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)




MONEY_ROWS = (("revenue", "earns: revenue (what buyers pay)"),
              ("subsidy_spent", "costs: subsidy (discounts, coupons, rewards, gifts)"),
              ("goods_cost", "costs: goods"), ("gross_profit", "gross profit"),
              ("profit", "profit after fixed cost"))


def money_rows(summary: dict[str, KpiSummary],
               budget: float | None) -> list[tuple[str, str]]:
    """What a campaign earns and costs in yuan, each with its 95% CI: revenue, subsidy (against
    the budget), goods cost, gross profit and profit after fixed cost (those in `summary`)."""
    rows = []
    for kpi, label in MONEY_ROWS:
        if kpi not in summary:
            continue
        text = with_ci(kpi, summary[kpi])
        if kpi == "subsidy_spent" and budget:
            share = summary[kpi].mean / budget
            text += f" of a {fmt_kpi(kpi, budget)} budget ({share:.0%})"
        rows.append((label, text))
    return rows


def simulation_answer(scenario: Scenario, summary: dict[str, KpiSummary],
                      results: list[RunResult]) -> Answer:
    """The answer a simulation gives: profit, then money, groups and stock."""
    c = scenario.campaign
    answer = Answer(f"Profit after fixed cost: {with_ci('profit', summary['profit'])}",
                    money_rows(summary, c.subsidy_budget))
    answer.rows.append(("paid orders", with_ci("orders_paid", summary["orders_paid"])))
    if c.groups is not None:
        answer.rows.append(("groups completing", with_ci("group_completion_rate",
                                                         summary["group_completion_rate"])))
    sold_out = [sku_label(c.sku(sku_id)) for sku_id, s in sell_out_by_sku(scenario, results).items()
                if s["replications_sold_out"] * 2 > len(results)]
    answer.rows.append(("sold out (in most replications)", ", ".join(sold_out) or "nothing"))
    if c.subsidy_budget and summary["subsidy_budget_left"].mean < 0.01 * c.subsidy_budget:
        answer.warnings.append("the subsidy budget runs out: later shoppers see "
                               + ("the list price" if c.budget_policy == "list_price"
                                  else "no offer (stop_selling)"))
    return answer


def price_table(scenario: Scenario) -> Table:
    """Per SKU: list price, unit cost, member prices, each group tier's price and the fallback
    price, in yuan (the shared pricing function's unit prices)."""
    from campaign.pricing import PriceContext, unit_price_candidates
    from sim.labels import tier_name

    c = scenario.campaign
    tiers = c.groups.tiers if c.groups else []
    head = ["SKU", "list price", "unit cost",
            *(f"{tier_name(t.size)} ({t.percent_off:g}% off)" for t in tiers)]
    if c.groups and c.groups.failure_policy == "fallback_price":
        head.append(f"failed group, fallback ({c.groups.fallback_percent_off:g}% off)")
    head += [f"member: {m}" for m in c.member_tiers if any(m in s.member_prices for s in c.skus)]
    rows = []
    for sku in c.skus:
        row = [sku_label(sku), _yuan(sku.list_price), _yuan(sku.unit_cost)]
        for t in tiers:
            offers = dict(unit_price_candidates(c, PriceContext(sku, group_members=t.size)))
            row.append(_yuan(offers[f"group:{t.size}"] / 100))
        if c.groups and c.groups.failure_policy == "fallback_price":
            offers = dict(unit_price_candidates(c, PriceContext(sku, group_members=0,
                                                                group_failed_fallback=True)))
            row.append(_yuan(offers["fallback"] / 100))
        row += [_yuan(sku.member_prices[h[8:]]) if h[8:] in sku.member_prices else "–"
                for h in head if h.startswith("member: ")]
        rows.append(tuple(row))
    rules = [f"满{t.spend:g}减{t.off:g} (spend {t.spend:g} yuan, {t.off:g} yuan off)"
             for t in c.spend_thresholds]
    rules += [f"{td.name or 'time discount'}: {td.percent_off:g}% off from hour "
              f"{td.start_hour:g} to {td.end_hour:g}" for td in c.time_discounts]
    rules += [f"coupon {cp.id}: {cp.value:g} yuan off from {cp.min_spend:g} yuan, pool of "
              f"{cp.pool:,}" for cp in c.coupons]
    if c.first_orders_gift:
        rules.append(f"the first {c.first_orders_gift.count:,} paid orders get a gift costing "
                     f"{c.first_orders_gift.gift_cost:g} yuan")
    if c.groups and c.groups.leader_reward:
        rules.append(f"leader reward {c.groups.leader_reward:g} yuan per completed group")
    note = ("Unit prices in yuan before spend thresholds and coupons. "
            + ("Also: " + "; ".join(rules) + "." if rules else ""))
    return ("Prices", tuple(head), rows, note)


def _yuan(v: float) -> str:
    return f"{v:,.2f} yuan"


def budget_table(scenario: Scenario, summary: dict[str, KpiSummary]) -> Table:
    """The subsidy budget against what was spent, item by item (mean [95% CI])."""
    budget = scenario.campaign.subsidy_budget
    rows: list[tuple[str | Measured, ...]] = [
        ("subsidy budget", f"{budget:,.0f} yuan" if budget else "no budget set", "")]
    for kpi in ("discount_cost", "coupon_cost", "reward_cost", "gift_cost", "subsidy_spent",
                "subsidy_budget_left"):
        s = summary[kpi]
        share = f"{s.mean / budget:.0%}" if budget else ""
        rows.append((kpi_name(kpi), Measured(kpi, s), share))
    rows.append(("fixed cost (not from the budget)", f"{scenario.campaign.fixed_cost:,.0f} yuan",
                 ""))
    note = ("Subsidy = everything off the list price (discounts incl. spend thresholds, coupons) "
            "plus leader and referral rewards and gifts; the simulation never spends beyond the "
            "budget (budget_policy: " + scenario.campaign.budget_policy + ").")
    return ("Budget: spent vs budget (yuan)", ("item", "yuan", "share of budget"), rows, note)


def sku_table(scenario: Scenario, results: list[RunResult]) -> Table:
    """Per SKU: stock, units left at the end (mean [95% CI]) and when it sold out."""
    n = len(results)
    sell = sell_out_by_sku(scenario, results)
    rows: list[tuple[str | Measured, ...]] = []
    for k, sku in enumerate(scenario.campaign.skus):
        left = [float(r.recording.stock_by_sku[-1, k]) for r in results
                if r.recording is not None]
        s = sell[sku.id]
        sold_out = s["replications_sold_out"]
        when = ("never" if not sold_out else
                f"hour {s['mean_sell_out_hour']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]")
        rows.append((f"{sku_label(sku)} ({sku.id})" if sku.name else sku.id,
                     f"{sku.stock:,} units",
                     Measured("stock_left", summarize_values(left)) if left else "–",
                     f"{sold_out} of {n}", when))
    note = "Units left = available at the end of the sale (not reserved or sold)."
    return ("Stock and sell-out per SKU", ("SKU", "stock", "units left at the end",
                                            "replications sold out", "sell-out hour (mean [CI])"),
            rows, note)
