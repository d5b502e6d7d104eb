"""Coupons: claim one from the pool (`POST /v1/coupons/{coupon_id}/claim`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import ClockDep, Idempotent, OptionalJsonBody, StoreDep
from reference_server.api.models import ID
from reference_server.errors import ApiError

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
CouponId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("/{coupon_id}/claim", status_code=201)
async def claim(coupon_id: CouponId, data: OptionalJsonBody, guard: Idempotent, store: StoreDep,
                clock: ClockDep) -> Response:
    if data != {}:
        raise ApiError("invalid", "the claim body must be empty or {}")

    async def act() -> dict[str, Any]:
        row = await store.claim_coupon(coupon_id, guard.user, guard.key, clock())
        return row.view()
    return await guard.run({}, act)
