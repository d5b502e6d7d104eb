"""The rules above the stores: the loaded sale, request checks and pricing (through
`campaign.pricing`, once, in `prepare_reserve`), the typed rows stores return, and the views
that turn rows into the contract's JSON."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

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


_ID_PREFIX = secrets.token_hex(5)  # per process: ids stay unique across workers and restarts
_ID_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id: a random per-process part and a counter (a syscall per id for a fully
    random one showed in the profile; ids need to be unique, and owners are checked anyway)."""
    return f"{prefix}-{_ID_PREFIX}{next(_ID_COUNTER):x}"


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


def check_prices(sale: Sale) -> None:
    """Price every SKU once (alone, in a group, with each coupon) so a campaign whose numbers
    overflow the arithmetic is refused now rather than failing every later order."""
    try:
        for sku in sale.rules.skus:
            for coupon in [None, *sale.rules.coupons]:
                for in_group in (False, True):
                    quote(sale, sku, sale.rules.per_user_limit, coupon, sale.start, in_group)
    except (OverflowError, ValueError) as exc:
        raise ApiError("invalid", f"campaign: amounts out of range ({exc})") from None


def price_now(sale: Sale, sku: Sku, now: float) -> int:
    """Single-buyer ordinary unit price right now, in fen."""
    return quote(sale, sku, 1, None, now, in_group=False).amount


OrderStatus = Literal["reserved", "paid", "cancelled", "expired", "refunded"]


@dataclass(frozen=True)
class OrderRow:
    """An order as a store holds it; `view()` is the contract's Order."""

    order_id: str
    user_id: str
    sku_id: str
    quantity: int
    status: OrderStatus
    group_id: str | None
    coupon_id: str | None
    idempotency_key: str
    amount: int
    list_amount: int
    gift: bool
    created_at: float
    expires_at: float
    paid_at: float | None
    closed_at: float | None
    paid_seq: int | None
    movements: list[dict[str, Any]]

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> OrderRow:
        """From a stored row whose values may be text (Redis) or SQL types; '' is null."""
        mv = f.get("movements") or "[]"
        return cls(
            order_id=str(f["order_id"]), user_id=str(f["user_id"]), sku_id=str(f["sku_id"]),
            quantity=int(f["quantity"]), status=f["status"], group_id=f.get("group_id") or None,
            coupon_id=f.get("coupon_id") or None, idempotency_key=str(f["idempotency_key"]),
            amount=int(f["amount"]), list_amount=int(f["list_amount"]),
            gift=bool(int(f.get("gift") or 0)), created_at=float(f["created_at"]),
            expires_at=float(f["expires_at"]), paid_at=_opt_float(f.get("paid_at")),
            closed_at=_opt_float(f.get("closed_at")), paid_seq=_opt_int(f.get("paid_seq")),
            movements=json.loads(mv) if isinstance(mv, str) else list(mv))

    def view(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id, "user_id": self.user_id, "sku_id": self.sku_id,
            "quantity": self.quantity, "status": self.status, "group_id": self.group_id,
            "coupon_id": self.coupon_id, "idempotency_key": self.idempotency_key,
            "amount": self.amount, "list_amount": self.list_amount, "gift": self.gift,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "paid_at": self.paid_at, "closed_at": self.closed_at, "paid_seq": self.paid_seq,
            "movements": self.movements}


@dataclass(frozen=True)
class GroupRow:
    """A group as a store holds it, with its orders' ids in joining order."""

    group_id: str
    sku_id: str
    leader_id: str
    status: Literal["open", "completed", "failed"]
    deadline: float
    members: int
    paid_members: int
    top_size: int
    min_size: int
    tier_reached: int | None
    closed_at: float | None
    order_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_fields(cls, f: dict[str, Any], order_ids: list[str]) -> GroupRow:
        return cls(
            group_id=str(f["group_id"]), sku_id=str(f["sku_id"]), leader_id=str(f["leader_id"]),
            status=f["status"], deadline=float(f["deadline"]), members=int(f["members"]),
            paid_members=int(f["paid_members"]), top_size=int(f["top_size"]),
            min_size=int(f["min_size"]), tier_reached=_opt_int(f.get("tier_reached")),
            closed_at=_opt_float(f.get("closed_at")), order_ids=list(order_ids))


