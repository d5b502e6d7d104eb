"""Limited perks: coupon pools and the first-N-orders gift."""

from __future__ import annotations

from campaign.pricing import to_cents
from campaign.rules import CampaignRules


class Perks:
    """Coupons left per pool and paid orders so far (the gift goes to the first `count`).
    `worst_fen` is what a new reservation may still take from them: the biggest coupon left,
    and the gift while gifts are left."""

    def __init__(self, rules: CampaignRules) -> None:
        self._values = [to_cents(c.value) for c in rules.coupons]
        self.coupons_left = [c.pool for c in rules.coupons]
        gift = rules.first_orders_gift
        self.gift_count = 0 if gift is None else gift.count
        self.gift_fen = 0 if gift is None else to_cents(gift.gift_cost)
        self.paid = 0
        self._best_coupon = self._biggest()

    def worst_fen(self) -> int:
        gift = self.gift_fen if self.paid < self.gift_count else 0
        return self._best_coupon + gift

    def next_paid_gets_gift(self) -> bool:
        """Count one more paid order; True when it is among the first `count`."""
        self.paid += 1
        return self.paid <= self.gift_count

    def pools_left(self) -> list[int]:
        """Indexes of the coupon pools that are not empty, in file order."""
        return [i for i, left in enumerate(self.coupons_left) if left > 0]

    def take_coupon(self, i: int) -> None:
        self.coupons_left[i] -= 1
        if not self.coupons_left[i]:
            self._best_coupon = self._biggest()

    def _biggest(self) -> int:
        return max((v for v, left in zip(self._values, self.coupons_left, strict=True)
                    if left > 0), default=0)
