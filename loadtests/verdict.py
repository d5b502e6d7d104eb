"""What a run's verdict means as an exit code: one table for `groupbuy loadtest`, `check` and
`demo` (docs/loadtests.md, "Exit codes"). The worst finding decides: a broken invariant, then
a harness or server failure, then a missed threshold."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    PASSED = 0
    """Every invariant held, every threshold was met, the run completed."""
    INVARIANTS_BROKEN = 1
    """An invariant broke: the server did something wrong (whatever else happened)."""
    USAGE = 2
    """A mistake in the command line or the files: nothing was run."""
    HARNESS_FAILURE = 3
    """The harness or the server failed, so not everything could be run or checked (a server
    that did not start or died, a load process that died, an admin call answered 500, a
    partial history or a missing final state), and no invariant broke."""
    THRESHOLDS_MISSED = 99
    """Invariants held and the run completed, but a threshold was missed (k6's code)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C or SIGTERM; every process the run started was stopped first."""


def exit_code(broken: bool, failed: bool, missed: bool) -> ExitCode:
    if broken:
        return ExitCode.INVARIANTS_BROKEN
    if failed:
        return ExitCode.HARNESS_FAILURE
    if missed:
        return ExitCode.THRESHOLDS_MISSED
    return ExitCode.PASSED
