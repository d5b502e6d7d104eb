"""SKU views: `GET /v1/skus`, `GET /v1/skus/{sku_id}` (anyone)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from campaign.pricing import to_cents
from reference_server.api.deps import ClockDep, StoreDep
from reference_server.api.models import ID
from reference_server.api.schemas import Skus, SkuView, responses
from reference_server.api.steps import current_sale
from reference_server.domain import Sale, price_now
from reference_server.errors import ApiError

router = APIRouter(prefix="/v1/skus", tags=["catalog"])
SkuId = Annotated[str, Path(pattern=ID.pattern)]


def sku_view(sale: Sale, sku_id: str, counters: dict[str, int], now: float) -> dict[str, Any]:
    sku = sale.sku(sku_id)
    return {"sku_id": sku.id, "name": sku.name, "list_price": to_cents(sku.list_price),
            "price_now": price_now(sale, sku, now), "available": counters["available"],
            "initial": counters["initial"]}


@router.get("", response_model=None, responses=responses(200, Skus, 409))
async def skus(store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    sale = await current_sale(store)
    counters = await store.skus()
    return {"skus": [sku_view(sale, s.id, counters[s.id], clock()) for s in sale.rules.skus
                     if s.id in counters]}


@router.get("/{sku_id}", response_model=None,
            responses=responses(200, SkuView, 404, 409, 422))
async def sku(sku_id: SkuId, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    sale = await current_sale(store)
    counters = await store.skus()
    if sku_id not in counters:
        raise ApiError("not_found", f"no SKU {sku_id!r} in this sale")
    return sku_view(sale, sku_id, counters[sku_id], clock())
