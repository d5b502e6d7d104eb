"""Orders: reserve (`POST /v1/orders`, also joining a group), view, pay, cancel."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import (
    Caller,
    ClockDep,
    CurrentUser,
    IdempotencyGuard,
    Idempotent,
    JsonBody,
    StoreDep,
)
from reference_server.api.models import ID, ReserveBody, parse
from reference_server.api.schemas import Order, json_body, responses
from reference_server.api.steps import current_sale
from reference_server.domain import OrderRow, ReserveRequest, prepare_reserve
from reference_server.errors import ApiError
from reference_server.stores.base import CreateOp, Store

router = APIRouter(prefix="/v1/orders", tags=["orders"])
OrderId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("", status_code=201, response_model=None, openapi_extra=json_body(ReserveBody),
             responses=responses(201, Order, 401, 403, 404, 409, 413, 422))
async def reserve(guard: Idempotent, data: JsonBody) -> Response:
    """Reserve stock for an order; with `group_id`, join that group."""
    # the caller is `guard.user`: a `CurrentUser` parameter would be solved a second time
    status, body = await reserve_answer(guard, data)
    return Response(body, status_code=status, media_type="application/json")


async def reserve_answer(guard: IdempotencyGuard, data: Any) -> tuple[int, str]:
    """Reserve under the idempotency guard: (status, JSON body). Shared with the hot path
    (`api/hot.py`)."""
    body, store = parse(ReserveBody, data), guard.store
    req = ReserveRequest(guard.user, body.sku_id, body.quantity, guard.key, body.coupon_id,
                         body.group_id, guard.fingerprint(data))

    async def build(now: float) -> CreateOp:
        priced = prepare_reserve(await current_sale(store, recent=True), req, now)
        return CreateOp("reserve", (priced,), _render)
    return await guard.answer(data, build)


@router.get("/{order_id}", response_model=None,
            responses=responses(200, Order, 401, 403, 404, 422))
async def get_order(order_id: OrderId, user: Caller, store: StoreDep) -> Response:
    row = await store.order(order_id)
    if row is None:
        raise ApiError("not_found", f"no order {order_id!r}")
    if user is not None and row.user_id != user:
        raise ApiError("forbidden", "this order belongs to another user")
    return _order(row)


@router.post("/{order_id}/pay", response_model=None,
             responses=responses(200, Order, 401, 403, 404, 409, 422))
async def pay(order_id: OrderId, user: CurrentUser, store: StoreDep,
              clock: ClockDep) -> Response:
    status, body = await pay_answer(store, order_id, user, clock())
    return Response(body, status_code=status, media_type="application/json")


async def pay_answer(store: Store, order_id: str, user: str, now: float) -> tuple[int, str]:
    """Pay an order: (status, JSON body). Shared with the hot path (`api/hot.py`)."""
    return 200, _render(await store.pay(order_id, user, now))


@router.post("/{order_id}/cancel", response_model=None,
             responses=responses(200, Order, 401, 403, 404, 409, 422))
async def cancel(order_id: OrderId, user: CurrentUser, store: StoreDep,
                 clock: ClockDep) -> Response:
    return _order(await store.cancel(order_id, user, clock()))


def _render(row: OrderRow) -> str:
    """The order as JSON, without FastAPI's generic encoder (plain types already)."""
    return json.dumps(row.view())


def _order(row: OrderRow) -> Response:
    return Response(_render(row), media_type="application/json")
