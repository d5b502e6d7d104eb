"""Helpers shared by the sub-commands: the parser, scenario arguments and result folders."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where runs write unless --out says otherwise; GROUPBUY_RESULTS moves it (the doc tests do).
RESULTS = Path(os.environ.get("GROUPBUY_RESULTS") or REPO_ROOT / "results")
DEFAULT_SCENARIO = REPO_ROOT / "scenarios" / "default.toml"


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends every option's line with its default, "(default: 8000)". Options whose
    default is None, off or an empty list say in their own words what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "%(default)" in text or action.default == []
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parser of `groupbuy` and of every sub-command: help shows the defaults."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


class Renamed(argparse.Action):
    """The old name of a renamed flag, kept working for one release: it sets the new flag's
    value and says on stderr which name to use. Hidden from --help.

    `p.add_argument("--host", dest="listen", action=Renamed, new="--listen")`"""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str,
                 **kwargs: object) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated and goes in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_scenario_arg(parser: argparse.ArgumentParser, nargs: str | None = None) -> None:
    """The SCENARIO argument; with nargs="?" it may be left out for scenarios/default.toml."""
    default = f" (default: {DEFAULT_SCENARIO.relative_to(REPO_ROOT)})" if nargs == "?" else ""
    parser.add_argument("scenario", nargs=nargs, metavar="SCENARIO",
                        help=f"scenario file (TOML), e.g. scenarios/flash_sale.toml{default}")


def run_dir(scenario: str | Path, out: str | Path | None, kind: str = "") -> Path:
    """The folder a run writes into: `--out` if given, else results/<scenario>[-kind]-<time>."""
    if out is not None:
        path = Path(out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = Path(scenario).stem + (f"-{kind}" if kind else "")
        path = RESULTS / f"{name}-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def number(kind: type[int] | type[float], minimum: float, *,
           exclusive: bool = False) -> Callable[[str], int | float]:
    """argparse type: an int or float of at least `minimum` (more than it, if `exclusive`);
    argparse turns the error into one line and exit code 2."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {noun}: {text!r}") from None
        if value < minimum or (exclusive and value == minimum):
            bound = "more than" if exclusive else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g} (got {text})")
        return value

    return parse


def add_admin_token_args(parser: argparse.ArgumentParser, whose: str,
                         default: str = "$GROUPBUY_ADMIN_TOKEN") -> None:
    """`--admin-token-file FILE` for `whose` admin token; a token given on the command line
    itself (`--admin-token`) is refused by `admin_token_from` (anyone can read it with ps)."""
    parser.add_argument("--admin-token-file", default=None, metavar="FILE",
                        help=f"file holding {whose} admin bearer token (default: {default})")
    parser.add_argument("--admin-token", default=None, help=argparse.SUPPRESS)


def admin_token_from(args: argparse.Namespace) -> tuple[str | None, str]:
    """The admin token from `--admin-token-file` or $GROUPBUY_ADMIN_TOKEN, and where it came
    from (never what it is); None when neither gives one. A usage error for a token on the
    command line, an unreadable file or an empty one."""
    from groupbuy.cli import UsageError

    if getattr(args, "admin_token", None) is not None:
        raise UsageError("--admin-token: a token on the command line is visible to everyone "
                         "(ps); set GROUPBUY_ADMIN_TOKEN or use --admin-token-file FILE")
    path = args.admin_token_file
    if path is not None:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--admin-token-file: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"--admin-token-file: {path} is empty")
        return _printable(token, f"--admin-token-file {path}"), f"in {path}"
    if os.environ.get("GROUPBUY_ADMIN_TOKEN"):
        return _printable(os.environ["GROUPBUY_ADMIN_TOKEN"].strip(), "GROUPBUY_ADMIN_TOKEN"), \
            "from $GROUPBUY_ADMIN_TOKEN"
    return None, ""


def _printable(token: str, where: str) -> str:
    """`token` if it can go in an HTTP header (printable ASCII), else a usage error."""
    from groupbuy.cli import UsageError

    if not token.isascii() or not token.isprintable():
        raise UsageError(f"{where}: not a token (it must be printable ASCII, e.g. what "
                         "groupbuy serve wrote to its admin-token file)")
    return token
