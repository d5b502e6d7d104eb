"""Run a `groupbuy` command in a test and never leave its children behind."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

STOP_GRACE = 30.0
"""Seconds a command has to stop its own children after SIGTERM, before SIGKILL."""


def run_command(cmd: Sequence[str], timeout: float, *, env: Mapping[str, str] | None = None,
                cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=…)`, except that a command
    that overruns gets SIGTERM first: `groupbuy loadtest` then stops the server and Locust it
    started (each in a session of its own, which a plain SIGKILL of the command would leave
    running), and only then SIGKILL. TimeoutExpired is raised as usual."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=cwd) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=STOP_GRACE)
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
