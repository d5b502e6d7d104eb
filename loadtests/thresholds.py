"""Thresholds, as k6 has them: on the whole run and per request name (`[checks]` and
`[checks.requests."NAME"]`, or `--threshold` flags), each judged into a `Verdict` (met or
missed, with one line for people); the load generator's own shortfalls (dropped, late, slow
arrivals) are judged beside them. `LiveJudge` judges the error-rate and latency thresholds
while the load runs, for `abort_on_fail`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaign.load import Checks, RequestChecks
from loadtests.history import Op
from loadtests.metrics import Window, history_figures

KEYS = ("max_error_rate", "p95_ms", "p99_ms", "min_throughput")
"""Threshold keys a request name can have (and the whole run)."""
LIVE_KEYS = ("max_error_rate", "p95_ms", "p99_ms")
"""What can be judged before the run ends (throughput needs the whole run)."""


@dataclass(frozen=True)
class Verdict:
    """One threshold judged: `scope` is a request name, or None for the whole run (or
    "load" for the load generator's own tolerances)."""

    scope: str | None
    key: str
    limit: float
    got: float
    passed: bool
    line: str

    @property
    def name(self) -> str:
        return self.key if self.scope is None else f"{self.scope}: {self.key}"


def _share(x: float, limit: float) -> str:
    """A share as a percentage with enough digits to tell it from `limit`."""
    for digits in range(2, 10):
        if f"{x:.{digits}%}" != f"{limit:.{digits}%}":
            return f"{x:.{digits}%}"
    return f"{x:%}"


def _num(x: float, digits: int = 1) -> str:
    return "no requests" if isinstance(x, float) and math.isnan(x) else f"{x:.{digits}f}"


def _judge_one(scope: str | None, key: str, limit: float, f: dict[str, Any]) -> Verdict:
    """One of KEYS on the figures `f` (of the whole run, or of one request name)."""
    where = "" if scope is None else f"{scope}: "
    if key == "max_error_rate":
        got = f.get("error_rate", math.nan) if f.get("requests") else math.nan
        ok = got <= limit
        text = (f"error rate: no requests (max_error_rate {limit:.2%})" if math.isnan(got) else
                f"error rate {_share(got, limit)} {'<=' if ok else '>'} max_error_rate "
                f"{_share(limit, got)} ({f['errors']} of {f['requests']} requests answered "
                "with 5xx or not at all)")
    elif key in ("p95_ms", "p99_ms"):
        q = key[1:3]
        got = f.get(key, math.nan)
        ok = got <= limit
        shown = ("no requests" if math.isnan(got) else
                 f"{got:.0f} ms" if round(got) > limit or ok else f"{got:.3f} ms")
        text = f"p{q} latency from intended start {shown} {'<=' if ok else '>'} {key} {limit:g}"
    else:
        got = f.get("throughput", math.nan) if f.get("requests") else math.nan
        ok = got >= limit
        shown = ("no requests" if math.isnan(got) else f"{got:.1f} req/s"
                 if round(got, 1) < limit or ok else f"{got:.4f} req/s")
        text = f"throughput {shown} {'>=' if ok else '<'} min_throughput {limit:g}"
    line = f"threshold {'met' if ok else 'missed'}: {where}{text}"
    return Verdict(scope, key, limit, got, bool(ok), line)


def judge(checks: Checks, figures: dict[str, Any],
          by_name: dict[str, dict[str, Any]] | None = None,
          arrivals: dict[str, Any] | None = None, keys: Sequence[str] = KEYS) -> list[Verdict]:
    """Every threshold `checks` sets, judged: the whole run's, each request name's (from
    `by_name`, the figures per name; a name with no requests misses its thresholds, so a
    misspelt name never passes), and with `arrivals` the load generator's tolerances."""
    out = [_judge_one(None, k, getattr(checks, k), figures)
           for k in keys if getattr(checks, k) is not None]
    for name, rc in checks.requests.items():
        f = (by_name or {}).get(name, {"requests": 0})
        for k in keys:
            limit = getattr(rc, k)
            if limit is not None:
                v = _judge_one(name, k, limit, f)
                if not f.get("requests"):
                    seen = ", ".join(sorted(by_name or {})) or "none"
                    v = Verdict(name, k, limit, math.nan, False,
                                f"threshold missed: {name}: no requests of that name "
                                f"(names seen: {seen})")
                out.append(v)
    if arrivals:
        out += judge_arrivals(checks, arrivals)
    return out


def missed_lines(verdicts: Sequence[Verdict]) -> list[str]:
    return [v.line for v in verdicts if not v.passed]


def threshold_problems(checks: Checks, figures: dict[str, Any],
                       arrivals: dict[str, Any] | None = None,
                       by_name: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One line per threshold the run missed."""
    return missed_lines(judge(checks, figures, by_name, arrivals))


def judge_arrivals(checks: Checks, a: dict[str, Any]) -> list[Verdict]:
    """The load generator delivered the schedule: few enough arrivals dropped or late, and the
    achieved rate within `max_rate_shortfall` of the target. A run that measured less load
    than asked for cannot pass."""
    started, dropped, late = a.get("started", 0), a.get("dropped", 0), a.get("late", 0)
    scheduled = a.get("scheduled", 0)
    out = [Verdict("load", "max_dropped", checks.max_dropped, dropped,
                   dropped <= checks.max_dropped,
                   f"load not delivered: {dropped} of {scheduled} scheduled arrivals dropped "
                   f"> max_dropped {checks.max_dropped} (raise max_in_flight or use more "
                   "processes)" if dropped > checks.max_dropped else
                   f"load delivered: {dropped} of {scheduled} scheduled arrivals dropped")]
    share = late / started if started else 0.0
    ok = not started or share <= checks.max_late_share
    out.append(Verdict("load", "max_late_share", checks.max_late_share, share, ok,
                       f"load not delivered: {late} of {started} started arrivals late "
                       f"({_share(share, checks.max_late_share)} > max_late_share "
                       f"{_share(checks.max_late_share, share)})" if not ok else
                       f"load delivered: {late} of {started} started arrivals late"))
    # The schedule's own count is the target: a Poisson schedule may draw a few arrivals more
    # or fewer than the expected rate, which is not the load generator's fault.
    seconds = a.get("seconds") or 0
    target = scheduled / seconds if scheduled and seconds else a.get("target_rate", math.nan)
    got = a.get("achieved_rate", math.nan)
    if isinstance(target, int | float) and not math.isnan(target) and target > 0:
        ok = got >= target * (1 - checks.max_rate_shortfall)
        out.append(Verdict(
            "load", "max_rate_shortfall", checks.max_rate_shortfall,
            1 - got / target if not math.isnan(got) else math.nan, bool(ok),
            f"load not delivered: achieved arrival rate {_num(got, 3)}/s is more than "
            f"{checks.max_rate_shortfall:.0%} below the target {target:.3f}/s" if not ok else
            f"load delivered: achieved arrival rate {_num(got, 3)}/s of {target:.3f}/s"))
    return out


def arrival_problems(checks: Checks, a: dict[str, Any]) -> list[str]:
    return missed_lines(judge_arrivals(checks, a))


def figures_by_name(ops: Sequence[Op], faults: Sequence[Window] = ()) -> dict[str, dict]:
    """`history_figures` per request name; throughput is per second of the whole run (first
    send to last answer), as k6 counts a sub-metric's rate."""
    if not ops:
        return {}
    span = max(op.end for op in ops) - min(op.start for op in ops)
    groups: dict[str, list[Op]] = {}
    for op in ops:
        if op.name is not None:
            groups.setdefault(op.name, []).append(op)
    out = {}
    for name, group in groups.items():
        f = history_figures(group, faults)
        f["throughput"] = len(group) / span if span > 0 else math.nan
        out[name] = f
    return out


def with_overrides(checks: Checks, flags: Sequence[tuple[str | None, str, float]],
                   abort_on_fail: bool | None = None) -> Checks:
    """`checks` with `--threshold` flags ([name,] key, limit) set over the scenario's values
    (a flag wins over the same key in the file), and `--abort-on-fail`."""
    top: dict[str, Any] = {}
    requests = {n: rc.model_dump() for n, rc in checks.requests.items()}
    for name, key, limit in flags:
        if name is None:
            top[key] = int(limit) if key == "max_dropped" else limit
        else:
            requests.setdefault(name, {})[key] = limit
    data = checks.model_dump() | top
    data["requests"] = {n: RequestChecks(**v) for n, v in requests.items()}
    if abort_on_fail is not None:
        data["abort_on_fail"] = abort_on_fail
    return Checks(**data)


class LiveJudge:
    """Judges the error-rate and latency thresholds on the history the load processes have
    written so far (read as it grows), for `abort_on_fail`. Requests in flight during a fault
    (`windows()`: done and in force) are left out, as in the final figures."""

    def __init__(self, checks: Checks, run_dir: Path,
                 windows: Callable[[], list[Window]] = list) -> None:
        self.checks, self.run_dir, self.windows = checks, run_dir, windows
        self.ops: list[Op] = []
        self._offsets: dict[Path, int] = {}
        self._first: float | None = None

    def _read(self) -> None:
        for path in sorted(self.run_dir.glob("history-*.jsonl")):
            with path.open("rb") as fh:
                fh.seek(self._offsets.get(path, 0))
                data = fh.read()
            end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
            self._offsets[path] = self._offsets.get(path, 0) + end
            for line in data[:end].splitlines():
                rec = json.loads(line)
                if "header" not in rec:
                    self.ops.append(Op.from_json(rec))

    def missed(self) -> list[Verdict]:
        """The live thresholds missed so far (none during the grace period, or when
        abort_on_fail is off)."""
        if not self.checks.abort_on_fail:
            return []
        self._read()
        if not self.ops:
            return []
        if self._first is None:
            self._first = min(op.start for op in self.ops)
        if time.time() - self._first < self.checks.abort_grace_seconds:
            return []
        windows = self.windows()
        verdicts = judge(self.checks, history_figures(self.ops, windows),
                         figures_by_name(self.ops, windows), keys=LIVE_KEYS)
        # A name not seen yet may still come: only judge names with requests.
        return [v for v in verdicts if not v.passed and not math.isnan(v.got)]
