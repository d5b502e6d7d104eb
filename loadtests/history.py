"""The operation history: what a load test sent, one typed record per operation.

A history file (`history-<i>.jsonl`, one per load process) starts with a header line,
`{"header": {...}}` (`HistoryHeader`: run id, sale id, which of how many load processes),
followed by one JSON line per operation (`Op`). Readers are strict: a line that is not JSON,
a record with a field this module does not know, or a field of the wrong type is an error
naming the file and the line (`HistoryError`), never a silent pass. Only a cut-short last line
(a load process killed mid-write) is tolerated, and it makes the history incomplete.

`read_run(run_dir)` reads a whole run folder: every load process's file, checked against the
headers, so a partial history (one process's file of a two-process run) or one appended to by
an earlier run is said so (`History.complete`, `History.warnings`) instead of being mistaken
for data the server lost.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

OUTCOMES = ("ok", "fail", "unknown")
CREATE_OPS = ("reserve", "join", "open_group")
OPS = ("browse", "ping", "reserve", "join", "open_group", "pay", "cancel", "claim",
       "view_group", "view_order")
"""Operation kinds; `view_group` / `view_order` are reads an adversarial journey uses to
observe state before it probes it."""
PROBES = ("unclaimed_coupon", "used_coupon", "foreign_pay", "foreign_cancel", "closed_group",
          "full_group", "late_pay", "altered_retry")
"""Adversarial probes (`Op.probe`): requests a correct server must refuse or ignore."""
FORMAT = 2
"""History format: 2 has headers and typed records (format 1, no header, is still read)."""


class HistoryError(ValueError):
    """A history that cannot be read: names the file and the line."""


@dataclass(frozen=True, slots=True)
class Op:
    """One operation a load test sent, and what came back.

    Times are seconds since the epoch on the load generator's clock: `intended` (when the
    arrival was meant to send it), `start` (sent), `end` (answer or give-up). `outcome` is
    `ok` (2xx with a body), `fail` (a contract refusal; `code` says which) or `unknown` (no
    answer, a 5xx, a cut-short answer: the server may or may not have acted)."""

    worker: int
    arrival: int
    journey: str
    user: str
    op: str
    key: str | None
    intended: float
    start: float
    end: float
    outcome: str
    status: int | None
    code: str | None
    sku_id: str | None = None
    quantity: int | None = None
    group_id: str | None = None
    coupon_id: str | None = None
    order_id: str | None = None
    claim_id: str | None = None
    client_timeout: float | None = None
    """Set when the journey hung up on purpose (the `timeout` journey)."""
    probe: str | None = None
    """Set on an adversarial request (`PROBES`)."""
    seen_status: str | None = None
    """A `view_group` / `view_order`: the status the server showed."""
    seen_members: int | None = None
    """A `view_group`: the active members the server showed."""
    name: str | None = None
    """The request's name in Locust's statistics (`POST /v1/orders`, `GET /v1/skus/{id}` …):
    per-name thresholds (`[checks.requests."NAME"]`) are judged on it."""

    @classmethod
    def from_json(cls, data: Any) -> Op:
        """A record from its JSON form; ValueError naming the field when it does not fit."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        unknown = data.keys() - _SPEC.keys()
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        missing = _REQUIRED - data.keys()
        if missing:
            raise ValueError(f"missing field(s) {sorted(missing)}")
        for name, value in data.items():
            kinds = _SPEC[name]
            if value is None:
                if name in _NOT_NULL:
                    raise ValueError(f"{name}: null")
                continue
            if type(value) not in kinds:  # bool is not an int here
                raise ValueError(f"{name}: {value!r} is not {_NAMES[name]}")
        if data["outcome"] not in OUTCOMES:
            raise ValueError(f"outcome: {data['outcome']!r} is not one of {OUTCOMES}")
        if data["op"] not in OPS:
            raise ValueError(f"op: {data['op']!r} is not one of {OPS}")
        probe = data.get("probe")
        if probe is not None and probe not in PROBES:
            raise ValueError(f"probe: {probe!r} is not one of {PROBES}")
        for name in ("intended", "start", "end"):
            if not math.isfinite(data[name]):
                raise ValueError(f"{name}: not a finite number")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The JSON form, without the optional fields that are not set."""
        out = dict(zip(_REQUIRED_ORDER, _REQUIRED_VALUES(self), strict=True))
        for f, v in zip(_OPTIONAL_ORDER, _OPTIONAL_VALUES(self), strict=True):
            if v is not None:
                out[f] = v
        return out

    @property
    def creates(self) -> bool:
        """A request that creates an order (reserve, join, open a group)."""
        return self.op in CREATE_OPS


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,)}
_SPEC: dict[str, tuple[type, ...]] = {}
_NAMES: dict[str, str] = {}
for _f in fields(Op):
    _kind = str(_f.type).split(" | ")[0]
    _SPEC[_f.name] = _TYPES[_kind]
    _NAMES[_f.name] = {"int": "an integer", "float": "a number", "str": "a string"}[_kind]
_REQUIRED = frozenset(("worker", "arrival", "journey", "user", "op", "key", "intended", "start",
                       "end", "outcome", "status", "code"))
_NOT_NULL = frozenset(("worker", "arrival", "journey", "user", "op", "intended", "start", "end",
                       "outcome"))
_REQUIRED_ORDER = tuple(f.name for f in fields(Op) if f.name in _REQUIRED)
_OPTIONAL_ORDER = tuple(f.name for f in fields(Op) if f.name not in _REQUIRED)
_REQUIRED_VALUES = attrgetter(*_REQUIRED_ORDER)
_OPTIONAL_VALUES = attrgetter(*_OPTIONAL_ORDER)
_encode = json.JSONEncoder(separators=(",", ":")).encode
"""Compact JSON; one encoder for every line (`json.dumps` with separators builds one per call)."""


@dataclass(frozen=True, slots=True)
class HistoryHeader:
    """The first line of a load process's history file: which run, which sale, which part."""

    run_id: str
    sale_id: str | None
    """The server's `sale_id` (contract 1.2), or `start:<sale start>` from the sale's load
    answer for a 1.1 server: tells a history of this sale from one of an earlier sale."""
    worker: int
    workers: int
    started: float
    format: int = FORMAT

    @classmethod
    def from_json(cls, data: Any) -> HistoryHeader:
        if not isinstance(data, dict):
            raise ValueError("header: not a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = data.keys() - names
        if unknown:
            raise ValueError(f"header: unknown field(s) {sorted(unknown)}")
        try:
            h = cls(**data)
        except TypeError as exc:
            raise ValueError(f"header: {exc}") from None
        if not (isinstance(h.run_id, str) and isinstance(h.worker, int)
                and isinstance(h.workers, int) and 0 <= h.worker < h.workers
                and isinstance(h.started, int | float)
                and (h.sale_id is None or isinstance(h.sale_id, str))):
            raise ValueError(f"header: bad values {data}")
        return h

    def to_line(self) -> str:
        return json.dumps({"header": asdict(self)}, separators=(",", ":")) + "\n"


class HistoryWriter:
    """Writes one load process's history: the header, then one line per operation.

    The file is created afresh (never appended to: an earlier run's records must not mix in).
    Lines are buffered: a write flushes once `flush_seconds` have passed since the last flush,
    the owner calls `flush()` on a timer for the quiet spells between writes (the load process
    does every 0.25 s), and close flushes the rest. So a load process killed without warning
    loses well under a second of lines; a line it leaves cut short makes the history
    incomplete. One write call per record would cost the load generator a system call per
    request."""

    def __init__(self, path: str | Path, header: HistoryHeader | None = None, *,
                 flush_seconds: float = 0.2) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("w")
        self.flush_seconds = flush_seconds
        self._flushed = time.monotonic()
        if header is not None:
            self._fh.write(header.to_line())
            self._fh.flush()

    def write(self, record: Op | dict[str, Any]) -> None:
        if self._fh is not None:
            data = record.to_json() if isinstance(record, Op) else record
            self._fh.write(_encode(data) + "\n")
            if time.monotonic() - self._flushed >= self.flush_seconds:
                self.flush()

    def flush(self) -> None:
        """Put every line written so far on disk (to the OS)."""
        if self._fh is not None:
            self._fh.flush()
            self._flushed = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._fh is None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class Segment:
    """Records of one file under one header (or under none, for a format-1 file)."""

    path: Path
    header: HistoryHeader | None
    ops: list[Op] = field(default_factory=list)
    cut: bool = False
    """The file's last line was cut short (the load process was killed mid-write)."""


def read_segments(path: str | Path) -> list[Segment]:
    """A history file's segments: a new one starts at every header line, so a file appended
    to by a second run reads as two segments. HistoryError names the file and the line."""
    path = Path(path)
    segments: list[Segment] = []
    try:
        fh = path.open()
    except OSError as exc:
        raise HistoryError(f"{path}: {exc.strerror or exc}") from None
    was = gc.isenabled()
    gc.disable()  # millions of small acyclic records: full collections would be quadratic
    try:
        _read(fh, path, segments)
    finally:
        fh.close()
        if was:
            gc.enable()
    if not segments:
        raise HistoryError(f"{path}: empty (no header, no records): not a history")
    return segments


def _read(fh: IO[str], path: Path, segments: list[Segment]) -> None:
    """Parse the lines of one file into `segments` (a new one at every header)."""
    current: Segment | None = None
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            # A killed writer leaves its last line without a newline; only that is spared.
            if not line.endswith("\n") and current is not None and \
                    (current.ops or current.header is not None):
                current.cut = True
                break
            raise HistoryError(f"{path}: line {lineno} is not JSON") from None
        try:
            if isinstance(data, dict) and "header" in data:
                if len(data) != 1:
                    raise ValueError("a header line holds nothing but the header")
                current = Segment(path, HistoryHeader.from_json(data["header"]))
                segments.append(current)
                continue
            op = Op.from_json(data)
        except ValueError as exc:
            raise HistoryError(f"{path}: line {lineno}: {exc}") from None
        if current is None:
            current = Segment(path, None)
            segments.append(current)
        current.ops.append(op)


def iter_history(path: str | Path) -> Iterator[Op]:
    """Every operation of one file, whatever its headers say."""
    for seg in read_segments(path):
        yield from seg.ops


def read_history(path: str | Path) -> list[Op]:
    """Every operation of one file (HistoryError naming the line when one is bad)."""
    return list(iter_history(path))


@dataclass
class History:
    """The operations of one run, with what is known about how complete they are."""

    ops: list[Op]
    headers: list[HistoryHeader] = field(default_factory=list)
    complete: bool = True
    """Every load process's records of this one run are here. When False, the checker does
    not call anything in the server's state unexplained (a phantom) for want of a request."""
    warnings: list[str] = field(default_factory=list)
    one_run: bool = True
    """Provably one run's records (headers say so). A format-1 file, without a header, may
    hold an earlier run's records too, appended: then nothing is called lost."""

    @classmethod
    def of(cls, ops: Iterable[Op | dict[str, Any]], *, complete: bool = True) -> History:
        """A history from records (dicts are parsed strictly), e.g. in tests."""
        return cls([o if isinstance(o, Op) else Op.from_json(o) for o in ops],
                   complete=complete)

    @property
    def run_id(self) -> str | None:
        return self.headers[0].run_id if self.headers else None

    @property
    def sale_id(self) -> str | None:
        return self.headers[0].sale_id if self.headers else None

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)


