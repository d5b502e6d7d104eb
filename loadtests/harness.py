"""The whole load-test pipeline behind `groupbuy loadtest` (and the demo):

serve (unless a host is given) → prepare the plan (load the sale, mint tokens, schedule) →
Locust headless (open workload, history) → wait out the payment and group deadlines → run
expiry → read the final state → check the invariants and the `[checks]` thresholds → write
the report files and the latency plot into the run folder.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from campaign.load import Load
from campaign.scenario import load_scenario
from loadtests.api import AdminClient
from loadtests.checker import Report, check, rules_from_campaign, save_report
from loadtests.history import CREATE_OPS, merge_histories, read_history
from loadtests.metrics import arrival_figures, history_figures, plot_latency, threshold_problems
from loadtests.plan import Plan, prepare_plan
from loadtests.schedule import build_schedule
from loadtests.server import ServerProcess

LOCUSTFILES = Path(__file__).resolve().parent
DEFAULT_LOCUSTFILE = LOCUSTFILES / "scenario.py"


@dataclass
class LoadtestResult:
    """What a run found: the invariant report, figures, and one line per problem."""

    run_dir: Path
    report: Report
    figures: dict[str, Any]
    arrivals: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    server_warning: str | None = None
    """What the server says is wrong with it (`/v1/health` `safe: false`), if anything."""

    @property
    def passed(self) -> bool:
        return not self.problems


def sqlite_store_in(run_dir: Path) -> str:
    """A fresh SQLite store file inside the run folder."""
    return f"sqlite:///{(run_dir / 'server.sqlite3').resolve()}"


STALE_PATTERNS = ("history-*.jsonl", "history.jsonl", "arrivals-*.json")
"""Files a previous run in the same folder leaves behind that this run would merge in."""


def clear_stale_run_files(run_dir: Path) -> list[Path]:
    """Remove a previous run's history and arrival files from `run_dir`; returns what went."""
    gone = []
    for pattern in STALE_PATTERNS:
        for p in sorted(run_dir.glob(pattern)):
            p.unlink()
            gone.append(p)
    return gone


