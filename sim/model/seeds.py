"""Replication seeds. Every replication seed in the lab comes from `child_seed`, so compare,
sweeps and tuning share common random numbers."""

from __future__ import annotations

import numpy as np


def child_seed(seed: int | np.random.SeedSequence, k: int) -> np.random.SeedSequence:
    """Child k of `seed`: `SeedSequence(seed).spawn(n)[k]` for any n > k, the same one however
    often this is called (unlike `SeedSequence.spawn`, which moves on at every call)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k),
                                  pool_size=ss.pool_size)


def child_seeds(seed: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first n children of `seed` (see `child_seed`)."""
    return [child_seed(seed, k) for k in range(n)]
