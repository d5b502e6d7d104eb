"""Price look-ups for the simulation: every price comes from `campaign.pricing.price_order`.

A price depends only on (SKU, quantity, member tier, group size, fallback, coupon) and on which
time discounts are running. Time discounts switch on and off at fixed hours, so the sale window
splits into intervals with constant prices; a quote is computed once per combination and cached.
"""

from __future__ import annotations

import bisect

from campaign.pricing import PriceContext, PriceQuote, price_order
from campaign.rules import CampaignRules


class PriceBook:
    """Cached `price_order` quotes plus the conversion discount each shopper sees."""

    def __init__(self, rules: CampaignRules) -> None:
        self.rules = rules
        duration = rules.duration_hours
        cuts = {0.0}
        for td in rules.time_discounts:
            cuts.update(h for h in (td.start_hour, td.end_hour) if 0 < h < duration)
        self.interval_starts: list[float] = sorted(cuts)
        self._cache: dict[tuple, PriceQuote] = {}

    def interval(self, hour: float) -> int:
        """Index of the constant-price interval containing `hour`."""
        return max(0, bisect.bisect_right(self.interval_starts, hour) - 1)

    def quote(self, sku: int, quantity: int, interval: int, tier: str,
              members: int | None = None, fallback: bool = False,
              coupon: int | None = None, gift: bool = False) -> PriceQuote:
        """The `price_order` quote for this order, cached. `gift` says the order is among the
        first-N paid orders (the only thing `order_seq` changes in a quote)."""
        key = (sku, quantity, interval, tier, members, fallback, coupon, gift)
        found = self._cache.get(key)
        if found is None:
            rules = self.rules
            gift_seq = 1 if gift else None  # seq 1 is within any first-N gift
            ctx = PriceContext(
                sku=rules.skus[sku], quantity=quantity, hour=self.interval_starts[interval],
                member_tier=tier, group_members=members, group_failed_fallback=fallback,
                coupon=None if coupon is None else rules.coupons[coupon], order_seq=gift_seq)
            found = self._cache[key] = price_order(rules, ctx)
        return found

    def discount_share(self, sku: int, quantity: int, interval: int, tier: str,
                       group: bool) -> float:
        """Share off the list price a shopper sees before deciding: a group buyer sees the
        smallest tier's price, a single buyer the best single-buyer price (coupons excluded)."""
        members = self.rules.groups.min_size if group and self.rules.groups else None
        q = self.quote(sku, quantity, interval, tier, members=members)
        return q.discount / q.list_total if q.list_total else 0.0
