"""Run the examples in README.md and docs/*.md, and compare the output they show.

The convention (also in the README, "Examples in the docs are tests"):

- ```` ```console ```` blocks are terminal sessions: a line starting with `$ ` is a command
  (lines after one ending in `\\` continue it); the lines up to the next command are its
  expected output (stdout and stderr together). ```` ```sh ````/```` ```bash ```` blocks are
  scripts, run with `bash -e`. ```` ```python ```` blocks run in one namespace per page, in page
  order. Every other fence (`text`, `toml`, `yaml`, untagged …) is an illustration and is not run.
- HTML comments right before a block steer it:
  `<!-- not-run: REASON -->` skips the block (the reason is shown);
  `<!-- doc-test: DIRECTIVE; DIRECTIVE … -->` with directives
  `replace "OLD" "NEW"` (a fast variant: the command run has OLD replaced by NEW),
  `numbers=ignore` (compare the text with every number masked),
  `exit=N` (every command exits N; default 0), `timeout=SECONDS` (default 90),
  `needs=postgres` / `needs=redis` (the existing pytest markers; skipped or, in CI, failed
  without the service), `setup "COMMAND"` (run first, unseen, e.g. to make an input file);
  `<!-- doc-test: output -->` before a ```` ```text ```` block makes it the expected output of
  the runnable block just above it.
- Output comparison: runs of spaces compare as one; trailing blanks are ignored; progress bars
  (carriage-return frames) are dropped; durations (`0.4 s`, `38 ms`) are masked on both sides;
  a line that is only `...` or `…` matches any number of lines, and `…` inside a line matches
  any text. Seeded results are deterministic, so every other number compares exactly, except
  under `numbers=ignore` or a `replace` fast variant, where numbers are masked, table rules
  match whatever their width, and runs of lines of the same shape compare as one (a fast tune
  lists fewer trials). The figures shown come from the full command: GROUPBUY_DOCS_FULL=1 runs
  it unreplaced and compares them exactly.
- Each example runs in a fresh copy of the repository (without .git, results/ and .venv, which is
  linked), so it cannot dirty the work tree; Python blocks of one page share one copy.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

RUNNABLE = {"console": "console", "sh": "shell", "bash": "shell", "python": "python"}
DEFAULT_TIMEOUT = 90.0
FULL_ENV = "GROUPBUY_DOCS_FULL"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "results", "__pycache__", "*.sqlite3", "*.db", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "*.egg-info", "build",
)
_COMMENT = re.compile(r"<!--\s*(not-run|doc-test)\s*:(.*?)-->", re.DOTALL)
_DURATION = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:s|ms|µs)\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[+-]?\d+)?")
_RULE = re.compile(r"-{3,}")  # a table's rule, as wide as its columns
_WILD_LINE = {"...", "…"}
_PROGRESS = re.compile(r"\d+%\|.*\|")  # a tqdm bar: "sweep: 100%|█████| 90/90 [...]"
_COMMAND = re.compile(r"(groupbuy|python3?|\.venv/bin/\S+|locust|curl) ")
_SYNOPSIS = re.compile(r"\b[A-Z][A-Z_]{2,}\b|\[--")  # SCENARIO, KEY=V1, [--seed S]


class DocTestError(ValueError):
    """A doc-test comment the runner cannot read (a typo must not silently skip a check)."""


@dataclass(frozen=True)
class Directives:
    not_run: str | None = None
    replace: tuple[tuple[str, str], ...] = ()
    numbers_ignored: bool = False
    exit_code: int = 0
    timeout: float = DEFAULT_TIMEOUT
    needs: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    is_output: bool = False


@dataclass(frozen=True)
class Example:
    page: str                  # path relative to the repository, e.g. "docs/simulation.md"
    line: int                  # 1-based line of the opening fence
    lang: str                  # console | shell | python
    source: str
    directives: Directives = field(default_factory=Directives)
    expected_output: str | None = None   # from a following `doc-test: output` text block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Command:
    text: str
    expected: str              # expected output lines ("" when the doc shows none)


def parse_directives(comments: list[tuple[str, str]], where: str) -> Directives:
    """`comments` are (kind, body) pairs of the comments right before a block."""
    values: dict = {"replace": [], "needs": [], "setup": []}
    for kind, body in comments:
        if kind == "not-run":
            reason = " ".join(body.split())
            if not reason:
                raise DocTestError(f"{where}: not-run needs a reason")
            values["not_run"] = reason
            continue
        for part in (p.strip() for p in body.split(";")):
            if part:
                _apply_directive(part, values, where)
    values["replace"] = tuple(values["replace"])
    values["needs"] = tuple(values["needs"])
    values["setup"] = tuple(values["setup"])
    return Directives(**values)


def _apply_directive(part: str, values: dict, where: str) -> None:
    try:
        words = shlex.split(part)
    except ValueError as exc:
        raise DocTestError(f"{where}: doc-test directive {part!r}: {exc}") from None
    head, args = words[0], words[1:]
    if head == "replace" and len(args) == 2:
        values["replace"].append((args[0], args[1]))
    elif head == "setup" and len(args) == 1:
        values["setup"].append(args[0])
    elif head == "output" and not args:
        values["is_output"] = True
    elif head == "numbers=ignore" and not args:
        values["numbers_ignored"] = True
    elif head.startswith("exit=") and not args and head[5:].isdigit():
        values["exit_code"] = int(head[5:])
    elif head.startswith("timeout=") and not args and _is_number(head[8:]):
        values["timeout"] = float(head[8:])
    elif head in {"needs=postgres", "needs=redis"} and not args:
        values["needs"].append(head[6:])
    else:
        raise DocTestError(
            f"{where}: unknown doc-test directive {part!r}; directives are replace \"OLD\" "
            "\"NEW\", setup \"COMMAND\", output, numbers=ignore, exit=N, timeout=SECONDS, "
            "needs=postgres, needs=redis"
        )


def _is_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def collect(page: Path, root: Path) -> list[Example]:
    """The runnable examples of one markdown page, in page order."""
    rel = page.relative_to(root).as_posix()
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    examples: list[Example] = []
    pending: list[tuple[str, str]] = []
    for token in tokens:
        if token.type == "html_block":
            pending.extend((m.group(1), m.group(2)) for m in _COMMENT.finditer(token.content))
            continue
        if token.type != "fence":
            if token.type.endswith("_open"):
                pending = []  # a comment steers only the block right after it
            continue
        assert token.map is not None
        line = token.map[0] + 1
        where = f"{rel}:{line}"
        directives = parse_directives(pending, where)
        pending = []
        lang = token.info.strip().split(" ")[0].lower()
        if directives.is_output:
            if not examples or lang not in {"text", ""}:
                raise DocTestError(f"{where}: doc-test output must be a text block after a "
                                   "runnable block")
            last = examples[-1]
            examples[-1] = Example(last.page, last.line, last.lang, last.source,
                                   last.directives, token.content)
            continue
        if lang in RUNNABLE:
            examples.append(Example(rel, line, RUNNABLE[lang], token.content, directives))
        elif directives != Directives():
            raise DocTestError(f"{where}: doc-test comment before a {lang or 'untagged'} block, "
                               "which is never run")
    return examples


def unmarked_commands(page: Path, root: Path) -> list[str]:
    """Illustration blocks that show a command to type: each should be a console/sh block (so
    it is tested) or say why not. Usage synopses (`groupbuy sweep SCENARIO [--seed S]`) are fine."""
    rel = page.relative_to(root).as_posix()
    found = []
    for token in MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8")):
        if token.type != "fence" or token.info.strip().split(" ")[0].lower() in RUNNABLE:
            continue
        for line in (raw.strip() for raw in token.content.splitlines()):
            if line.startswith("$ ") or (_COMMAND.match(line) and not _SYNOPSIS.search(line)):
                assert token.map is not None
                found.append(f"{rel}:{token.map[0] + 1}: {line[:70]}")
                break
    return found


def console_commands(source: str) -> list[Command]:
    """Split a console block into commands and the output each shows."""
    commands: list[Command] = []
    text: list[str] = []
    out: list[str] = []
    continuing = False
    for raw in source.splitlines():
        if continuing:
            text.append(raw)
            continuing = raw.rstrip().endswith("\\")
            continue
        if raw.startswith("$ "):
            if text:
                commands.append(Command("\n".join(text), _join(out)))
            text, out = [raw[2:]], []
            continuing = raw.rstrip().endswith("\\")
        elif text:
            out.append(raw)
        elif raw.strip():
            raise DocTestError(f"console block: output before any `$ ` command: {raw!r}")
    if text:
        commands.append(Command("\n".join(text), _join(out)))
    return commands


def _join(lines: list[str]) -> str:
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def apply_replacements(text: str, directives: Directives, full: bool) -> str:
    """`text` with the fast variant's replacements made (none when `full`)."""
    if full:
        return text
    for old, new in directives.replace:
        text = text.replace(old, new)
    return text


