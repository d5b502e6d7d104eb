"""Orders: reserve (`POST /v1/orders`, also joining a group), view, pay, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import Caller, ClockDep, CurrentUser, Idempotent, JsonBody, StoreDep
from reference_server.api.models import ID, ReserveBody, parse
from reference_server.api.steps import reserve_order
from reference_server.domain import ReserveRequest
from reference_server.errors import ApiError

router = APIRouter(prefix="/v1/orders", tags=["orders"])
OrderId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("", status_code=201)
async def reserve(user: CurrentUser, data: JsonBody, guard: Idempotent, store: StoreDep,
                  clock: ClockDep) -> Response:
    """Reserve stock for an order; with `group_id`, join that group."""
    body = parse(ReserveBody, data)
    req = ReserveRequest(user, body.sku_id, body.quantity, guard.key, body.coupon_id,
                         body.group_id)

    async def act() -> dict[str, Any]:
        return (await reserve_order(store, clock, req)).view()
    return await guard.run(data, act)


@router.get("/{order_id}")
async def get_order(order_id: OrderId, user: Caller, store: StoreDep) -> dict[str, Any]:
    row = await store.order(order_id)
    if row is None:
        raise ApiError("not_found", f"no order {order_id!r}")
    if user is not None and row.user_id != user:
        raise ApiError("forbidden", "this order belongs to another user")
    return row.view()


@router.post("/{order_id}/pay")
async def pay(order_id: OrderId, user: CurrentUser, store: StoreDep,
              clock: ClockDep) -> dict[str, Any]:
    return (await store.pay(order_id, user, clock())).view()


@router.post("/{order_id}/cancel")
async def cancel(order_id: OrderId, user: CurrentUser, store: StoreDep,
                 clock: ClockDep) -> dict[str, Any]:
    return (await store.cancel(order_id, user, clock())).view()
