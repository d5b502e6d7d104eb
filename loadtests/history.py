"""The operation history: one JSON line per operation a load test sent.

Each record: `worker`, `arrival` (arrival number within the worker), `journey`, `user`, `op`
(browse, ping, reserve, join, open_group, pay, cancel, claim), `key` (idempotency key or null),
`intended` / `start` / `end` (seconds since the epoch), `outcome` (`ok`, `fail` or `unknown`),
`status` (HTTP status or null), `code` (the contract's error code, or `timeout` /
`connection` / `http_<status>` for answers that are not contract errors), and what the request
named or got back: `sku_id`, `quantity`, `group_id`, `coupon_id`, `order_id`, `claim_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

OUTCOMES = ("ok", "fail", "unknown")
CREATE_OPS = ("reserve", "join", "open_group")


class HistoryWriter:
    """Appends records to a JSONL file; line-buffered so a killed worker loses at most a line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    @property
    def closed(self) -> bool:
        return self._fh is None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """All records of a history file; ValueError naming the line when one is not JSON."""
    return list(iter_history(path))


def iter_history(path: str | Path) -> Iterator[dict[str, Any]]:
    with Path(path).open() as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                # The last line of a killed worker may be cut short; anything else is corrupt.
                if fh.readline() == "":
                    return
                raise ValueError(f"{path}: line {i} is not JSON") from None
            if not isinstance(rec, dict) or rec.get("outcome") not in OUTCOMES:
                raise ValueError(f"{path}: line {i} is not a history record")
            yield rec


def merge_histories(parts: Iterable[str | Path], out: str | Path) -> int:
    """Merge per-worker history files into one, ordered by start time; returns the count."""
    records = [r for p in parts for r in iter_history(p)]
    records.sort(key=lambda r: (r.get("start") or 0.0, r.get("worker", 0)))
    with Path(out).open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    return len(records)
