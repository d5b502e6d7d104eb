"""`/v1/health` and `/v1/ping`: for anyone, no token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reference_server import CONTRACT_VERSION
from reference_server.api.deps import StoreDep
from reference_server.stores.unsafe import WARNING as UNSAFE_WARNING

router = APIRouter(prefix="/v1", tags=["utils"])


@router.get("/health")
async def health(store: StoreDep) -> dict[str, Any]:
    sale = await store.sale()
    out: dict[str, Any] = {"status": "ok", "contract": CONTRACT_VERSION, "store": store.scheme,
                           "sale": sale.name if sale else None, "safe": store.safe}
    if not store.safe:
        out["warning"] = UNSAFE_WARNING
    return out


@router.get("/ping")
async def ping() -> dict[str, bool]:
    """Touches no store: the trivial endpoint benchmarks compare against."""
    return {"ok": True}
