"""`groupbuy` entry point. Each sub-command lives in `groupbuy/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable taking the parsed
arguments and returning an exit code."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from campaign.errors import ScenarioError
from groupbuy import commands
from groupbuy.commands._common import Parser
from groupbuy.extras import missing_extra_message, require


class UsageError(Exception):
    """A mistake in the command line itself (exit code 2, one line, no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="groupbuy",
        description="Group-buy promotion lab: simulate campaigns, serve and load-test checkout, "
        "check inventory invariants.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"groupbuy.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    try:
        require(args.command, raw)  # a missing extra stops the command before it does anything
        return int(args.func(args) or 0)
    except ScenarioError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"groupbuy {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional extra that is not installed
        message = missing_extra_message(args.command, exc.name or "", raw)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
