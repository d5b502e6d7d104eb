"""Command-line specs shared by sweeps, tuning and sensitivity: parameters, KPIs, constraints.

`KEY=V1,V2,…` (a list) and `KEY=lo:hi` (a range) name a dotted scenario key; `KPI>=X` is a
constraint; `KPI[:max|min]` an objective. Mistakes raise `ScenarioError` with one line each, so
the CLI prints them and exits 2. Every point is checked through the scenario schema before
anything runs (`scenario_points`).
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from campaign.errors import ScenarioError
from campaign.scenario import Scenario, apply_overrides, parse_scenario, split_key_path

MAX_PROBLEM_LINES = 12


@dataclass(frozen=True)
class Param:
    """A scenario key to vary: a list of `values`, or a `low`..`high` range."""

    key: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    integer: bool = False  # the schema wants an int: sampled values are rounded

    @property
    def is_range(self) -> bool:
        return self.values is None

    def at(self, unit: float) -> float | int:
        """The value at `unit` in [0, 1] of the range (rounded for integer keys)."""
        assert self.low is not None and self.high is not None
        value = self.low + unit * (self.high - self.low)
        return round(value) if self.integer else float(value)

    def cast(self, value: float) -> float | int:
        """A sampled number as the scenario wants it (rounded for integer keys)."""
        return round(value) if self.integer else float(value)


def parse_value(text: str) -> Any:
    """A value as TOML reads it (`12` int, `0.5` float, `true` bool), else the plain string."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def key_type(key: str) -> type | None:
    """The Python type the scenario schema expects at a dotted key (int, float, str, bool), or
    None when the key is not in the schema or is a table."""
    try:
        parts = split_key_path(key)
    except ValueError:
        return None
    node: Any = Scenario
    for part in parts:
        node = _unwrap_optional(node)
        origin = typing.get_origin(node)
        if isinstance(part, int):
            if origin is not list:
                return None
            node = typing.get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return None
            node = field.annotation
        elif origin is dict:
            node = typing.get_args(node)[1]
        else:
            return None
    node = _unwrap_optional(node)
    return node if node in (int, float, str, bool) else None


def _unwrap_optional(node: Any) -> Any:
    if isinstance(node, types.UnionType) or typing.get_origin(node) is typing.Union:
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return node


def parse_param(spec: str, option: str = "--vary") -> Param:
    """`KEY=V1,V2,…` or `KEY=lo:hi`; ScenarioError naming the option on a malformed spec."""
    key, sep, rhs = spec.partition("=")
    key, rhs = key.strip(), rhs.strip()
    if not sep or not key or not rhs:
        raise ScenarioError(option, [f"{spec!r}: expected KEY=V1,V2,… or KEY=lo:hi"])
    integer = key_type(key) is int
    if ":" in rhs and "," not in rhs:
        lo_text, _, hi_text = rhs.partition(":")
        lo, hi = parse_value(lo_text), parse_value(hi_text)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
            raise ScenarioError(option, [f"{key}={rhs}: range bounds must be numbers (lo:hi)"])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise ScenarioError(option, [f"{key}={rhs}: a range needs lo < hi"])
        return Param(key, low=float(lo), high=float(hi), integer=integer)
    values = tuple(parse_value(v) for v in rhs.split(","))
    if any(v == "" for v in values):
        raise ScenarioError(option, [f"{key}={rhs}: empty value in the list"])
    return Param(key, values=values, integer=integer)


def check_unique_keys(params: Sequence[Param], option: str) -> None:
    """Each key may be given once."""
    seen: set[str] = set()
    for p in params:
        if p.key in seen:
            raise ScenarioError(option, [f"{p.key}: given more than once"])
        seen.add(p.key)


