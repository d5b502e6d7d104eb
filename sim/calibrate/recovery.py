"""Parameter recovery, the honest test of calibration: simulate a scenario whose parameters
are known, calibrate a deliberately wrong base on its event log, and count how often each 95%
interval covers the true value (it should, about 95% of the time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaign.scenario import Scenario, parse_scenario, split_key_path
from sim.calibrate.fit import calibrate
from sim.calibrate.log import events_from_log
from sim.model import PAY_DELAY_MINUTES, simulate_once


@dataclass(frozen=True)
class Recovered:
    """One parameter of one seed: the truth, the estimate and its interval."""

    seed: int
    key: str
    true: float
    estimate: float
    ci_low: float
    ci_high: float

    @property
    def covered(self) -> bool:
        return self.ci_low - 1e-12 <= self.true <= self.ci_high + 1e-12


def true_value(scenario: Scenario, key: str) -> float:
    """The value a scenario really uses at a fitted key (defaults filled in)."""
    parts = split_key_path(key)
    aud = scenario.audience
    assert aud is not None
    if parts[:3] == ["audience", "after_campaign", "segments"]:
        return float(getattr(aud.after_campaign.for_segment(str(parts[3])), str(parts[4])))
    if parts[-1] == "pay_delay_minutes":
        seg = aud.segments[int(parts[2])]
        if seg.pay_delay_minutes is None:
            return min(PAY_DELAY_MINUTES, scenario.campaign.payment_timeout_minutes / 3)
        return seg.pay_delay_minutes
    if parts[:2] == ["audience", "groups"] and aud.groups is None:
        from campaign.audience import GroupBehaviour
        return float(getattr(GroupBehaviour(), str(parts[2])))
    node: Any = scenario
    for part in parts:
        node = node[part] if isinstance(part, int) or isinstance(node, dict) \
            else getattr(node, part)
    return float(node)


def recover(true_data: dict[str, Any], base_data: dict[str, Any], seeds: list[int], *,
            replications: int = 4, iterations: int = 2) -> list[Recovered]:
    """For each seed: simulate `true_data` once with that seed, calibrate `base_data` on its
    event log, and pair every estimate with the true value."""
    truth = parse_scenario(true_data, "truth")
    aud = truth.audience
    assert aud is not None
    segs, skus = [s.name for s in aud.segments], [s.id for s in truth.campaign.skus]
    out = []
    for seed in seeds:
        run = simulate_once(truth, seed, events=True)
        assert run.event_log is not None
        ev = events_from_log(run.event_log, segs, skus, truth.campaign.duration_hours)
        cal = calibrate(ev, base_data, "base", replications=replications, seed=seed + 10_000,
                        iterations=iterations)
        out += [Recovered(seed, e.key, true_value(truth, e.key), e.value, e.ci_low, e.ci_high)
                for e in cal.estimates]
    return out
