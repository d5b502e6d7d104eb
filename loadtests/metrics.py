"""Run figures from the history (latency from intended start, error rate, throughput), the
arrival counts each load process wrote, the `[checks]` thresholds, and the latency plot."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loadtests.history import Op


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def is_error(op: Op) -> bool:
    """Answered with a 5xx or not at all — except requests the test itself cut short."""
    return op.outcome == "unknown" and op.client_timeout is None


Window = tuple[float, float]
"""A stretch of time a fault was in force (start, end), epoch seconds."""


def hit_by_fault(op: Op, faults: Sequence[Window]) -> bool:
    """The request was in flight while a fault was in force (or just after it was lifted)."""
    return any(op.start <= end and op.end >= start for start, end in faults)


def history_figures(history: Sequence[Op], faults: Sequence[Window] = ()) -> dict[str, Any]:
    """Requests, error rate, throughput and latency percentiles (ms) from intended start and
    from actual start (service time). Requests in flight during an injected fault (`faults`)
    count in the outcomes but not in the error rate or the latencies: the fault, not the
    server, decided them."""
    if not history:
        return {"requests": 0, "errors": 0, "error_rate": 0.0, "throughput": 0.0}
    clean = [op for op in history if not hit_by_fault(op, faults)] if faults else list(history)
    timed = [op for op in clean if op.client_timeout is None]
    from_intended = [(op.end - op.intended) * 1000 for op in timed]
    service = [(op.end - op.start) * 1000 for op in timed]
    errors = sum(is_error(op) for op in clean)
    span = max(op.end for op in history) - min(op.start for op in history)
    out: dict[str, Any] = {
        "requests": len(history), "errors": errors,
        "error_rate": errors / len(clean) if clean else 0.0,
        "throughput": len(history) / span if span > 0 else math.nan,
        "outcomes": {k: sum(op.outcome == k for op in history) for k in ("ok", "fail",
                                                                           "unknown")},
        "client_timeouts": sum(op.client_timeout is not None for op in history),
        "hit_by_faults": len(history) - len(clean),
    }
    for q in (50, 95, 99):
        out[f"p{q}_ms"] = percentile(from_intended, q)
        out[f"service_p{q}_ms"] = percentile(service, q)
    out["max_ms"] = max(from_intended, default=math.nan)
    return out


def arrival_figures(run_dir: Path, target: float, seconds: float) -> dict[str, Any]:
    """Sum of every process's arrivals-<i>.json: scheduled, started, late, dropped …, and the
    achieved arrival rate (arrivals started on time, per second of schedule) beside the
    target."""
    parts = [json.loads(p.read_text()) for p in sorted(run_dir.glob("arrivals-*.json"))]
    out: dict[str, Any] = {"processes": len(parts), "target": round(target)}
    for k in ("scheduled", "started", "late", "dropped", "unfinished"):
        out[k] = sum(p.get(k, 0) for p in parts)
    out["max_lag_s"] = max((p.get("max_lag", 0.0) for p in parts), default=0.0)
    out["seconds"] = seconds
    out["target_rate"] = target / seconds if seconds else math.nan
    on_time = out["started"] - out["late"]
    out["achieved_rate"] = on_time / seconds if seconds else math.nan
    return out


def per_second(history: Iterable[Op], t0: float) -> dict[int, list[float]]:
    """Latencies from intended start (ms), by second of intended start since t0."""
    out: dict[int, list[float]] = {}
    for op in history:
        if op.client_timeout is None:
            out.setdefault(int(op.intended - t0), []).append((op.end - op.intended) * 1000)
    return out


def read_locust_history(path: Path) -> list[tuple[float, float, float]]:
    """(timestamp, p50 ms, p95 ms) of the Aggregated rows in Locust's stats_history CSV."""
    if not path.exists():
        return []
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") != "Aggregated":
                continue
            try:
                out.append((float(row["Timestamp"]), float(row["50%"]), float(row["95%"])))
            except (KeyError, ValueError):
                continue  # rows before the first request say "N/A"
    return out


def plot_latency(history: Sequence[Op], locust_csv: Path, out: Path, title: str,
                 target: list[tuple[float, float, float]] | None = None,
                 faults: Sequence[Window] = ()) -> None:
    """Top: Locust's percentiles (service time) and from-intended-start percentiles over time.
    Bottom: arrivals per second, target (the schedule's pieces) against started."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1]})
    if history:
        t0 = min(op.intended for op in history)
        secs = per_second(history, t0)
        xs = sorted(secs)
        for q, style in ((50, "-"), (95, "-"), (99, "--")):
            ax.plot(xs, [percentile(secs[x], q) for x in xs], style,
                    label=f"p{q} from intended start")
        loc = [(ts - t0, p50, p95) for ts, p50, p95 in read_locust_history(locust_csv)
               if ts >= t0 - 1]
        if loc:
            ax.plot([x for x, _, _ in loc], [p for _, p, _ in loc], ":", label="Locust p50")
            ax.plot([x for x, _, _ in loc], [p for _, _, p in loc], ":", label="Locust p95")
        first: dict[tuple[int, int], float] = {}
        for op in history:
            k = (op.worker, op.arrival)
            first[k] = min(first.get(k, op.start), op.start)
        started: dict[int, int] = {}
        for t in first.values():
            started[int(t - t0)] = started.get(int(t - t0), 0) + 1
        sx = sorted(started)
        ax2.plot(sx, [started[x] for x in sx], "o-", ms=3, label="arrivals started")
        for i, (a, b) in enumerate(faults):
            for axis in (ax, ax2):
                axis.axvspan(a - t0, max(b, a + 0.2) - t0, color="red", alpha=0.12,
                             label="fault" if i == 0 and axis is ax else None)
    if target:
        ax2.step([a for a, _, _ in target] + [target[-1][1]],
                 [r for _, _, r in target] + [target[-1][2]], where="post", label="target rate")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title(title)
    ax2.set_xlabel("seconds into the run")
    ax2.set_ylabel("arrivals / s")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
