"""Scenario errors written for people: one line per problem, naming the key path and the reason."""

from __future__ import annotations

from pydantic import ValidationError


class ScenarioError(Exception):
    """A scenario file that cannot be used. `problems` holds one `key.path: reason` per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))

    def lines(self) -> list[str]:
        """The messages, each prefixed by the file name, ready to print."""
        return [f"{self.source}: {p}" for p in self.problems]


def key_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `campaign.groups.tiers[1].size`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _reason(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the commented scenarios in scenarios/)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def at(*loc: int | str, reason: str) -> str:
    """Message for a model validator that blames a key below the model: `at("tiers", 1, "size",
    reason="...")`. `problems_from_validation` moves the key into the reported path."""
    return f"@{key_path(loc)}@ {reason}"


def problems_from_validation(exc: ValidationError) -> list[str]:
    """One `key.path: reason` line per pydantic error, model-level errors tagged with their key."""
    lines = []
    for err in exc.errors():
        # Strip pydantic's internal location tags (e.g. "function-after[...]").
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "(" in p))
        path, reason = key_path(loc), _reason(err)
        if reason.startswith("@") and "@ " in reason:
            sub, reason = reason[1:].split("@ ", 1)
            path = sub if path == "(top level)" else (
                f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"
            )
        lines.append(f"{path}: {reason}")
    return lines
