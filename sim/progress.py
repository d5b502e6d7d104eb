"""Progress bars for long planner runs: shown only on a terminal, never when `TQDM_DISABLE` is
set (tqdm's own switch), so logs and CI output carry no bar frames."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

_OFF = {"1", "true", "yes", "on"}


def bars_wanted(asked: bool = True) -> bool:
    """True when a bar was asked for, stderr is a terminal and TQDM_DISABLE is not set."""
    if not asked or os.environ.get("TQDM_DISABLE", "").strip().lower() in _OFF:
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[Any] | None = None, *, enabled: bool = True,
             **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr that is disabled unless `bars_wanted(enabled)`."""
    return tqdm(iterable, disable=not bars_wanted(enabled), file=sys.stderr, **kwargs)
