"""The event log: one CSV row per thing that happened in a campaign, simulated or real.

`groupbuy simulate --events` writes one per replication; `groupbuy calibrate` reads one
(docs/calibration.md documents the format for teams exporting a real shop's orders into it).

Columns, in this order (every one must be present; a field that does not apply is empty):

    time      hours since the sale started (a repurchase: after the sale's end)
    event     one of EVENT_KINDS
    user      the person's id (any text without commas)
    segment   the person's segment, as the scenario names them (new / active / loyal …)
    sku       the SKU id, as the scenario names it
    group     the group id (group rows; a reservation that joins a group; a share of a group)
    inviter   who invited this person (invite_arrival rows)
    amount    yuan: what a kept order paid in the end (order_kept), a repurchase's value
    detail    reserve / sold_out: `group` or `single`; share: invites sent; group_complete:
              the tier size reached; group_fail: `refund` or `fallback_price`; order_kept: the
              acquisition channel (invite, group, coupon, flash_sale, regular)

Rows are in time order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from campaign.scenario import Scenario
from sim.model.results import EventLog

COLUMNS = ("time", "event", "user", "segment", "sku", "group", "inviter", "amount", "detail")
EVENT_KINDS = {
    "visit": "a first-time visit to a product page",
    "invite_arrival": "a friend arriving by a shared link (inviter, and group if it carries one)",
    "reserve": "an order reserved its units (detail: group or single)",
    "sold_out": "a shopper who wanted to buy found too little stock (detail: group or single)",
    "pay": "a reservation paid",
    "cancel": "a reservation cancelled by the shopper (real logs; the model does not cancel)",
    "expire": "a reservation not paid within the payment timeout",
    "share": "a buyer shared a link (group: the group's; detail: invites sent)",
    "group_open": "a paying group buyer opened a group and leads it",
    "group_join": "a paying group buyer joined an open group",
    "group_complete": "a group closed at a tier (detail: the tier size)",
    "group_fail": "a group closed below the smallest tier (detail: refund or fallback_price)",
    "refund": "a member of a failed group got its money back",
    "order_kept": "an order is final: paid and not refunded (amount; detail: channel)",
    "repurchase": "an acquired buyer ordered again after the sale (amount)",
}
"""Every event kind and what it means."""


def write_events(path: Path, scenario: Scenario, log: EventLog) -> int:
    """Write one run's event log as CSV (time order); returns the number of rows."""
    import pandas as pd  # pandas writes a million rows in about a second

    segs = np.array([s.name for s in scenario.audience.segments] if scenario.audience else [],
                    dtype=object)
    skus = np.array([s.id for s in scenario.campaign.skus], dtype=object)
    v_time, v_seg, v_sku = log.visits
    nv = len(v_time)
    rows = log.rows
    who, days, amounts = log.repurchases
    nr = len(who)
    end = scenario.campaign.duration_hours
    r_time = np.array([r[0] for r in rows], dtype=float)
    time = np.concatenate([v_time, r_time, end + np.asarray(days, dtype=float) * 24])
    buyers = np.asarray(log.buyers, dtype=np.int64)
    b_seg = np.asarray(log.buyer_segments, dtype=np.int64)
    b_sku = np.asarray(log.buyer_skus, dtype=np.int64)
    who = np.asarray(who, dtype=np.int64)

    def ints(values: Sequence[int]) -> list[object]:
        return ["" if v < 0 else v for v in values]

    def money(values: Sequence[float]) -> list[str]:
        return ["" if math.isnan(v) else f"{v:.2f}" for v in values]

    frame = pd.DataFrame({
        "time": time,
        "event": ["visit"] * nv + [r[1] for r in rows] + ["repurchase"] * nr,
        "user": np.concatenate([np.arange(nv), [r[2] for r in rows], buyers[who]])
        .astype(np.int64),
        "segment": np.concatenate([segs[v_seg], segs[[r[3] for r in rows]],
                                   segs[b_seg[who]]]) if len(segs) else "",
        "sku": np.concatenate([skus[v_sku], skus[[r[4] for r in rows]], skus[b_sku[who]]]),
        "group": [""] * nv + ints([r[5] for r in rows]) + [""] * nr,
        "inviter": [""] * nv + ints([r[6] for r in rows]) + [""] * nr,
        "amount": [""] * nv + money([r[7] for r in rows]) + money(list(amounts)),
        "detail": [""] * nv + [r[8] for r in rows] + [""] * nr,
    }, columns=list(COLUMNS))
    # visits come first among rows of the same instant, as they happened first
    frame = frame.iloc[np.argsort(time, kind="stable")]
    frame.to_csv(path, index=False, float_format="%.6f")
    return len(frame)
