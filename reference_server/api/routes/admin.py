"""Admin (admin token only): load and reset the sale, mint user tokens, run expiry, read the
ledger and the paged exports the checker uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from campaign.errors import problems_from_validation
from campaign.rules import CampaignRules
from reference_server.api.deps import AdminDep, ClockDep, JsonBody, Page, StoreDep
from reference_server.api.models import SaleBody, UserTokensBody, parse
from reference_server.api.schemas import (
    ClaimsPage,
    Expired,
    GroupsPage,
    Ledger,
    OrdersPage,
    SaleLoaded,
    SaleReset,
    Tokens,
    json_body,
    responses,
)
from reference_server.api.steps import current_sale, expire_now, sale_record
from reference_server.auth import token_ttl, user_token
from reference_server.domain import (
    ClaimRow,
    GroupRow,
    OrderRow,
    check_prices,
    group_view,
    sale_from_record,
)
from reference_server.errors import ApiError

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


@router.post("/sale", response_model=None, openapi_extra=json_body(SaleBody),
             responses=responses(200, SaleLoaded, 401, 403, 413, 422))
async def load_sale(data: JsonBody, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    """Load a sale and reset all state."""
    body = parse(SaleBody, data)
    try:
        rules = CampaignRules.model_validate(body.campaign)
    except ValidationError as exc:
        lines = [f"campaign.{p}" for p in problems_from_validation(exc)]
        raise ApiError("invalid", "\n".join(lines)) from None
    record = sale_record(rules, body.start if body.start is not None else clock(),
                         body.payment_timeout_seconds, body.group_window_seconds)
    check_prices(sale_from_record(record.campaign_json, record.start, record.payment_timeout,
                                  record.group_window))
    await store.load_sale(record, if_absent=False)
    store.forget_recent_sale()
    return {"sale": rules.name, "start": record.start,
            "payment_timeout_seconds": record.payment_timeout,
            "group_window_seconds": record.group_window, "skus": await store.skus()}


@router.post("/reset", response_model=None,
             responses=responses(200, SaleReset, 401, 403, 409))
async def reset(store: StoreDep) -> dict[str, Any]:
    """Back to the loaded sale's initial state."""
    await store.reset()
    store.forget_recent_sale()
    return {"sale": (await current_sale(store)).name, "skus": await store.skus()}


@router.post("/user-tokens", response_model=None, openapi_extra=json_body(UserTokensBody),
             responses=responses(200, Tokens, 401, 403, 413, 422))
async def user_tokens(data: JsonBody, request: Request, clock: ClockDep) -> dict[str, Any]:
    """Mint user tokens; each is valid until `expires_at` (CONTRACT.md 1.2)."""
    body = parse(UserTokensBody, data)
    secret = request.app.state.secret
    expires = int(clock() + token_ttl())
    return {"tokens": {u: user_token(secret, u, expires) for u in body.user_ids},
            "expires_at": float(expires)}


@router.post("/expire", response_model=None, responses=responses(200, Expired, 401, 403))
async def expire(store: StoreDep, clock: ClockDep) -> dict[str, int]:
    expired, closed = await expire_now(store, clock)
    return {"expired_orders": expired, "closed_groups": closed}


@router.get("/ledger", response_model=None,
            responses=responses(200, Ledger, 401, 403, 409))
async def ledger(store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    sale = await current_sale(store)
    return {"sale": sale.name, "sale_id": sale.sale_id, "start": sale.start,
            "payment_timeout_seconds": sale.payment_timeout,
            "group_window_seconds": sale.group_window, "now": clock(),
            "skus": await store.skus(), **await store.ledger_counts()}


@router.get("/orders", response_model=None,
            responses=responses(200, OrdersPage, 401, 403, 422))
async def export_orders(store: StoreDep, page: Page) -> dict[str, Any]:
    rows, nxt = await store.export("orders", *page)
    return {"orders": [r.view() for r in rows if isinstance(r, OrderRow)], "next": _cursor(nxt)}


@router.get("/groups", response_model=None,
            responses=responses(200, GroupsPage, 401, 403, 422))
async def export_groups(store: StoreDep, page: Page) -> dict[str, Any]:
    rows, nxt = await store.export("groups", *page)
    sale = await store.sale()
    return {"groups": [group_view(r, sale) for r in rows if isinstance(r, GroupRow)],
            "next": _cursor(nxt)}


@router.get("/coupon-claims", response_model=None,
            responses=responses(200, ClaimsPage, 401, 403, 422))
async def export_claims(store: StoreDep, page: Page) -> dict[str, Any]:
    rows, nxt = await store.export("claims", *page)
    return {"claims": [r.export_view() for r in rows if isinstance(r, ClaimRow)],
            "next": _cursor(nxt)}


def _cursor(seq: int | None) -> str | None:
    return None if seq is None else str(seq)
