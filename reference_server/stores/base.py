"""The one store interface: storage only. Rule checks and pricing run once above it
(`domain.prepare_reserve`); a store makes every state change atomic, returns typed rows
(`domain.OrderRow`, `GroupRow`, `ClaimRow`), raises `ApiError` for refusals only it can decide
(stock, limits, seats, pools, order state) and `StoreUnavailable` for backend trouble."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from reference_server.domain import ClaimRow, GroupRow, OrderRow, PricedReserve, Sale

IDEMPOTENCY_STALE_SECONDS = 30.0
"""An in-flight idempotency marker older than this belongs to a crashed worker and is taken over."""

ExportKind = Literal["orders", "groups", "claims"]
ExportRow = OrderRow | GroupRow | ClaimRow


class StaleSale(Exception):
    """A priced request names a sale that is no longer loaded: price it again."""


@dataclass(frozen=True)
class SaleRecord:
    """What `load_sale` stores: the campaign as canonical JSON plus the timing."""

    campaign_json: str
    start: float
    payment_timeout: float
    group_window: float


@dataclass(frozen=True)
class IdemBegin:
    """Outcome of claiming an idempotency key: go ahead, replay, or refuse."""

    state: Literal["new", "replay", "mismatch", "in_flight"]
    status: int = 0
    body: str = ""


class Store(ABC):
    """Async store API used by the app; every method is safe across worker processes."""

    scheme: str = ""
    safe: bool = True

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if needed (idempotent, safe with concurrent workers)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def secret(self, proposed: str) -> str:
        """The server secret for user tokens: the stored one, or `proposed` stored first."""

    @abstractmethod
    async def load_sale(self, record: SaleRecord, if_absent: bool) -> bool:
        """Replace all state with a fresh sale; with `if_absent`, keep a store already holding
        this campaign. Returns whether it loaded."""

    @abstractmethod
    async def reset(self) -> None:
        """Back to the loaded sale's initial state; `ApiError("no_sale")` without a sale."""

    @abstractmethod
    async def sale(self) -> Sale | None: ...

    @abstractmethod
    async def skus(self) -> dict[str, dict[str, int]]:
        """Per-SKU counters: initial, available, reserved, sold, released, refunded."""

    @abstractmethod
    async def reserve(self, priced: PricedReserve, now: float) -> OrderRow:
        """Reserve stock for a priced order (joining `priced.req.group_id` if given); the order
        already made under the same (user, key) if there is one. `StaleSale` when another sale
        was loaded since it was priced."""

    @abstractmethod
    async def open_group(self, priced: PricedReserve, now: float) -> tuple[GroupRow, OrderRow]:
        """Open `priced.new_group` with the leader's order in one step."""

    @abstractmethod
    async def pay(self, order_id: str, user_id: str | None, now: float) -> OrderRow: ...

    @abstractmethod
    async def cancel(self, order_id: str, user_id: str | None, now: float) -> OrderRow: ...

    @abstractmethod
    async def order(self, order_id: str) -> OrderRow | None: ...

    @abstractmethod
    async def group(self, group_id: str) -> GroupRow | None: ...

    @abstractmethod
    async def claim_coupon(self, coupon_id: str, user_id: str, key: str,
                           now: float) -> ClaimRow: ...

    @abstractmethod
    async def expire_due(self, now: float) -> tuple[int, int]:
        """Expire unpaid reservations and close groups past their deadline, each exactly once.
        Returns (expired orders, closed groups) done by this call."""

    @abstractmethod
    async def ledger_counts(self) -> dict[str, dict[str, dict[str, int] | int]]:
        """{"coupons": {...}, "groups": {...}, "orders": {...}} for the ledger."""

    @abstractmethod
    async def export(self, kind: ExportKind, after: int,
                     limit: int) -> tuple[list[ExportRow], int | None]:
        """Rows in creation order after the cursor, and the next cursor (None at the end)."""

    @abstractmethod
    async def idem_begin(self, user_id: str, key: str, fingerprint: str,
                         now: float) -> IdemBegin: ...

    @abstractmethod
    async def idem_finish(self, user_id: str, key: str, status: int, body: str) -> None: ...

    @abstractmethod
    async def idem_abort(self, user_id: str, key: str) -> None:
        """Forget an in-flight key whose request failed unexpectedly, so a retry can run."""
