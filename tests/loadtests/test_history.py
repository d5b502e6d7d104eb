"""The typed history: strict records, headers, and run folders read whole — a garbage line is
an error naming the file and the line, a misspelt field is an error, and a partial or
appended history says so instead of passing for a complete one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.history import (
    HistoryError,
    HistoryHeader,
    HistoryWriter,
    Op,
    merge_histories,
    read_history,
    read_run,
)

REC: dict[str, Any] = {"worker": 0, "arrival": 1, "journey": "buy", "user": "u1",
                       "op": "reserve", "key": "k1", "intended": 1.0, "start": 2.0, "end": 3.0,
                       "outcome": "ok", "status": 201, "code": None, "sku_id": "tea",
                       "quantity": 1, "order_id": "o1"}


def header(worker: int, workers: int, run_id: str = "r1", started: float = 1.0) -> HistoryHeader:
    return HistoryHeader(run_id=run_id, sale_id="s1", worker=worker, workers=workers,
                         started=started)


def write(path: Path, head: HistoryHeader | None, *records: dict[str, Any]) -> Path:
    w = HistoryWriter(path, head)
    for r in records:
        w.write(r)
    w.close()
    return path


def test_a_record_round_trips_and_misspelt_fields_are_errors() -> None:
    op = Op.from_json(REC)
    assert op.to_json() == {k: v for k, v in REC.items()}
    assert op.creates and op.order_id == "o1"
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['ordr_id'\]"):
        Op.from_json({**REC, "ordr_id": "o1"})
    with pytest.raises(ValueError, match=r"missing field\(s\) \['outcome'\]"):
        Op.from_json({k: v for k, v in REC.items() if k != "outcome"})
    with pytest.raises(ValueError, match="quantity: '1' is not an integer"):
        Op.from_json({**REC, "quantity": "1"})
    with pytest.raises(ValueError, match="outcome: 'maybe'"):
        Op.from_json({**REC, "outcome": "maybe"})
    with pytest.raises(ValueError, match="worker: True is not an integer"):
        Op.from_json({**REC, "worker": True})
    with pytest.raises(AttributeError):
        _ = op.ordr_id  # type: ignore[attr-defined]


def test_the_writer_flushes_within_its_interval_and_everything_on_close(tmp_path: Path) -> None:
    now = HistoryWriter(tmp_path / "now.jsonl", header(0, 1), flush_seconds=0.0)
    now.write(REC)
    assert [op.order_id for op in read_history(now.path)] == ["o1"]  # on disk already
    later = HistoryWriter(tmp_path / "later.jsonl", header(0, 1), flush_seconds=3600)
    later.write(REC)
    assert read_history(later.path) == []  # the header is on disk, the record buffered
    later.flush()  # what the load process's timer does between bursts of writes
    assert [op.order_id for op in read_history(later.path)] == ["o1"]
    later.write(REC)
    later.close()
    assert [op.order_id for op in read_history(later.path)] == ["o1", "o1"]
    now.close()


@pytest.mark.parametrize(("text", "message"), [
    ("not json\n", "line 1 is not JSON"),
    ("not json", "line 1 is not JSON"),  # one line, no newline: still garbage, not a cut line
    ("", "empty"),
    ('{"a": 1}\n', "line 1: unknown field"),
    (json.dumps(REC) + "\n[1, 2]\n", "line 2: not a JSON object"),
    ('{"broken\n' + json.dumps(REC) + "\n", "line 1 is not JSON"),
])
def test_garbage_is_an_error_naming_file_and_line(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "history-0.jsonl"
    path.write_text(text)
    with pytest.raises(HistoryError, match=message) as err:
        read_history(path)
    assert str(path) in str(err.value)


def test_only_a_cut_last_line_is_tolerated_and_makes_the_run_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path / "history-0.jsonl", header(0, 1), REC)
    with path.open("a") as fh:
        fh.write('{"user": "u2", "op"')  # the process was killed mid-write
    history = read_run(tmp_path)
    assert len(history) == 1 and not history.complete
    assert any("cut short" in w for w in history.warnings)


def test_a_whole_run_is_every_process_of_it(tmp_path: Path) -> None:
    write(tmp_path / "history-0.jsonl", header(0, 2), {**REC, "start": 5.0})
    write(tmp_path / "history-1.jsonl", header(1, 2), {**REC, "worker": 1, "start": 4.0})
    history = read_run(tmp_path)
    assert history.complete and history.warnings == []
    assert [op.start for op in history.ops] == [4.0, 5.0]
    assert history.run_id == "r1" and history.sale_id == "s1"
    merged = merge_histories(sorted(tmp_path.glob("history-*.jsonl")), tmp_path / "merged.jsonl")
    assert merged.complete and len(merged) == 2
    from loadtests.history import read_history_file
    again = read_history_file(tmp_path / "merged.jsonl")
    assert again.complete and [op.start for op in again.ops] == [4.0, 5.0]


def test_one_process_of_two_is_a_partial_history(tmp_path: Path) -> None:
    write(tmp_path / "history-0.jsonl", header(0, 2), REC)
    history = read_run(tmp_path)
    assert not history.complete
    assert any("partial history: load process(es) [1] of 2 missing" in w
               for w in history.warnings)


def test_an_earlier_run_appended_in_the_same_file_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "history-0.jsonl"
    path.write_text(header(0, 1, "old", 1.0).to_line() + json.dumps({**REC, "key": "old"})
                    + "\n" + header(0, 1, "new", 9.0).to_line() + json.dumps(REC) + "\n")
    history = read_run(tmp_path)  # no plan.json: the newest run
    assert [op.key for op in history.ops] == ["k1"] and history.complete
    assert any("ignored 1 record(s) of another run (run id old)" in w for w in history.warnings)
    (tmp_path / "plan.json").write_text(json.dumps({"run_id": "old"}))
    assert [op.key for op in read_run(tmp_path).ops] == ["old"]


def test_a_history_without_header_cannot_be_called_complete(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text(json.dumps(REC) + "\n")
    history = read_run(tmp_path)
    assert len(history) == 1 and not history.complete and not history.one_run
    assert any("no header" in w for w in history.warnings)


def test_a_headerless_history_never_calls_an_order_lost(tmp_path: Path) -> None:
    """Format 1 (no header): the file may have been appended to by an earlier run whose orders
    a reloaded sale no longer holds, so a missing order proves nothing."""
    from loadtests.checker import Rules, check
    from loadtests.state import FinalState

    (tmp_path / "history.jsonl").write_text(json.dumps(REC) + "\n")
    state = FinalState.from_json({"sale": "s", "now": 9.0, "skus": {}}, [])
    report = check(read_run(tmp_path), state, Rules(stock={}, per_user_limit=1))
    lost = next(r for r in report.results if r.name == "no_lost_acknowledged")
    assert lost.skipped and "nothing is called lost" in lost.skipped
    assert report.verdict == "incomplete"
    headed = tmp_path / "headed"
    write(headed / "history-0.jsonl", header(0, 1), REC)
    report = check(read_run(headed), state, Rules(stock={}, per_user_limit=1))
    assert "no_lost_acknowledged" in {r.name for r in report.broken}


def test_the_writer_never_appends(tmp_path: Path) -> None:
    path = write(tmp_path / "history-0.jsonl", header(0, 1, "old"), REC, REC)
    write(path, header(0, 1, "new"), REC)
    history = read_run(tmp_path)
    assert len(history) == 1 and history.run_id == "new" and history.complete
