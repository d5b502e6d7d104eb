"""`unsafe:///path` — a DELIBERATELY WRONG store, for showing that the checker catches oversells.

It is the SQLite store except for one step, `_take_stock`: each worker process keeps its own
idea of how much stock is left and writes `what it believed - quantity` back with no guard — the
classic lost update of a per-process stock cache. With two or more workers, each overwrites the
other's deductions and more units get reserved than exist. Never use it for anything but tests
and demos; `/v1/health` says what it is."""

from __future__ import annotations

from reference_server.stores.sql import Tx
from reference_server.stores.sqlite import SqliteStore

WARNING = ("unsafe store: each worker writes its own stale stock figure back without a guard "
           "(oversells with more than one worker)")


class UnsafeStore(SqliteStore):
    scheme = "unsafe"
    safe = False

    def __init__(self, url: str) -> None:
        super().__init__("sqlite" + url[len("unsafe"):])
        self._believed: dict[str, int] = {}

    def _take_stock(self, tx: Tx, sku_id: str, quantity: int) -> bool:
        seen = self._believed.get(sku_id)
        if seen is None:
            row = tx.one("SELECT available FROM skus WHERE sku_id = ?", sku_id)
            seen = 0 if row is None else int(row["available"])
        if seen < quantity:
            self._believed.pop(sku_id, None)  # look at the store again next time
            return False
        tx.run("UPDATE skus SET available = ?, reserved = reserved + ? WHERE sku_id = ?",
               seen - quantity, quantity, sku_id)  # deliberately wrong: no guard, stale figure
        self._believed[sku_id] = seen - quantity
        return True
