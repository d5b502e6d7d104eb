"""Deliberately wrong servers (tests/support/wrong_server.py: the reference app with one step
changed) break the invariant meant to catch them — every time, not by luck. The same runs
against the correct reference server hold (tests/loadtests/test_gate.py, and the adversarial
scenario below)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loadtests.checker import render
from loadtests.server import ServerProcess
from tests.support import SCENARIOS
from tests.support.burst import race, scenario_file
from tests.support.servers import WrongServer
from tests.support.stores import redis_prefix

pytestmark = pytest.mark.slow
ENV = {k: v for k, v in os.environ.items() if k != "GROUPBUY_ADMIN_TOKEN"}
RACE_RUNS = 10


def loadtest(exe: str, scenario: Path, out: Path, *args: str,
             host: str | None = None, token: str | None = None) -> dict[str, Any]:
    cmd = [exe, "loadtest", str(scenario), "--out", str(out), "--seed", "5", *args]
    if host:
        cmd += ["--host", host]
    env = dict(ENV, GROUPBUY_ADMIN_TOKEN=token) if token else ENV
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = json.loads((out / "invariants.json").read_text())
    report["exit"] = proc.returncode
    report["stderr"] = proc.stderr
    return report


def findings(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(r for r in report["invariants"] if r["name"] == name)["findings"]


def test_the_adversarial_scenario_holds_on_the_reference_server(groupbuy_exe: str,
                                                                tmp_path: Path) -> None:
    report = loadtest(groupbuy_exe, SCENARIOS / "adversarial.toml", tmp_path / "run")
    assert report["exit"] == 0 and report["verdict"] == "held", report["stderr"]
    note = next(r for r in report["invariants"] if r["name"] == "adversarial")["note"]
    for probe in ("unclaimed_coupon", "used_coupon", "foreign_pay", "late_pay",
                  "altered_retry"):
        assert f"{probe}: " in note, note
    assert "broken" not in note


def test_money_rules_and_adversarial_bugs_are_each_caught(groupbuy_exe: str,
                                                         tmp_path: Path) -> None:
    """One wrong server with seven independent bugs, each caught by its own invariant.
    (The gift counted per worker process is caught the same way, by paid_seq, but shows only
    when more than one worker takes payments, which the operating system decides; counted per
    SKU instead, it shows in every run.)"""
    bugs = ["no_reprice", "coupon_twice", "gift_per_sku", "reward_failed", "late_pay",
            "unclaimed_coupon", "foreign_orders"]
    # One worker: a per-process counter (gift_per_sku) must see every payment.
    with WrongServer(SCENARIOS / "adversarial.toml", f"sqlite:///{tmp_path / 's.sqlite3'}",
                     bugs, tmp_path / "server.log", workers=1) as srv:
        report = loadtest(groupbuy_exe, SCENARIOS / "adversarial.toml", tmp_path / "run",
                          host=srv.url, token=srv.token)
    assert report["exit"] == 1
    broken = set(report["broken"])
    assert {"prices", "gifts", "leader_rewards", "payment_deadlines", "adversarial",
            "coupons"} <= broken, broken
    prices = findings(report, "prices")
    # no_reprice: a member of a group completed with 3 paid still pays the 2-person price;
    # coupon_twice: a backed coupon taken off twice, so less than the price.
    assert any(f["kind"] == "price_group" and "completed with 3 paid" in f["how"]
               and f["seen"] > f["expected"] for f in prices), _texts(report, "prices")
    assert any(f["kind"] == "price_coupon" and f["seen"] < f["expected"] for f in prices), \
        _texts(report, "prices")
    gifts = {f["kind"] for f in findings(report, "gifts")}
    assert gifts & {"too_many_gifts", "gift_vs_seq"}, gifts
    assert {f["kind"] for f in findings(report, "leader_rewards")} & {
        "leader_rewards_count", "leader_reward"}
    assert {f["kind"] for f in findings(report, "payment_deadlines")} & {
        "paid_late", "paid_late_by_history"}
    adversarial = {f.get("probe") or f["kind"] for f in findings(report, "adversarial")}
    assert adversarial & {"unclaimed_coupon", "foreign_effect"}, adversarial


def _texts(report: dict[str, Any], name: str) -> list[str]:
    return next(r for r in report["invariants"] if r["name"] == name)["counterexamples"]


def test_an_admin_call_that_fails_still_gets_a_verdict(groupbuy_exe: str,
                                                      tmp_path: Path) -> None:
    """POST /v1/admin/expire answers 500: the run says so, and still checks the state it
    read (every invariant has a verdict; expiry's own check is left out)."""
    with WrongServer(SCENARIOS / "flash_sale.toml", f"sqlite:///{tmp_path / 's.sqlite3'}",
                     ["expire_500"], tmp_path / "server.log") as srv:
        report = loadtest(groupbuy_exe, SCENARIOS / "flash_sale.toml", tmp_path / "run",
                          "--duration", "3", host=srv.url, token=srv.token)
    assert report["exit"] == 1
    assert "expiry could not run: POST /v1/admin/expire answered 500" in report["stderr"]
    assert report["broken"] == [] and report["skipped"] == []
    assert all(r["checked"] > 0 for r in report["invariants"]
               if r["name"] in ("conservation", "no_lost_acknowledged", "prices"))


def test_refusals_without_reason_are_caught(groupbuy_exe: str, tmp_path: Path) -> None:
    """A group that says it is full a seat early, a coupon pool that runs dry a coupon early,
    and refunds under the fallback policy."""
    text = (SCENARIOS / "default.toml").read_text()
    assert "pool = 150" in text
    scenario = tmp_path / "small_pool.toml"
    scenario.write_text(text.replace("pool = 150", "pool = 8"))
    with WrongServer(scenario, f"sqlite:///{tmp_path / 's.sqlite3'}",
                     ["group_full_early", "pool_early", "refund_fallback"],
                     tmp_path / "server.log") as srv:
        report = loadtest(groupbuy_exe, scenario, tmp_path / "run", "--duration", "12",
                          host=srv.url, token=srv.token)
    kinds = {f["kind"] for f in findings(report, "no_wrongful_refusal")}
    assert {"wrong_group_full", "wrong_exhausted"} <= kinds, kinds
    assert "refunds" in report["broken"]


def test_a_guard_that_never_sells_the_last_unit_is_caught(groupbuy_exe: str,
                                                         tmp_path: Path) -> None:
    with WrongServer(SCENARIOS / "flash_sale.toml", f"sqlite:///{tmp_path / 's.sqlite3'}",
                     ["off_by_one_stock"], tmp_path / "server.log") as srv:
        report = loadtest(groupbuy_exe, SCENARIOS / "flash_sale.toml", tmp_path / "run",
                          "--duration", "12", "--rate-scale", "3", host=srv.url,
                          token=srv.token)
    assert report["broken"] == ["no_wrongful_refusal"], report["broken"]
    assert all(f["kind"] == "wrong_sold_out" and f["free"] >= 1
               for f in findings(report, "no_wrongful_refusal"))


def test_a_server_that_refuses_everyone_fails_the_run(groupbuy_exe: str,
                                                      tmp_path: Path) -> None:
    with WrongServer(SCENARIOS / "flash_sale.toml", f"sqlite:///{tmp_path / 's.sqlite3'}",
                     ["refuse_all"], tmp_path / "server.log") as srv:
        report = loadtest(groupbuy_exe, SCENARIOS / "flash_sale.toml", tmp_path / "run",
                          "--duration", "4", host=srv.url, token=srv.token)
    assert {"progress", "no_wrongful_refusal"} <= set(report["broken"])
    assert [f["kind"] for f in findings(report, "progress")] == ["nothing_reserved"]
    assert "wrong_limit" in {f["kind"] for f in findings(report, "no_wrongful_refusal")}


def test_the_unsafe_store_is_caught_in_every_run(groupbuy_exe: str, tmp_path: Path) -> None:
    """The reference server's unsafe:// store (each worker writes its own stale stock figure
    back): 60 buyers for 20 units in twelve quick waves, every order cancelled right away.
    Whether a burst races depends on which worker serves which wave, so bursts go on until
    10 of them went wrong by plain facts (more reservations than units, or stock not back
    after every cancel) — and the checker caught every one of those 10."""
    wrong = []
    with ServerProcess(scenario_file(tmp_path), f"unsafe:///{tmp_path / 'u.sqlite3'}",
                       2, "race-token", tmp_path / "server.log") as srv:
        for _ in range(3 * RACE_RUNS):
            rep = race(srv.url, "race-token", waves=12)
            if rep.stats["went_wrong"]:
                wrong.append(rep)
            elif rep.broken:  # a burst that went right must not be called wrong either
                raise AssertionError([r.name for r in rep.broken])
            if len(wrong) == RACE_RUNS:
                break
    assert len(wrong) == RACE_RUNS
    assert all(rep.broken for rep in wrong), [[r.name for r in rep.broken] for rep in wrong]


@pytest.mark.redis
def test_a_redis_stock_check_outside_the_script_is_caught_in_every_run(
        redis_url: str, tmp_path: Path) -> None:
    """Stock checked with a read, then taken by the script without its guard: an oversell that
    the buyers' cancels heal within a second, so the final state is consistent and only the
    movement seq replay proves it — 10 of 10 runs."""
    with redis_prefix(redis_url, "racy") as url, \
            WrongServer(scenario_file(tmp_path), url, ["racy_redis"],
                        tmp_path / "server.log") as srv:
        caught = [race(srv.url, srv.token) for _ in range(RACE_RUNS)]
    for rep in caught:
        assert rep.stats["went_wrong"]
        broken = {r.name: r for r in rep.broken}
        assert "no_oversell" in broken, ([r.name for r in rep.broken], rep.stats["answers"],
                                         [render(f) for r in rep.broken for f in r.findings])
        assert "oversold_seq" in {f.kind for f in broken["no_oversell"].findings}
        assert "conservation" not in broken  # healed: the end state alone looks fine
