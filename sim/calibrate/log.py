"""Reading an event log (`sim.events` documents the format) and refusing a bad one with one line
per problem, naming its line in the file.

pandas' C reader parses a million rows in about a second; users, groups and inviters are then
turned into integer codes (`pandas.factorize`), so everything after reading is numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.events import COLUMNS, EVENT_KINDS
from sim.model.results import EventLog

MAX_PROBLEMS = 10


class EventLogError(Exception):
    """An event log that cannot be used: one `file: line N: reason` per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {p}" for p in self.problems]


@dataclass
class Events:
    """An event log as arrays, in file order (which is time order). `user`, `group` and
    `inviter` are integer codes (-1: empty), users and inviters sharing one code space."""

    time: np.ndarray
    kind: np.ndarray
    """Index into KINDS."""
    user: np.ndarray
    segment: np.ndarray
    """Index into `segments` (-1: empty)."""
    sku: np.ndarray
    """Index into `skus` (-1: empty)."""
    group: np.ndarray
    inviter: np.ndarray
    amount: np.ndarray
    detail: np.ndarray
    """Text (object array; "" when empty)."""
    segments: list[str]
    skus: list[str]
    n_users: int
    logs: int = 1
    """How many campaigns these events come from (logs read together: `concat`)."""

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        """Several logs of the same campaign (e.g. replications, or several days' sales) as
        one: users and groups renumbered apart; each log keeps its own clock, so arrival rates
        divide by the hours of every log together. Segments and SKUs must already share codes
        (`sim.calibrate.fit.match_names`)."""
        if len(parts) == 1:
            return parts[0]
        user_off = np.cumsum([0] + [p.n_users for p in parts[:-1]])
        group_off = np.cumsum([0] + [int(p.group.max(initial=-1)) + 1 for p in parts[:-1]])

        def shift(x: np.ndarray, by: int) -> np.ndarray:
            return np.where(x >= 0, x + by, -1)

        return cls(
            np.concatenate([p.time for p in parts]), np.concatenate([p.kind for p in parts]),
            np.concatenate([p.user + o for p, o in zip(parts, user_off, strict=True)]),
            np.concatenate([p.segment for p in parts]), np.concatenate([p.sku for p in parts]),
            np.concatenate([shift(p.group, o) for p, o in zip(parts, group_off, strict=True)]),
            np.concatenate([shift(p.inviter, o) for p, o in zip(parts, user_off, strict=True)]),
            np.concatenate([p.amount for p in parts]), np.concatenate([p.detail for p in parts]),
            parts[0].segments, parts[0].skus, int(sum(p.n_users for p in parts)),
            sum(p.logs for p in parts))

    def of(self, kind: str) -> np.ndarray:
        """Row indexes of one event kind."""
        return np.flatnonzero(self.kind == KINDS.index(kind))


KINDS = tuple(EVENT_KINDS)
_NEEDS = {"pay": "reserve", "expire": "reserve", "cancel": "reserve", "order_kept": "pay",
          "group_open": "pay", "group_join": "pay", "repurchase": "order_kept"}
"""An event of the key's kind needs an earlier event of the value's kind by the same user."""


def read_events(path: str | Path) -> Events:
    """Read and check an event log; EventLogError (one line per problem) if it is unusable."""
    source = str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                            engine="c")
    except FileNotFoundError:
        raise EventLogError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise EventLogError(source, ["is a directory, not an event log"]) from None
    except pd.errors.EmptyDataError:
        raise EventLogError(source, ["empty file: expected a header line "
                                     f"({','.join(COLUMNS)})"]) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise EventLogError(source, [f"not a readable CSV file: {str(exc).strip()}"]) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise EventLogError(source, [f"line 1: missing column(s) {', '.join(missing)}; an event "
                                     f"log has the columns {','.join(COLUMNS)}"])
    problems: list[str] = []

    def bad(rows: np.ndarray, reason: str) -> None:
        for i in rows[:MAX_PROBLEMS]:
            problems.append(f"line {i + 2}: {reason(i) if callable(reason) else reason}")

    time = pd.to_numeric(frame["time"], errors="coerce").to_numpy(dtype=float)
    kind_text = frame["event"].to_numpy(dtype=object)
    kind_codes = pd.Index(KINDS).get_indexer(kind_text).astype(np.int64)
    bad(np.flatnonzero(~np.isfinite(time)),
        lambda i: f"time {frame['time'].iat[i]!r} is not a number of hours")
    bad(np.flatnonzero(kind_codes < 0),
        lambda i: f"unknown event kind {kind_text[i]!r}; kinds are {', '.join(KINDS)}")
    user_text = frame["user"].to_numpy(dtype=object)
    bad(np.flatnonzero(user_text == ""), "empty user")
    finite = np.where(np.isfinite(time), time, -np.inf)
    back = np.flatnonzero(finite[1:] < np.maximum.accumulate(finite)[:-1]) + 1
    back = back[np.isfinite(time[back])]
    bad(back, lambda i: f"time {time[i]:g} is earlier than a row before it (rows must be in "
                        "time order)")
    amount_text = frame["amount"].to_numpy(dtype=object)
    amount = pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=float)
    bad(np.flatnonzero(np.isnan(amount) & (amount_text != "")),
        lambda i: f"amount {amount_text[i]!r} is not a number of yuan")
    if problems:
        raise EventLogError(source, _capped(problems))
    ids, names = pd.factorize(np.concatenate([user_text, frame["inviter"].to_numpy(dtype=object)]))
    n = len(frame)
    user, inviter = ids[:n].astype(np.int64), ids[n:].astype(np.int64)
    inviter[frame["inviter"].to_numpy(dtype=object) == ""] = -1
    group_text = frame["group"].to_numpy(dtype=object)
    group = pd.factorize(group_text)[0].astype(np.int64)
    group[group_text == ""] = -1
    seg_codes, segments = _codes(frame["segment"])
    sku_codes, skus = _codes(frame["sku"])
    events = Events(time, kind_codes, user, seg_codes, sku_codes, group, inviter, amount,
                    frame["detail"].to_numpy(dtype=object), segments, skus, len(names))
    _check_order(events, source)
    return events


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(column.to_numpy(dtype=object))
    codes = codes.astype(np.int64)
    names = [str(u) for u in uniques]
    if "" in names:
        empty = names.index("")
        codes[codes == empty] = -1
        codes[codes > empty] -= 1
        names.remove("")
    return codes, names


