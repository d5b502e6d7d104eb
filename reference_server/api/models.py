"""Request bodies (pydantic, unknown fields refused) — the contract's JSON inputs."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from campaign.errors import problems_from_validation
from reference_server.auth import USER_ID
from reference_server.errors import ApiError

MAX_TOKENS_PER_CALL = 10_000
ID = USER_ID  # SKU, order, group and coupon ids follow the user-id pattern
Ident = Annotated[str, Field(pattern=ID.pattern)]
M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReserveBody(_Body):
    sku_id: Ident
    quantity: StrictInt = Field(ge=1, le=1000)
    coupon_id: Ident | None = None
    group_id: Ident | None = None


class OpenGroupBody(_Body):
    sku_id: Ident
    quantity: StrictInt = Field(ge=1, le=1000)
    coupon_id: Ident | None = None


class SaleBody(_Body):
    campaign: dict[str, Any]
    payment_timeout_seconds: StrictFloat | StrictInt | None = Field(None, gt=0, le=30 * 86400)
    group_window_seconds: StrictFloat | StrictInt | None = Field(None, gt=0, le=365 * 86400)
    start: StrictFloat | StrictInt | None = Field(None, ge=0, le=1e11)


class UserTokensBody(_Body):
    user_ids: list[Annotated[str, Field(pattern=USER_ID.pattern)]] = Field(
        max_length=MAX_TOKENS_PER_CALL)


def parse(model: type[M], data: Any) -> M:
    """`data` as `model`, or `422 invalid` naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError("invalid", "; ".join(problems_from_validation(exc))) from None
