"""Writing the fitted scenario: the base file's text with the fitted values put in place, so
its comments and every key calibration does not fit stay as they were.

Each fitted line gets a comment with its 95% interval. A key the base leaves out is added to
its table (or a new table at the end). The result is parsed again and compared with the fitted
data; if a layout defeats the editing (say, a table written inline), the scenario is written
plainly instead, without the base's comments.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from typing import Any

from campaign.scenario import split_key_path
from sim.calibrate.estimate import Estimate

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_-]+)\s*=\s*(.*)$")

Path = tuple[str | int, ...]


def fitted_toml(base_text: str, fitted: dict[str, Any], estimates: list[Estimate],
                header: str) -> tuple[str, bool]:
    """The fitted scenario as TOML text, and whether the base's layout and comments were
    kept (False: written plainly)."""
    notes = {tuple(split_key_path(e.key)): _note(e) for e in estimates}
    text = _edit(base_text, fitted, notes)
    if text is not None:
        try:
            if _same(tomllib.loads(text), fitted):
                return _comment(header) + text, True
        except tomllib.TOMLDecodeError:
            pass
    return _comment(header) + dump(fitted), False


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines()) + "\n"


def _note(e: Estimate) -> str:
    base = "" if e.base is None else f"; base {fmt_value(e.base)}"
    return f"fitted: 95% CI [{e.ci_low:.4g}, {e.ci_high:.4g}]{base}"


def _get(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


_MISSING = object()


def _edit(text: str, fitted: dict[str, Any], notes: dict[Path, str]) -> str | None:
    lines = text.splitlines()
    table: Path = ()
    counts: dict[Path, int] = {}
    done: set[Path] = set()
    ends: dict[Path, int] = {}  # table -> index of its last line with content
    out = list(lines)
    skip_until_balanced = 0
    for i, line in enumerate(lines):
        if skip_until_balanced:
            skip_until_balanced += _balance(line)
            ends[table] = i
            continue
        m = _HEADER.match(line)
        if m and not _KEY.match(line):
            name = tuple(p.strip().strip('"') for p in m.group(2).split("."))
            if m.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = (*_indexed(name, counts), counts[name])
            else:
                table = _indexed(name, counts)
            ends[table] = i
            continue
        k = _KEY.match(line)
        if not k or line.lstrip().startswith("#"):
            continue
        ends[table] = i
        indent, key, rest = k.groups()
        value, comment = _split_comment(rest)
        if _balance(value):
            skip_until_balanced = _balance(value)
            continue
        path = (*table, key)
        new = _get(fitted, path)
        if new is _MISSING:
            return None  # a key the fitted data lost: do not guess
        if path in notes:
            out[i] = f"{indent}{key} = {fmt_value(new)}  # {notes[path]}"
            done.add(path)
        elif any(n[:len(path)] == path for n in notes):
            old = _parse_value(value)
            if old != new:
                out[i] = f"{indent}{key} = {fmt_value(new)}  # fitted (95% CIs in the fit report)"
            done.update(n for n in notes if n[:len(path)] == path)
        elif comment is not None:
            continue
    missing: dict[Path, list[Path]] = {}
    for path in notes:
        if path not in done:
            missing.setdefault(path[:-1], []).append(path)
    inserts: dict[int, list[str]] = {}
    tail: list[str] = []
    for table_path, paths in missing.items():
        rows = [f"{p[-1]} = {fmt_value(_get(fitted, p))}  # {notes[p]}" for p in paths]
        if table_path in ends:
            inserts.setdefault(ends[table_path], []).extend(rows)
        elif table_path and isinstance(table_path[-1], int):
            return None  # an array table the text does not have
        else:
            tail += ["", f"[{'.'.join(str(p) for p in table_path)}]", *rows]
    result = []
    for i, line in enumerate(out):
        result.append(line)
        result.extend(inserts.get(i, []))
    return "\n".join(result + tail) + "\n"


def _indexed(name: tuple[str, ...], counts: dict[Path, int]) -> Path:
    """A dotted table name with the current index of any array of tables along it."""
    out: list[str | int] = []
    for j, part in enumerate(name):
        out.append(part)
        prefix = name[:j + 1]
        if prefix in counts and j < len(name) - 1:
            out.append(counts[prefix])
    return tuple(out)


def _split_comment(rest: str) -> tuple[str, str | None]:
    quote = None
    for j, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return rest[:j].rstrip(), rest[j:]
    return rest.rstrip(), None


def _balance(value: str) -> int:
    """Open brackets minus closed ones outside strings (a value going on to the next line)."""
    depth, quote = 0, None
    for ch in value:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return depth


def _parse_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return _MISSING


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def fmt_value(v: Any) -> str:
    """A value as TOML writes it (inline tables and arrays for nested values)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = f"{v:.6g}"
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {fmt_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def dump(data: dict[str, Any], prefix: str = "") -> str:
    """Plain TOML for scenario data: values first, then sub-tables and arrays of tables."""
    simple = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    lines = [f"{_key(k)} = {fmt_value(v)}" for k, v in simple.items()]
    for k, v in data.items():
        name = f"{prefix}{_key(k)}"
        if _is_table(v):
            lines += ["", f"[{name}]", dump(v, name + ".").rstrip("\n")]
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{name}]]", dump(item, name + ".").rstrip("\n")]
    return "\n".join(x for x in lines if x is not None).lstrip("\n") + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
