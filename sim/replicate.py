"""Independent replications with common random numbers across scenarios."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from campaign.scenario import Scenario
from sim.model import RunResult, child_seeds, simulate_once
from sim.progress import progress as progress_bar


def replication_seeds(seed: int, replications: int) -> list[np.random.SeedSequence]:
    """Replication i's seed: `SeedSequence(seed).spawn(replications)[i]`. Two scenarios run
    with the same seed share each replication's random streams (common random numbers)."""
    return child_seeds(seed, replications)


def replicate(scenario: Scenario, replications: int, seed: int, *, progress: bool = False,
              record: bool = False, events: bool = False,
              each: Callable[[int, RunResult], None] | None = None) -> list[RunResult]:
    """Run `replications` independent replications of the scenario, in order. `each(i, run)`
    is called as each one finishes (e.g. to write its event log and let it go)."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    seeds = replication_seeds(seed, replications)
    bar = progress_bar(seeds, enabled=progress, desc="replications", unit="rep", leave=False)
    out = []
    for i, s in enumerate(bar):
        run = simulate_once(scenario, s, record=record, events=events)
        if each is not None:
            each(i, run)
        out.append(run)
    return out
