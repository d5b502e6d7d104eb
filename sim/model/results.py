"""What one replication returns: the KPIs (fixed names, finite floats), per-SKU sell-out hours,
group outcomes by tier and, for recorded runs, the series the output files need."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from sim.model.after import AFTER_KPIS, AfterValue

KPI_NAMES: tuple[str, ...] = (
    "arrivals", "invitee_arrivals", "visitor_conversion", "buyers", "organic_buyers",
    "invited_buyers", "orders_paid", "units_sold", "turned_away", "expired_reservations",
    "groups_opened", "groups_completed", "groups_failed", "group_completion_rate",
    "top_tier_rate", "mean_group_size", "gmv", "revenue", "goods_cost", "discount_cost",
    "reward_cost", "coupon_cost", "gift_cost", "subsidy_spent", "subsidy_budget_left",
    "gross_profit", "profit", "acquired_buyers", "cost_per_acquired_buyer", "roi",
    "invites_sent", "invite_conversion", "viral_coefficient", "amplification",
    "invited_buyer_share", "mean_referral_tree_size", "max_referral_depth", "skus_sold_out",
    "stock_left", *AFTER_KPIS,
)
"""Every run reports these, in this order; money in yuan. The last ones (`AFTER_KPIS`) are
the acquired buyers' value after the campaign (`after.py`)."""

MONEY_KPIS = frozenset({"gmv", "revenue", "goods_cost", "discount_cost", "reward_cost",
                        "coupon_cost", "gift_cost", "subsidy_spent", "subsidy_budget_left",
                        "gross_profit", "profit", "cost_per_acquired_buyer", "ltv",
                        "lifetime_profit"})


class GroupRecord(NamedTuple):
    """One closed group of a recorded run."""

    opened: float
    closed: float
    members: int
    tier: int
    """Size of the tier reached; 0 when the group failed."""
    outcome: str
    """"completed", "refunded" or "fallback"."""
    leader_depth: int
    """Referral depth of the leader: 0 for a first-time arrival, 1 for a friend's friend …"""


@dataclass
class Recording:
    """What a recorded run keeps for the output files (per-minute series over the sale)."""

    arrivals: np.ndarray
    """Per minute: first-time arrivals plus invitee arrivals."""
    reservations: np.ndarray
    payments: np.ndarray
    open_groups: np.ndarray
    """Open groups at the end of each minute."""
    stock: np.ndarray
    """Units available (all SKUs) at the end of each minute."""
    stock_by_sku: np.ndarray
    """Units available per SKU at the end of each minute: shape (minutes, SKUs)."""
    groups: list[GroupRecord]
    trees: list[tuple[int, int]]
    """(buyers, max depth) per referral tree, rooted at each first-time shopper who started
    one (counted when somebody in it bought)."""
    stock_trace: list[tuple[float, int, int, int, int]]
    """(hour, sku, available, reserved, sold) after every stock movement; only kept with
    `trace=True` (it is long), else empty."""


@dataclass
class EventLog:
    """A run's event log before it is written (`sim.events` writes and documents it): the
    first-time visits as arrays, the other events as rows in time order, the repurchases,
    and the acquired buyers (user, segment, SKU, channel)."""

    visits: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(hour, segment index, SKU index) of every first-time arrival; its user id is its index."""
    rows: list[tuple]
    repurchases: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(index into the acquired buyers, day after the sale, order value in yuan)."""
    buyers: list[int]
    buyer_segments: list[int]
    buyer_skus: list[int]
    buyer_channels: list[str]


@dataclass
class RunResult:
    """One replication: every KPI, per-SKU sell-out hours (None: not sold out), groups per
    outcome (`tier <size>`, `failed`), the SimPy event count and, if asked, the recording."""

    kpis: dict[str, float]
    events: int
    sell_out: list[float | None] = field(default_factory=list)
    group_outcomes: dict[str, int] = field(default_factory=dict)
    recording: Recording | None = None
    after: AfterValue | None = None
    """The acquired buyers' value after the campaign: per channel, value curves."""
    event_log: EventLog | None = None


def sale_minutes(duration_hours: float) -> int:
    """Minutes in a sale of this many hours (a started minute counts): the length of every
    per-minute series, timeseries.csv and arrivals.csv alike."""
    return max(1, math.ceil(duration_hours * 60 - 1e-9))
