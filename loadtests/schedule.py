"""Open-workload arrival schedules: a piecewise-constant rate (arrivals per second) over a run.

A schedule comes from a scenario's `[load]` phases, from the `arrivals.csv` curve a simulation
wrote (or, lacking one, the scenario's own `[audience]` rates), squeezed into the run's duration
and scaled so its peak is `[load].peak_rate`. `arrival_times` turns it into intended start times,
split across load processes so that every process takes its own share.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from campaign.load import Load
from campaign.scenario import Scenario

CSV_HEADER = ["minute", "start_hour", "rate_per_hour", "arrivals"]


class ScheduleError(ValueError):
    """A schedule that cannot be built (bad arrivals.csv, no [load] rates …); one line."""


@dataclass(frozen=True, slots=True)
class Piece:
    """From `start` to `end` (seconds into the run), `rate` arrivals per second."""

    start: float
    end: float
    rate: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """A piecewise-constant arrival rate; pieces are back to back from second 0."""

    pieces: tuple[Piece, ...]

    @property
    def seconds(self) -> float:
        return self.pieces[-1].end if self.pieces else 0.0

    @property
    def expected_arrivals(self) -> float:
        return sum((p.end - p.start) * p.rate for p in self.pieces)

    @property
    def peak_rate(self) -> float:
        return max((p.rate for p in self.pieces), default=0.0)

    def scaled(self, rate_scale: float = 1.0, seconds: float | None = None) -> Schedule:
        """Rates times `rate_scale`; with `seconds`, time stretched or squeezed to that length
        (rates unchanged, so the arrival count changes with the length)."""
        stretch = 1.0 if seconds is None or self.seconds == 0 else seconds / self.seconds
        return Schedule(tuple(Piece(p.start * stretch, p.end * stretch, p.rate * rate_scale)
                              for p in self.pieces))

    def rate_at(self, t: float) -> float:
        """The rate at second `t` (0 outside the schedule)."""
        for p in self.pieces:
            if p.start <= t < p.end:
                return p.rate
        return 0.0

    def to_json(self) -> list[list[float]]:
        return [[p.start, p.end, p.rate] for p in self.pieces]

    @classmethod
    def from_json(cls, data: list[list[float]]) -> Schedule:
        return cls(tuple(Piece(float(a), float(b), float(r)) for a, b, r in data))


def from_phases(load: Load) -> Schedule:
    """The explicit `[load].phases`, back to back."""
    pieces, t = [], 0.0
    for ph in load.phases:
        pieces.append(Piece(t, t + ph.seconds, ph.rate))
        t += ph.seconds
    return Schedule(tuple(pieces))


def read_arrivals_csv(path: str | Path) -> list[tuple[float, float]]:
    """(start_hour, mean arrivals per minute) per row of a simulation's arrivals.csv."""
    p = Path(path)
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_HEADER if c not in (reader.fieldnames or [])]
            if missing:
                raise ScheduleError(f"{p}: not an arrivals.csv (missing column(s) {missing}; "
                                    f"expected header {','.join(CSV_HEADER)})")
            rows = []
            for i, row in enumerate(reader, start=2):
                try:
                    rows.append((float(row["start_hour"]), float(row["arrivals"])))
                except (TypeError, ValueError):
                    raise ScheduleError(f"{p}: line {i}: start_hour and arrivals must be "
                                        "numbers") from None
    except FileNotFoundError:
        raise ScheduleError(f"{p}: file not found") from None
    except OSError as exc:
        raise ScheduleError(f"{p}: cannot read: {exc}") from None
    if not rows:
        raise ScheduleError(f"{p}: has no rows")
    if any(a < 0 or not math.isfinite(a) for _, a in rows):
        raise ScheduleError(f"{p}: arrivals must be finite and >= 0")
    return rows


def squeeze(curve: list[tuple[float, float]], seconds: float, peak_rate: float) -> Schedule:
    """A curve of equal-width bins (weights) squeezed into `seconds`, its peak at `peak_rate`."""
    peak = max(w for _, w in curve) if curve else 0.0
    if peak <= 0:
        raise ScheduleError("the arrival curve is zero everywhere")
    width = seconds / len(curve)
    return Schedule(tuple(Piece(i * width, (i + 1) * width, w / peak * peak_rate)
                          for i, (_, w) in enumerate(curve)))


def audience_curve(scenario: Scenario) -> list[tuple[float, float]]:
    """The scenario's own first-time arrival rate, one bin per minute of the sale."""
    pieces = scenario.arrival_rate_pieces()
    if not pieces:
        raise ScheduleError("arrivals = 'simulation' needs an arrivals.csv (run a simulation "
                            "first) or an [audience] section to take the curve from")
    minutes = max(1, round(scenario.campaign.duration_hours * 60))
    out = []
    for m in range(minutes):
        hour = (m + 0.5) / 60
        rate = next((r for lo, hi, r in pieces if lo <= hour < hi), pieces[-1][2])
        out.append((m / 60, rate / 60))
    return out


def build_schedule(scenario: Scenario, arrivals_csv: str | Path | None = None, *,
                   duration: float | None = None, rate_scale: float = 1.0) -> Schedule:
    """The run's schedule from the scenario's `[load]` (defaults when absent).

    `duration` stretches or squeezes it to that many seconds; `rate_scale` multiplies rates."""
    load = scenario.load or Load()
    if load.arrivals == "phases":
        sched = from_phases(load)
    else:
        curve = read_arrivals_csv(arrivals_csv) if arrivals_csv else audience_curve(scenario)
        sched = squeeze(curve, load.duration_seconds, load.peak_rate)
    return sched.scaled(rate_scale, duration)


def _inverse_cumulative(sched: Schedule):
    """A function mapping a cumulative arrival count to the second it is reached."""
    pieces, cums, c = list(sched.pieces), [], 0.0
    for p in pieces:
        cums.append(c)  # arrivals expected before this piece starts
        c += (p.end - p.start) * p.rate

    def at(n: float) -> float:
        i = max(bisect.bisect_right(cums, n) - 1, 0)
        while i > 0 and pieces[i].rate == 0:  # past the end: the last piece with arrivals
            i -= 1
        p = pieces[i]
        if p.rate == 0:
            return p.start
        return min(p.end, p.start + (n - cums[i]) / p.rate)

    return at


def arrival_times(sched: Schedule, process: str = "uniform", *, share: int = 0,
                  shares: int = 1, seed: int = 0) -> list[float]:
    """Intended start times (seconds into the run) of this process's arrivals.

    'uniform': the n-th arrival of the whole run is placed where the cumulative rate reaches
    n − ½, and process `share` of `shares` takes every `shares`-th one, so the processes
    together follow the rate exactly. 'poisson': each process draws exponential gaps at
    rate/shares (time-rescaled through the cumulative rate), seeded per process."""
    if not 0 <= share < shares:
        raise ValueError("share must be in [0, shares)")
    total = sched.expected_arrivals
    inv = _inverse_cumulative(sched)
    if process == "uniform":
        count = math.floor(total + 0.5)
        return [inv(n + 0.5) for n in range(share, count, shares)]
    if process != "poisson":
        raise ValueError(f"unknown arrival process {process!r}")
    rng = random.Random(f"{seed}:{share}")
    out, n = [], 0.0
    while True:
        n += rng.expovariate(1.0 / shares)
        if n >= total:
            return out
        out.append(inv(n))
