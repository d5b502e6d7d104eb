"""Open-workload arrivals inside Locust (local, `--processes`, or master and workers).

Locust's users are a closed model. Here each load process runs exactly one
`OpenWorkloadUser` (the `OpenWorkloadShape` asks for one user per process), and that user is an
arrival scheduler: it walks its share of the schedule and, at each arrival's intended time,
spawns a greenlet that runs one shopper journey with the user's `FastHttpSession`, however
slow the server is. Arrivals that start more than the late tolerance after their intended
time are counted late; arrivals beyond `max_in_flight` journeys in progress are dropped and
counted. Process `i` of `n` takes every n-th arrival, so the processes add up to the rate.

The master (or the local runner) prepares the plan at test start (or reads `--plan`) and
sends it to the workers; each process writes `history-<i>.jsonl` and `arrivals-<i>.json`
into the run folder; the shape stops the test once every process has drained.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import gevent
import gevent.event
from gevent.pool import Group
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadtests.api import reach
from loadtests.history import HistoryHeader, HistoryWriter
from loadtests.journeys import (
    CLIENT_TIMEOUT_SECONDS,
    Arrival,
    GroupBoard,
    JourneyPicker,
    OrderBoard,
    Shopper,
)
from loadtests.lookups import remember_lookups
from loadtests.plan import ABORT_FILE, Plan, ScenarioFile, prepare_plan
from loadtests.schedule import arrival_times
from loadtests.target import normalise_host, open_session

log = logging.getLogger("loadtests")
REPO_ROOT = Path(__file__).resolve().parents[1]
PLAN_MESSAGE = "openload_plan"
DONE_MESSAGE = "openload_done"


class _Process:
    """This process's share of the run (module state: one locustfile per process)."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.index, self.count = 0, 1
        self.ready = gevent.event.Event()
        self.done: set[int] = set()
        self.expected_done = 1
        self.failed: str | None = None
        self.runs = 0
        """Runs prepared in this process (a web UI can start one after another)."""
        self.stopped = False
        """The last run stopped; the next start begins a new one."""

    def new_run(self) -> None:
        """Forget the last run (its plan, who finished it, why it failed): a new one starts."""
        self.plan, self.failed = None, None
        self.done.clear()
        self.ready.clear()


STATE = _Process()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    g = parser  # argument groups do not take Locust's is_secret/include_in_web_ui
    g.add_argument("--plan", default="", help="plan.json prepared by `groupbuy loadtest`; "
                   "without it the run prepares its own from --scenario")
    g.add_argument("--scenario", default="", help="scenario file (default: the locustfile's)")
    g.add_argument("--admin-token", default=os.environ.get("GROUPBUY_ADMIN_TOKEN", ""),
                   is_secret=True, help="the server's admin token (or GROUPBUY_ADMIN_TOKEN)")
    g.add_argument("--arrivals", default="", help="arrivals.csv a simulation wrote (for "
                   "[load] arrivals = 'simulation')")
    g.add_argument("--run-dir", default="", help="folder for the history (default: "
                   "results/locust-<time>)")
    g.add_argument("--rate-scale", type=float, default=1.0, help="multiply arrival rates")
    g.add_argument("--schedule-seconds", type=float, default=0.0, help="stretch or squeeze the "
                   "schedule to this many seconds")


def _user_class(environment: Any) -> type[OpenWorkloadUser]:
    for cls in environment.user_classes:
        if issubclass(cls, OpenWorkloadUser):
            return cls
    raise RuntimeError("the locustfile defines no OpenWorkloadUser")


def _prepare(environment: Any) -> Plan:
    opts = environment.parsed_options
    cls = _user_class(environment)
    STATE.runs += 1
    if opts.plan:
        if STATE.runs > 1:
            raise RuntimeError("a run prepared by `groupbuy loadtest` (--plan) runs once; "
                               "start Locust without --plan to run again")
        plan = Plan.load(opts.plan)
        if cls.mix is not None:  # the locustfile's own journey mix replaces the scenario's
            plan.mix = dict(cls.mix)
            plan.save(opts.plan)
        return plan
    if not environment.host:
        raise RuntimeError("no host: pass --host http://127.0.0.1:PORT")
    host = normalise_host(environment.host)
    if not opts.admin_token:
        raise RuntimeError("no admin token: pass --admin-token or set GROUPBUY_ADMIN_TOKEN")
    reach(host, opts.admin_token)  # one line when nothing, or no checkout server, answers
    source = ScenarioFile.read(opts.scenario or REPO_ROOT / cls.default_scenario)
    sched = source.schedule(opts.arrivals or None, rate_scale=opts.rate_scale,
                            duration=opts.schedule_seconds or None)
    return prepare_plan(host, opts.admin_token, source, sched,
                        fresh_run_dir(opts.run_dir, STATE.runs), mix=cls.mix)


