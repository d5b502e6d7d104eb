"""Faults injected while the load runs, as Jepsen's nemesis does: kill -9 the server (all of
it, or one worker) and restart it on the same store, pause a worker, run a command that
restarts the store, slow down or cut connections through a proxy.

`Nemesis` runs a scenario's `[faults]` on a thread beside Locust, timed from the first
arrival (the history header's start), and writes every fault it caused to `faults.jsonl`
(`FaultRecord`: what, when it struck, when it was lifted). Requests in flight during a fault
count in the history as they came out (mostly unknown outcomes); the run's error rate and
latency leave them out (`loadtests.metrics.hit_by_fault`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from campaign.load import Faults
from loadtests.history import HistoryHeader
from loadtests.server import ServerProcess

SETTLE_SECONDS = 1.0
"""After a fault is lifted, requests may still fail for a moment (reconnects): they count as
hit by it."""


@dataclass(frozen=True)
class FaultRecord:
    """One fault the nemesis caused."""

    fault: str
    at: float
    until: float
    detail: str = ""

    @property
    def window(self) -> tuple[float, float]:
        return self.at, self.until + SETTLE_SECONDS


def read_faults(path: Path) -> list[FaultRecord]:
    """The faults of a run folder (`faults.jsonl`; none when the file is absent)."""
    if not path.is_file():
        return []
    return [FaultRecord(**json.loads(line)) for line in path.read_text().splitlines()
            if line.strip()]


class ChaosProxy:
    """A TCP proxy on 127.0.0.1 in front of the server: it adds `delay` seconds before each
    chunk a client sends, and cuts a share `drop` of the chunks' connections, half before
    forwarding the chunk and half after (so the server may have acted on a request whose
    client never hears back). Runs its own event loop on a thread."""

    def __init__(self, target: str, seed: int = 0) -> None:
        host, _, port = target.removeprefix("http://").rstrip("/").partition(":")
        self.target = (host, int(port or 80))
        self.delay = 0.0
        self.drop = 0.0
        self.cut = 0
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChaosProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                      backlog=1024)
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.drop and self._rng.random() < self.drop:
                    self.cut += 1
                    if self._rng.random() < 0.5:
                        up_w.write(data)
                        with contextlib.suppress(OSError):
                            await up_w.drain()
                        await asyncio.sleep(0.05)  # let the server get it, then cut
                    raise ConnectionResetError("cut by the fault proxy")
                up_w.write(data)
                await up_w.drain()

        async def downstream() -> None:
            while data := await up_r.read(65536):
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_w):
            with contextlib.suppress(Exception):
                w.transport.abort()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class Nemesis:
    """Runs `faults` against `server` (None for a server the run did not start) and `proxy`,
    timed from the first arrival of the run whose history goes to `run_dir`."""

    def __init__(self, faults: Faults, run_dir: Path, server: ServerProcess | None,
                 proxy: ChaosProxy | None, base_delay_ms: float = 0.0) -> None:
        self.faults, self.run_dir, self.server, self.proxy = faults, run_dir, server, proxy
        self.base_delay = base_delay_ms / 1000
        self.records: list[FaultRecord] = []
        self.problems: list[str] = []
        self.in_force_since: float | None = None
        """When the fault now in force struck (None: none is)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._log = run_dir / "faults.jsonl"

    def start(self) -> Nemesis:
        self._log.write_text("")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _t0(self) -> float | None:
        """When the first load process started its schedule (its history header)."""
        deadline = time.monotonic() + 120
        path = self.run_dir / "history-0.jsonl"
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                line = path.open().readline()
                if line.endswith("\n"):
                    return HistoryHeader.from_json(json.loads(line)["header"]).started
            time.sleep(0.05)
        return None

    def _events(self) -> list[tuple[float, str, Any]]:
        f = self.faults
        out: list[tuple[float, str, Any]] = []
        out += [(t, "kill_server", None) for t in f.kill_server]
        out += [(t, "kill_worker", i) for i, t in enumerate(f.kill_worker)]
        out += [(p.at, "pause_worker", p) for p in f.pause_worker]
        out += [(r.at, "restart_store", r) for r in f.restart_store]
        out += [(w.at, "proxy", w) for w in f.proxy]
        return sorted(out, key=lambda e: e[0])

    def _run(self) -> None:
        if self.proxy is not None:
            self.proxy.delay = self.base_delay
        t0 = self._t0()
        if t0 is None:
            if not self._stop.is_set():
                self.problems.append("faults not injected: the load never started")
            return
        for at, kind, arg in self._events():
            if self._stop.wait(max(0.0, t0 + at - time.time())):
                return
            self.in_force_since = time.time()
            try:
                getattr(self, f"_{kind}")(arg)
            except Exception as exc:  # a fault that cannot be caused is reported, not fatal
                self.problems.append(f"fault {kind} at {at:g} s failed: {exc}")
            finally:
                self.in_force_since = None

    def windows(self) -> list[tuple[float, float]]:
        """The faults' windows so far, the one in force (if any) open-ended."""
        out = [r.window for r in self.records]
        since = self.in_force_since
        return [*out, (since, math.inf)] if since is not None else out

    def _record(self, fault: str, at: float, until: float, detail: str = "") -> None:
        rec = FaultRecord(fault, at, until, detail)
        self.records.append(rec)
        with self._log.open("a") as fh:
            fh.write(json.dumps(asdict(rec)) + "\n")

    def _kill_server(self, _: Any) -> None:
        assert self.server is not None
        at = time.time()
        self.server.kill9()
        self._stop.wait(self.faults.restart_delay_seconds)
        self.server.restart()
        self._record("kill_server", at, time.time(), "kill -9 every server process, "
                     "restarted on the same store")

    def _kill_worker(self, index: int) -> None:
        assert self.server is not None
        at = time.time()
        if self.server.workers == 1:  # the only worker is the server: restart it ourselves
            self.server.kill9()
            self.server.restart()
            self._record("kill_worker", at, time.time(), "kill -9 the only worker, restarted")
            return
        pid = self.server.kill9_worker(index)
        back = self._wait_workers(self.server.workers, 30)
        self._record("kill_worker", at, back, f"kill -9 worker pid {pid}")

    def _wait_workers(self, n: int, timeout: float) -> float:
        """Until the supervisor runs n workers again and the server answers."""
        deadline = time.time() + timeout
        while time.time() < deadline and not self._stop.is_set():
            if self.server is not None and len(self.server.worker_pids()) >= n:
                break
            time.sleep(0.1)
        return time.time() + 1.0  # a new worker needs a moment to start serving

    def _pause_worker(self, p: Any) -> None:
        assert self.server is not None
        at = time.time()
        pid = self.server.pause_worker(0)
        try:
            self._stop.wait(p.seconds)
        finally:
            if pid is not None:
                self.server.resume(pid)
        self._record("pause_worker", at, time.time(), f"SIGSTOP worker pid {pid} for "
                     f"{p.seconds:g} s")

    def _restart_store(self, r: Any) -> None:
        at = time.time()
        out = subprocess.run(r.command, shell=True, capture_output=True, text=True,
                             timeout=r.timeout_seconds, check=False)
        self._record("restart_store", at, time.time(), f"`{r.command}` exited "
                     f"{out.returncode}")
        if out.returncode != 0:
            self.problems.append(f"restart_store command exited {out.returncode}: "
                                 f"{(out.stderr or out.stdout).strip()[-200:]}")

    def _proxy(self, w: Any) -> None:
        assert self.proxy is not None
        at = time.time()
        self.proxy.delay, self.proxy.drop = w.delay_ms / 1000, w.drop
        try:
            self._stop.wait(w.seconds)
        finally:
            self.proxy.delay, self.proxy.drop = self.base_delay, 0.0
        self._record("proxy", at, time.time(), f"delay {w.delay_ms:g} ms, drop {w.drop:g}")
