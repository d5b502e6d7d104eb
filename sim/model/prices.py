"""Price look-ups for the simulation: every price comes from `campaign.pricing.price_order`.

A price depends only on (SKU, quantity, member tier, group size, fallback, coupon) and on which
time discounts are running. Time discounts switch on and off at fixed hours, so the sale window
splits into intervals with constant prices; a quote is computed once per combination and cached.
"""

from __future__ import annotations

import bisect

from campaign.pricing import PriceContext, PriceQuote, price_order
from campaign.rules import CampaignRules
from sim.model.behaviour import Ladder


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
        self._ladders: dict[tuple, Ladder] = {}

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

    def single_share(self, sku: int, quantity: int, interval: int, tier: str) -> float:
        """Share off the list price of the best single-buyer price (coupons excluded)."""
        q = self.quote(sku, quantity, interval, tier)
        return _share(q)

    def ladder(self, sku: int, quantity: int, interval: int, tier: str) -> Ladder:
        """A group order's discount share at every tier, and on failure (fallback price, or
        0 when failed groups are refunded), cached."""
        key = (sku, quantity, interval, tier)
        found = self._ladders.get(key)
        if found is None:
            groups = self.rules.groups
            assert groups is not None
            shares = []
            for t in groups.tiers:
                q = self.quote(sku, quantity, interval, tier, members=t.size)
                shares.append(_share(q))
            fail = 0.0
            if groups.failure_policy == "fallback_price":
                q = self.quote(sku, quantity, interval, tier, members=groups.min_size,
                               fallback=True)
                fail = _share(q)
            found = self._ladders[key] = Ladder(tuple(t.size for t in groups.tiers),
                                                tuple(shares), fail)
        return found

    def worst_discount(self, sku: int, quantity: int, interval: int, tier: str,
                       group: bool) -> int:
        """The largest discount (fen, coupons excluded) the order can still reach: a group
        order's deepest tier or its fallback price, a single order's own price."""
        if not group:
            return self.quote(sku, quantity, interval, tier).discount
        groups = self.rules.groups
        assert groups is not None
        worst = self.quote(sku, quantity, interval, tier, members=groups.top_size).discount
        if groups.failure_policy == "fallback_price":
            worst = max(worst, self.quote(sku, quantity, interval, tier, members=groups.min_size,
                                          fallback=True).discount)
        return worst


def _share(q: PriceQuote) -> float:
    return q.discount / q.list_total if q.list_total else 0.0
