"""The one store interface: storage only. Rule checks and pricing run once above it
(`domain.prepare_reserve`); a store makes every state change atomic, returns typed rows
(`domain.OrderRow`, `GroupRow`, `ClaimRow`), raises `ApiError` for refusals only it can decide
(stock, limits, seats, pools, order state) and `StoreUnavailable` for backend trouble."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reference_server.domain import ClaimRow, GroupRow, OrderRow, PricedReserve, Sale
from reference_server.errors import ApiError

IDEMPOTENCY_STALE_SECONDS = 30.0
"""An in-flight idempotency marker older than this belongs to a crashed worker and is taken over."""
IDEMPOTENCY_TTL_SECONDS = 24 * 3600.0
"""An idempotency record (the first response, for replay) is kept this long (CONTRACT.md 1.2).
Orders and claims stay unique per (user, key) for as long as the sale exists."""

RECENT_SALE_SECONDS = 1.0
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
    """Outcome of claiming an idempotency key: go ahead, replay, or refuse; `done` when `once`
    ran the request and recorded its answer."""

    state: Literal["new", "replay", "mismatch", "in_flight", "done"]
    status: int = 0
    body: str = ""


@dataclass(frozen=True)
class IdemRequest:
    """Who asked under which key, and the request's fingerprint."""

    user_id: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class CreateOp:
    """A creating request, checked and priced: `kind` with its arguments, and how to render the
    row it makes as the JSON body of the answer (recorded for replay)."""

    kind: Literal["reserve", "open_group", "claim", "refusal"]
    """`refusal`: the rules above the store refused it (args: the ApiError); only recorded."""
    args: tuple[Any, ...]
    render: Callable[[Any], str]


LAZY_EXPIRY_CODES = frozenset({"sold_out", "limit_reached", "group_full"})
"""Refusals an expired but not yet released order may cause: retried after expiry, so `once`
records them only when asked to."""


@dataclass(frozen=True)
class Durability:
    """The live backend's durability settings and, when they can lose an acknowledged order
    (on a crash of the server, of the store, or of the machine under it), why."""

    settings: dict[str, str]
    warning: str | None = None

    @property
    def safe(self) -> bool:
        return self.warning is None


class Store(ABC):
    """Async store API used by the app; every method is safe across worker processes."""

    scheme: str = ""
    safe: bool = True
    """False only for the deliberately wrong `unsafe://` store."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if needed (idempotent, safe with concurrent workers)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def durability(self) -> Durability:
        """Read the backend's durability settings from the live server."""

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

    _recent: tuple[float, Sale] | None = None
    _recent_lock: asyncio.Lock | None = None

    async def recent_sale(self) -> Sale | None:
        """The loaded sale as read at most `RECENT_SALE_SECONDS` ago, for pricing on the hot
        path: a store refuses a request priced under a sale that is no longer loaded
        (`StaleSale`), so a stale copy costs one retry, never a wrong price. Call
        `forget_recent_sale()` on `StaleSale` and after loading a sale."""
        cached = self._recent
        if cached is not None and time.monotonic() - cached[0] < RECENT_SALE_SECONDS:
            return cached[1]
        if self._recent_lock is None:
            self._recent_lock = asyncio.Lock()
        async with self._recent_lock:  # one read for all the requests that found it old
            cached = self._recent
            if cached is not None and time.monotonic() - cached[0] < RECENT_SALE_SECONDS:
                return cached[1]
            sale = await self.sale()
            self._recent = None if sale is None else (time.monotonic(), sale)
            return sale

    def forget_recent_sale(self) -> None:
        self._recent = None

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

    async def once(self, idem: IdemRequest, op: CreateOp, now: float, *,
                   record_refusals: bool) -> IdemBegin:
        """Run `op` at most once per (user, key) and record its answer: `done` with it, or
        `replay`/`mismatch`/`in_flight` for a key already used. A refusal is recorded as the
        answer unless it is `invalid`, `idempotency_key_reused` or (without `record_refusals`)
        a lazy-expiry code: those raise and leave no record.

        This default takes three steps (begin, the change, finish); the SQL stores do it all in
        one transaction."""
        begun = await self.idem_begin(idem.user_id, idem.key, idem.fingerprint, now)
        if begun.state != "new":
            return begun
        try:
            row = await self._create(op, now)
            status, body = 201, op.render(row)
        except ApiError as exc:
            if not records_refusal(exc, record_refusals):
                with contextlib.suppress(Exception):
                    await self.idem_abort(idem.user_id, idem.key)
                raise
            status, body = exc.status, json.dumps(exc.body())
        except BaseException:
            with contextlib.suppress(Exception):
                await self.idem_abort(idem.user_id, idem.key)
            raise
        await self.idem_finish(idem.user_id, idem.key, status, body)
        return IdemBegin("done", status, body)

    async def _create(self, op: CreateOp, now: float) -> Any:
        if op.kind == "refusal":
            raise op.args[0]
        if op.kind == "reserve":
            return await self.reserve(*op.args, now)
        if op.kind == "open_group":
            return await self.open_group(*op.args, now)
        return await self.claim_coupon(*op.args, now)

    @abstractmethod
    async def idem_begin(self, user_id: str, key: str, fingerprint: str,
                         now: float) -> IdemBegin: ...

    @abstractmethod
    async def idem_finish(self, user_id: str, key: str, status: int, body: str) -> None: ...

    @abstractmethod
    async def idem_abort(self, user_id: str, key: str) -> None:
        """Forget an in-flight key whose request failed unexpectedly, so a retry can run."""


def records_refusal(exc: ApiError, record_refusals: bool) -> bool:
    """Whether a refusal becomes the key's recorded answer."""
    if exc.code in ("invalid", "idempotency_key_reused", "in_flight"):
        return False
    return record_refusals or exc.code not in LAZY_EXPIRY_CODES