def fresh_run_dir(given: str, run: int) -> Path:
    """The folder of this process's `run`-th run: `--run-dir` for the first (`DIR-2`, `DIR-3` …
    for runs started again from the web UI), else a new `results/locust-<time>[-n]`."""
    if given:
        return Path(given) if run == 1 else Path(f"{given.rstrip('/')}-{run}")
    base = REPO_ROOT / "results" / time.strftime("locust-%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # the plan comes in a message from the master
    STATE.new_run()
    try:
        plan = _prepare(environment)
    except Exception as exc:  # shown to the person running Locust, then stop
        STATE.failed = f"cannot prepare the run: {exc}"
        log.error(STATE.failed)
        headless = getattr(environment.parsed_options, "headless", True)
        # Headless: Locust exits (code 2). Web UI: the run stops and the UI stays, showing
        # the error in its log, so the next Start can try again.
        gevent.spawn_later(0.1, runner.quit if headless else runner.stop)
        return
    log.info("open workload: %.0f arrivals over %.0f s into %s",
             plan.sched.expected_arrivals, plan.sched.seconds, plan.run_dir)
    if isinstance(runner, MasterRunner):
        STATE.plan, STATE.expected_done = plan, runner.worker_count
        runner.send_message(PLAN_MESSAGE, {"plan": asdict(plan),
                                           "count": runner.worker_count})
    else:
        _adopt(plan, 0, 1)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        STATE.ready.clear()  # the next run's plan comes in a new message
    else:
        STATE.stopped = True  # the next start is a new run (see OpenWorkloadShape.reset_time)


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    if STATE.failed and not isinstance(environment.runner, WorkerRunner):
        environment.process_exit_code = 2


def _adopt(plan: Plan, index: int, count: int) -> None:
    STATE.plan, STATE.index, STATE.count = plan, index % count, count
    STATE.ready.set()


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        def on_plan(msg: Any, **__: Any) -> None:
            _adopt(Plan(**msg.data["plan"]), max(runner.worker_index, 0), msg.data["count"])
        runner.register_message(PLAN_MESSAGE, on_plan)
    if isinstance(runner, MasterRunner):
        def on_done(msg: Any, **__: Any) -> None:
            STATE.done.add(msg.data["index"])
        runner.register_message(DONE_MESSAGE, on_done)


def _report_done(environment: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(DONE_MESSAGE, {"index": STATE.index})
    else:
        STATE.done.add(STATE.index)


class OpenWorkloadUser(FastHttpUser):
    """The arrival scheduler of one load process. Subclass it in a locustfile, naming the
    scenario it runs by default and, optionally, a journey mix replacing the scenario's."""

    abstract = True
    default_scenario: ClassVar[str] = "scenarios/default.toml"
    mix: ClassVar[dict[str, float] | None] = None

    def on_start(self) -> None:
        if not STATE.ready.wait(timeout=30):
            raise RuntimeError("no plan arrived from the master within 30 s")
        plan = STATE.plan
        assert plan is not None
        remember_lookups()
        # A pool as large as the journeys in flight: connections are never the bottleneck.
        # Every journey uses the same client on the same base URL (path prefix, TLS, proxy);
        # the `timeout` journey's requests go out on a twin that stops waiting for the answer
        # after CLIENT_TIMEOUT_SECONDS (the request is sent whole; the answer is never read).
        host = normalise_host(self.environment.host or plan.host)
        events_ = self.environment.events.request
        self.session = open_session(host, events_, self, timeout=plan.request_timeout,
                                    connect_timeout=plan.request_timeout,
                                    concurrency=plan.max_in_flight)
        self.impatient = open_session(host, events_, self, timeout=CLIENT_TIMEOUT_SECONDS,
                                      connect_timeout=plan.request_timeout,
                                      concurrency=plan.max_in_flight)
        self.journeys = Group()
        self.abort_asked = False
        # A fresh file with a header naming the run, the sale and this process's share: a
        # checker can tell a partial history, or another run's, from lost data.
        header = HistoryHeader(run_id=plan.run_id, sale_id=plan.sale_id, worker=STATE.index,
                               workers=STATE.count, started=time.time())
        self.writer = HistoryWriter(Path(plan.run_dir) / f"history-{STATE.index}.jsonl", header)
        self.counts = {"worker": STATE.index, "workers": STATE.count, "scheduled": 0,
                       "started": 0, "late": 0, "dropped": 0, "unfinished": 0, "max_lag": 0.0}

    @task
    def run_schedule(self) -> None:
        """Start every arrival of this process at its intended time, then drain and idle."""
        plan = STATE.plan
        assert plan is not None
        times = arrival_times(plan.sched, plan.arrival_process, share=STATE.index,
                              shares=STATE.count, seed=plan.seed)
        users = sorted(plan.tokens)
        fresh = iter(sorted(plan.adversaries)[STATE.index::STATE.count])
        rng = random.Random(f"{plan.seed}:{STATE.index}")
        board, orders = GroupBoard(), OrderBoard()
        pick_journey = JourneyPicker(plan.mix)
        t0 = time.time()
        self.counts.update(scheduled=len(times), t0=t0)
        ticker = gevent.spawn(self._tick, Path(plan.run_dir) / ABORT_FILE)
        for n, offset in enumerate(times):
            intended = t0 + offset
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            if self.abort_asked:
                break
            if len(self.journeys) >= plan.max_in_flight:
                self.counts["dropped"] += 1
                continue
            user = rng.choice(users)
            journey = pick_journey(rng)
            own = next(fresh, None) if journey == "adversarial" else None
            if own is not None:
                arrival = Arrival(STATE.index, n, journey, own, plan.adversaries[own],
                                  intended, fresh=True)
            else:
                arrival = Arrival(STATE.index, n, journey, user, plan.tokens[user], intended)
            shopper = Shopper(plan, arrival, self._send, self.writer.write, board, rng.random(),
                              orders)
            self.journeys.spawn(self._journey, shopper)
        self.journeys.join(timeout=plan.drain_seconds)
        ticker.kill()
        self._finish()
        _report_done(self.environment)
        while True:  # the shape stops the run once every process is done
            gevent.sleep(3600)

    def _tick(self, abort: Path) -> None:
        """Every 0.25 s: put the history written so far on disk (writes come in bursts), and
        stop starting arrivals once the harness asks (abort_on_fail) — the journeys in flight
        finish, the history and arrival counts are written as at a normal end."""
        while True:
            self.writer.flush()
            if not self.abort_asked and abort.exists():
                self.abort_asked = True
                self.counts["aborted"] = True
            gevent.sleep(0.25)

    def _journey(self, shopper: Shopper) -> None:
        a = shopper.a
        a.started = time.time()
        self.counts["started"] += 1
        self.counts["max_lag"] = max(self.counts["max_lag"], a.lag)
        if a.lag > shopper.plan.late_tolerance:
            self.counts["late"] += 1
        try:
            shopper.run()
        except Exception:  # one broken journey must not stop the others
            log.exception("journey %s of %s failed", a.journey, a.user)

    def _send(self, method: str, path: str, name: str, headers: dict[str, str], body: Any,
              timeout: float | None) -> tuple[int | None, bytes, str | None, float]:
        """One request on the session; with a `timeout` (the `timeout` journey's), on the twin
        that stops waiting CLIENT_TIMEOUT_SECONDS after sending: a deliberate client timeout
        is an expected unknown outcome, so a success to Locust, not a failure."""
        deliberate = timeout is not None
        session = self.impatient if deliberate else self.session
        start = time.perf_counter()
        with session.request(method, path, name=name, headers=headers, json=body,
                             catch_response=True) as resp:
            status = resp.status_code or None
            raw = resp.content or b""
            error = None
            if status is None:
                error = "timeout" if "timed out" in str(resp.error).lower() else "connection"
                if deliberate and error == "timeout":
                    resp.success()  # the journey hung up on purpose
                else:
                    resp.failure(f"no answer: {resp.error}")
            elif status >= 500 or (status >= 400 and b'"error"' not in raw):
                resp.failure(f"HTTP {status}")
            else:
                resp.success()  # contract errors (sold out, limit reached …) are answers
            return status, raw, error, (time.perf_counter() - start) * 1000

    def _finish(self) -> None:
        self.counts["unfinished"] = len(self.journeys)
        self.journeys.kill(block=True, timeout=5)
        self.writer.close()
        plan = STATE.plan
        assert plan is not None
        out = Path(plan.run_dir) / f"arrivals-{STATE.index}.json"
        out.write_text(json.dumps(self.counts))

    def on_stop(self) -> None:
        # Stopped early (time limit, Ctrl-C): still leave a complete history behind.
        if hasattr(self, "writer") and not self.writer.closed:
            self._finish()


class OpenWorkloadShape(LoadTestShape):
    """One scheduler user per load process; stops once every process has drained.

    It reads `--run-time` itself (a bound on the run; `use_common_options`), and forgets a
    stopped run when Locust starts a new one (`reset_time`), so a web UI's Start runs again."""

    abstract = True
    use_common_options = True

    def reset_time(self) -> None:
        super().reset_time()
        if STATE.stopped:  # a new start after a stopped run: before its first tick, forget
            STATE.stopped = False  # the last run's "done", or it would stop this one at once
            STATE.new_run()

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        if STATE.failed:
            return None
        processes = runner.worker_count if isinstance(runner, MasterRunner) else 1
        opts = runner.environment.parsed_options
        limit = getattr(opts, "run_time", None) if opts is not None else None
        if limit and self.get_run_time() >= limit:
            return None
        plan = STATE.plan
        if plan is not None:
            if len(STATE.done) >= STATE.expected_done:
                return None
            if self.get_run_time() > plan.sched.seconds + plan.drain_seconds + 15:
                log.warning("open workload: stopping without every process reporting done")
                return None
        return max(processes, 1), max(processes, 1)
