"""Stock per SKU: available + reserved + sold == initial after every movement."""

from __future__ import annotations

from collections.abc import Callable

Observer = Callable[[int, int, int, int], None]
"""Told (sku, available, reserved, sold) after every movement."""


class Stock:
    """Units per SKU in three places. `reserve` takes from available (False when there are too
    few), `sell` settles a reservation, `release` puts it back on sale. The first time a SKU
    has nothing available is its sell-out hour."""

    def __init__(self, initial: list[int], clock: Callable[[], float],
                 observer: Observer | None = None) -> None:
        self.initial = list(initial)
        self.available = list(initial)
        self.reserved = [0] * len(initial)
        self.sold = [0] * len(initial)
        self.sold_out_at: list[float | None] = [None if n else 0.0 for n in initial]
        self._clock = clock
        self._observer = observer

    def has(self, sku: int, units: int) -> bool:
        return self.available[sku] >= units

    def reserve(self, sku: int, units: int) -> bool:
        if self.available[sku] < units:
            return False
        self.available[sku] -= units
        self.reserved[sku] += units
        if not self.available[sku] and self.sold_out_at[sku] is None:
            self.sold_out_at[sku] = self._clock()
        self._moved(sku)
        return True

    def sell(self, sku: int, units: int) -> None:
        self.reserved[sku] -= units
        self.sold[sku] += units
        self._moved(sku)

    def release(self, sku: int, units: int) -> None:
        self.reserved[sku] -= units
        self.available[sku] += units
        self._moved(sku)

    def _moved(self, sku: int) -> None:
        if self._observer is not None:
            self._observer(sku, self.available[sku], self.reserved[sku], self.sold[sku])
