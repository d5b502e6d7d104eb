"""`unsafe:///path` — a DELIBERATELY WRONG store, for showing that the checker catches oversells.

It is the SQLite store except for one step, `_take_stock`: it reads the stock from a per-process
cache refreshed every `CACHE_SECONDS`, and writes `cached figure - quantity` back with no guard —
the classic stale stock cache. Every reservation in the same tenth of a second sees the same
figure, so they overwrite each other's deductions and more units get reserved than exist, in
one worker or several. Never use it for anything but tests and demos; `/v1/health` says what
it is."""

from __future__ import annotations

import time

from reference_server.stores.sql import Tx
from reference_server.stores.sqlite import SqliteStore

CACHE_SECONDS = 0.1
WARNING = ("unsafe store: reservations write a cached, stale stock figure back without a guard "
           "(oversells)")


class UnsafeStore(SqliteStore):
    scheme = "unsafe"
    safe = False

    def __init__(self, url: str) -> None:
        super().__init__("sqlite" + url[len("unsafe"):])
        self._cache: dict[str, tuple[int, float]] = {}

    def _take_stock(self, tx: Tx, sku_id: str, quantity: int) -> bool:
        cached = self._cache.get(sku_id)
        if cached is None or time.monotonic() - cached[1] > CACHE_SECONDS:
            row = tx.one("SELECT available FROM skus WHERE sku_id = ?", sku_id)
            cached = (0 if row is None else int(row["available"]), time.monotonic())
            self._cache[sku_id] = cached
        if cached[0] < quantity:
            return False
        tx.run("UPDATE skus SET available = ?, reserved = reserved + ? WHERE sku_id = ?",
               cached[0] - quantity, quantity, sku_id)  # deliberately wrong: stale, unguarded
        return True
