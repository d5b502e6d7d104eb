"""Start-up decisions that must never lose an order: which campaign to serve on a store that
already holds one, and whether the store's durability settings are acceptable."""

from __future__ import annotations

from typing import Any, Literal

from campaign.rules import CampaignRules
from reference_server.api.steps import sale_record
from reference_server.domain import campaign_fingerprint
from reference_server.stores.base import Store

MAX_DIFFERENCES = 4


class CampaignConflict(Exception):
    """The store holds orders of a different campaign; nothing was changed."""


def campaign_differences(stored: Any, wanted: Any, path: str = "") -> list[str]:
    """`key: stored → wanted` for every leaf that differs between two campaign JSON values."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out: list[str] = []
        for k in sorted(set(stored) | set(wanted), key=str):
            sub = f"{path}.{k}" if path else str(k)
            out += campaign_differences(stored.get(k), wanted.get(k), sub)
        return out
    if isinstance(stored, list) and isinstance(wanted, list) and len(stored) == len(wanted):
        return [d for i, (a, b) in enumerate(zip(stored, wanted, strict=True))
                for d in campaign_differences(a, b, f"{path}[{i}]")]
    return [] if stored == wanted else [f"{path}: {stored!r} → {wanted!r}"]


async def held_orders(store: Store) -> int:
    """Orders, groups and coupon claims the store holds (anything a restart must not lose)."""
    counts = await store.ledger_counts()
    orders = sum(int(v) for v in counts["orders"].values())  # type: ignore[union-attr]
    groups = sum(int(v) for k, v in counts["groups"].items()  # type: ignore[union-attr]
                 if k != "leader_rewards")
    claims = sum(int(c["issued"]) for c in counts["coupons"].values())  # type: ignore[index,union-attr]
    return orders + groups + claims


async def reconcile_sale(store: Store, rules: CampaignRules, now: float, *, reset: bool = False,
                         ) -> Literal["loaded", "kept", "replaced", "reset"]:
    """Serve `rules` on `store`: load it into an empty store, keep a store holding the same
    campaign (with all its orders), replace a different campaign only when the store holds no
    orders, groups or claims — or when `reset` says to delete them. Otherwise raise
    `CampaignConflict` naming what differs; the store is left as it was."""
    record = sale_record(rules, now)
    stored = await store.sale()
    if stored is None:
        await store.load_sale(record, if_absent=True)
        return "loaded"
    if stored.fingerprint == campaign_fingerprint(record.campaign_json):
        return "kept"
    if reset:
        await store.load_sale(record, if_absent=False)
        return "reset"
    held = await held_orders(store)
    if held == 0:
        await store.load_sale(record, if_absent=False)
        return "replaced"
    diffs = campaign_differences(stored.rules.model_dump(mode="json"),
                                 rules.model_dump(mode="json"))
    shown = "; ".join(diffs[:MAX_DIFFERENCES]) + (
        f"; and {len(diffs) - MAX_DIFFERENCES} more" if len(diffs) > MAX_DIFFERENCES else "")
    raise CampaignConflict(
        f"the store holds {held} order(s), group(s) and claim(s) of a different campaign "
        f"({shown or 'same values, other form'}); nothing was changed. Serve the campaign they "
        "belong to or another --store, or add --reset to DELETE them and start over")
