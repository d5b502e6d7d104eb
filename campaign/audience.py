"""The `[audience]` section: who arrives, when, how they convert and share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from campaign.base import Section, identifier
from campaign.errors import at

Probability = Field(ge=0, le=1)
DEFAULT_REFERENCE = 0.3


class Segment(Section):
    """A shopper segment (new / active / loyal, or price-sensitive / social …). Simulation only.

    Conversion is p = min(1, base_conversion * lift(d)), d the share off the list price the
    shopper expects to pay (0..1). `demand_shape` chooses lift (s = price_sensitivity,
    r = reference_discount):

    - linear: lift = 1 + s*d (with s = 4, a 50% discount triples the base conversion);
    - saturating: lift = 1 + s*r*(1 - exp(-d/r)): slope s at first, never above 1 + s*r;
    - reference: lift = 1 + s*min(d, r) - deep_discount_penalty*s*max(0, d - r) (at least 0):
      deeper than r a discount stops helping (penalty 0) or hurts (penalty > 0).
    """

    name: Annotated[str, identifier("label")]
    label: str = Field(default="", max_length=200, description="display name; may be Chinese")
    share: float = Field(gt=0, le=1, description="share of arrivals")
    base_conversion: float = Probability
    price_sensitivity: float = Field(default=1.0, ge=0, le=100)
    share_propensity: float = Field(default=0.0, ge=0, le=1,
                                    description="chance a buyer shares an invite link")
    group_propensity: float = Field(default=0.5, ge=0, le=1,
                                    description="chance a buyer buys through a group")
    pay_probability: float = Field(default=0.9, ge=0, le=1, description="chance a reservation "
                                   "is paid before the payment timeout; the rest abandon")
    pay_delay_minutes: float | None = Field(default=None, gt=0, le=10080, description=(
        "mean minutes from reserving to paying, for shoppers who pay (exponential, always "
        "before the payment timeout); default 3, at most a third of the timeout"))
    member_tier: str = "ordinary"
    quantity: int = Field(default=1, ge=1, le=1000, description="units per order")
    demand_shape: Literal["linear", "saturating", "reference"] = Field(
        default="linear", description="how conversion responds to the discount (see above)")
    reference_discount: float = Field(
        default=DEFAULT_REFERENCE, gt=0, le=1, description="saturating: the depth scale; "
        "reference: the depth beyond which deeper discounts stop helping")
    deep_discount_penalty: float = Field(default=0.0, ge=0, le=100, description="reference "
                                         "shape only: how fast discounts deeper than "
                                         "reference_discount hurt, as a multiple of "
                                         "price_sensitivity")

    @model_validator(mode="after")
    def _shape_keys(self) -> Segment:
        # Compared with the defaults, not "was it given", so a dumped scenario parses again.
        if self.demand_shape == "linear" and self.reference_discount != DEFAULT_REFERENCE:
            raise ValueError(at("reference_discount", reason="has no effect with demand_shape "
                                "'linear'; use 'saturating' or 'reference'"))
        if self.demand_shape != "reference" and self.deep_discount_penalty:
            raise ValueError(at("deep_discount_penalty", reason="only applies with "
                                "demand_shape 'reference'"))
        return self


class Referral(Section):
    """Referral fission (裂变) and group links: sharers invite friends, who arrive later and may
    convert. An invite from a group buyer carries the group: the friend joins that group if it
    is still open. Simulation only."""

    invites_per_sharer: float = Field(ge=0, le=1000, description="mean invites (Poisson)")
    invite_delay_minutes: float = Field(gt=0, description="mean delay before an invitee arrives "
                                        "(exponential)")
    invitee_conversion: float = Field(ge=0, le=1, description="an invitee's base conversion: "
                                      "the invitee segment's demand shape lifts it with the "
                                      "discount (price_sensitivity 0: a fixed probability)")
    invitee_share_propensity: float | None = Field(default=None, ge=0, le=1, description=(
        "chance a converted invitee shares in turn; default: the invitee segment's"))
    invitee_segment: str | None = Field(default=None, description="segment invitees behave "
                                        "like; default: the first segment")
    inviter_reward: float = Field(default=0, ge=0, description="yuan to the inviter on the "
                                  "invitee's first paid order (老带新)")
    invitee_reward: float = Field(default=0, ge=0, description="yuan off the invitee's first "
                                  "order: part of the price it responds to")
    depth_cap: int = Field(ge=1, le=100, description="deepest referral level rewarded and followed")
    bonus_after_invites: int | None = Field(default=None, ge=1, description="successful invites "
                                            "after which a sharer is a fission master")
    bonus_per_invite: float = Field(default=0, ge=0, description="extra yuan per successful "
                                    "invite beyond bonus_after_invites")
    reward_weight: float = Field(default=1.0, ge=0, le=100, description=(
        "how much the rewards a sharer stands to earn move its invites, against the discount "
        "still to be won: invites_per_sharer * (1 + share_effort * (g + reward_weight * rho)), "
        "rho the rewards as a share of the list price (docs/simulation.md); 1: a yuan of "
        "reward counts as a yuan off; 0: rewards cost money and move nobody"))


class GroupBehaviour(Section):
    """How shoppers form groups (拼团) in the simulation: who looks for an open group on the
    product page, which group they pick, who shares a group's link and how hard."""

    look_share: float = Field(default=0.5, ge=0, le=1, description=(
        "share of group buyers (first-time, or invitees whose group has closed) who look for "
        "an open group of the SKU on the product page before opening their own"))
    choice: Literal["closest", "oldest"] = Field(default="closest", description=(
        "which open group a looker joins: 'closest' = fewest members missing to its next "
        "tier, then the one closing soonest; 'oldest' = the one opened first"))
    members_share: bool = Field(default=False, description=(
        "members share the group's link too (else only the leader does)"))
    share_effort: float = Field(default=2.0, ge=0, le=100, description=(
        "a sharer sends invites_per_sharer * (1 + share_effort * (g + reward_weight * rho)) "
        "invites on average, g the share of the list price still to be won at the group's "
        "next tier, rho the rewards it stands to earn (see audience.referral.reward_weight)"))


