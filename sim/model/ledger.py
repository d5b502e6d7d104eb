"""Money of one run, in integer fen, and the subsidy budget that holds.

A subsidised reservation holds the worst case it can still reach (deepest tier or fallback
price, a coupon, a gift, its referral and leader rewards); when it settles, what it really
costs is spent and the rest given back. Holds are only taken while spent + held stays within
the budget, so the subsidy spent never exceeds it.
"""

from __future__ import annotations

MONEY = ("gmv", "revenue", "goods_cost", "discount_cost", "reward_cost", "coupon_cost",
         "gift_cost")
SUBSIDY = ("discount_cost", "reward_cost", "coupon_cost", "gift_cost")


class SubsidyLedger:
    """Money totals (fen) and the budget: `fits` / `hold` / `release` before an order settles,
    `book` once it does."""

    def __init__(self, budget_fen: int | None) -> None:
        self.budget = budget_fen
        self.totals = dict.fromkeys(MONEY, 0)
        self.spent = 0
        self.held = 0

    def fits(self, fen: int) -> bool:
        """True when `fen` more can be held without passing the budget."""
        return self.budget is None or self.spent + self.held + fen <= self.budget

    def hold(self, fen: int) -> None:
        self.held += fen

    def release(self, fen: int) -> None:
        self.held -= fen

    def book(self, kind: str, fen: int) -> None:
        """Add to a money total; subsidy kinds are spent (the caller released their hold)."""
        self.totals[kind] += fen
        if kind in SUBSIDY:
            self.spent += fen
            assert self.budget is None or self.spent + self.held <= self.budget, \
                "subsidy spent past the budget: an order spent more than it held"

    def left(self) -> int:
        """Budget not spent (fen); 0 without a budget."""
        return 0 if self.budget is None else self.budget - self.spent
