"""The whole load-test pipeline behind `groupbuy loadtest` (and the demo):

serve (unless a host is given) → prepare the plan (load the sale, mint tokens, schedule) →
Locust headless (open workload, history), with the scenario's faults injected beside it →
wait out the payment and group deadlines → run expiry → read the final state → check the
invariants and the `[checks]` thresholds → write the report files and the latency plot into
the run folder.

Whatever stops a run early (a server that died, an admin call answered 500, a store that came
back empty) is reported beside the verdict on what the run did get: the harness restarts a
server it started to read the final state, and checks with what it has. Every child process
(server, its workers, Locust and its processes) is stopped on the way out, also on SIGTERM
or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.load import Checks, Faults, Load
from campaign.progress import progress as progress_bar
from campaign.redact import redact_url
from campaign.scenario import Scenario
from loadtests.api import AdminClient, ServerError
from loadtests.checker import Report, check, rules_from_campaign, save_report
from loadtests.checker import summary_lines as broken_lines
from loadtests.faults import ChaosProxy, FaultRecord, Nemesis
from loadtests.history import History, merge_histories
from loadtests.instances import free_port
from loadtests.junit import write_junit
from loadtests.metrics import arrival_figures, history_figures, plot_latency
from loadtests.plan import ABORT_FILE, Plan, ScenarioFile, clear_stale_run_files, prepare_plan
from loadtests.schedule import Schedule
from loadtests.server import ServerProcess, ServerStartError
from loadtests.state import FinalState, StateError
from loadtests.thresholds import LiveJudge, Verdict, figures_by_name, judge, missed_lines
from loadtests.verdict import ExitCode, exit_code

LOCUSTFILES = Path(__file__).resolve().parent
DEFAULT_LOCUSTFILE = LOCUSTFILES / "scenario.py"


@dataclass
class LoadtestResult:
    """What a run found: the invariant report, figures, the thresholds judged, and one line
    per problem, by kind: broken invariants, harness or server failures, missed thresholds."""

    run_dir: Path
    report: Report
    figures: dict[str, Any]
    arrivals: dict[str, Any]
    broken: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    aborted: str | None = None
    """Why the load stopped early (a threshold missed with abort_on_fail), if it did."""
    server_warning: str | None = None
    """What the server says is wrong with it (`/v1/health` `safe: false`), if anything."""
    faults: list[FaultRecord] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.broken + self.failures + self.missed

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> ExitCode:
        return exit_code(bool(self.broken), bool(self.failures), bool(self.missed))


def sqlite_store_in(run_dir: Path) -> str:
    """A fresh SQLite store file inside the run folder."""
    return f"sqlite:///{(run_dir / 'server.sqlite3').resolve()}"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread, so a terminated run unwinds and
    stops its children exactly as Ctrl-C does."""
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        old = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM a child's whole process group (Locust and its worker processes), then kill."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run_locust(plan_path: Path, run_dir: Path, host: str, plan: Plan, *, processes: int = 1,
               locustfile: Path = DEFAULT_LOCUSTFILE, progress: bool = True,
               judge_live: LiveJudge | None = None) -> tuple[int, str | None]:
    """Locust headless on the plan, bounded in time; Locust's own output goes to locust.log.
    Locust runs in a process group of its own, stopped as a whole however this returns.
    With `judge_live`, the load is stopped as soon as it finds a threshold missed
    (abort_on_fail). Returns Locust's exit code and why the load was aborted (or None)."""
    bound = plan.sched.seconds + plan.drain_seconds + 30
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "--host", host, "--plan", str(plan_path), "--run-dir", str(run_dir),
           "--html", str(run_dir / "locust_report.html"), "--csv", str(run_dir / "locust"),
           "--run-time", f"{bound:.0f}s", "--only-summary",
           "--loglevel", "WARNING"]
    if processes > 1:
        # Master and its workers talk over a port of this run's own, not Locust's fixed 5557:
        # two runs on one machine (parallel tests, two people) must not meet there.
        port = str(free_port())
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    aborted = None
    with (run_dir / "locust.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                start_new_session=True)
        try:
            start = time.monotonic()
            last_judged = start
            with progress_bar(total=round(plan.sched.seconds), unit="s", desc="load test",
                              enabled=progress, leave=False) as bar:
                while proc.poll() is None:
                    time.sleep(0.5)
                    bar.n = min(bar.total, round(time.monotonic() - start))
                    bar.refresh()
                    if (judge_live is not None and aborted is None
                            and time.monotonic() - last_judged >= 1):
                        last_judged = time.monotonic()
                        missed = judge_live.missed()
                        if missed:
                            aborted = (f"load aborted after {time.monotonic() - start:.1f} s "
                                       f"(abort_on_fail): {missed[0].line}")
                            # The load processes stop starting arrivals, let the journeys in
                            # flight finish and write their files; Locust then ends as usual.
                            (run_dir / ABORT_FILE).write_text(aborted + "\n")
                    if time.monotonic() - start > bound + 30:
                        break  # the run bounds itself; this is the last resort
            code = proc.wait(timeout=1) if proc.poll() is None else proc.returncode
            return code, aborted
        except subprocess.TimeoutExpired:
            return -9, aborted
        finally:  # also when it exited: its worker processes may outlive it
            _stop_group(proc, grace=5 if proc.poll() is None else 0.5)


def wait_for_deadlines(history: History, plan: Plan, progress: bool) -> None:
    """Sleep until every reservation's payment deadline and every group's deadline passed."""
    last = 0.0
    for op in history.ops:
        if op.creates and op.outcome != "fail":
            last = max(last, op.end + plan.payment_timeout)
        if op.op == "open_group" and op.outcome != "fail":
            last = max(last, op.end + plan.group_window)
    wait = last + 0.5 - time.time()
    if wait > 0:
        if progress:
            print(f"waiting {wait:.0f} s for payment and group deadlines …", flush=True)
        time.sleep(wait)


SETTLE_TIMEOUT = 120.0
"""Seconds to wait for a server to finish the requests still queued in it after a run."""


def wait_until_settled(admin: AdminClient, timeout: float = SETTLE_TIMEOUT,
                       interval: float = 0.5) -> bool:
    """Wait until two ledger reads `interval` apart agree. Requests the clients gave up on can
    still sit in an overloaded server's queue after the run and land one by one; a final
    state read meanwhile (ledger and exports are separate requests) is no snapshot, and the
    checker would blame the server for the difference. False if it never settled."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            ledger = admin.ledger()
            now = {k: v for k, v in ledger.items() if k != "now"}
        except ServerError:
            now = None
        if now is not None and now == last:
            return True
        last = now
        time.sleep(interval)
    return False


def read_final_state(host: str, admin_token: str, server: ServerProcess | None
                     ) -> tuple[FinalState | None, dict[str, Any], list[str]]:
    """Run expiry and read the final state, whatever went wrong before: (state or None,
    health, problems). A server the run started that died is restarted on its store first."""
    problems: list[str] = []
    if server is not None and not server.alive:
        problems.append(f"the server died during the run (exit code {server.proc.returncode}; "
                        "see server.log); restarted on the same store to read its state")
        try:
            server.restart()
        except ServerStartError as exc:
            problems.append(f"the server could not be restarted: {exc}")
            return None, {}, problems
    health: dict[str, Any] = {}
    with AdminClient(host, admin_token) as admin:
        if not wait_until_settled(admin):
            problems.append(f"the server's ledger was still changing {SETTLE_TIMEOUT:g} s after "
                            "the run; the final state may be read mid-change")
        expired = True
        try:
            admin.expire()
        except ServerError as exc:
            expired = False
            problems.append(f"expiry could not run: {exc}")
            wait_until_settled(admin)  # an expiry that timed out may still be running
        try:
            state = admin.final_state(expiry_ran=expired)
        except ServerError as exc:
            if exc.code != "no_sale":
                problems.append(f"the final state could not be read: {exc}")
                return None, health, problems
            # The store came back without the sale: everything in it is gone.
            problems.append("the server has no sale loaded any more: its store lost it")
            state = FinalState.empty(now=time.time())
        except StateError as exc:
            problems.append(f"the server's final state breaks the contract: {exc}")
            return None, health, problems
        with contextlib.suppress(ServerError):
            health = admin.health()
    return state, health, problems


def _faults_for(scenario: Scenario, faults: Faults | None) -> Faults:
    return faults if faults is not None else (scenario.faults or Faults())


def run_loadtest(source: ScenarioFile, sched: Schedule, run_dir: Path, *,
                 host: str | None = None, store: str | None = None, workers: int = 2,
                 admin_token: str | None = None, processes: int = 1,
                 locustfile: Path = DEFAULT_LOCUSTFILE, seed: int | None = None,
                 progress: bool = True, faults: Faults | None = None,
                 allow_unsafe_durability: bool = False,
                 checks: Checks | None = None) -> LoadtestResult:
    """Run the pipeline on the scenario `source` (read once) and its arrival schedule `sched`
    (built once: `source.schedule(...)`), and write everything into `run_dir`. `faults`
    (default: the scenario's `[faults]`) are injected while the load runs;
    `allow_unsafe_durability` lets the server the run starts serve on a store that can lose
    acknowledged orders; `checks` (default: the scenario's `[checks]`) are the thresholds.
    Raises ServerError or ServerStartError for problems that stop it running at all."""
    scenario = source.scenario
    checks = checks if checks is not None else scenario.checks
    fault_plan = _faults_for(scenario, faults)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_stale_run_files(run_dir)  # a reused folder must not mix a previous run's history in
    if host is not None and not admin_token:
        raise ValueError("an admin token is needed for --host (--admin-token-file or "
                         "GROUPBUY_ADMIN_TOKEN)")
    if host is not None and fault_plan.needs_own_server:
        raise ValueError(f"faults {fault_plan.needs_own_server} need a server the run starts "
                         "(not --host)")
    problems: list[str] = []
    records: list[FaultRecord] = []
    with contextlib.ExitStack() as stack:
        server = None
        if host is None:
            admin_token = secrets.token_hex(16)
            store = store or sqlite_store_in(run_dir)
            server = stack.enter_context(ServerProcess(source.path, store, workers,
                                                       admin_token, run_dir / "server.log",
                                                       allow_unsafe_durability=(
                                                           allow_unsafe_durability)))
            host = server.url
        assert admin_token is not None
        proxy = None
        if fault_plan.uses_proxy:
            proxy = ChaosProxy(host, seed or 0).start()
            stack.callback(proxy.stop)
        plan = prepare_plan(host, admin_token, source, sched, run_dir, seed=seed)
        nemesis = None
        if fault_plan.any:
            nemesis = Nemesis(fault_plan, run_dir, server, proxy,
                              fault_plan.proxy_delay_ms).start()
            stack.callback(nemesis.stop)
        live = (LiveJudge(checks, run_dir, nemesis.windows if nemesis else list)
                if checks.abort_on_fail else None)
        code, aborted = run_locust(run_dir / "plan.json", run_dir, proxy.url if proxy else host,
                                   plan, processes=processes, locustfile=locustfile,
                                   progress=progress, judge_live=live)
        if nemesis is not None:
            nemesis.stop()
            records, problems = nemesis.records, list(nemesis.problems)
        parts = sorted(run_dir.glob("history-*.jsonl"))
        history = (merge_histories(parts, run_dir / "history.jsonl", plan.run_id) if parts
                   else History([], complete=False, warnings=["no load process wrote a "
                                                               "history"]))
        wait_for_deadlines(history, plan, progress)
        state, health, early = read_final_state(host, admin_token, server)
        problems += early
        if state is not None:
            state.save(run_dir / "state.json")
    rules = rules_from_campaign(scenario.campaign, start=plan.sale_start,
                                payment_timeout=plan.payment_timeout,
                                group_window=plan.group_window)
    report = check(history, state, rules, state_problem="; ".join(early) or None)
    save_report(report, run_dir / "invariants.json", run_dir / "invariants.txt")
    windows = [r.window for r in records]
    figures = history_figures(history.ops, windows)
    arrivals = arrival_figures(run_dir, plan.sched.expected_arrivals, plan.sched.seconds)
    # An aborted run did not deliver its schedule on purpose: that is not judged.
    verdicts = judge(checks, figures, figures_by_name(history.ops, windows),
                     None if aborted else arrivals)
    failures = problems
    if not history.complete:
        failures += [f"history incomplete: {w}" for w in history.warnings]
    if state is None:
        failures.append("no invariant could be checked: the final state is missing")
    if arrivals["processes"] < processes and not aborted:
        failures.append(f"only {arrivals['processes']} of {processes} load process(es) "
                        f"finished (Locust exit code {code}; see locust.log)")
    missed = ([aborted] if aborted else []) + missed_lines(verdicts)
    res = LoadtestResult(run_dir, report, figures, arrivals, broken_lines(report), failures,
                         missed, verdicts, aborted,
                         server_warning=health.get("warning") if health.get("safe") is False
                         else None, faults=records)
    plot_latency(history.ops, run_dir / "locust_stats_history.csv", run_dir / "latency.png",
                 f"{source.path.stem}: latency and arrivals", target=plan.schedule,
                 faults=windows)
    write_junit(run_dir / "junit.xml", f"{source.path.stem} ({run_dir.name})", report,
                verdicts, failures)
    summary = {"scenario": str(source.path), "host": host,
               "store": store if server else None, "run_id": plan.run_id,
               "passed": res.passed, "exit_code": int(res.exit_code),
               "problems": res.problems, "broken": res.broken, "failures": failures,
               "missed": missed, "aborted": aborted,
               "thresholds": [v.__dict__ for v in verdicts], "figures": figures,
               "arrivals": arrivals, "invariants": [r.name for r in report.broken],
               "verdict": report.verdict, "checks": checks.model_dump(),
               "load": (scenario.load or Load()).model_dump(), "locust_exit_code": code,
               "faults": [r.__dict__ for r in records], "server_health": health}
    # A store URL (or a restart-store command) may carry a password; CI uploads this folder.
    (run_dir / "summary.json").write_text(redact_url(json.dumps(summary, indent=2, default=str)))
    return res


def outcomes_text(f: dict[str, Any]) -> str:
    """`1965 ok, 345 refused, 14 unknown; 12 sent with a deliberate client timeout`."""
    o = f.get("outcomes", {})
    text = (f"{o.get('ok', 0)} ok, {o.get('fail', 0)} refused, "
            f"{o.get('unknown', 0)} unknown")
    if f.get("client_timeouts"):
        text += f"; {f['client_timeouts']} sent with a deliberate client timeout"
    return text


def summary_lines(res: LoadtestResult) -> list[str]:
    """A short human summary of a finished run."""
    f, a = res.figures, res.arrivals
    lines = [
        f"arrivals: {a['started']} started of {a['scheduled']} scheduled "
        f"(target {a['target_rate']:.1f}/s, achieved {a['achieved_rate']:.1f}/s on time; "
        f"{a['late']} late, {a['dropped']} dropped)",
        f"requests: {f['requests']} ({outcomes_text(f)}), error rate "
        f"{f['error_rate']:.2%}, {f['throughput']:.1f} req/s",
    ]
    if f["requests"]:
        lines.append(f"latency from intended start: p50 {f['p50_ms']:.0f} ms, p95 "
                     f"{f['p95_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms (service time p99 "
                     f"{f['service_p99_ms']:.0f} ms)")
    for r in res.faults:
        lines.append(f"fault: {r.fault} for {r.until - r.at:.1f} s ({r.detail})")
    if f.get("hit_by_faults"):
        lines.append(f"{f['hit_by_faults']} request(s) were in flight during a fault (left out "
                     "of the error rate and latencies)")
    held = len(res.report.results) - len(res.report.broken) - len(res.report.skipped)
    lines.append(f"invariants: {held} of {len(res.report.results)} held"
                 + (f", {len(res.report.skipped)} not checked" if res.report.skipped else ""))
    met = sum(v.passed for v in res.verdicts)
    lines.append(f"thresholds: {met} of {len(res.verdicts)} met")
    if res.server_warning:
        lines.append(f"the server says it is unsafe: {res.server_warning}")
    return lines
