"""The `[audience]` section: who arrives, when, how they convert and share."""

from __future__ import annotations

from pydantic import Field, model_validator

from campaign.base import Section
from campaign.errors import at

Probability = Field(ge=0, le=1)


class Segment(Section):
    """A shopper segment (new / active / loyal, or price-sensitive / social …).

    Conversion rises with the effective discount d (0..1, share off the list price):
    p = min(1, base_conversion * (1 + price_sensitivity * d)). price_sensitivity 0 ignores price;
    with price_sensitivity 4 a 50% discount triples the base conversion.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    share: float = Field(gt=0, le=1, description="share of arrivals")
    base_conversion: float = Probability
    price_sensitivity: float = Field(default=1.0, ge=0, le=100)
    share_propensity: float = Field(default=0.0, ge=0, le=1,
                                    description="chance a buyer shares an invite link")
    group_propensity: float = Field(default=0.5, ge=0, le=1,
                                    description="chance a buyer buys through a group")
    pay_probability: float = Field(default=0.9, ge=0, le=1, description="chance a reservation "
                                   "is paid before the payment timeout; the rest abandon")
    member_tier: str = "ordinary"
    quantity: int = Field(default=1, ge=1, le=1000, description="units per order")


class Referral(Section):
    """Referral fission (裂变): sharers invite friends, who arrive later and may convert."""

    invites_per_sharer: float = Field(ge=0, le=1000, description="mean invites (Poisson)")
    invite_delay_minutes: float = Field(gt=0, description="mean delay before an invitee arrives "
                                        "(exponential)")
    invitee_conversion: float = Probability
    invitee_share_propensity: float | None = Field(default=None, ge=0, le=1, description=(
        "chance a converted invitee shares in turn; default: the invitee segment's"))
    invitee_segment: str | None = Field(default=None, description="segment invitees behave "
                                        "like; default: the first segment")
    inviter_reward: float = Field(default=0, ge=0, description="yuan to the inviter on the "
                                  "invitee's first paid order (老带新)")
    invitee_reward: float = Field(default=0, ge=0, description="yuan off the invitee's first order")
    depth_cap: int = Field(ge=1, le=100, description="deepest referral level rewarded and followed")
    bonus_after_invites: int | None = Field(default=None, ge=1, description="successful invites "
                                            "after which a sharer is a fission master")
    bonus_per_invite: float = Field(default=0, ge=0, description="extra yuan per successful "
                                    "invite beyond bonus_after_invites")


class Audience(Section):
    """Arrivals (per phase, or an hourly curve), segments, referral rules."""

    arrivals_per_hour: dict[str, float] | None = Field(
        default=None, description="phase name -> arrivals per hour")
    hourly_curve: list[float] | None = Field(
        default=None, description="arrivals per hour for hour 0, 1, 2 …")
    segments: list[Segment] = Field(min_length=1)
    referral: Referral | None = None

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
        return self

    def segment(self, name: str) -> Segment:
        """The segment with this name; KeyError if there is none."""
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)
