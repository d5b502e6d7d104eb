"""Names and units for people: KPIs, scenario parameters and group tiers as every report,
table and plot shows them ("28.8k yuan", "3-person tier discount (% off)").

A parameter is typed on the command line as its scenario path
(`campaign.groups.tiers[2].percent_off`); outputs show the name a planner uses for it, built
from the scenario (the rung that is 5 people there is "the 5-person tier").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign.scenario import split_key_path
from sim.model import MONEY_KPIS

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
    "cost_per_acquired_buyer": "cost per acquired buyer (yuan)", "roi": "ROI (profit ÷ spend)",
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

SHARE_KPIS = frozenset({"visitor_conversion", "group_completion_rate", "top_tier_rate",
                        "invite_conversion", "invited_buyer_share", "retention",
                        "repurchase_rate"})
"""KPIs that are shares (0..1), shown as percentages."""

COUNT_UNITS = {
    "arrivals": "visitors", "invitee_arrivals": "visitors", "buyers": "buyers",
    "organic_buyers": "buyers", "invited_buyers": "buyers", "acquired_buyers": "buyers",
    "orders_paid": "orders", "units_sold": "units", "stock_left": "units",
    "turned_away": "shoppers", "expired_reservations": "reservations",
    "groups_opened": "groups", "groups_completed": "groups", "groups_failed": "groups",
    "mean_group_size": "people", "invites_sent": "invites", "skus_sold_out": "SKUs",
    "mean_referral_tree_size": "buyers", "max_referral_depth": "levels",
    "repurchase_orders": "orders", "break_even_daily_orders": "orders/day",
    "payback_days": "days", "break_even_days": "days",
}
RATIO_KPIS = frozenset({"roi", "ltv_to_cac", "viral_coefficient", "amplification"})


def kpi_unit(kpi: str) -> str:
    """`yuan`, `%`, `×` or what a count counts (`orders`, `groups` …); '' when unknown."""
    if kpi in MONEY_KPIS:
        return "yuan"
    if kpi in SHARE_KPIS:
        return "%"
    if kpi in RATIO_KPIS:
        return "×"
    return COUNT_UNITS.get(kpi, "")


def kpi_label(kpi: str) -> str:
    """The KPI's name as tables show it (money already says yuan)."""
    return KPI_LABELS.get(kpi, kpi.replace("_", " "))


def kpi_name(kpi: str) -> str:
    """The KPI's name in a sentence, where the value beside it carries the unit."""
    return kpi_label(kpi).replace("(yuan, list value)", "(list value)").replace(" (yuan)", "")


def kpi_axis(kpi: str) -> str:
    """The KPI's name with its unit, for an axis or a column: `gross profit (yuan)`."""
    label, unit = kpi_label(kpi), kpi_unit(kpi)
    if not unit or f"({unit}" in label or unit.split("/")[0] in label:
        return label
    return f"{label} ({unit})"


def compact(v: float) -> str:
    """A number in few characters: 28.8k, 1.2M, 640, 4.36."""
    a = abs(v)
    if a < 0.0005:
        return "0"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k" if a < 1e5 else f"{v / 1e3:.0f}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_kpi(kpi: str, v: float, *, short: bool = True) -> str:
    """A KPI value with its unit: `28.8k yuan` (short) or `28,812 yuan`, `56%`, `0.45×`."""
    unit = kpi_unit(kpi)
    if unit == "%":
        return f"{v:.0%}" if short else f"{100 * v:.3g}%"
    if unit == "×":
        return f"{v:.3g}×"
    number = compact(v) if short else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
    return f"{number} {unit}".rstrip()


def fmt_ci(kpi: str, low: float, high: float, *, short: bool = True) -> str:
    """`35.6k – 37.7k yuan`: a CI with its unit once."""
    unit = kpi_unit(kpi)
    a, b = fmt_kpi(kpi, low, short=short), fmt_kpi(kpi, high, short=short)
    if unit in ("%", "×") or not unit:
        return f"{a} – {b}"
    return f"{a.removesuffix(' ' + unit)} – {b}"


def fmt_change(kpi: str, v: float) -> str:
    """A difference with its sign and unit: `+4.76k yuan`, `-2.2 pp` for shares."""
    if kpi_unit(kpi) == "%":
        return f"{100 * v:+.1f} pp"
    text = fmt_kpi(kpi, v)
    return text if text.startswith("-") else "+" + text


def tier_name(size: int) -> str:
    """The one name of a group tier: `3-person tier`."""
    return f"{size}-person tier"


_UNIT_BY_SUFFIX = (("percent_off", "% off"), ("_hours", "h"), ("hours", "h"),
                   ("_minutes", "min"), ("_days", "days"), ("price", "yuan"),
                   ("cost", "yuan"), ("reward", "yuan"), ("budget", "yuan"),
                   ("per_invite", "yuan"), ("value", "yuan"), ("stock", "units"),
                   ("arrivals_per_hour", "visitors/h"))
