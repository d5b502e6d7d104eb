"""`unsafe:///path` — a DELIBERATELY WRONG store, for showing that the checker catches oversells.

It is the SQLite store except for one thing: a reservation reads the stock, awaits, and writes
back `stock read - quantity` with no guard, so concurrent buyers (in one worker or several)
overwrite each other's deductions and more units get reserved than exist. Never use it for
anything but tests and demos; `/v1/health` says what it is."""

from __future__ import annotations

import asyncio
from typing import Any

from reference_server.stores.base import ReserveRequest
from reference_server.stores.sql import Tx, _reserve
from reference_server.stores.sqlite import SqliteStore

READ_WRITE_GAP_SECONDS = 0.005
WARNING = "unsafe store: reservations read, await, then write stock without a guard (oversells)"


def _available(tx: Tx, sku_id: str) -> int | None:
    row = tx.one("SELECT available FROM skus WHERE sku_id = ?", sku_id)
    return None if row is None else int(row["available"])


class UnsafeStore(SqliteStore):
    scheme = "unsafe"
    safe = False

    def __init__(self, url: str) -> None:
        super().__init__("sqlite" + url[len("unsafe"):])

    async def reserve(self, req: ReserveRequest, now: float) -> dict[str, Any]:
        seen = await self._query(_available, req.sku_id)
        await asyncio.sleep(READ_WRITE_GAP_SECONDS)
        return await self._call(_reserve, req, now, seen)
