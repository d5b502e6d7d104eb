"""What every invariant shares: the sale's rules, a finding (a counterexample as data), a
result, and the one signature `(history, state, rules) -> Result`.

As in Jepsen's `checker.clj` and Elle's `*-cases` functions, an invariant returns data: each
`Finding` is a kind plus the ids, times and expected-vs-seen figures that make the case;
`loadtests.checker.report` renders findings to text at the edge, with the templates the
invariant modules register here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from campaign.pricing import to_cents
from campaign.rules import CampaignRules
from loadtests.history import History
from loadtests.state import FinalState

MAX_EXAMPLES = 10
TEMPLATES: dict[str, str] = {}
"""Finding kind -> text template (`str.format_map` over its data); see `templates`."""


def templates(entries: Mapping[str, str]) -> None:
    """Register how findings of these kinds read (each invariant module calls this once)."""
    for kind, text in entries.items():
        if kind in TEMPLATES and TEMPLATES[kind] != text:
            raise ValueError(f"finding kind {kind!r} registered twice")
        TEMPLATES[kind] = text


@dataclass(frozen=True)
class Rules:
    """What the checker knows about the sale: the scenario's rules (the truth; the server's
    copies are checked against them) and the timing the run loaded."""

    stock: dict[str, int]
    per_user_limit: int
    coupons: dict[str, tuple[int, int]] = field(default_factory=dict)
    """coupon id -> (pool, per_user)"""
    failure_policy: str | None = None
    min_size: int = 0
    top_size: int = 0
    campaign: CampaignRules | None = None
    """The whole `[campaign]`, for pricing (money invariants need it; None skips them)."""
    start: float | None = None
    """Sale start (epoch s): time discounts count from it."""
    payment_timeout: float | None = None
    group_window: float | None = None

    @property
    def leader_reward_fen(self) -> int:
        g = self.campaign.groups if self.campaign else None
        return to_cents(g.leader_reward) if g else 0

    def with_sale(self, state: FinalState | None) -> Rules:
        """These rules, with the sale timing the server's ledger reports (contract 1.2) filling
        what the run did not record."""
        if state is None:
            return self
        led = state.ledger
        return Rules(self.stock, self.per_user_limit, self.coupons, self.failure_policy,
                     self.min_size, self.top_size, self.campaign,
                     self.start if self.start is not None else led.start,
                     self.payment_timeout if self.payment_timeout is not None
                     else led.payment_timeout_seconds,
                     self.group_window if self.group_window is not None
                     else led.group_window_seconds)


def rules_from_campaign(campaign: CampaignRules, *, start: float | None = None,
                        payment_timeout: float | None = None,
                        group_window: float | None = None) -> Rules:
    """The checker's view of a scenario's `[campaign]` (and the timing the run loaded)."""
    g = campaign.groups
    return Rules(
        stock={s.id: s.stock for s in campaign.skus},
        per_user_limit=campaign.per_user_limit,
        coupons={c.id: (c.pool, c.per_user) for c in campaign.coupons},
        failure_policy=g.failure_policy if g else None,
        min_size=g.min_size if g else 0,
        top_size=g.top_size if g else 0,
        campaign=campaign, start=start, payment_timeout=payment_timeout,
        group_window=group_window,
    )


@dataclass(frozen=True, slots=True)
class Finding:
    """One counterexample: what kind, and the data that makes the case."""

    kind: str
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.data}


@dataclass
class Result:
    """One invariant's verdict: held, broken (with findings) or not checked (`skipped`)."""

    name: str
    description: str
    checked: int = 0
    violations: int = 0
    findings: list[Finding] = field(default_factory=list)
    """The first MAX_EXAMPLES findings of each kind; `violations` counts them all."""
    per_kind: dict[str, int] = field(default_factory=dict)
    """How many findings of each kind (all of them, not only those kept)."""
    note: str = ""
    skipped: str | None = None
    """Why it was not checked (no final state, a partial history, no rules for it)."""

    @property
    def held(self) -> bool:
        return self.violations == 0

    def broken(self, kind: str, /, **data: Any) -> None:
        self.violations += 1
        seen = self.per_kind.get(kind, 0)
        self.per_kind[kind] = seen + 1
        if seen < MAX_EXAMPLES:  # per kind, so one kind's flood never hides another's
            self.findings.append(Finding(kind, data))

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text


Invariant = Callable[[History, FinalState, Rules], Result]
"""The one signature every invariant has."""


@dataclass
class Report:
    """Every invariant's result, what is known about the history, and counts to read them."""

    results: list[Result]
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Why some things could not be judged (a partial history, a missing final state …)."""

    @property
    def held(self) -> bool:
        return all(r.held for r in self.results)

    @property
    def broken(self) -> list[Result]:
        return [r for r in self.results if not r.held]

    @property
    def skipped(self) -> list[Result]:
        return [r for r in self.results if r.skipped]

    @property
    def complete(self) -> bool:
        """Every invariant was checked in full (nothing skipped for want of data)."""
        return not self.skipped and not self.warnings

    @property
    def verdict(self) -> str:
        """`held`, `broken`, or `incomplete` (nothing broken, but not everything checked)."""
        if not self.held:
            return "broken"
        return "held" if self.complete else "incomplete"
