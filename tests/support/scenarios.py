"""Scenarios for tests: a small one for the planner's tests (sweeps, tuning, sensitivity), quick
to simulate, one-SKU scenarios built in code for the model's tests, and the shipped ones with
latency limits allowing for a busy machine."""

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from campaign.scenario import parse_scenario
from tests.support import SCENARIOS


def one_sku(name: str, phases: list[tuple[str, float, float]], segment: dict[str, Any], *,
            stock: int, list_price: float, unit_cost: float,
            groups: dict[str, Any] | None = None, referral: dict[str, Any] | None = None,
            behaviour: dict[str, Any] | None = None, **campaign: Any):
    """A parsed scenario with one SKU ("x") and one segment: phases are (name, hours, arrivals
    per hour); `groups` and keyword arguments go into [campaign], `referral` and `behaviour`
    into [audience.referral] and [audience.groups]."""
    data: dict[str, Any] = {
        "campaign": {"name": name, "skus": [{"id": "x", "stock": stock, "list_price": list_price,
                                             "unit_cost": unit_cost}],
                     "phases": [{"name": n, "hours": h} for n, h, _ in phases], **campaign},
        "audience": {"arrivals_per_hour": {n: r for n, _, r in phases}, "segments": [segment]},
    }
    if groups is not None:
        data["campaign"]["groups"] = groups
    if referral is not None:
        data["audience"]["referral"] = referral
    if behaviour is not None:
        data["audience"]["groups"] = behaviour
    return parse_scenario(data, name)

SMALL_TOML = """\
[campaign]
name = "small test sale"
per_user_limit = 1
subsidy_budget = 100000
fixed_cost = 100

[[campaign.skus]]
id = "tea"
stock = 300
list_price = 50.0
unit_cost = 20.0

[[campaign.phases]]
name = "burst"
hours = 4

[campaign.groups]
window_hours = 2
leader_reward = 2.0
tiers = [
  { size = 2, percent_off = 20 },
  { size = 3, percent_off = 30 },
]

[audience]
arrivals_per_hour = { burst = 60 }

[[audience.segments]]
name = "new"
share = 1.0
base_conversion = 0.3
price_sensitivity = 2.0
share_propensity = 0.3
group_propensity = 0.8
pay_probability = 0.9

[audience.referral]
invites_per_sharer = 1.5
invite_delay_minutes = 20
invitee_conversion = 0.3
depth_cap = 2
"""
SMALL = tomllib.loads(SMALL_TOML)


LATENCY_ALLOWANCE_CAP = 3.0
"""At most this many times a shipped latency limit: a server slower than that fails anyway."""


def latency_allowance() -> float:
    """How much slower than an idle machine this one is likely to answer now: runnable
    processes per CPU (1-minute load average), at least 1 and at most the cap. On a shared
    machine (parallel tests, other people's runs) a server's latency grows with the queue for
    CPUs, not with anything the server does wrong."""
    per_cpu = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(max(1.0, per_cpu), LATENCY_ALLOWANCE_CAP)


TIME_LIMITS = ("p95_ms", "p99_ms", "request_timeout_seconds", "late_tolerance_seconds")
"""The settings of a scenario that are times a busy machine stretches."""


def under_load(name: str, folder: Path) -> Path:
    """A copy of `scenarios/NAME` in `folder` whose time limits (`TIME_LIMITS`: latency
    thresholds, the client's request timeout, the late tolerance of arrivals) are scaled by
    `latency_allowance()`; everything else, invariants, error rate and arrival rate checks
    included, is the shipped file's."""
    text = (SCENARIOS / name).read_text()
    scale = latency_allowance()

    def scaled(m: re.Match[str]) -> str:
        return f"{m.group(1)}{float(m.group(2)) * scale:g}"

    keys = "|".join(TIME_LIMITS)
    out, n = re.subn(rf"(?m)^((?:{keys})\s*=\s*)([\d.]+)", scaled, text)
    assert n, f"{name} has no time limit to scale"
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out)
    return path
