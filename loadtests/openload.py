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
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
import gevent.event
from gevent.pool import Group
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpSession, FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

from loadtests.history import HistoryHeader, HistoryWriter
from loadtests.journeys import Arrival, GroupBoard, OrderBoard, Shopper, pick_journey
from loadtests.plan import Plan, ScenarioFile, prepare_plan
from loadtests.schedule import arrival_times

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
    if opts.plan:
        plan = Plan.load(opts.plan)
        if cls.mix is not None:  # the locustfile's own journey mix replaces the scenario's
            plan.mix = dict(cls.mix)
            plan.save(opts.plan)
        return plan
    if not environment.host:
        raise RuntimeError("no host: pass --host http://127.0.0.1:PORT")
    if not opts.admin_token:
        raise RuntimeError("no admin token: pass --admin-token or set GROUPBUY_ADMIN_TOKEN")
    run_dir = opts.run_dir or str(REPO_ROOT / "results" /
                                  time.strftime("locust-%Y%m%d-%H%M%S"))
    source = ScenarioFile.read(opts.scenario or REPO_ROOT / cls.default_scenario)
    sched = source.schedule(opts.arrivals or None, rate_scale=opts.rate_scale,
                            duration=opts.schedule_seconds or None)
    return prepare_plan(environment.host, opts.admin_token, source, sched, run_dir,
                        mix=cls.mix)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # the plan comes in a message from the master
    STATE.done.clear()
    STATE.ready.clear()
    STATE.failed = None
    try:
        plan = _prepare(environment)
    except Exception as exc:  # shown to the person running Locust, then stop
        STATE.failed = f"cannot prepare the run: {exc}"
        log.error(STATE.failed)
        gevent.spawn_later(0.1, runner.quit)
        return
    log.info("open workload: %.0f arrivals over %.0f s into %s", plan.sched.expected_arrivals,
             plan.sched.seconds, plan.run_dir)
    if isinstance(runner, MasterRunner):
        STATE.plan, STATE.expected_done = plan, runner.worker_count
        runner.send_message(PLAN_MESSAGE, {"plan": asdict(plan),
                                           "count": runner.worker_count})
    else:
        _adopt(plan, 0, 1)


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
        # A pool as large as the journeys in flight: connections are never the bottleneck.
        self.session = FastHttpSession(
            self.environment.host or plan.host, request_event=self.environment.events.request,
            user=self, network_timeout=plan.request_timeout,
            connection_timeout=plan.request_timeout, concurrency=plan.max_in_flight)
        self.journeys = Group()
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
        t0 = time.time()
        self.counts.update(scheduled=len(times), t0=t0)
        for n, offset in enumerate(times):
            intended = t0 + offset
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            if len(self.journeys) >= plan.max_in_flight:
                self.counts["dropped"] += 1
                continue
            user = rng.choice(users)
            journey = pick_journey(plan.mix, rng)
            own = next(fresh, None) if journey == "adversarial" else None
            if own is not None:
                arrival = Arrival(STATE.index, n, journey, own, plan.adversaries[own],
                                  intended, fresh=True)
            else:
                arrival = Arrival(STATE.index, n, journey, user, plan.tokens[user], intended)
            shopper = Shopper(plan, arrival, self._send, self.writer.write, board,
                              random.Random(rng.random()), orders)
            self.journeys.spawn(self._journey, shopper)
        self.journeys.join(timeout=plan.drain_seconds)
        self._finish()
        _report_done(self.environment)
        while True:  # the shape stops the run once every process is done
            gevent.sleep(3600)

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
        if timeout is not None:
            return self._send_with_deadline(method, path, name, headers, body, timeout)
        start = time.perf_counter()
        with self.session.request(method, path, name=name, headers=headers, json=body,
                                  catch_response=True) as resp:
            status = resp.status_code or None
            raw = resp.content or b""
            error = None
            if status is None:
                error = "timeout" if "timed out" in str(resp.error).lower() else "connection"
                resp.failure(f"no answer: {resp.error}")
            elif status >= 500 or (status >= 400 and b'"error"' not in raw):
                resp.failure(f"HTTP {status}")
            else:
                resp.success()  # contract errors (sold out, limit reached …) are answers
            return status, raw, error, (time.perf_counter() - start) * 1000

    def _send_with_deadline(self, method: str, path: str, name: str, headers: dict[str, str],
                            body: Any, timeout: float) -> tuple[int | None, bytes, str | None,
                                                               float]:
        """Send the whole request on a connection of its own, wait `timeout` s, then hang up
        without reading the answer: the server got the request, the client never learns what
        happened (a fast server would otherwise answer before any realistic deadline)."""
        url = urlsplit(self.session.base_url)
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
                f"Content-Length: {len(payload)}", "Content-Type: application/json",
                *(f"{k}: {v}" for k, v in headers.items())]
        start = time.perf_counter()
        error: Exception | None = None
        try:
            with socket.create_connection((url.hostname, url.port or 80), timeout=timeout + 5) \
                    as sock:
                sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                gevent.sleep(timeout)
        except OSError as exc:
            error = exc
        ms = (time.perf_counter() - start) * 1000
        self.environment.events.request.fire(
            request_type=method, name=name, response_time=ms, response_length=0,
            exception=error or TimeoutError(f"client gave up after {timeout * 1000:g} ms"),
            context={}, response=None, url=path, start_time=time.time())
        return None, b"", "connection" if error else "timeout", ms

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
    """One scheduler user per load process; stops once every process has drained."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        if STATE.failed:
            return None
        processes = runner.worker_count if isinstance(runner, MasterRunner) else 1
        opts = runner.environment.parsed_options
        limit = getattr(opts, "run_time", None) if opts is not None else None
        if limit and self.get_run_time() >= limit:  # Locust leaves --run-time to the shape
            return None
        plan = STATE.plan
        if plan is not None:
            if len(STATE.done) >= STATE.expected_done:
                return None
            if self.get_run_time() > plan.sched.seconds + plan.drain_seconds + 15:
                log.warning("open workload: stopping without every process reporting done")
                return None
        return max(processes, 1), max(processes, 1)
