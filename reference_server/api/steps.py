"""Steps several routes share: the loaded sale, expiry (the one app-side entry to the store's
`expire_due`), and placing a priced reservation (priced once, again if the sale changed)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from campaign.rules import CampaignRules
from reference_server.domain import (
    GroupRow,
    OrderRow,
    ReserveRequest,
    Sale,
    canonical_json,
    prepare_reserve,
)
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.base import SaleRecord, StaleSale, Store

T = TypeVar("T")
LAZY_EXPIRY_CODES = frozenset({"sold_out", "limit_reached", "group_full"})
STALE_RETRIES = 5


async def current_sale(store: Store) -> Sale:
    sale = await store.sale()
    if sale is None:
        raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
    return sale


async def expire_now(store: Store, clock: Callable[[], float]) -> tuple[int, int]:
    """Expire due reservations and close due groups: (expired orders, closed groups)."""
    return await store.expire_due(clock())


async def with_lazy_expiry(store: Store, clock: Callable[[], float],
                           fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn`; if stock looked sold out, the user's limit reached or the group full (each
    possibly held by an expired, not yet released order), expire what is due and try once
    more."""
    try:
        return await fn()
    except ApiError as exc:
        if exc.code not in LAZY_EXPIRY_CODES:
            raise
        expired, _ = await expire_now(store, clock)
        if not expired:
            raise
        return await fn()


async def _priced(store: Store, clock: Callable[[], float], req: ReserveRequest,
                  open_group: bool, call: Callable[..., Awaitable[T]]) -> T:
    for _ in range(STALE_RETRIES):
        sale = await current_sale(store)
        now = clock()
        priced = prepare_reserve(sale, req, now, open_group=open_group)
        try:
            return await with_lazy_expiry(store, clock, functools.partial(call, priced, now))
        except StaleSale:
            continue  # another sale was loaded meanwhile: price under that one
    raise StoreUnavailable("the sale kept changing while pricing an order")


async def reserve_order(store: Store, clock: Callable[[], float],
                        req: ReserveRequest) -> OrderRow:
    """Check and price `req` under the loaded sale, then reserve it."""
    return await _priced(store, clock, req, False, store.reserve)


async def open_group(store: Store, clock: Callable[[], float],
                     req: ReserveRequest) -> tuple[GroupRow, OrderRow]:
    """Check and price the leader's order, then open the group with it."""
    return await _priced(store, clock, req, True, store.open_group)


def sale_record(rules: CampaignRules, start: float, payment_timeout: float | None = None,
                group_window: float | None = None) -> SaleRecord:
    """The stored form of a sale; timings default to the campaign's own."""
    pt = payment_timeout if payment_timeout is not None else rules.payment_timeout_minutes * 60
    gw = group_window
    if gw is None:
        gw = rules.groups.window_hours * 3600 if rules.groups else 0.0
    return SaleRecord(canonical_json(rules.model_dump(mode="json")), start, float(pt), float(gw))
