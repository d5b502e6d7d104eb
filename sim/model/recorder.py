"""The one place that observes the model: every event a run reports goes through a method here.

It counts what the KPIs need in every run and, for recorded runs, keeps the times and the
per-group records the output files need. With `events=True` it also keeps the event log: one
row per event (`sim.events` documents the format and writes it), appended by `event`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from sim.model.after import Cohort
from sim.model.groups import Group
from sim.model.results import GroupRecord

EventRow = tuple[float, str, int, int, int, int, int, float, str]
"""(hour, kind, user, segment, sku, group, inviter, amount in yuan, detail); -1 / nan / ""
where a field does not apply."""


class Recorder:
    """Counters for every run; times, group records and the stock trace when recording."""

    def __init__(self, clock: Callable[[], float], record: bool, trace: bool,
                 events: bool = False) -> None:
        self._clock = clock
        self.events: list[EventRow] | None = [] if events else None
        self.cohort = Cohort()
        """The acquired buyers (after-campaign value needs them in every run)."""
        self.record = record or trace
        self.trace = trace
        self.counts: Counter[str] = Counter()
        self.group_outcomes: Counter[str] = Counter()
        self.group_members = 0
        self.invitee_times: list[float] = []
        self.reservation_times: list[float] = []
        self.payment_times: list[float] = []
        self.groups: list[GroupRecord] = []
        self.stock_trace: list[tuple[float, int, int, int, int]] = []

    def event(self, kind: str, user: int, seg: int = -1, sku: int = -1, group: int = -1,
              inviter: int = -1, amount: float = float("nan"), detail: str = "") -> None:
        """One row of the event log (kept only with `events=True`)."""
        if self.events is not None:
            self.events.append((self._clock(), kind, user, seg, sku, group, inviter, amount,
                                detail))

    # -- shoppers ---------------------------------------------------------------------------

    def turned_away(self) -> None:
        """A shopper who wanted to buy found too little stock."""
        self.counts["turned_away"] += 1

    def reserved(self) -> None:
        if self.record:
            self.reservation_times.append(self._clock())

    def paid(self) -> None:
        if self.record:
            self.payment_times.append(self._clock())

    def expired(self) -> None:
        self.counts["expired_reservations"] += 1

    def acquired(self) -> None:
        """A kept order from a new customer (the `new` segment, or an invitee)."""
        self.counts["acquired_buyers"] += 1

    def kept(self, units: int) -> None:
        """An order is final: paid and not refunded."""
        self.counts["orders_paid"] += 1
        self.counts["units_sold"] += units

    # -- invites ----------------------------------------------------------------------------

    def shared(self, invites: int) -> None:
        """A buyer shared a link: `invites` friends were invited."""
        self.counts["shares"] += 1

    def invitee_arrived(self) -> None:
        self.counts["invitee_arrivals"] += 1
        if self.record:
            self.invitee_times.append(self._clock())

    # -- groups -----------------------------------------------------------------------------

    def group_opened(self) -> None:
        self.counts["groups_opened"] += 1

    def group_joined(self) -> None:
        """A paying shopper joined an open group."""
        self.counts["group_joins"] += 1

    def refunded(self) -> None:
        """A paid member of a failed group got its money back."""
        self.counts["refunds"] += 1

    def group_closed(self, g: Group, tier: int, outcome: str, leader_depth: int) -> None:
        n = len(g.members)
        if tier:
            self.counts["groups_completed"] += 1
            self.group_outcomes[f"tier {tier}"] += 1
        else:
            self.counts["groups_failed"] += 1
            self.group_outcomes[f"failed: {outcome}"] += 1
        self.group_members += n
        if self.record:
            self.groups.append(GroupRecord(g.opened, self._clock(), n, tier, outcome,
                                           leader_depth))

    # -- stock ------------------------------------------------------------------------------

    def stock_moved(self, sku: int, available: int, reserved: int, sold: int) -> None:
        if self.trace:
            self.stock_trace.append((self._clock(), sku, available, reserved, sold))
