"""Open groups (拼团) per SKU: opening, joining, the product page's choice rule, closing."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Group:
    """One group: its SKU, when it opened and closes, its paid members (orders, leader first)
    and the invites its members sent that are still on their way."""

    sku: int
    opened: float
    deadline: float
    members: list[Any] = field(default_factory=list)
    pending_invites: int = 0
    open: bool = True
    seq: int = 0


class GroupBook:
    """The open groups of every SKU. All groups share one ladder, so "closest to completing"
    depends on the member count only: groups sit in one heap per member count, ordered by
    deadline (entries of groups that moved on are skipped lazily)."""

    def __init__(self, n_skus: int, sizes: tuple[int, ...], choice: str) -> None:
        self.sizes = sizes
        self.top = sizes[-1]
        self.choice = choice
        self._open: list[dict[Group, None]] = [{} for _ in range(n_skus)]  # opening order
        self._by_count: list[list[list[tuple[float, int, Group]]]] = [
            [[] for _ in range(self.top)] for _ in range(n_skus)]
        # member counts, nearest to their next tier first (ties: the earliest deadline wins)
        missing = {m: next(s for s in sizes if s > m) - m for m in range(1, self.top)}
        self._nearest = [[m for m in range(1, self.top) if missing[m] == k]
                         for k in sorted(set(missing.values()))]
        self._seq = itertools.count()
        self.n_open = 0

    def open(self, sku: int, now: float, window: float, leader: Any) -> Group:
        g = Group(sku, now, now + window, [leader], seq=next(self._seq))
        self._open[sku][g] = None
        self.n_open += 1
        self._file(g)
        return g

    def open_count(self, sku: int) -> int:
        return len(self._open[sku])

    def join(self, g: Group, member: Any) -> bool:
        """Add a paid member; True when the group has reached its top tier (then close it)."""
        g.members.append(member)
        if len(g.members) >= self.top:
            return True
        self._file(g)
        return False

    def close(self, g: Group) -> None:
        g.open = False
        del self._open[g.sku][g]
        self.n_open -= 1

    def pick(self, sku: int) -> Group | None:
        """The open group a shopper looking on the product page joins, by the choice rule."""
        if not self._open[sku]:
            return None
        if self.choice == "oldest":
            return next(iter(self._open[sku]))
        heaps = self._by_count[sku]
        for counts in self._nearest:
            best = None
            for m in counts:
                heap = heaps[m]
                while heap and (not heap[0][2].open or len(heap[0][2].members) != m):
                    heapq.heappop(heap)  # stale: the group grew or closed
                if heap and (best is None or heap[0] < best):
                    best = heap[0]
            if best is not None:
                return best[2]
        return None

    def _file(self, g: Group) -> None:
        if self.choice == "closest":
            heapq.heappush(self._by_count[g.sku][len(g.members)], (g.deadline, g.seq, g))
