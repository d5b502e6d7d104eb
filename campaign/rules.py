"""The `[campaign]` section: SKUs, sale phases, group rules, discounts, coupons, limits, money.

Money is written in yuan (floats) for planners; pricing works in integer fen (cents) so the
simulation and the server agree to the fen.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from campaign.base import Section, identifier
from campaign.errors import at

PercentOff = Field(gt=0, lt=100, description="percent off the list price, e.g. 20 for 8折")
MAX_YUAN = 100_000_000
"""Upper bound for any amount of money in a scenario (keeps fen arithmetic exact)."""


class Sku(Section):
    """One product on sale."""

    id: Annotated[str, identifier("name")]
    name: str = Field(default="", max_length=200, description="display name; may be Chinese")
    stock: int = Field(ge=0, le=1_000_000_000)
    list_price: float = Field(gt=0, le=MAX_YUAN)
    unit_cost: float = Field(ge=0, le=MAX_YUAN)
    member_prices: dict[str, float] = Field(
        default_factory=dict, description="member tier -> unit price in yuan"
    )

    @model_validator(mode="after")
    def _member_prices_below_list(self) -> Sku:
        for tier, price in self.member_prices.items():
            if not 0 <= price <= self.list_price:
                raise ValueError(at("member_prices", tier,
                                    reason="must be between 0 and the list price"))
        return self


class Phase(Section):
    """A stretch of the sale window (warm-up, burst, tail …); phases run back to back."""

    name: Annotated[str, identifier("label")]
    label: str = Field(default="", max_length=200, description="display name; may be Chinese")
    hours: float = Field(gt=0, le=24 * 60)


class GroupTier(Section):
    """Price for a group that reaches `size` members (2人8折 is size 2, percent_off 20)."""

    size: int = Field(ge=2, le=1000)
    percent_off: float = PercentOff


class GroupRules(Section):
    """Group buying (拼团): a size ladder, a window, a leader reward, a failure policy."""

    tiers: list[GroupTier] = Field(min_length=1)
    window_hours: float = Field(gt=0, le=24 * 30)
    leader_reward: float = Field(default=0, ge=0, le=MAX_YUAN, description="coupon value "
                                 "(yuan) to the leader when the group completes")
    failure_policy: Literal["refund", "fallback_price"] = "refund"
    fallback_percent_off: float = Field(default=0, ge=0, lt=100, description="single-buyer "
                                        "discount a failed group's order converts to")
    fallback_take_up: float = Field(default=0.5, ge=0, le=1, description="share of failed-group "
                                    "members who accept the fallback price (simulation only)")

    @model_validator(mode="after")
    def _ladder_rises(self) -> GroupRules:
        for i in range(1, len(self.tiers)):
            if self.tiers[i].size <= self.tiers[i - 1].size:
                raise ValueError(at("tiers", i, "size",
                                    reason="must be larger than the tier before it"))
            if self.tiers[i].percent_off < self.tiers[i - 1].percent_off:
                raise ValueError(at("tiers", i, "percent_off", reason="must be at least the "
                                    "tier before it (a larger group is never dearer)"))
        return self

    @property
    def min_size(self) -> int:
        return self.tiers[0].size

    @property
    def top_size(self) -> int:
        return self.tiers[-1].size

    def tier_reached(self, members: int) -> GroupTier | None:
        """The highest tier a group with `members` members qualifies for, or None."""
        reached = None
        for tier in self.tiers:
            if members >= tier.size:
                reached = tier
        return reached


class SpendThreshold(Section):
    """满减: an order subtotal of at least `spend` yuan gets `off` yuan off (满100减10)."""

    spend: float = Field(gt=0, le=MAX_YUAN)
    off: float = Field(gt=0, le=MAX_YUAN)

    @model_validator(mode="after")
    def _off_below_spend(self) -> SpendThreshold:
        if self.off >= self.spend:
            raise ValueError(at("off", reason="must be smaller than spend"))
        return self


class TimeDiscount(Section):
    """A time-phased price, e.g. first hour 50% off (首小时5折); hours count from the sale start."""

    name: str = ""
    start_hour: float = Field(ge=0)
    end_hour: float = Field(gt=0)
    percent_off: float = PercentOff

    @model_validator(mode="after")
    def _ordered(self) -> TimeDiscount:
        if self.end_hour <= self.start_hour:
            raise ValueError(at("end_hour", reason="must be after start_hour"))
        return self


class FirstOrdersGift(Section):
    """The first `count` paid orders get a gift costing `gift_cost` yuan (前100单额外赠礼)."""

    count: int = Field(ge=1, le=10_000_000)
    gift_cost: float = Field(ge=0, le=MAX_YUAN)
    name: str = ""


class Coupon(Section):
    """A coupon from a limited pool: `value` yuan off an order of at least `min_spend` yuan."""

    id: Annotated[str, identifier()]
    value: float = Field(gt=0, le=MAX_YUAN)
    min_spend: float = Field(default=0, ge=0, le=MAX_YUAN)
    pool: int = Field(ge=0, le=1_000_000_000)
    per_user: int = Field(default=1, ge=1, le=1000)


class CampaignRules(Section):
    """Everything the promotion promises, shared by the simulation and the checkout server."""

    name: str = Field(min_length=1, max_length=200)
    skus: list[Sku] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)
    groups: GroupRules | None = None
    spend_thresholds: list[SpendThreshold] = Field(default_factory=list)
    time_discounts: list[TimeDiscount] = Field(default_factory=list)
    first_orders_gift: FirstOrdersGift | None = None
    coupons: list[Coupon] = Field(default_factory=list)
    member_tiers: list[str] = Field(default_factory=lambda: ["ordinary"], min_length=1)
    per_user_limit: int = Field(default=1, ge=1, le=1000, description="units per user per SKU")
    payment_timeout_minutes: float = Field(default=30, gt=0, le=24 * 60)
    subsidy_budget: float | None = Field(default=None, ge=0, le=1e12, description="yuan for "
                                         "discounts, coupons, rewards and gifts (simulation: "
                                         "never exceeded, see budget_policy)")
    budget_policy: Literal["list_price", "stop_selling"] = Field(
        default="list_price", description="simulation only: a shopper whose worst-case subsidy "
        "the budget left cannot cover sees the list price ('list_price') or is not sold to "
        "('stop_selling')")
    fixed_cost: float = Field(default=0, ge=0, le=1e12, description="campaign fixed cost in yuan")

    @model_validator(mode="after")
    def _consistent(self) -> CampaignRules:
        _unique([s.id for s in self.skus], "skus", "id")
        _unique([p.name for p in self.phases], "phases", "name")
        _unique([c.id for c in self.coupons], "coupons", "id")
        for i, sku in enumerate(self.skus):
            for tier in sku.member_prices:
                if tier not in self.member_tiers:
                    raise ValueError(at("skus", i, "member_prices", tier, reason=(
                        f"unknown member tier; member_tiers is {self.member_tiers}")))
        if self.budget_policy != "list_price" and self.subsidy_budget is None:
            raise ValueError(at("budget_policy", reason="has no effect without subsidy_budget"))
        for i, td in enumerate(self.time_discounts):
            if td.start_hour >= self.duration_hours:
                raise ValueError(at("time_discounts", i, "start_hour",
                                    reason=f"after the sale ends (hour {self.duration_hours:g})"))
        return self

    @property
    def duration_hours(self) -> float:
        return sum(p.hours for p in self.phases)

    def phase_bounds(self) -> list[tuple[str, float, float]]:
        """(name, start_hour, end_hour) for each phase, back to back from hour 0."""
        out, t = [], 0.0
        for p in self.phases:
            out.append((p.name, t, t + p.hours))
            t += p.hours
        return out

    def sku(self, sku_id: str) -> Sku:
        """The SKU with this id; KeyError if there is none."""
        for s in self.skus:
            if s.id == sku_id:
                return s
        raise KeyError(sku_id)

    def coupon(self, coupon_id: str) -> Coupon:
        """The coupon with this id; KeyError if there is none."""
        for c in self.coupons:
            if c.id == coupon_id:
                return c
        raise KeyError(coupon_id)


def _unique(values: list[str], key: str, field: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(at(key, i, field, reason=f"duplicate {field} {v!r}"))
        seen.add(v)