def _check_order(ev: Events, source: str) -> None:
    """Each user's pay follows its reservation, its kept order its payment, and so on."""
    problems: list[str] = []
    for kind, needed in _NEEDS.items():
        rows = ev.of(kind)
        if not len(rows):
            continue
        first = np.full(ev.n_users, np.iinfo(np.int64).max)
        earlier = ev.of(needed)
        np.minimum.at(first, ev.user[earlier], earlier)
        wrong = rows[first[ev.user[rows]] > rows]
        for i in wrong[:MAX_PROBLEMS]:
            problems.append(f"line {i + 2}: {kind} by a user with no earlier {needed}")
    if problems:
        raise EventLogError(source, _capped(problems))


def _capped(problems: list[str]) -> list[str]:
    """In line order, at most MAX_PROBLEMS of them."""
    problems = sorted(problems, key=lambda p: int(p.split()[1].rstrip(":")))
    if len(problems) > MAX_PROBLEMS:
        return [*problems[:MAX_PROBLEMS], f"… and {len(problems) - MAX_PROBLEMS} more problem(s)"]
    return problems


def events_from_log(log: EventLog, segments: list[str], skus: list[str],
                    duration_hours: float) -> Events:
    """A simulated run's event log as `Events`, without writing it: the same arrays
    `read_events` gives for its CSV (users, groups and inviters keep the model's ids)."""
    v_time, v_seg, v_sku = log.visits
    nv = len(v_time)
    rows = log.rows
    who, days, amounts = log.repurchases
    who = np.asarray(who, dtype=np.int64)
    buyers = np.asarray(log.buyers, dtype=np.int64)
    codes = {k: i for i, k in enumerate(KINDS)}
    nr = len(who)

    def col(i: int, dtype: type) -> np.ndarray:
        return np.array([r[i] for r in rows], dtype=dtype)

    time = np.concatenate([v_time, col(0, float), duration_hours + np.asarray(days) * 24])
    order = np.argsort(time, kind="stable")
    user = np.concatenate([np.arange(nv), col(2, np.int64), buyers[who] if nr else []])
    b_seg = np.asarray(log.buyer_segments, dtype=np.int64)
    b_sku = np.asarray(log.buyer_skus, dtype=np.int64)
    arrays = {
        "time": time,
        "kind": np.concatenate([np.full(nv, codes["visit"]),
                                np.array([codes[r[1]] for r in rows], dtype=np.int64),
                                np.full(nr, codes["repurchase"])]),
        "user": user.astype(np.int64),
        "segment": np.concatenate([v_seg, col(3, np.int64), b_seg[who] if nr else []]),
        "sku": np.concatenate([v_sku, col(4, np.int64), b_sku[who] if nr else []]),
        "group": np.concatenate([np.full(nv, -1), col(5, np.int64), np.full(nr, -1)]),
        "inviter": np.concatenate([np.full(nv, -1), col(6, np.int64), np.full(nr, -1)]),
        "amount": np.concatenate([np.full(nv, np.nan), col(7, float), np.asarray(amounts)]),
        "detail": np.concatenate([np.full(nv, "", dtype=object), col(8, object),
                                  np.full(nr, "", dtype=object)]),
    }
    out = {k: v[order] for k, v in arrays.items()}
    for k in ("kind", "user", "segment", "sku", "group", "inviter"):
        out[k] = out[k].astype(np.int64)
    n_users = int(max(out["user"].max(initial=-1), out["inviter"].max(initial=-1))) + 1
    return Events(**out, segments=list(segments), skus=list(skus), n_users=n_users)
