"""A scenario file (TOML): [campaign], [audience], [load], [faults], [checks]; loading and
checking."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from campaign.audience import Audience
from campaign.base import Section
from campaign.errors import ScenarioError, at, key_path, problems_from_validation
from campaign.load import Checks, Faults, Load
from campaign.rules import CampaignRules


class Scenario(Section):
    """One promotion, described once for the simulation, the server and the load test."""

    campaign: CampaignRules
    audience: Audience | None = None
    load: Load | None = None
    faults: Faults | None = None
    checks: Checks = Field(default_factory=Checks)

    @model_validator(mode="after")
    def _audience_fits_campaign(self) -> Scenario:
        aud = self.audience
        if aud is None:
            return self
        phases = [p.name for p in self.campaign.phases]
        if aud.arrivals_per_hour is not None:
            for name in aud.arrivals_per_hour:
                if name not in phases:
                    raise ValueError(at("audience", "arrivals_per_hour", name,
                                        reason=f"not a phase of the campaign; phases are {phases}"))
            missing = [p for p in phases if p not in aud.arrivals_per_hour]
            if missing:
                raise ValueError(at("audience", "arrivals_per_hour",
                                    reason=f"no rate for phase(s) {missing}"))
        if aud.hourly_curve is not None:
            need = math.ceil(self.campaign.duration_hours - 1e-9)
            if len(aud.hourly_curve) != need:
                raise ValueError(at("audience", "hourly_curve", reason=(
                    f"has {len(aud.hourly_curve)} hours; the campaign lasts "
                    f"{self.campaign.duration_hours:g} h, so it needs {need}")))
        if aud.groups is not None and self.campaign.groups is None:
            raise ValueError(at("audience", "groups", reason="the campaign has no "
                                "[campaign.groups]; group behaviour needs group rules"))
        tiers = self.campaign.member_tiers
        for i, seg in enumerate(aud.segments):
            if seg.member_tier not in tiers:
                raise ValueError(at("audience", "segments", i, "member_tier",
                                    reason=f"unknown member tier; member_tiers is {tiers}"))
        return self

    def arrival_rate_pieces(self) -> list[tuple[float, float, float]]:
        """The arrival rate as (start_hour, end_hour, arrivals_per_hour), piecewise constant."""
        if self.audience is None:
            return []
        aud, duration = self.audience, self.campaign.duration_hours
        if aud.arrivals_per_hour is not None:
            return [(lo, hi, aud.arrivals_per_hour[name])
                    for name, lo, hi in self.campaign.phase_bounds()]
        assert aud.hourly_curve is not None
        return [(h, min(h + 1.0, duration), rate) for h, rate in enumerate(aud.hourly_curve)]

    def expected_arrivals(self) -> float:
        """∫λ(t)dt over the sale window (first-time arrivals, before referrals)."""
        return sum((hi - lo) * rate for lo, hi, rate in self.arrival_rate_pieces())


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate already-parsed TOML data; raises ScenarioError with one line per problem."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, problems_from_validation(exc)) from None


def read_scenario_data(path: str | Path) -> dict[str, Any]:
    """The raw TOML table of a scenario file; ScenarioError if it cannot be read or parsed."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(str(path), ["file not found"]) from None
    except IsADirectoryError:
        raise ScenarioError(str(path), ["is a directory, not a scenario file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [f"cannot read: {exc}"]) from None


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file, optionally with dotted-key overrides applied first."""
    data = read_scenario_data(path)
    if overrides:
        data = apply_overrides(data, overrides, source=str(path))
    return parse_scenario(data, source=str(path))


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any],
                    source: str = "<scenario>") -> dict[str, Any]:
    """A copy of `data` with each dotted key (`campaign.groups.tiers[1].percent_off`) set.

    Only keys whose parent exists can be set, so a typo is reported rather than added."""
    out = copy.deepcopy(data)
    problems = []
    for key, value in overrides.items():
        try:
            _set_path(out, key, value)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            problems.append(f"{key}: {exc.args[0] if exc.args else 'cannot set this key'}")
    if problems:
        raise ScenarioError(source, problems)
    return out


def split_key_path(key: str) -> list[str | int]:
    """`campaign.groups.tiers[1].size` -> ["campaign", "groups", "tiers", 1, "size"]."""
    parts: list[str | int] = []
    for chunk in key.split("."):
        name, _, rest = chunk.partition("[")
        if not name and not parts:
            raise ValueError("empty key")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            if not idx.isdigit():
                raise ValueError(f"bad index [{idx}]")
            parts.append(int(idx))
            rest = rest.removeprefix("[")
    return parts


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = split_key_path(key)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        parent = key_path(tuple(parts[:i]))
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise IndexError(f"{parent} has no item [{part}]")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise TypeError(f"{parent} is not a table")
            if part not in node:
                node[part] = {}  # an optional section left out of the file (e.g. campaign.groups)
            node = node[part]
    last, parent = parts[-1], key_path(tuple(parts[:-1]))
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise IndexError(f"{parent} has no item [{last}]")
    elif not isinstance(node, dict):
        raise TypeError(f"{parent} is not a table")
    node[last] = value
