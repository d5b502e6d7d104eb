"""Rendering at the edge: a `Report` (results whose findings are data) to text and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtests.checker.base import MAX_EXAMPLES, TEMPLATES, Finding, Report, Result


def render(f: Finding) -> str:
    """One finding as a sentence, from its kind's template (or its data, plainly)."""
    template = TEMPLATES.get(f.kind)
    if template is not None:
        try:
            return template.format_map(dict(f.data))
        except (KeyError, ValueError, TypeError):
            pass
    return f"{f.kind}: " + ", ".join(f"{k} {v}" for k, v in f.data.items())


def result_json(r: Result) -> dict[str, Any]:
    return {"name": r.name, "description": r.description, "held": r.held,
            "skipped": r.skipped, "checked": r.checked, "violations": r.violations,
            "counterexamples": [render(f) for f in r.findings],
            "findings": [f.to_json() for f in r.findings], "per_kind": r.per_kind,
            "note": r.note}


def to_json(report: Report) -> dict[str, Any]:
    return {"held": report.held, "verdict": report.verdict,
            "broken": [r.name for r in report.broken],
            "skipped": [r.name for r in report.skipped], "warnings": report.warnings,
            "invariants": [result_json(r) for r in report.results], "stats": report.stats}


def headline(report: Report) -> str:
    n = len(report.results)
    if not report.held:
        return f"invariants: {len(report.broken)} BROKEN ({n} checked)"
    if report.verdict == "incomplete":
        return (f"invariants: none broken, but INCOMPLETE ({len(report.skipped)} of {n} not "
                "checked; see the warnings)")
    return f"invariants: ALL HELD ({n} checked)"


def to_text(report: Report) -> str:
    lines = [headline(report)]
    lines.extend(f"  warning: {w}" for w in report.warnings)
    for r in report.results:
        if r.skipped:
            lines.append(f"  not checked  {r.name}: {r.skipped}")
            continue
        lines.append(f"  {'held  ' if r.held else 'BROKEN'}  {r.name}: {r.description} "
                     f"({r.checked} checked{', ' + r.note if r.note else ''})")
        if not r.held:
            shown = (f"first {len(r.findings)}" if len(r.per_kind) == 1 else
                     f"up to {MAX_EXAMPLES} of each kind: " + ", ".join(
                         f"{n} {k}" for k, n in sorted(r.per_kind.items())))
            lines.append(f"          {r.violations} violation(s); {shown}:")
            lines.extend(f"          - {render(f)}" for f in r.findings)
    if report.stats:
        lines.append("history: " + ", ".join(f"{k} {v}" for k, v in report.stats.items()))
    return "\n".join(lines)


def summary_lines(report: Report) -> list[str]:
    """One line per broken invariant, with its first counterexample."""
    return [f"invariant broken: {r.name} ({r.violations} violation(s)), e.g. "
            f"{render(r.findings[0]) if r.findings else '?'}" for r in report.broken]


def save_report(report: Report, json_path: str | Path, text_path: str | Path) -> None:
    """Write invariants.json and invariants.txt."""
    Path(json_path).write_text(json.dumps(to_json(report), indent=2, default=str))
    Path(text_path).write_text(to_text(report) + "\n")