CHANNELS = ("invite", "group", "coupon", "flash_sale", "regular")
"""How an acquired buyer came, first match wins: by an invite link; through a group; with a
coupon; in a time discount (flash sale, 首小时5折); else regular."""


class Repurchase(Section):
    """After the campaign, for one segment's acquired buyers: a buyer is active in the first
    period; after it stays active with `retention`, after each later period with 1 - `churn`;
    while active it places a repurchase order in a period with chance `repurchase`.
    Simulation only. Keys left out inherit the `[audience.after_campaign]` value."""

    retention: float | None = Field(default=None, ge=0, le=1, description=(
        "share of acquired buyers still active after the first period (the plans: 25-30% "
        "at 30 days)"))
    churn: float | None = Field(default=None, ge=0, le=1, description=(
        "share of active buyers lost after each later period"))
    repurchase: float | None = Field(default=None, ge=0, le=1, description=(
        "chance an active buyer orders again in a period (at most one order a period)"))
    order_value: float | None = Field(default=None, gt=0, le=1e7, description=(
        "yuan per repurchase order at list price; default: the list value of the buyer's "
        "campaign order"))


class ChannelEffect(Section):
    """Multipliers on a channel's repurchase chance and order value (1 = as the segment)."""

    repurchase: float = Field(default=1.0, ge=0, le=100)
    order_value: float = Field(default=1.0, gt=0, le=100)


class ChannelEffects(Section):
    """One `ChannelEffect` per acquisition channel (see CHANNELS)."""

    invite: ChannelEffect = Field(default_factory=ChannelEffect)
    group: ChannelEffect = Field(default_factory=ChannelEffect)
    coupon: ChannelEffect = Field(default_factory=ChannelEffect)
    flash_sale: ChannelEffect = Field(default_factory=ChannelEffect)
    regular: ChannelEffect = Field(default_factory=ChannelEffect)


