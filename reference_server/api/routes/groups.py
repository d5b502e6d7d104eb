"""Groups: open one (`POST /v1/groups`, with the leader's order) and view one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from reference_server.api.deps import ClockDep, CurrentUser, Idempotent, JsonBody, StoreDep
from reference_server.api.models import ID, OpenGroupBody, parse
from reference_server.api.steps import expire_now, open_group
from reference_server.domain import ReserveRequest, group_view
from reference_server.errors import ApiError

router = APIRouter(prefix="/v1/groups", tags=["groups"])
GroupId = Annotated[str, Path(pattern=ID.pattern)]


@router.post("", status_code=201)
async def open_new_group(user: CurrentUser, data: JsonBody, guard: Idempotent, store: StoreDep,
                         clock: ClockDep) -> Response:
    """Open a group led by the caller, reserving the leader's order in the same step."""
    body = parse(OpenGroupBody, data)
    req = ReserveRequest(user, body.sku_id, body.quantity, guard.key, body.coupon_id)

    async def act() -> dict[str, Any]:
        group, order = await open_group(store, clock, req)
        return {"group": group_view(group, await store.sale()), "order": order.view()}
    return await guard.run(data, act)


@router.get("/{group_id}")
async def get_group(group_id: GroupId, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    row = await store.group(group_id)
    if row is None:
        raise ApiError("not_found", f"no group {group_id!r}")
    if row.status == "open" and row.deadline <= clock():  # closes lazily when viewed late
        await expire_now(store, clock)
        row = await store.group(group_id)
        assert row is not None
    return group_view(row, await store.sale())
