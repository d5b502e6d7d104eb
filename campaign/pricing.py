"""Pricing: the one function that prices an order, used by the simulation and the server alike.

Stacking rule (documented in README and CONTRACT):

1. Unit-price offers do not stack with each other. The order qualifies for a set of unit prices:
   the list price; its member tier's price; every time discount running at that hour; and, in a
   group, every group tier up to the one reached (a 3-person group also qualifies for the
   2-person price). A group that failed with the `fallback_price` policy qualifies for the
   fallback discount instead of any tier.
2. On each candidate, the subtotal (unit price x quantity) gets the single best spend threshold
   (满减) it reaches, then the coupon if what is left reaches the coupon's minimum spend. The
   coupon never takes the total below zero.
3. The order pays the lowest of those totals.

Because a larger tier only adds candidates, a larger group is never dearer; because the list
price is always a candidate and nothing adds to a price, nothing is ever above list price.
All amounts are integer fen (1 yuan = 100 fen).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from campaign.rules import CampaignRules, Coupon, Sku


def to_cents(yuan: float) -> int:
    """Yuan to integer fen, rounded half up (prices in scenario files have at most 2 decimals)."""
    return int(yuan * 100 + 0.5 + 1e-9)


def _percent_off(cents: int, percent: float) -> int:
    return int(cents * (100 - percent) / 100 + 0.5 + 1e-9)


@dataclass(frozen=True, slots=True)
class PriceContext:
    """What the price of one order depends on."""

    sku: Sku
    quantity: int = 1
    hour: float = 0.0
    """Hours since the sale started (time discounts)."""
    member_tier: str = "ordinary"
    group_members: int | None = None
    """Members the buyer's group reached; None for a single-buyer order."""
    group_failed_fallback: bool = False
    """The group failed and the order converts to the fallback price."""
    coupon: Coupon | None = None
    order_seq: int | None = None
    """1-based sequence number of this paid order in the sale (first-N gift)."""


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """The priced order, in fen."""

    list_total: int
    unit_price: int
    subtotal: int
    threshold_off: int
    coupon_off: int
    total: int
    offer: str
    """Which unit price won: list, member, time:<name>, group:<size>, fallback."""
    gift: bool

    @property
    def discount(self) -> int:
        """Everything off the list price: the promotion's cost per order, in fen."""
        return self.list_total - self.total


def unit_price_candidates(rules: CampaignRules, ctx: PriceContext) -> list[tuple[str, int]]:
    """Every (offer, unit price in fen) the order qualifies for; the list price comes first."""
    list_cents = to_cents(ctx.sku.list_price)
    out = [("list", list_cents)]
    if ctx.member_tier in ctx.sku.member_prices:
        out.append(("member", to_cents(ctx.sku.member_prices[ctx.member_tier])))
    for i, td in enumerate(rules.time_discounts):
        if td.start_hour <= ctx.hour < td.end_hour:
            out.append((f"time:{td.name or i}", _percent_off(list_cents, td.percent_off)))
    groups = rules.groups
    if groups is not None and ctx.group_members is not None:
        if ctx.group_failed_fallback:
            out.append(("fallback", _percent_off(list_cents, groups.fallback_percent_off)))
        else:
            for tier in groups.tiers:
                if ctx.group_members >= tier.size:
                    out.append((f"group:{tier.size}", _percent_off(list_cents, tier.percent_off)))
    return out


def price_order(rules: CampaignRules, ctx: PriceContext) -> PriceQuote:
    """Price one order from the campaign rules and its context (see the module doc for stacking)."""
    if ctx.quantity < 1:
        raise ValueError("quantity must be at least 1")
    list_total = to_cents(ctx.sku.list_price) * ctx.quantity
    best: PriceQuote | None = None
    for offer, unit in unit_price_candidates(rules, ctx):
        subtotal = unit * ctx.quantity
        threshold_off = max((to_cents(t.off) for t in rules.spend_thresholds
                             if subtotal >= to_cents(t.spend)), default=0)
        after = subtotal - threshold_off
        coupon_off = 0
        if ctx.coupon is not None and after >= to_cents(ctx.coupon.min_spend):
            coupon_off = min(to_cents(ctx.coupon.value), after)
        total = after - coupon_off
        if best is None or total < best.total:
            best = PriceQuote(list_total, unit, subtotal, threshold_off, coupon_off, total,
                              offer, False)
    assert best is not None
    gift = (rules.first_orders_gift is not None and ctx.order_seq is not None
            and ctx.order_seq <= rules.first_orders_gift.count)
    return replace(best, gift=True) if gift else best
