"""The `[load]` and `[checks]` sections: how to drive a checkout server and what fails a run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from campaign.base import Section
from campaign.errors import at

BEHAVIOURS: dict[str, str] = {
    "browse": "list the SKUs and look at one; changes nothing",
    "ping": "one GET /v1/ping, which touches no store (load-generator benchmarks)",
    "buy": "reserve one unit, then pay",
    "abandon": "reserve and never pay: the reservation expires",
    "cancel": "reserve, then cancel",
    "group": "open a group (leader) or join an open one, then pay (some never pay)",
    "coupon": "claim a coupon, reserve with it, then pay",
    "retry": "reserve, then send the same request again with the same idempotency key",
    "timeout": "reserve with a client timeout too short for an answer (outcome unknown), then "
               "retry with the same idempotency key",
    "adversarial": "a fresh shopper sends one request a correct server refuses or ignores: an "
                   "unclaimed or already used coupon, paying or cancelling someone else's "
                   "order, joining a closed or full group, paying after the deadline, or "
                   "reusing an idempotency key for another request (off unless mixed in)",
}
"""The shopper journeys a load test can mix; `[load].mix` weights them."""


class LoadPhase(Section):
    """An explicit stretch of the open-workload schedule: `rate` arrivals per second."""

    name: str = ""
    seconds: float = Field(gt=0, le=24 * 3600)
    rate: float = Field(ge=0, le=1_000_000, description="arrivals per second")


class Load(Section):
    """How to drive a server: arrival schedule, duration, behaviour mix."""

    arrivals: Literal["phases", "simulation"] = Field(
        default="simulation", description="'phases': the explicit phases below; 'simulation': "
        "the arrivals.csv curve a simulation wrote, squeezed into duration_seconds")
    phases: list[LoadPhase] = Field(default_factory=list)
    duration_seconds: float = Field(default=60, gt=0, le=24 * 3600)
    peak_rate: float = Field(default=50, gt=0, le=1_000_000, description="arrivals per second "
                             "at the simulated curve's peak (arrivals = 'simulation')")
    arrival_process: Literal["uniform", "poisson"] = Field(
        default="uniform", description="'uniform': evenly spaced arrivals that follow the rate "
        "exactly; 'poisson': random (exponential) gaps with the same mean rate")
    mix: dict[str, float] = Field(default_factory=lambda: {"buy": 1.0}, description=(
        "behaviour -> weight"))
    request_timeout_seconds: float = Field(default=5, gt=0, le=300)
    payment_timeout_seconds: float = Field(default=4, gt=0, le=24 * 3600, description=(
        "the sale's payment timeout during the test, short so reservations expire in the run"))
    group_window_seconds: float = Field(default=8, gt=0, le=24 * 3600, description=(
        "the sale's group window during the test, short so some groups fail in the run"))
    users: int = Field(default=0, ge=0, le=10_000, description="distinct shopper ids the test "
                       "uses (0: about one per two expected arrivals, so some shoppers return)")
    late_tolerance_seconds: float = Field(default=0.5, gt=0, le=60, description="an arrival "
                                          "starting later than this after its intended time "
                                          "counts as late")
    max_in_flight: int = Field(default=2000, ge=1, le=100_000, description="journeys in "
                               "progress per load process; arrivals beyond it are dropped")

    @model_validator(mode="after")
    def _consistent(self) -> Load:
        if self.arrivals == "phases" and not self.phases:
            raise ValueError(at("phases", reason="arrivals = 'phases' needs at least one phase"))
        for name, weight in self.mix.items():
            if name not in BEHAVIOURS:
                raise ValueError(at("mix", name, reason="unknown behaviour; behaviours are "
                                    f"{sorted(BEHAVIOURS)}"))
            if weight < 0:
                raise ValueError(at("mix", name, reason="must be >= 0"))
        if not self.mix or sum(self.mix.values()) <= 0:
            raise ValueError(at("mix", reason="weights must not all be zero"))
        return self

    @property
    def planned_seconds(self) -> float:
        """How long the arrival schedule lasts: the phases' total, else duration_seconds."""
        if self.arrivals == "phases":
            return sum(p.seconds for p in self.phases)
        return self.duration_seconds


