"""Response shapes for the served OpenAPI document (CONTRACT.md). Routes return plain JSON for
speed; these models only describe it, so `/openapi.json` documents every body, status code and
error a client can get (checked by a schemathesis run in the test suite)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from reference_server.errors import STATUS

ErrorCode = Literal[tuple(STATUS)]  # type: ignore[valid-type]


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str


class Error(BaseModel):
    """Every error: a stable `code` (CONTRACT.md, "Errors") and a message for people."""

    error: ErrorDetail


class Movement(BaseModel):
    kind: Literal["reserve", "release", "refund"]
    quantity: int
    at: float
    seq: int | None = Field(None, description="sale-wide order of movements (1.2)")


class Order(BaseModel):
    order_id: str
    user_id: str
    sku_id: str
    quantity: int
    status: Literal["reserved", "paid", "cancelled", "expired", "refunded"]
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
    movements: list[Movement]


class Group(BaseModel):
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
    order_ids: list[str]
    closed_at: float | None
    leader_reward: int


class OpenedGroup(BaseModel):
    group: Group
    order: Order


class Claim(BaseModel):
    claim_id: str
    coupon_id: str
    user_id: str
    claimed_at: float


class ClaimExport(Claim):
    order_id: str | None
    idempotency_key: str | None


class SkuView(BaseModel):
    sku_id: str
    name: str
    list_price: int
    price_now: int
    available: int
    initial: int


class Skus(BaseModel):
    skus: list[SkuView]


class SkuCounters(BaseModel):
    initial: int
    available: int
    reserved: int
    sold: int
    released: int
    refunded: int


class Health(BaseModel):
    status: Literal["ok"]
    contract: str
    store: str
    sale: str | None
    safe: bool
    durability: dict[str, str]
    warning: str | None = None


class Ping(BaseModel):
    ok: bool


class SaleLoaded(BaseModel):
    sale: str
    start: float
    payment_timeout_seconds: float
    group_window_seconds: float
    skus: dict[str, SkuCounters]


class SaleReset(BaseModel):
    sale: str
    skus: dict[str, SkuCounters]


class Tokens(BaseModel):
    tokens: dict[str, str]
    expires_at: float


class Expired(BaseModel):
    expired_orders: int
    closed_groups: int


class CouponCounters(BaseModel):
    pool: int
    issued: int
    per_user: int


class Ledger(BaseModel):
    sale: str
    sale_id: str
    start: float
    payment_timeout_seconds: float
    group_window_seconds: float
    now: float
    skus: dict[str, SkuCounters]
    coupons: dict[str, CouponCounters]
    groups: dict[str, int]
    orders: dict[str, int]


class OrdersPage(BaseModel):
    orders: list[Order]
    next: str | None


class GroupsPage(BaseModel):
    groups: list[Group]
    next: str | None


class ClaimsPage(BaseModel):
    claims: list[ClaimExport]
    next: str | None


_WHY = {401: "no or bad token", 403: "someone else's order, or the wrong kind of token",
        404: "unknown SKU, order, group or coupon", 409: "refused by the rules or the state",
        413: "body over 1,000,000 bytes", 422: "malformed request (`invalid`) or a reused "
        "Idempotency-Key", 503: "the store is unavailable (`unavailable`) or the worker is "
        "overloaded (`overloaded`, with Retry-After)"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait (with `overloaded`)",
                               "schema": {"type": "string"}}}


def responses(ok: int, model: type[BaseModel], *errors: int) -> dict[int | str, Any]:
    """`responses=` for a route: its success and each error status it can answer (every route
    can be shed with 503)."""
    out: dict[int | str, Any] = {ok: {"model": model}}
    for status in sorted({*errors, 503}):
        out[status] = {"model": Error, "description": _WHY[status]}
    out[503]["headers"] = RETRY_AFTER
    return out


def json_body(model: type[BaseModel] | None, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra=` documenting a JSON body that the route reads itself (to fingerprint the
    raw JSON for idempotency and to refuse anything but UTF-8)."""
    schema = model.model_json_schema() if model else {"type": "object", "maxProperties": 0}
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": schema}}}}
