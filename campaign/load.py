"""The `[load]` and `[checks]` sections: how to drive a checkout server and what fails a run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from campaign.base import Section
from campaign.errors import at


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
    mix: dict[str, float] = Field(default_factory=lambda: {"buy": 1.0}, description=(
        "behaviour -> weight"))
    request_timeout_seconds: float = Field(default=5, gt=0, le=300)

    @model_validator(mode="after")
    def _consistent(self) -> Load:
        if self.arrivals == "phases" and not self.phases:
            raise ValueError(at("phases", reason="arrivals = 'phases' needs at least one phase"))
        for name, weight in self.mix.items():
            if weight < 0:
                raise ValueError(at("mix", name, reason="must be >= 0"))
        if self.mix and sum(self.mix.values()) <= 0:
            raise ValueError(at("mix", reason="weights must not all be zero"))
        return self


class Checks(Section):
    """Thresholds that fail a load-test run. Invariants are always checked."""

    max_error_rate: float | None = Field(default=None, ge=0, le=1, description="share of "
                                         "requests answered with 5xx or not at all")
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    min_throughput: float | None = Field(default=None, gt=0, description="requests per second")
