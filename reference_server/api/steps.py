"""Steps several routes share: the loaded sale, expiry (the app-side entry to the store's
`expire_due`), the stored form of a sale."""

from __future__ import annotations

from collections.abc import Callable

from campaign.rules import CampaignRules
from reference_server.domain import (
    Sale,
    canonical_json,
)
from reference_server.errors import ApiError
from reference_server.stores.base import SaleRecord, Store


async def current_sale(store: Store, *, recent: bool = False) -> Sale:
    """The loaded sale (`no_sale` without one); `recent` accepts a copy read up to a second ago
    (`Store.recent_sale`), for pricing that the store re-checks."""
    sale = await (store.recent_sale() if recent else store.sale())
    if sale is None:
        raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
    return sale


async def expire_now(store: Store, clock: Callable[[], float]) -> tuple[int, int]:
    """Expire due reservations and close due groups: (expired orders, closed groups)."""
    return await store.expire_due(clock())


def sale_record(rules: CampaignRules, start: float, payment_timeout: float | None = None,
                group_window: float | None = None) -> SaleRecord:
    """The stored form of a sale; timings default to the campaign's own."""
    pt = payment_timeout if payment_timeout is not None else rules.payment_timeout_minutes * 60
    gw = group_window
    if gw is None:
        gw = rules.groups.window_hours * 3600 if rules.groups else 0.0
    return SaleRecord(canonical_json(rules.model_dump(mode="json")), start, float(pt), float(gw))