def assemble(segments: list[Segment], run_id: str | None = None) -> History:
    """One run's history from file segments: keeps the segments of `run_id` (default: the
    newest run's, by header start time), says what it left out, and whether every load
    process of that run is there exactly once."""
    warnings: list[str] = []
    headed = [s for s in segments if s.header is not None]
    bare = [s for s in segments if s.header is None]
    if run_id is None and headed:
        run_id = max(headed, key=lambda s: s.header.started).header.run_id  # type: ignore[union-attr]
    keep = [s for s in headed if s.header is not None and s.header.run_id == run_id]
    for s in headed:
        if s not in keep:
            warnings.append(f"{s.path.name}: ignored {len(s.ops)} record(s) of another run "
                            f"(run id {s.header.run_id})")  # type: ignore[union-attr]
    complete = True
    if headed and not keep:
        complete = False
        warnings.append(f"no records of run {run_id} (the run plan.json names) in these files")
    if bare:
        if keep:
            warnings.append(", ".join(sorted({s.path.name for s in bare})) + ": records without "
                            "a header beside headed ones (appended to?); ignored")
        else:
            keep = bare
            complete = False
            warnings.append("the history has no header (format 1): cannot tell whether every "
                            "load process's records are here, or only this run's")
    headers = [s.header for s in keep if s.header is not None]
    if headers:
        workers = {h.workers for h in headers}
        if len(workers) > 1:
            complete = False
            warnings.append(f"headers disagree on the number of load processes: {sorted(workers)}")
        n = max(workers)
        seen = sorted(h.worker for h in headers)
        missing = sorted(set(range(n)) - set(seen))
        if missing:
            complete = False
            warnings.append(f"partial history: load process(es) {missing} of {n} missing; "
                            "orders they made would look unexplained, so nothing is called a "
                            "phantom")
        if len(seen) != len(set(seen)):
            complete = False
            warnings.append(f"load process records appear more than once: {seen}")
        sales = {h.sale_id for h in headers}
        if len(sales) > 1:
            complete = False
            warnings.append(f"the parts name different sales: {sorted(map(str, sales))}")
    for s in keep:
        if s.cut:
            complete = False
            warnings.append(f"{s.path.name}: last line cut short (a load process was killed)")
    ops = [op for s in keep for op in s.ops]
    ops.sort(key=lambda o: (o.start, o.worker))
    return History(ops, headers, complete, warnings, one_run=bool(headers) or not segments)


