"""The run plan: everything a load process needs, prepared once before the run.

`prepare_plan` loads the scenario's sale into the server (with short payment and group
timeouts so expiry happens inside the run), mints tokens for a pool of shopper ids, builds the
arrival schedule and writes `plan.json` into the run folder. `groupbuy loadtest` prepares it
before starting Locust; a locustfile run directly prepares it itself.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from campaign.load import Load
from campaign.scenario import load_scenario, read_scenario_data
from loadtests.api import AdminClient
from loadtests.schedule import Schedule, build_schedule


@dataclass
class Plan:
    """One load-test run, as every load process sees it (JSON in `plan.json`)."""

    scenario: str
    host: str
    run_dir: str
    schedule: list[list[float]]
    mix: dict[str, float]
    tokens: dict[str, str]
    skus: list[str]
    coupons: list[str]
    per_user_limit: int
    arrival_process: str = "uniform"
    seed: int = 0
    request_timeout: float = 5.0
    late_tolerance: float = 0.5
    max_in_flight: int = 2000
    payment_timeout: float = 4.0
    group_window: float = 8.0
    prepared_at: float = field(default_factory=time.time)

    @property
    def sched(self) -> Schedule:
        return Schedule.from_json(self.schedule)

    @property
    def drain_seconds(self) -> float:
        """Longest a journey can outlive the last arrival: four requests and the think times."""
        return 4 * self.request_timeout + 3.0

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls(**json.loads(Path(path).read_text()))


def user_count(load: Load, expected_arrivals: float) -> int:
    """Distinct shopper ids: `[load].users`, else about one per two arrivals (some return)."""
    if load.users:
        return load.users
    return max(20, min(10_000, math.ceil(expected_arrivals / 2)))


def prepare_plan(host: str, admin_token: str, scenario_path: str | Path, run_dir: str | Path, *,
                 arrivals_csv: str | Path | None = None, duration: float | None = None,
                 rate_scale: float = 1.0, mix: dict[str, float] | None = None,
                 seed: int | None = None) -> Plan:
    """Load the sale, mint user tokens, build the schedule; write and return the plan.

    Raises ScenarioError (bad scenario), ScheduleError (bad arrivals) or ServerError (the
    server refused)."""
    scenario = load_scenario(scenario_path)
    campaign_table = read_scenario_data(scenario_path)["campaign"]
    load = scenario.load or Load()
    sched = build_schedule(scenario, arrivals_csv, duration=duration, rate_scale=rate_scale)
    seed = random.randrange(1 << 30) if seed is None else seed
    users = [f"u{seed % 10_000:04d}-{i}" for i in range(user_count(load, sched.expected_arrivals))]
    with AdminClient(host, admin_token) as admin:
        admin.load_sale(campaign_table, payment_timeout_seconds=load.payment_timeout_seconds,
                        group_window_seconds=load.group_window_seconds)
        tokens = admin.user_tokens(users)
    c = scenario.campaign
    plan = Plan(
        scenario=str(Path(scenario_path).resolve()), host=host, run_dir=str(run_dir),
        schedule=sched.to_json(), mix=dict(mix or load.mix), tokens=tokens,
        skus=[s.id for s in c.skus], coupons=[x.id for x in c.coupons],
        per_user_limit=c.per_user_limit, arrival_process=load.arrival_process, seed=seed,
        request_timeout=load.request_timeout_seconds,
        late_tolerance=load.late_tolerance_seconds, max_in_flight=load.max_in_flight,
        payment_timeout=load.payment_timeout_seconds, group_window=load.group_window_seconds,
    )
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    plan.save(Path(run_dir) / "plan.json")
    return plan