def check_replacements(example: Example) -> None:
    """Each `replace` must change something, or the fast variant has gone stale."""
    texts = [example.source, *example.directives.setup]
    for old, _ in example.directives.replace:
        if not any(old in text for text in texts):
            raise DocTestError(f"{example.id}: replace {old!r}: not in the example (stale fast "
                               "variant?)")


# --- comparing output -----------------------------------------------------------------------

def clean_output(text: str) -> list[str]:
    """Terminal text as a reader sees it: progress bars (carriage-return frames, and the last
    frame a bar leaves) gone, trailing blanks dropped."""
    lines = []
    for raw in text.split("\n"):
        line = raw.rsplit("\r", 1)[-1].rstrip()
        if "\r" in raw and _PROGRESS.search(line):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def normalise(line: str, mask_numbers: bool) -> str:
    line = _DURATION.sub("<duration>", line)
    if mask_numbers:
        line = _RULE.sub("---", _NUMBER.sub("<n>", line))
    return " ".join(line.split())


def output_mismatch(expected: str, actual: str, mask_numbers: bool) -> str | None:
    """None when `actual` shows what `expected` shows; else a unified diff to read."""
    want = [normalise(line, mask_numbers) for line in clean_output(expected)]
    got = [normalise(line, mask_numbers) for line in clean_output(actual)]
    if mask_numbers:  # a fast variant may list fewer rows of the same shape (trials, points)
        want, got = _squeeze(want), _squeeze(got)
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line in _WILD_LINE
        else ".*?".join(re.escape(part) for part in line.split("…")) + r"\n"
        for line in want
    )
    if re.fullmatch(pattern, "".join(line + "\n" for line in got), re.DOTALL):
        return None
    return "\n".join(difflib.unified_diff(want, got, "doc shows", "command printed", lineterm=""))