class AfterCampaign(Section):
    """What an acquired buyer (a `new`-segment buyer or an invitee) is worth after the
    campaign: repurchases over `horizon_days`, in periods of `period_days`, discounted at
    `annual_discount_rate`. Simulation only. The defaults are mid-range of the plans'
    figures (DESIGN.md): 28% active after 30 days, about a quarter repurchasing within a year.
    """

    horizon_days: int = Field(default=360, ge=1, le=3650, description="days after the sale")
    period_days: int = Field(default=30, ge=1, le=365, description="days per period")
    annual_discount_rate: float = Field(default=0.10, ge=0, le=1, description=(
        "yearly rate future margin is discounted at (0.10: 100 yuan in a year is worth 91)"))
    margin: float | None = Field(default=None, ge=0, le=1, description=(
        "share of a repurchase's value kept after goods cost; default: the list margin of "
        "the SKU bought in the campaign"))
    retention: float = Field(default=0.28, ge=0, le=1, description="see Repurchase")
    churn: float = Field(default=0.12, ge=0, le=1, description="see Repurchase")
    repurchase: float = Field(default=0.10, ge=0, le=1, description="see Repurchase")
    order_value: float | None = Field(default=None, gt=0, le=1e7, description="see Repurchase")
    segments: dict[str, Repurchase] = Field(default_factory=dict, description=(
        "segment name -> its own values (keys left out use the ones above)"))
    channels: ChannelEffects = Field(default_factory=ChannelEffects)

    @model_validator(mode="after")
    def _horizon(self) -> AfterCampaign:
        if self.horizon_days < self.period_days:
            raise ValueError(at("horizon_days", reason=f"shorter than one period "
                                f"(period_days = {self.period_days})"))
        return self

    def for_segment(self, name: str) -> Repurchase:
        """The segment's values with the section's defaults filled in."""
        own = self.segments.get(name, Repurchase())
        return Repurchase(**{k: getattr(self, k) if getattr(own, k) is None else getattr(own, k)
                             for k in Repurchase.model_fields})


class Audience(Section):
    """Arrivals (per phase, or an hourly curve), segments, referral rules, and what acquired
    buyers are worth after the campaign."""

    arrivals_per_hour: dict[str, float] | None = Field(
        default=None, description="phase name -> arrivals per hour")
    hourly_curve: list[float] | None = Field(
        default=None, description="arrivals per hour for hour 0, 1, 2 …")
    segments: list[Segment] = Field(min_length=1)
    referral: Referral | None = None
    groups: GroupBehaviour | None = None
    after_campaign: AfterCampaign = Field(default_factory=AfterCampaign)

    @model_validator(mode="after")
    def _consistent(self) -> Audience:
        if (self.arrivals_per_hour is None) == (self.hourly_curve is None):
            raise ValueError(at("arrivals_per_hour",
                                reason="give exactly one of arrivals_per_hour or hourly_curve"))
        for name, rate in (self.arrivals_per_hour or {}).items():
            if rate < 0:
                raise ValueError(at("arrivals_per_hour", name, reason="must be >= 0"))
        for i, rate in enumerate(self.hourly_curve or []):
            if rate < 0:
                raise ValueError(at("hourly_curve", i, reason="must be >= 0"))
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(at("segments", reason="segment names must be unique"))
        total = sum(s.share for s in self.segments)
        if abs(total - 1) > 1e-6:
            raise ValueError(at("segments", reason=f"shares must add up to 1 (they add up to "
                                f"{total:g})"))
        if self.referral and self.referral.invitee_segment not in (None, *names):
            raise ValueError(at("referral", "invitee_segment",
                                reason=f"unknown segment; segments are {names}"))
        for name in self.after_campaign.segments:
            if name not in names:
                raise ValueError(at("after_campaign", "segments", name,
                                    reason=f"unknown segment; segments are {names}"))
        return self

    def segment(self, name: str) -> Segment:
        """The segment with this name; KeyError if there is none."""
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)
