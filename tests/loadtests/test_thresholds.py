"""Thresholds per request name, flags over the scenario's [checks], the live judge, the exit
code table, the JUnit report and the normal form of a host (no server needed)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from campaign.load import Checks
from loadtests.checker.base import Report, Result
from loadtests.history import HistoryHeader, HistoryWriter, Op
from loadtests.junit import junit_xml
from loadtests.target import HostError, normalise_host, proxy_for
from loadtests.thresholds import LiveJudge, figures_by_name, judge, with_overrides
from loadtests.verdict import ExitCode, exit_code


def op(name: str, start: float, ms: float, outcome: str = "ok", **kw: object) -> Op:
    return Op.from_json({"worker": 0, "arrival": 0, "journey": "buy", "user": "u", "op": "pay",
                         "key": None, "intended": start, "start": start,
                         "end": start + ms / 1000, "outcome": outcome, "status": None,
                         "code": None, "name": name, **kw})


OPS = ([op("POST /v1/orders", i / 10, 50) for i in range(20)]
       + [op("POST /v1/orders/{id}/pay", i / 10, 900) for i in range(10)]
       + [op("POST /v1/orders/{id}/pay", 2.0, 10, "unknown")])


def test_per_name_figures_and_verdicts() -> None:
    by_name = figures_by_name(OPS)
    assert by_name["POST /v1/orders"]["requests"] == 20
    assert by_name["POST /v1/orders"]["p95_ms"] == pytest.approx(50)
    pay = by_name["POST /v1/orders/{id}/pay"]
    assert pay["errors"] == 1 and pay["error_rate"] == pytest.approx(1 / 11)
    # Throughput per second of the whole run, not of the name's own span.
    span = max(o.end for o in OPS) - min(o.start for o in OPS)
    assert pay["throughput"] == pytest.approx(11 / span)
    checks = Checks(requests={"POST /v1/orders": {"p95_ms": 100, "min_throughput": 1},
                              "POST /v1/orders/{id}/pay": {"p99_ms": 500,
                                                           "max_error_rate": 0.05},
                              "GET /v1/typo": {"p95_ms": 100}})
    verdicts = {v.name: v for v in judge(checks, {"requests": 0}, by_name)}
    assert verdicts["POST /v1/orders: p95_ms"].passed
    assert verdicts["POST /v1/orders: min_throughput"].passed
    p99 = verdicts["POST /v1/orders/{id}/pay: p99_ms"]
    assert not p99.passed and p99.line == ("threshold missed: POST /v1/orders/{id}/pay: p99 "
                                           "latency from intended start 900 ms > p99_ms 500")
    err = verdicts["POST /v1/orders/{id}/pay: max_error_rate"]
    assert not err.passed and "9.09% > max_error_rate 5.00% (1 of 11 requests" in err.line
    typo = verdicts["GET /v1/typo: p95_ms"]
    assert not typo.passed and "no requests of that name (names seen: POST /v1/orders, " \
        "POST /v1/orders/{id}/pay)" in typo.line


def test_flags_override_the_file_and_are_validated() -> None:
    base = Checks(p99_ms=2000, requests={"POST /v1/orders": {"p95_ms": 800}})
    got = with_overrides(base, [(None, "p99_ms", 500.0), (None, "max_dropped", 3.0),
                                ("POST /v1/orders", "p99_ms", 900.0),
                                ("GET /v1/skus", "max_error_rate", 0.1)], abort_on_fail=True)
    assert got.p99_ms == 500 and got.max_dropped == 3 and got.abort_on_fail
    assert got.requests["POST /v1/orders"].p95_ms == 800  # kept from the file
    assert got.requests["POST /v1/orders"].p99_ms == 900
    assert got.requests["GET /v1/skus"].max_error_rate == 0.1
    assert with_overrides(base, []).abort_on_fail is False
    with pytest.raises(ValueError, match="max_error_rate"):
        with_overrides(base, [(None, "max_error_rate", 2.0)])


def test_live_judge_reads_whole_lines_and_waits_out_the_grace(tmp_path: Path) -> None:
    import time

    now = time.time()
    writer = HistoryWriter(tmp_path / "history-0.jsonl", HistoryHeader("r", None, 0, 1, now),
                           flush_seconds=0)  # every line on disk at once, as the judge reads
    checks = Checks(p99_ms=100, abort_on_fail=True, abort_grace_seconds=0)
    live = LiveJudge(checks, tmp_path)
    assert live.missed() == []  # nothing written yet
    writer.write(op("GET /v1/skus", now, 20))
    assert live.missed() == []
    writer.write(op("GET /v1/skus", now, 500))
    with (tmp_path / "history-0.jsonl").open("a") as fh:
        fh.write('{"worker": 0, "arr')  # a line being written: read next time
    (missed,) = live.missed()
    assert missed.key == "p99_ms" and len(live.ops) == 2
    patient = LiveJudge(Checks(p99_ms=100, abort_on_fail=True, abort_grace_seconds=60),
                        tmp_path)
    assert patient.missed() == []
    assert LiveJudge(Checks(p99_ms=100), tmp_path).missed() == []  # abort_on_fail off
    # Requests hit by a fault in force are left out.
    faulted = LiveJudge(checks, tmp_path, windows=lambda: [(now, math.inf)])
    assert faulted.missed() == []


def test_exit_codes_worst_finding_first() -> None:
    assert exit_code(False, False, False) == ExitCode.PASSED == 0
    assert exit_code(True, True, True) == ExitCode.INVARIANTS_BROKEN == 1
    assert exit_code(False, True, True) == ExitCode.HARNESS_FAILURE == 3
    assert exit_code(False, False, True) == ExitCode.THRESHOLDS_MISSED == 99
    assert ExitCode.USAGE == 2 and ExitCode.INTERRUPTED == 130


def test_junit_lists_each_invariant_threshold_and_failure() -> None:
    held = Result("conservation", "initial = available + reserved + sold", checked=3)
    broken = Result("no_oversell", "never more sold than stock", checked=3)
    broken.broken("oversold", sku="a", by=2)
    skipped = Result("refunds", "refunds only for failed groups", skipped="no groups")
    report = Report([held, broken, skipped])
    verdicts = judge(Checks(p99_ms=1, max_error_rate=0.5), {
        "requests": 2, "errors": 0, "error_rate": 0.0, "p99_ms": 5.0, "throughput": 1.0})
    xml = ET.tostring(junit_xml("run", report, verdicts, ["the server died"]).getroot())
    root = ET.fromstring(xml)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    names = [c.get("name") for c in suites["invariants"].findall("testcase")]
    assert names == ["conservation", "no_oversell", "refunds"]
    cases = {c.get("name"): c for c in suites["invariants"].findall("testcase")}
    assert cases["conservation"].find("failure") is None
    assert "1 violation(s)" in cases["no_oversell"].find("failure").get("message")
    assert cases["refunds"].find("skipped").get("message") == "no groups"
    thr = {c.get("name"): c for c in suites["thresholds"].findall("testcase")}
    assert thr["p99_ms"].find("failure") is not None and thr["max_error_rate"].find(
        "failure") is None
    assert suites["harness"].find("testcase/error").get("message") == "the server died"
    assert (root.get("tests"), root.get("failures"), root.get("errors"),
            root.get("skipped")) == ("6", "2", "1", "1")


@pytest.mark.parametrize(("given", "normal"), [
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("HTTPS://shop.example.com/checkout//", "https://shop.example.com/checkout"),
    ("  http://[::1]:8000/gw ", "http://[::1]:8000/gw"),
])
def test_hosts_have_one_normal_form(given: str, normal: str) -> None:
    assert normalise_host(given) == normal


@pytest.mark.parametrize(("given", "message"), [
    ("127.0.0.1:8000", "is not a server URL"), ("ftp://x", "is not a server URL"),
    ("http://h:70000", "Port out of range"), ("http://h/?a=1", "no ?query"),
])
def test_bad_hosts_say_why(given: str, message: str) -> None:
    with pytest.raises(HostError, match=message.replace("?", r"\?")):
        normalise_host(given)


def test_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert proxy_for("http://127.0.0.1:8000") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("HTTPS_PROXY", "proxy.local:8443")
    assert proxy_for("http://shop:8000") == ("proxy.local", 3128)
    assert proxy_for("https://shop") == ("proxy.local", 8443)
    monkeypatch.setenv("NO_PROXY", "shop")
    assert proxy_for("http://shop:8000") is None


def test_summary_json_lists_thresholds(tmp_path: Path) -> None:
    """The verdicts are plain data (summary.json keeps them)."""
    (v,) = judge(Checks(p95_ms=10), {"requests": 1, "p95_ms": 5.0})
    data = json.loads(json.dumps(v.__dict__))
    assert data == {"scope": None, "key": "p95_ms", "limit": 10, "got": 5.0, "passed": True,
                    "line": "threshold met: p95 latency from intended start 5 ms <= p95_ms 10"}
