"""First-time arrivals (an exact NHPP) and uniforms drawn in blocks."""

from __future__ import annotations

import math

import numpy as np


def sample_arrivals(pieces: list[tuple[float, float, float]],
                    rng: np.random.Generator) -> np.ndarray:
    """Exact NHPP arrival times for a piecewise-constant rate: Poisson count, sorted uniforms."""
    parts = []
    for lo, hi, rate in pieces:
        n = rng.poisson(rate * (hi - lo)) if rate > 0 else 0
        parts.append(lo + (hi - lo) * np.sort(rng.random(n)))
    return np.concatenate(parts) if parts else np.zeros(0)


class Uniforms:
    """Uniforms from one generator, drawn in blocks (scalar draws are slow)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self.rng.random(1024).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]

    def exponential(self, mean: float) -> float:
        return -mean * math.log(1.0 - self())
