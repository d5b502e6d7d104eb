"""The self-contained report.html every planner command writes: the answer on top, then the
set-up, tables and figures (PNG embedded as base64, so the file can be mailed on its own)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from sim.labels import fmt_ci, fmt_kpi
from sim.stats import KpiSummary


@dataclass(frozen=True)
class Measured:
    """A table cell holding a KPI's summary: shown with the KPI's unit, `56.3%`, `28,812 yuan`."""

    kpi: str
    summary: KpiSummary


Cell = str | KpiSummary | Measured
Table = tuple[str, tuple[str, ...], list[tuple[Cell, ...]], str]
"""(title, header, rows, note) of a report table; a summary cell is shown as its mean and
95% CI (in the terminal as mean ± half-width, to stay narrow)."""


@dataclass
class Answer:
    """The box at the top: one headline sentence and the figures that back it, each a
    (what, value) row such as ("gross profit", "36.7k yuan (95% CI 35.6k – 37.7k yuan)")."""

    headline: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def with_ci(kpi: str, s: KpiSummary) -> str:
    """`36.7k yuan (95% CI 35.6k – 37.7k yuan)`; a single replication has no interval."""
    if s.n < 2:
        return fmt_kpi(kpi, s.mean)
    return f"{fmt_kpi(kpi, s.mean)} (95% CI {fmt_ci(kpi, s.ci_low, s.ci_high)})"


def fmt(value: float) -> str:
    """A number for people: thousands separators, 3 significant decimals for small values."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}" if value else "0"


def cell_html(cell: Cell) -> str:
    """A table cell for HTML: a summary shows its interval small, below its mean."""
    if isinstance(cell, str):
        return html.escape(cell)
    if isinstance(cell, Measured):
        s = cell.summary
        mean = html.escape(fmt_kpi(cell.kpi, s.mean, short=False))
        if s.n < 2:
            return mean
        ci = fmt_ci(cell.kpi, s.ci_low, s.ci_high, short=False)
        return f"{mean}<br><small>[{html.escape(ci)}]</small>"
    return f"{fmt(cell.mean)}<br><small>[{fmt(cell.ci_low)}, {fmt(cell.ci_high)}]</small>"


def cell_text(cell: Cell) -> str:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, Measured):
        s = cell.summary
        half = (s.ci_high - s.ci_low) / 2
        return f"{fmt_kpi(cell.kpi, s.mean, short=False)} ± {fmt_kpi(cell.kpi, half)}"
    return f"{fmt(cell.mean)} ± {fmt((cell.ci_high - cell.ci_low) / 2)}"


def text_table(table: Table) -> str:
    """A report table for the terminal."""
    title, header, cells, _ = table
    if not cells:
        return f"{title}: none"
    rows = [tuple(cell_text(c) for c in r) for r in cells]
    allrows = [header, *rows]
    w = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    lines = ["  ".join(f"{c:<{w[i]}}" if i == 0 else f"{c:>{w[i]}}" for i, c in enumerate(r))
             for r in allrows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([f"{title} (mean ± half the 95% CI)", *lines])


def answer_text(answer: Answer) -> str:
    """The answer for the terminal: the headline, then one indented line per row."""
    w = max((len(k) for k, _ in answer.rows), default=0)
    return "\n".join([answer.headline, *(f"  {k:<{w}}  {v}" for k, v in answer.rows),
                      *(f"warning: {x}" for x in answer.warnings)])


_STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "Noto Sans", "Lab CJK", sans-serif;
       margin: 2em auto; max-width: 1120px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
section.answer { background: #eef6ee; border-left: 6px solid #2ca02c; padding: 0.6em 1.2em;
                 margin: 1em 0 2em; }
section.answer h2 { margin: 0.3em 0; font-size: 130%; }
section.answer table { font-size: 110%; }
section.answer th { font-weight: normal; color: #444; width: 32%; }
section.answer td { font-weight: 600; }
p.warn { color: #a33; font-weight: 600; }
figure { margin: 2em 0; } img { max-width: 100%; }
figcaption, p.note { color: #555; font-size: 90%; }
small { color: #666; }
"""


def _font_face() -> str:
    """The packaged CJK font as a web font, for a browser on a machine without a CJK font (the
    report is read where it was made; elsewhere the reader's own fonts come first)."""
    from sim.plotstyle import packaged_font

    path = packaged_font()
    return "" if path is None else (
        f'@font-face {{ font-family: "Lab CJK"; src: url("{path.as_uri()}"); }}\n')


@dataclass
class Page:
    """A report: title, the answer, the set-up (facts), tables and figures."""

    title: str
    answer: Answer
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        esc = html.escape
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.answer.rows)
        warns = "".join(f"<p class=warn>{esc(w)}</p>" for w in self.answer.warnings)
        facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.facts)
        tables = "".join(_table_html(t) for t in self.tables)
        figs = "".join(
            f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,'
            f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{esc(caption)}'
            "</figcaption></figure>" for p, caption in self.figures)
        path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(self.title)}</title>
<style>{_font_face()}{_STYLE}</style></head><body>
<h1>{esc(self.title)}</h1>
<section class=answer id=answer><h2>{esc(self.answer.headline)}</h2>
<table>{rows}</table>{warns}</section>
<h2>Set-up</h2>
<table>{facts}</table>
{tables}
{'<h2>Figures</h2>' + figs if figs else ''}
</body></html>
""", encoding="utf-8")
        return path


def _numeric(cell: Cell) -> bool:
    """Numbers sit right-aligned; words stay on the left."""
    return not isinstance(cell, str) or bool(re.match(r"[-+−]?[\d.,]", cell))


def _table_html(table: Table) -> str:
    esc = html.escape
    title, head, rows, note = table
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i and _numeric(c) else ''}>"
                                    f"{cell_html(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return (f"<h2>{esc(title)}</h2><table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}"
            f"</tr>{body}</table>" + (f"<p class=note>{esc(note)}</p>" if note else ""))
