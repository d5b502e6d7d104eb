"""Groups: open one (`POST /v1/groups`, with the leader's order) and view one."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import ClockDep, Idempotent, JsonBody, StoreDep
from reference_server.api.models import ID, OpenGroupBody, parse
from reference_server.api.schemas import Group, OpenedGroup, json_body, responses
from reference_server.api.steps import current_sale, expire_now
from reference_server.domain import GroupRow, OrderRow, ReserveRequest, group_view, prepare_reserve
from reference_server.errors import ApiError
from reference_server.stores.base import CreateOp

router = APIRouter(prefix="/v1/groups", tags=["groups"])
GroupId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("", status_code=201, response_model=None,
             openapi_extra=json_body(OpenGroupBody),
             responses=responses(201, OpenedGroup, 401, 403, 404, 409, 413, 422))
async def open_new_group(guard: Idempotent, data: JsonBody) -> Response:
    """Open a group led by the caller, reserving the leader's order in the same step."""
    # the caller is `guard.user`: a `CurrentUser` parameter would be solved a second time
    body, store = parse(OpenGroupBody, data), guard.store
    req = ReserveRequest(guard.user, body.sku_id, body.quantity, guard.key, body.coupon_id,
                         fingerprint=guard.fingerprint(data))

    async def build(now: float) -> CreateOp:
        sale = await current_sale(store, recent=True)
        priced = prepare_reserve(sale, req, now, open_group=True)

        def render(rows: tuple[GroupRow, OrderRow]) -> str:
            return json.dumps({"group": group_view(rows[0], sale), "order": rows[1].view()})
        return CreateOp("open_group", (priced,), render)
    return await guard.run(data, build)


@router.get("/{group_id}", response_model=None,
            responses=responses(200, Group, 404, 409, 422))
async def get_group(group_id: GroupId, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    row = await store.group(group_id)
    if row is None:
        raise ApiError("not_found", f"no group {group_id!r}")
    if row.status == "open" and row.deadline <= clock():  # closes lazily when viewed late
        await expire_now(store, clock)
        row = await store.group(group_id)
        assert row is not None
    return group_view(row, await store.sale())
