"""Independent replications with common random numbers across scenarios."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from campaign.scenario import Scenario
from sim.model import RunResult, child_seeds, simulate_once


def replication_seeds(seed: int, replications: int) -> list[np.random.SeedSequence]:
    """Replication i's seed: `SeedSequence(seed).spawn(replications)[i]`. Two scenarios run
    with the same seed share each replication's random streams (common random numbers)."""
    return child_seeds(seed, replications)


def replicate(scenario: Scenario, replications: int, seed: int, *, progress: bool = False,
              record: bool = False) -> list[RunResult]:
    """Run `replications` independent replications of the scenario, in order."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    seeds = replication_seeds(seed, replications)
    bar = tqdm(seeds, desc="replications", unit="rep", disable=not progress, leave=False)
    return [simulate_once(scenario, s, record=record) for s in bar]