def _squeeze(lines: list[str]) -> list[str]:
    """Runs of identical lines as one line."""
    return [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]


# --- running --------------------------------------------------------------------------------

def fresh_copy(root: Path, into: Path) -> Path:
    """A copy of the repository to run examples in, with the environment's .venv linked."""
    copy = into / root.name
    shutil.copytree(root, copy, ignore=COPY_IGNORE, symlinks=True)
    (copy / "results").mkdir(exist_ok=True)
    venv = Path(sys.prefix)
    if venv != Path(sys.base_prefix):
        (copy / ".venv").symlink_to(venv, target_is_directory=True)
    return copy


def example_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1", COLUMNS="200", PWD=str(copy),
               GROUPBUY_RESULTS=str(copy / "results"))
    return env


@dataclass(frozen=True)
class Finished:
    code: int | None           # None: killed at the timeout
    output: str


def run_shell(script: str, cwd: Path, timeout: float) -> Finished:
    """bash -e SCRIPT with stdout and stderr together; the whole process group is killed at
    the timeout, so a server or load it started cannot outlive the example."""
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=example_env(cwd),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # bytes: carriage returns (progress bars) reach clean_output
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return Finished(proc.returncode, out.decode("utf-8", "replace"))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return Finished(None, out.decode("utf-8", "replace"))
    finally:
        if proc.poll() is None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Step:
    command: str
    expected: str | None       # None: the doc shows no output for it
    exit_code: int


def shell_steps(example: Example, full: bool) -> Iterator[Step]:
    """The commands of a console or shell example, set-up commands first."""
    check_replacements(example)
    for command in example.directives.setup:
        yield Step(apply_replacements(command, example.directives, full), None, 0)
    code = example.directives.exit_code
    if example.lang == "console":
        for command in console_commands(example.source):
            yield Step(apply_replacements(command.text, example.directives, full),
                       command.expected, code)
    else:
        yield Step(apply_replacements(example.source, example.directives, full),
                   example.expected_output, code)


def check_shell_example(example: Example, cwd: Path, full: bool) -> list[str]:
    """Run a console or shell example in `cwd`; the problems found (empty: it matches)."""
    mask = example.directives.numbers_ignored or (bool(example.directives.replace) and not full)
    problems: list[str] = []
    for step in shell_steps(example, full):
        done = run_shell(step.command, cwd, example.directives.timeout)
        shown = f"$ {step.command}"
        if done.code is None:
            problems.append(f"{shown}\n  did not finish in {example.directives.timeout:g} s; "
                            f"output:\n{_tail(done.output)}")
            break
        if done.code != step.exit_code:
            problems.append(f"{shown}\n  exited {done.code}, expected {step.exit_code}; "
                            f"output:\n{_tail(done.output)}")
            break
        if step.expected is not None:
            diff = output_mismatch(step.expected, done.output, mask)
            if diff is not None:
                problems.append(f"{shown}\n  output differs from the doc"
                                f"{' (numbers masked)' if mask else ''}; a `...` line in the doc "
                                f"stands for any lines:\n{diff}")
    return problems


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def python_source(example: Example, full: bool) -> str:
    check_replacements(example)
    return apply_replacements(example.source, example.directives, full)