def run_locust(plan_path: Path, run_dir: Path, host: str, plan: Plan, *, processes: int = 1,
               locustfile: Path = DEFAULT_LOCUSTFILE, progress: bool = True) -> int:
    """Locust headless on the plan, bounded in time; Locust's own output goes to locust.log."""
    bound = plan.sched.seconds + plan.drain_seconds + 30
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "--host", host, "--plan", str(plan_path), "--run-dir", str(run_dir),
           "--html", str(run_dir / "locust_report.html"), "--csv", str(run_dir / "locust"),
           "--run-time", f"{bound:.0f}s", "--only-summary",
           "--loglevel", "WARNING"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    with (run_dir / "locust.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
        start = time.monotonic()
        with tqdm(total=round(plan.sched.seconds), unit="s", desc="load test",
                  disable=not progress, leave=False) as bar:
            while proc.poll() is None:
                time.sleep(0.5)
                bar.n = min(bar.total, round(time.monotonic() - start))
                bar.refresh()
                if time.monotonic() - start > bound + 30:
                    proc.kill()  # the run bounds itself; this is the last resort
        return proc.wait()


def wait_for_deadlines(history: list[dict[str, Any]], plan: Plan, progress: bool) -> None:
    """Sleep until every reservation's payment deadline and every group's deadline passed."""
    last = 0.0
    for r in history:
        if r.get("op") in CREATE_OPS and r.get("outcome") != "fail":
            last = max(last, r["end"] + plan.payment_timeout)
        if r.get("op") == "open_group" and r.get("outcome") != "fail":
            last = max(last, r["end"] + plan.group_window)
    wait = last + 0.5 - time.time()
    if wait > 0:
        if progress:
            print(f"waiting {wait:.0f} s for payment and group deadlines …", flush=True)
        time.sleep(wait)


def run_loadtest(scenario_path: str | Path, run_dir: Path, *, host: str | None = None,
                 store: str | None = None, workers: int = 2, admin_token: str | None = None,
                 duration: float | None = None, rate_scale: float = 1.0, processes: int = 1,
                 arrivals_csv: str | Path | None = None,
                 locustfile: Path = DEFAULT_LOCUSTFILE, seed: int | None = None,
                 progress: bool = True,
                 allow_unsafe_durability: bool = False) -> LoadtestResult:
    """Run the pipeline and write everything into `run_dir`. Raises ScenarioError,
    ScheduleError, ServerError or ServerStartError for problems that stop it from running."""
    scenario = load_scenario(scenario_path)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    build_schedule(scenario, arrivals_csv)  # a bad arrivals.csv fails before a server starts
    clear_stale_run_files(run_dir)  # a reused folder must not mix a previous run's history in
    server = None
    if host is None:
        admin_token = secrets.token_hex(16)
        store = store or sqlite_store_in(run_dir)
        server = ServerProcess(scenario_path, store, workers,
                               admin_token, run_dir / "server.log",
                               allow_unsafe_durability=allow_unsafe_durability)
        host = server.url
    elif not admin_token:
        raise ValueError("an admin token is needed for --host (--admin-token or "
                         "GROUPBUY_ADMIN_TOKEN)")
    try:
        plan = prepare_plan(host, admin_token, scenario_path, run_dir, arrivals_csv=arrivals_csv,
                            duration=duration, rate_scale=rate_scale, seed=seed)
        code = run_locust(run_dir / "plan.json", run_dir, host, plan, processes=processes,
                          locustfile=locustfile, progress=progress)
        parts = sorted(run_dir.glob("history-*.jsonl"))
        merge_histories(parts, run_dir / "history.jsonl")
        history = read_history(run_dir / "history.jsonl")
        wait_for_deadlines(history, plan, progress)
        with AdminClient(host, admin_token) as admin:
            admin.expire()
            state = admin.final_state()
            health = admin.health()
    finally:
        if server is not None:
            server.stop()
    report = check(history, state, rules_from_campaign(scenario.campaign), expiry_ran=True)
    save_report(report, run_dir / "invariants.json", run_dir / "invariants.txt")
    sched = plan.sched
    figures = history_figures(history)
    arrivals = arrival_figures(run_dir, sched.expected_arrivals, sched.seconds)
    problems = report.summary_lines() + threshold_problems(scenario.checks, figures,
                                                           arrivals)
    if arrivals["processes"] < processes:
        problems.append(f"only {arrivals['processes']} of {processes} load process(es) "
                        f"finished (Locust exit code {code}; see locust.log)")
    plot_latency(history, run_dir / "locust_stats_history.csv", run_dir / "latency.png",
                 f"{Path(scenario_path).stem}: latency and arrivals", target=plan.schedule)
    summary = {"scenario": str(Path(scenario_path).resolve()), "host": host,
               "store": store if server else None,
               "passed": not problems, "problems": problems, "figures": figures,
               "arrivals": arrivals, "invariants": report.to_json()["broken"],
               "load": (scenario.load or Load()).model_dump(), "locust_exit_code": code,
               "server_health": health}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return LoadtestResult(run_dir, report, figures, arrivals, problems,
                          server_warning=health.get("warning") if health.get("safe") is False
                          else None)


def summary_lines(res: LoadtestResult) -> list[str]:
    """A short human summary of a finished run."""
    f, a = res.figures, res.arrivals
    lines = [
        f"arrivals: {a['started']} started of {a['scheduled']} scheduled "
        f"(target {a['target_rate']:.1f}/s, achieved {a['achieved_rate']:.1f}/s on time; "
        f"{a['late']} late, {a['dropped']} dropped)",
        f"requests: {f['requests']} ({f.get('outcomes', {})}), error rate "
        f"{f['error_rate']:.2%}, {f['throughput']:.1f} req/s",
    ]
    if f["requests"]:
        lines.append(f"latency from intended start: p50 {f['p50_ms']:.0f} ms, p95 "
                     f"{f['p95_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms (service time p99 "
                     f"{f['service_p99_ms']:.0f} ms)")
    held = len(res.report.results) - len(res.report.broken)
    lines.append(f"invariants: {held} of {len(res.report.results)} held")
    if res.server_warning:
        lines.append(f"the server says it is unsafe: {res.server_warning}")
    return lines
