"""`/v1/health` and `/v1/ping`: for anyone, no token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from reference_server import CONTRACT_VERSION
from reference_server.api.deps import StoreDep
from reference_server.api.schemas import Health, Ping, responses
from reference_server.stores.base import Durability
from reference_server.stores.unsafe import WARNING as UNSAFE_WARNING

router = APIRouter(prefix="/v1", tags=["utils"])


@router.get("/health", response_model=None, responses=responses(200, Health))
async def health(store: StoreDep, request: Request) -> dict[str, Any]:
    """`safe: false` with a `warning` when the store is the deliberately wrong one or its live
    durability settings can lose an acknowledged order."""
    sale = await store.sale()
    durability: Durability | None = request.app.state.durability
    warnings = [] if store.safe else [UNSAFE_WARNING]
    if durability is not None and durability.warning:
        warnings.append(durability.warning)
    out: dict[str, Any] = {"status": "ok", "contract": CONTRACT_VERSION, "store": store.scheme,
                           "sale": sale.name if sale else None, "safe": not warnings,
                           "durability": durability.settings if durability else {}}
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out


@router.get("/ping", response_model=None, responses=responses(200, Ping))
async def ping() -> dict[str, bool]:
    """Touches no store: the trivial endpoint benchmarks compare against."""
    return {"ok": True}
