"""The run plan: everything a load process needs, prepared once before the run.

A load test reads its scenario file once (`ScenarioFile.read`) and builds its arrival schedule
once (`ScenarioFile.schedule`). `prepare_plan` loads the scenario's sale into the server (with
short payment and group timeouts so expiry happens inside the run), mints tokens for a pool of
shopper ids and writes `plan.json`, schedule included, into the run folder; every load process
(local, `--processes`, or Locust workers) then takes its share from that plan. `groupbuy
loadtest` prepares it before starting Locust; a locustfile run directly prepares it itself.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from campaign.load import Load
from campaign.scenario import Scenario, parse_scenario, read_scenario_data
from loadtests.api import AdminClient
from loadtests.schedule import Schedule, build_schedule


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario file read and validated once: the model, and the raw `[campaign]` table the
    server loads as it is (so the served rules are the file's, key for key)."""

    path: Path
    scenario: Scenario
    campaign_table: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> ScenarioFile:
        """Raises ScenarioError (one line per problem) for a bad file."""
        data = read_scenario_data(path)
        scenario = parse_scenario(data, source=str(path))
        return cls(Path(path).resolve(), scenario, data["campaign"])

    @property
    def load(self) -> Load:
        return self.scenario.load or Load()

    def schedule(self, arrivals_csv: str | Path | None = None, *,
                 duration: float | None = None, rate_scale: float = 1.0) -> Schedule:
        """The run's arrival schedule (ScheduleError for a bad arrivals.csv)."""
        return build_schedule(self.scenario, arrivals_csv, duration=duration,
                              rate_scale=rate_scale)


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
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Names this run in every history header, so no run's records mix with another's."""
    sale_id: str | None = None
    """The sale the run loaded: the ledger's `sale_id` (contract 1.2), else `start:<start>`."""
    sale_start: float | None = None
    """When the loaded sale started (time discounts count from it)."""
    contract: str | None = None
    """The contract version the server said it speaks (`GET /v1/health`)."""
    adversaries: dict[str, str] = field(default_factory=dict)
    """Fresh shopper ids (and tokens) for adversarial journeys: one per such arrival."""

    @cached_property
    def sched(self) -> Schedule:
        """The schedule (built once, from `schedule`)."""
        return Schedule.from_json(self.schedule)

    @property
    def drain_seconds(self) -> float:
        """Longest a journey can outlive the last arrival: four requests, the think times, and
        the retries after unknown outcomes."""
        return 4 * self.request_timeout + 6.0

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def user_count(load: Load, expected_arrivals: float) -> int:
    """Distinct shopper ids: `[load].users`, else about one per two arrivals (some return)."""
    if load.users:
        return load.users
    return max(20, min(10_000, math.ceil(expected_arrivals / 2)))


def prepare_plan(host: str, admin_token: str, source: ScenarioFile, sched: Schedule,
                 run_dir: str | Path, *, mix: dict[str, float] | None = None,
                 seed: int | None = None) -> Plan:
    """Load the sale, mint user tokens; write and return the plan of `sched`.

    Raises ServerError (the server refused). A previous run's history and arrival files in
    `run_dir` are removed first: a run never appends to another's history."""
    load = source.load
    seed = random.randrange(1 << 30) if seed is None else seed
    users = [f"u{seed % 10_000:04d}-{i}" for i in range(user_count(load, sched.expected_arrivals))]
    mix = dict(mix or load.mix)
    adversaries = [f"x{seed % 10_000:04d}-{i}"
                   for i in range(adversary_count(mix, sched.expected_arrivals))]
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    clear_stale_run_files(Path(run_dir))
    with AdminClient(host, admin_token) as admin:
        health = admin.health()
        loaded = admin.load_sale(source.campaign_table,
                                 payment_timeout_seconds=load.payment_timeout_seconds,
                                 group_window_seconds=load.group_window_seconds)
        ledger = admin.ledger()
        tokens = admin.user_tokens(users + adversaries)
    c = source.scenario.campaign
    start = loaded.get("start")
    plan = Plan(
        scenario=str(source.path), host=host, run_dir=str(run_dir),
        schedule=sched.to_json(), mix=mix, tokens={u: tokens[u] for u in users},
        skus=[s.id for s in c.skus], coupons=[x.id for x in c.coupons],
        per_user_limit=c.per_user_limit, arrival_process=load.arrival_process, seed=seed,
        request_timeout=load.request_timeout_seconds,
        late_tolerance=load.late_tolerance_seconds, max_in_flight=load.max_in_flight,
        payment_timeout=float(loaded.get("payment_timeout_seconds",
                                          load.payment_timeout_seconds)),
        group_window=float(loaded.get("group_window_seconds", load.group_window_seconds)),
        sale_id=ledger.get("sale_id") or (f"start:{start!r}" if start is not None else None),
        sale_start=start, contract=health.get("contract"),
        adversaries={u: tokens[u] for u in adversaries},
    )
    plan.save(Path(run_dir) / "plan.json")
    return plan


STALE_PATTERNS = ("history-*.jsonl", "history.jsonl", "arrivals-*.json", "state.json",
                  "faults.jsonl")
"""Files a previous run in the same folder leaves behind that this run would read back."""


def clear_stale_run_files(run_dir: Path) -> list[Path]:
    """Remove a previous run's history, arrival, state and fault files from `run_dir`;
    returns what went."""
    gone = []
    for pattern in STALE_PATTERNS:
        for p in sorted(run_dir.glob(pattern)):
            p.unlink()
            gone.append(p)
    return gone


def adversary_count(mix: dict[str, float], expected_arrivals: float) -> int:
    """Fresh shopper ids for the adversarial journeys: their expected arrivals and a margin
    (an adversarial arrival without a fresh id left skips its probe)."""
    total = sum(mix.values())
    share = mix.get("adversarial", 0.0) / total if total else 0.0
    if share <= 0:
        return 0
    want = expected_arrivals * share
    return min(10_000, math.ceil(want + 4 * math.sqrt(want) + 10))