def check_kpi(name: str, kpi_names: Sequence[str], option: str) -> str:
    """`name` if it is a KPI, else ScenarioError listing the KPIs."""
    if name not in kpi_names:
        raise ScenarioError(option, [f"unknown KPI {name!r}; KPIs are {', '.join(kpi_names)}"])
    return name


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`kpi op bound`, e.g. `group_completion_rate>=0.6`; judged on KPI means."""

    kpi: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.kpi}{self.op}{self.bound:g}"

    def text(self) -> str:
        """For people: `group completion rate ≥ 50%`, `subsidy spent (yuan) < 60,000 yuan`."""
        from sim.labels import fmt_kpi, kpi_name

        op = {">=": "≥", "<=": "≤"}.get(self.op, self.op)
        return f"{kpi_name(self.kpi)} {op} {fmt_kpi(self.kpi, self.bound, short=False)}"

    def holds(self, kpis: Mapping[str, float]) -> bool:
        return _OPS[self.op](kpis[self.kpi], self.bound)

    def violation(self, kpis: Mapping[str, float]) -> float:
        """How far the constraint is broken (> 0), or ≤ 0 when it holds (Optuna's convention)."""
        value = kpis[self.kpi]
        gap = self.bound - value if self.op in (">=", ">") else value - self.bound
        if self.op in (">", "<") and gap == 0:
            return 1e-12  # the bound itself is excluded
        return gap


def parse_constraint(text: str, kpi_names: Sequence[str]) -> Constraint:
    """`KPI>=X`, `KPI<=X`, `KPI>X` or `KPI<X`."""
    m = _CONSTRAINT.match(text)
    if not m:
        raise ScenarioError("--constraint", [f"{text!r}: expected KPI>=X, KPI<=X, KPI>X or KPI<X"])
    kpi, op, bound_text = m.groups()
    check_kpi(kpi, kpi_names, "--constraint")
    bound = parse_value(bound_text)
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
        raise ScenarioError("--constraint", [f"{text!r}: the bound must be a number"])
    return Constraint(kpi, op, float(bound))


def feasible(kpis: Mapping[str, float], constraints: Sequence[Constraint]) -> bool:
    """True when every constraint holds for these KPI values."""
    return all(c.holds(kpis) for c in constraints)


@dataclass(frozen=True)
class Objective:
    """A KPI to maximise or minimise."""

    kpi: str
    direction: str  # "maximize" | "minimize"

    def __str__(self) -> str:
        return f"{self.kpi}:{self.direction[:3]}"


def parse_objective(text: str, kpi_names: Sequence[str]) -> Objective:
    """`KPI`, `KPI:max` or `KPI:min` (default max)."""
    kpi, _, way = text.strip().partition(":")
    directions = {"": "maximize", "max": "maximize", "min": "minimize"}
    if way not in directions:
        raise ScenarioError("--objective", [f"{text!r}: expected KPI, KPI:max or KPI:min"])
    return Objective(check_kpi(kpi, kpi_names, "--objective"), directions[way])


def format_params(params: Mapping[str, Any]) -> str:
    """`key=value, key=value` with short numbers, for messages."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def check_bounds(data: dict[str, Any], source: str, params: Sequence[Param]) -> None:
    """Each range bound and listed value must make a valid scenario on its own, so a bad
    range is reported even where sampling would not happen to hit its end."""
    corners = [{p.key: v} for p in params
               for v in ((p.cast(p.low or 0), p.cast(p.high or 0)) if p.is_range
                         else p.values or ())]
    scenario_points(data, source, corners)


def scenario_points(data: dict[str, Any], source: str,
                    points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scenario data for each point (overrides applied), all checked by the schema first.

    A problem caused by one key/value on its own is reported once as `key=value: reason`;
    one that only arises in combination (e.g. a tier ladder that stops rising) is reported
    with the point's parameters."""
    problems: list[str] = []
    # A key the scenario does not have is one line, and is left out of the other checks so
    # it does not hide what is wrong with the remaining settings.
    bad_keys: set[str] = set()
    for key in dict.fromkeys(k for point in points for k in point):
        value = next(point[key] for point in points if key in point)
        for problem in _problems(data, source, {key: value}):
            if any(t in problem for t in _KEY_PROBLEMS):
                bad_keys.add(key)
                problems.append(_blame(key, value, problem))
    checked = [{k: v for k, v in point.items() if k not in bad_keys} for point in points]
    found = [_problems(data, source, point) for point in checked]
    alone: dict[tuple[str, str], list[str]] = {}
    for i, point in enumerate(checked):
        for problem in found[i]:
            line = f"point {i} ({format_params(point)}): {problem}"
            for key, value in point.items():
                tag = (key, repr(value))
                if tag not in alone:
                    alone[tag] = _problems(data, source, {key: value})
                # Blame the setting alone only if it fails wherever it appears.
                if problem in alone[tag] and all(
                        problem in found[j] for j, other in enumerate(checked)
                        if key in other and repr(other[key]) == tag[1]):
                    line = _blame(key, value, problem)
                    break
            if line not in problems:
                problems.append(line)
    if problems:
        _raise(source, problems)
    return [apply_overrides(data, dict(point), source) for point in points]


def _problems(data: dict[str, Any], source: str, overrides: dict[str, Any]) -> list[str]:
    try:
        parse_scenario(apply_overrides(data, overrides, source), source)
    except ScenarioError as exc:
        return exc.problems
    return []


def _blame(key: str, value: Any, problem: str) -> str:
    # Name the setting once when the schema blames the key itself.
    if problem.startswith(f"{key}: "):
        problem = problem[len(key) + 2:]
    if any(t in problem for t in _KEY_PROBLEMS):  # the key itself is wrong, whatever the value
        return f"{key}: {problem}"
    shown = f"{value:g}" if isinstance(value, float) else value
    return f"{key}={shown}: {problem}"


_KEY_PROBLEMS = ("unknown key", "has no item", "no item [", "is not a table", "bad index",
                 "empty key")


def _raise(source: str, problems: list[str]) -> None:
    if len(problems) > MAX_PROBLEM_LINES:
        more = len(problems) - MAX_PROBLEM_LINES
        problems = [*problems[:MAX_PROBLEM_LINES], f"… and {more} more problem(s)"]
    raise ScenarioError(source, problems)
