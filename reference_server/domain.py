"""What every store shares: the loaded sale, pricing through `campaign.pricing`, ids, views.

Stores keep rows as plain dicts with the column names used here; `order_view` and `group_view`
turn them into the contract's JSON."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from campaign.pricing import PriceContext, price_order, to_cents
from campaign.rules import CampaignRules, Coupon, Sku
from reference_server.errors import ApiError


@dataclass(frozen=True)
class Sale:
    """A loaded sale: the campaign rules plus the timing the server applies to them."""

    rules: CampaignRules
    start: float
    payment_timeout: float
    group_window: float
    fingerprint: str
    sale_id: str = ""
    """Opaque; new on every load and reset, kept across restarts (CONTRACT.md 1.2)."""

    @property
    def name(self) -> str:
        return self.rules.name

    def hour(self, now: float) -> float:
        """Hours since the sale started (time discounts count from here)."""
        return max(0.0, (now - self.start) / 3600.0)

    def sku(self, sku_id: str) -> Sku:
        try:
            return self.rules.sku(sku_id)
        except KeyError:
            raise ApiError("not_found", f"no SKU {sku_id!r} in this sale") from None

    def coupon(self, coupon_id: str) -> Coupon:
        try:
            return self.rules.coupon(coupon_id)
        except KeyError:
            raise ApiError("not_found", f"no coupon {coupon_id!r} in this sale") from None


def campaign_fingerprint(campaign_json: str) -> str:
    """Identifies a campaign: start-up reloads the scenario only when this changes."""
    return hashlib.sha256(campaign_json.encode()).hexdigest()[:32]


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=16)
def rules_from_json(campaign_json: str) -> CampaignRules:
    """Parsed campaign rules, cached: every request of every store needs them."""
    return CampaignRules.model_validate_json(campaign_json)


def sale_from_record(campaign_json: str, start: float, payment_timeout: float,
                     group_window: float, sale_id: str = "") -> Sale:
    return Sale(rules_from_json(campaign_json), start, payment_timeout, group_window,
                campaign_fingerprint(campaign_json), sale_id)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Quote:
    """An order's prices in fen: now, and per group outcome (tier size or "fallback")."""

    amount: int
    list_amount: int
    by_outcome: dict[str, int]


def quote(sale: Sale, sku: Sku, quantity: int, coupon: Coupon | None, now: float,
          in_group: bool) -> Quote:
    """Price an order with `campaign.pricing.price_order`, the one pricing function.

    A group member's order is priced at the smallest tier now; the prices it would get at every
    other tier, and at the fallback price, are computed at the same moment so a store can re-price
    it atomically when the group closes."""
    hour = sale.hour(now)

    def price(members: int | None, fallback: bool = False) -> int:
        ctx = PriceContext(sku=sku, quantity=quantity, hour=hour, group_members=members,
                           group_failed_fallback=fallback, coupon=coupon)
        return price_order(sale.rules, ctx).total

    list_amount = price_order(sale.rules, PriceContext(sku=sku, quantity=quantity)).list_total
    groups = sale.rules.groups
    if not in_group or groups is None:
        return Quote(price(None), list_amount, {})
    by_outcome = {str(t.size): price(t.size) for t in groups.tiers}
    by_outcome["fallback"] = price(0, fallback=True)
    return Quote(by_outcome[str(groups.min_size)], list_amount, by_outcome)


def gift_for(sale: Sale, sku: Sku, paid_seq: int) -> bool:
    """Whether the `paid_seq`-th paid order of the sale gets the first-N gift."""
    return price_order(sale.rules, PriceContext(sku=sku, order_seq=paid_seq)).gift


def price_now(sale: Sale, sku: Sku, now: float) -> int:
    """Single-buyer ordinary unit price right now, in fen."""
    return quote(sale, sku, 1, None, now, in_group=False).amount


ORDER_FIELDS = ("order_id", "user_id", "sku_id", "quantity", "status", "group_id", "coupon_id",
                "idempotency_key", "amount", "list_amount", "gift", "created_at", "expires_at",
                "paid_at", "closed_at", "paid_seq")


def order_view(row: dict[str, Any]) -> dict[str, Any]:
    """The contract's Order from a stored row."""
    out = {k: row.get(k) for k in ORDER_FIELDS}
    for k in ("quantity", "amount", "list_amount"):
        out[k] = int(out[k])
    for k in ("created_at", "expires_at", "paid_at", "closed_at"):
        out[k] = None if out[k] in (None, "") else float(out[k])
    for k in ("group_id", "coupon_id"):
        out[k] = out[k] or None
    out["gift"] = bool(int(out["gift"] or 0))
    out["paid_seq"] = None if out["paid_seq"] in (None, "") else int(out["paid_seq"])
    mv = row.get("movements") or "[]"
    out["movements"] = json.loads(mv) if isinstance(mv, str) else mv
    return out


def group_view(row: dict[str, Any], order_ids: list[str], sale: Sale | None) -> dict[str, Any]:
    """The contract's Group; an open group reports the tier its active members reach now."""
    members = int(row["members"])
    tier = row.get("tier_reached")
    if row["status"] == "open" and sale is not None and sale.rules.groups is not None:
        reached = sale.rules.groups.tier_reached(members)
        tier = reached.size if reached else None
    return {
        "group_id": row["group_id"], "sku_id": row["sku_id"], "leader_id": row["leader_id"],
        "status": row["status"], "deadline": float(row["deadline"]), "members": members,
        "paid_members": int(row["paid_members"]), "top_size": int(row["top_size"]),
        "min_size": int(row["min_size"]),
        "tier_reached": None if tier in (None, "") else int(tier),
        "order_ids": order_ids,
        "closed_at": None if row.get("closed_at") in (None, "") else float(row["closed_at"]),
        "leader_reward": leader_reward(row["status"], sale),
    }


def leader_reward(status: str, sale: Sale | None) -> int:
    """The reward (fen) a group's leader got: the campaign's, for a completed group only."""
    groups = sale.rules.groups if sale is not None else None
    if status != "completed" or groups is None:
        return 0
    return to_cents(groups.leader_reward)


def movement(kind: str, quantity: int, at: float, seq: int) -> dict[str, Any]:
    """One stock movement of an order; `seq` orders all movements of the sale."""
    return {"kind": kind, "quantity": quantity, "at": at, "seq": seq}