class RequestChecks(Section):
    """Thresholds on requests: of the whole run (`[checks]`), or of one request name (Locust's
    request name, e.g. `[checks.requests."POST /v1/orders"]`)."""

    max_error_rate: float | None = Field(default=None, ge=0, le=1, description="share of the "
                                         "requests answered with 5xx or not at all")
    p95_ms: float | None = Field(default=None, gt=0, description="95th percentile latency, "
                                 "measured from each request's intended start")
    p99_ms: float | None = Field(default=None, gt=0, description="99th percentile latency, "
                                 "measured from each request's intended start")
    min_throughput: float | None = Field(default=None, gt=0, description="the requests per "
                                         "second over the whole run")


class Checks(RequestChecks):
    """Thresholds that fail a load-test run. Invariants are always checked."""

    max_dropped: int = Field(default=0, ge=0, description="scheduled arrivals the load "
                             "generator may drop (never started) before the run fails")
    max_late_share: float = Field(default=0.01, ge=0, le=1, description="share of started "
                                  "arrivals that may start late before the run fails")
    max_rate_shortfall: float = Field(default=0.05, ge=0, le=1, description="how far below "
                                      "the target arrival rate the achieved rate may fall")
    requests: dict[str, RequestChecks] = Field(default_factory=dict, description="request "
                                               "name -> thresholds on those requests alone")
    abort_on_fail: bool = Field(default=False, description="stop the load as soon as an error "
                                "rate or latency threshold is missed (judged every second on "
                                "the requests so far), instead of at the end")
    abort_grace_seconds: float = Field(default=5, ge=0, le=3600, description="with "
                                       "abort_on_fail: judge nothing before this many seconds "
                                       "of load (early percentiles rest on few requests)")


class PauseFault(Section):
    """Stop one server worker (SIGSTOP) at `at` seconds into the load for `seconds`."""

    at: float = Field(ge=0, le=24 * 3600)
    seconds: float = Field(gt=0, le=3600)


class StoreRestart(Section):
    """Run `command` (a shell command that restarts the store) at `at` seconds into the load."""

    at: float = Field(ge=0, le=24 * 3600)
    command: str = Field(min_length=1)
    timeout_seconds: float = Field(default=60, gt=0, le=3600)


class ProxyWindow(Section):
    """From `at` for `seconds`, the proxy between load generator and server delays every
    request by `delay_ms` and cuts a share `drop` of them (half before, half after the server
    got them)."""

    at: float = Field(ge=0, le=24 * 3600)
    seconds: float = Field(gt=0, le=3600)
    delay_ms: float = Field(default=0, ge=0, le=60_000)
    drop: float = Field(default=0, ge=0, le=1)


class Faults(Section):
    """What to break while the load runs (times in seconds from the first arrival). Requests
    in flight when a fault strikes get unknown outcomes; the checker then proves nothing
    acknowledged was lost and nothing happened twice."""

    kill_server: list[float] = Field(default_factory=list, description="kill -9 every process "
                                     "of the server, then restart it on the same store")
    kill_worker: list[float] = Field(default_factory=list, description="kill -9 one server "
                                     "worker (uvicorn starts another)")
    pause_worker: list[PauseFault] = Field(default_factory=list)
    restart_store: list[StoreRestart] = Field(default_factory=list)
    proxy: list[ProxyWindow] = Field(default_factory=list)
    proxy_delay_ms: float = Field(default=0, ge=0, le=60_000, description="latency the proxy "
                                  "adds to every request all run long (0 and no windows: no "
                                  "proxy)")
    restart_delay_seconds: float = Field(default=1.0, ge=0, le=600, description="how long a "
                                         "killed server stays down before its restart")

    @model_validator(mode="after")
    def _times(self) -> Faults:
        for name in ("kill_server", "kill_worker"):
            for i, t in enumerate(getattr(self, name)):
                if not 0 <= t <= 24 * 3600:
                    raise ValueError(at(name, i, reason="a time from 0 to 86400 seconds"))
        return self

    @property
    def needs_own_server(self) -> list[str]:
        """The faults that need a server the run started (not `--host`)."""
        return [name for name in ("kill_server", "kill_worker", "pause_worker")
                if getattr(self, name)]

    @property
    def uses_proxy(self) -> bool:
        return bool(self.proxy) or self.proxy_delay_ms > 0

    @property
    def any(self) -> bool:
        return bool(self.kill_server or self.kill_worker or self.pause_worker
                    or self.restart_store or self.uses_proxy)
