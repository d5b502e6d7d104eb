"""The invariant checker: the operation history and the server's final state → a report.

Every invariant is a function `(history, state, rules) -> Result` in a module of its concern
(inventory, acknowledged, limits, idempotency, groups, coupons, money, deadlines, liveness,
adversarial); `INVARIANTS` composes them in one place, as Jepsen's `compose` does, and
`check` runs them. Findings are data; `loadtests.checker.report` renders them.
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Iterable, Iterator

from loadtests.checker import (
    acknowledged,
    adversarial,
    coupons,
    deadlines,
    groups,
    idempotency,
    inventory,
    limits,
    liveness,
    money,
)
from loadtests.checker.base import (
    MAX_EXAMPLES,
    Finding,
    Invariant,
    Report,
    Result,
    Rules,
    rules_from_campaign,
)
from loadtests.checker.report import render, save_report, summary_lines, to_json, to_text
from loadtests.history import History, Op
from loadtests.state import FinalState

INVARIANTS: dict[str, Invariant] = {
    "conservation": inventory.conservation,
    "no_oversell": inventory.no_oversell,
    "non_negative": inventory.non_negative,
    "stock_movements": inventory.stock_movements,
    "no_lost_acknowledged": acknowledged.no_lost_acknowledged,
    "no_phantom": acknowledged.no_phantom,
    "per_user_limits": limits.per_user_limits,
    "idempotency": idempotency.idempotency,
    "unknown_outcomes": idempotency.unknown_outcomes,
    "groups": groups.groups,
    "coupons": coupons.coupons,
    "prices": money.prices,
    "gifts": money.gifts,
    "leader_rewards": money.leader_rewards,
    "refunds": money.refunds,
    "payment_deadlines": deadlines.payment_deadlines,
    "expiry": deadlines.expiry,
    "no_wrongful_refusal": liveness.wrongful_refusals,
    "progress": liveness.progress,
    "adversarial": adversarial.adversarial,
}
"""Every invariant, by the name its result carries."""

__all__ = [
    "INVARIANTS",
    "MAX_EXAMPLES",
    "FinalState",
    "Finding",
    "History",
    "Report",
    "Result",
    "Rules",
    "check",
    "history_stats",
    "no_gc",
    "render",
    "rules_from_campaign",
    "sale_mismatch",
    "save_report",
    "summary_lines",
    "to_json",
    "to_text",
]


def sale_mismatch(history: History, state: FinalState) -> str | None:
    """Why this history cannot be of the sale the server now runs (None when it can be, or
    when neither side says): the headers' sale id against the ledger's (contract 1.2), or
    the sale start the run recorded against the ledger's."""
    mine, led = history.sale_id, state.ledger
    if not mine:
        return None
    if led.sale_id is not None and not mine.startswith("start:"):
        theirs = led.sale_id
    elif mine.startswith("start:") and led.start is not None:
        theirs = f"start:{led.start!r}"
    else:
        return None
    if mine == theirs:
        return None
    return (f"the history is of sale {mine}, but the server now runs sale {theirs} (the sale "
            "was loaded or reset since): its orders are not this history's to judge")


def history_stats(history: History) -> dict[str, int]:
    """Counts by outcome, to read the invariants against."""
    c = Counter(op.outcome for op in history.ops)
    return {"operations": len(history.ops), "ok": c["ok"], "fail": c["fail"],
            "unknown": c["unknown"]}


def check(history: History | Iterable[Op], state: FinalState | None, rules: Rules, *,
          invariants: dict[str, Invariant] | None = None,
          state_problem: str | None = None) -> Report:
    """Run every invariant (or those given). Without a final state (`state` None, with
    `state_problem` saying why), nothing can be checked and every result says so."""
    if not isinstance(history, History):
        history = History(list(history))
    chosen = INVARIANTS if invariants is None else invariants
    warnings = list(history.warnings)
    if state is None:
        why = f"no final state: {state_problem or 'it could not be read'}"
        warnings.append(why)
        results = [Result(name, "", skipped=why) for name in chosen]
        return Report(results, history_stats(history), warnings)
    rules = rules.with_sale(state)
    results = []
    with no_gc():
        for name, invariant in chosen.items():
            r = invariant(history, state, rules)
            r.name = name
            results.append(r)
    return Report(results, history_stats(history), warnings)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while: the history and state are millions of
    small objects without cycles, and its full passes over them would make checking
    superlinear in the history's size."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