_WORDS = {"window_hours": "group window", "percent_off": "discount",
          "fallback_percent_off": "fallback discount", "hours": "length",
          "depth_cap": "referral depth cap", "invites_per_sharer": "invites per sharer",
          "subsidy_budget": "subsidy budget", "list_price": "list price"}


def _unit(name: str) -> str:
    return next((u for suffix, u in _UNIT_BY_SUFFIX if name.endswith(suffix)), "")


class Names:
    """Display names for one scenario's parameters; `data` is the scenario as read (a dict)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def _item(self, section: str, table: str, i: int) -> Mapping[str, Any]:
        items = self.data.get(section, {}).get(table, [])
        return items[i] if isinstance(items, list) and i < len(items) else {}

    def param(self, key: str) -> str:
        """`campaign.groups.tiers[2].percent_off` -> `5-person tier discount (% off)`."""
        try:
            parts = split_key_path(key)
        except ValueError:
            return key
        last = parts[-1] if isinstance(parts[-1], str) else key
        unit = _unit(last)
        what = _WORDS.get(last, last.replace("_", " "))
        owner = self._owner(parts)
        if owner and last == "size":
            name, unit = f"size of the {owner}", "people"
        elif owner:  # "5-person tier discount", "phase 预热期 length", "SKU 乌龙茶: stock"
            name = f"{owner}{' ' if last in ('percent_off', 'hours') else ': '}{what}"
        elif parts[:2] == ["audience", "arrivals_per_hour"] and len(parts) == 3:
            name, unit = f"arrivals per hour in {self._phase(str(parts[2]))}", "visitors/h"
        else:
            name = what
        return f"{name} ({unit})" if unit else name

    def _owner(self, parts: list[str | int]) -> str:
        """What an indexed item is called: a tier by its size, a SKU, phase or segment by
        its display name."""
        if len(parts) < 4 or not isinstance(parts[2 if parts[1] != "groups" else 3], int):
            return ""
        if parts[1] == "groups" and parts[2] == "tiers":
            tier = self.data.get("campaign", {}).get("groups", {}).get("tiers", [])
            i = int(parts[3])
            return tier_name(tier[i]["size"]) if i < len(tier) else f"tier [{i}]"
        section, table, i = str(parts[0]), str(parts[1]), int(parts[2])
        item = self._item(section, table, i)
        label = item.get("label") or item.get("name") or item.get("id") or f"{table}[{i}]"
        kind = {"skus": "SKU", "phases": "phase", "segments": "segment"}.get(table, table)
        return f"{kind} {label}"

    def _phase(self, phase_id: str) -> str:
        for p in self.data.get("campaign", {}).get("phases", []):
            if p.get("name") == phase_id:
                return p.get("label") or phase_id
        return phase_id

    def name(self, key: str) -> str:
        """The parameter's name without its unit: `5-person tier discount`."""
        full = self.param(key)
        return full.rpartition(" (")[0] if full.endswith(")") and " (" in full else full

    def value(self, key: str, v: Any) -> str:
        """A parameter value with its unit: `35.1% off`, `4.36 h`, `5 yuan`."""
        if not isinstance(v, int | float) or isinstance(v, bool):
            return str(v)
        unit = self.param(key).rpartition("(")[2].rstrip(")") if key else ""
        number = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        if unit in ("% off",):
            return f"{number}% off"
        known = {"h", "min", "days", "yuan", "units", "people", "visitors/h"}
        return f"{number} {unit}" if unit in known else number

    def point(self, params: Mapping[str, Any]) -> str:
        """`group window 4.36 h, 5-person tier discount 35.1% off`."""
        return ", ".join(f"{self.name(k)} {self.value(k, v)}" for k, v in params.items())


def outcome_name(outcome: str, percent_off: Mapping[int, float]) -> str:
    """`tier 3` -> `3-person tier (30% off)`, `failed: fallback` -> `failed, fallback price`."""
    if outcome.startswith("failed: "):
        return "failed, " + {"fallback": "fallback price"}.get(outcome[8:], outcome[8:])
    if not outcome.startswith("tier "):
        return outcome
    size = int(outcome.split()[1])
    off = percent_off.get(size)
    return tier_name(size) + (f" ({off:g}% off)" if off is not None else "")



def columns(text: str) -> int:
    """Terminal columns `text` takes: a Chinese character takes two."""
    from unicodedata import east_asian_width

    return sum(2 if east_asian_width(c) in "WF" else 1 for c in text)


def ljust(text: str, width: int) -> str:
    """`text` padded with spaces to `width` terminal columns."""
    return text + " " * max(0, width - columns(text))