def history_files(run_dir: Path) -> list[Path]:
    """The history files of a run folder: the per-process files, else the merged one."""
    parts = sorted(run_dir.glob("history-*.jsonl"))
    if parts:
        return parts
    merged = run_dir / "history.jsonl"
    return [merged] if merged.is_file() else []


def read_run(run_dir: str | Path, run_id: str | None = None) -> History:
    """The history of a run folder (all load processes). `run_id` (default: the one in
    plan.json, else the newest) picks the run when files of several are present."""
    run_dir = Path(run_dir)
    files = history_files(run_dir)
    if not files:
        raise HistoryError(f"{run_dir}: no history-*.jsonl or history.jsonl")
    if run_id is None:
        plan = run_dir / "plan.json"
        if plan.is_file():
            try:
                run_id = json.loads(plan.read_text()).get("run_id")
            except ValueError:
                raise HistoryError(f"{plan}: not JSON") from None
    segments = [s for p in files for s in read_segments(p)]
    return assemble(segments, run_id)


def read_history_file(path: str | Path) -> History:
    """One history file as a run's history (a merged file carries every process's header)."""
    return assemble(read_segments(path))


def merge_histories(parts: Iterable[str | Path], out: str | Path,
                    run_id: str | None = None) -> History:
    """Merge per-process history files into one (headers first, then every record ordered by
    start time) and return the run's history."""
    segments = [s for p in parts for s in read_segments(p)]
    history = assemble(segments, run_id)
    with Path(out).open("w") as fh:
        for h in history.headers:
            fh.write(h.to_line())
        for op in history.ops:
            fh.write(_encode(op.to_json()) + "\n")
    return history