@dataclass(frozen=True)
class ClaimRow:
    """A coupon claim: which user took which coupon, and the order that used it (if any)."""

    claim_id: str
    coupon_id: str
    user_id: str
    claimed_at: float
    order_id: str | None
    idempotency_key: str | None

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> ClaimRow:
        return cls(claim_id=str(f["claim_id"]), coupon_id=str(f["coupon_id"]),
                   user_id=str(f["user_id"]), claimed_at=float(f["claimed_at"]),
                   order_id=f.get("order_id") or None,
                   idempotency_key=f.get("idempotency_key") or None)

    def view(self) -> dict[str, Any]:
        """The claim as `POST /v1/coupons/{id}/claim` answers it."""
        return {"claim_id": self.claim_id, "coupon_id": self.coupon_id, "user_id": self.user_id,
                "claimed_at": self.claimed_at}

    def export_view(self) -> dict[str, Any]:
        """The claim as the admin export shows it."""
        return self.view() | {"order_id": self.order_id, "idempotency_key": self.idempotency_key}


def _opt_float(v: Any) -> float | None:
    return None if v in (None, "") else float(v)


def _opt_int(v: Any) -> int | None:
    return None if v in (None, "") else int(v)


def group_view(row: GroupRow, sale: Sale | None) -> dict[str, Any]:
    """The contract's Group; an open group reports the tier its active members reach now."""
    tier = row.tier_reached
    if row.status == "open" and sale is not None and sale.rules.groups is not None:
        reached = sale.rules.groups.tier_reached(row.members)
        tier = reached.size if reached else None
    return {
        "group_id": row.group_id, "sku_id": row.sku_id, "leader_id": row.leader_id,
        "status": row.status, "deadline": row.deadline, "members": row.members,
        "paid_members": row.paid_members, "top_size": row.top_size, "min_size": row.min_size,
        "tier_reached": tier, "order_ids": list(row.order_ids), "closed_at": row.closed_at,
        "leader_reward": leader_reward(row.status, sale),
    }


@dataclass(frozen=True)
class ReserveRequest:
    """What a buyer asked for (already well-formed: the HTTP layer validated the body)."""

    user_id: str
    sku_id: str
    quantity: int
    idempotency_key: str
    coupon_id: str | None = None
    group_id: str | None = None
    fingerprint: str = ""
    """The request's idempotency fingerprint, stored with the order: a retry under the same key
    with another request is refused even when the replay record is gone (503, lost reply)."""


@dataclass(frozen=True)
class NewGroup:
    """A group to open together with its leader's order."""

    group_id: str
    deadline: float
    top_size: int
    min_size: int


@dataclass(frozen=True)
class PricedReserve:
    """A reservation checked against the sale's rules and priced: all a store needs to make it
    atomically. `sale_id` names the sale it was priced under; a store refuses it (`StaleSale`)
    once another sale is loaded."""

    req: ReserveRequest
    sale_id: str
    order_id: str
    per_user_limit: int
    amount: int
    list_amount: int
    prices: dict[str, int]
    """Amount per group outcome (tier size or "fallback"), for re-pricing when it closes."""
    expires_at: float
    new_group: NewGroup | None = None

    @property
    def group_id(self) -> str | None:
        return self.new_group.group_id if self.new_group else self.req.group_id


def prepare_reserve(sale: Sale, req: ReserveRequest, now: float, *,
                    open_group: bool = False) -> PricedReserve:
    """The rule checks that need no stored state, and the price, done once above the store:
    unknown SKU or coupon (404), quantity above the per-user limit or a group in a sale without
    group buying (422)."""
    groups = sale.rules.groups
    if open_group and groups is None:
        raise ApiError("invalid", "this sale has no group buying")
    sku = sale.sku(req.sku_id)
    coupon = sale.coupon(req.coupon_id) if req.coupon_id else None
    if req.quantity > sale.rules.per_user_limit:
        raise ApiError("invalid", f"quantity: at most {sale.rules.per_user_limit} per user")
    new_group = None
    if open_group and groups is not None:
        new_group = NewGroup(new_id("g"), now + sale.group_window, groups.top_size,
                             groups.min_size)
    qt = quote(sale, sku, req.quantity, coupon, now,
               in_group=open_group or req.group_id is not None)
    return PricedReserve(req, sale.sale_id, new_id("o"), sale.rules.per_user_limit, qt.amount,
                         qt.list_amount, qt.by_outcome, now + sale.payment_timeout, new_group)


def leader_reward(status: str, sale: Sale | None) -> int:
    """The reward (fen) a group's leader got: the campaign's, for a completed group only."""
    groups = sale.rules.groups if sale is not None else None
    if status != "completed" or groups is None:
        return 0
    return to_cents(groups.leader_reward)


def movement(kind: str, quantity: int, at: float, seq: int) -> dict[str, Any]:
    """One stock movement of an order; `seq` orders all movements of the sale."""
    return {"kind": kind, "quantity": quantity, "at": at, "seq": seq}
