"""Coupons: claim one from the pool (`POST /v1/coupons/{coupon_id}/claim`)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import Idempotent, OptionalJsonBody
from reference_server.api.models import ID
from reference_server.api.schemas import Claim, json_body, responses
from reference_server.errors import ApiError
from reference_server.stores.base import CreateOp

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
CouponId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("/{coupon_id}/claim", status_code=201, response_model=None,
             openapi_extra=json_body(None, required=False),
             responses=responses(201, Claim, 401, 403, 404, 409, 413, 422))
async def claim(coupon_id: CouponId, data: OptionalJsonBody, guard: Idempotent) -> Response:
    if data != {}:
        raise ApiError("invalid", "the claim body must be empty or {}")

    async def build(now: float) -> CreateOp:
        return CreateOp("claim", (coupon_id, guard.user, guard.key),
                        lambda row: json.dumps(row.view()))
    return await guard.run({}, build)
