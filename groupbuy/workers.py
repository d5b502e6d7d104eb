"""The server's listening sockets and its uvicorn workers: `listen` claims the port, `serve`
runs the app on it (`groupbuy serve`, and the deliberately wrong servers of the tests).

With several workers each has a listening socket of its own, all bound to the port with
SO_REUSEPORT: the kernel spreads new connections over them evenly. Worker i — and any worker
that replaces it after a crash or a SIGHUP restart — serves socket i alone (`Workers`); a socket
without a worker would hold the connections the kernel gave it unanswered. Everything else
(signals, health checks, stopping) is uvicorn's `Multiprocess`."""

from __future__ import annotations

import contextlib
import logging
import socket

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def listen(host: str, port: int, workers: int) -> list[socket.socket]:
    """Bind and listen now, before anything is written; the workers inherit the sockets (an
    `OSError` when the port is taken).

    One worker: one socket, as uvicorn binds it. More: one socket per worker, all on the port
    with SO_REUSEPORT, so the kernel spreads new connections evenly over the workers. (With one
    shared socket, whichever worker woke first accepted a whole burst of connections: a client
    opening 32 keep-alive connections at once often had all 32 on one worker, and that worker's
    one core was the server's limit.) A bind without SO_REUSEPORT comes first and is released
    just before the workers' binds: it fails if anything holds the port, another `groupbuy
    serve` included, which SO_REUSEPORT alone would let share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = _bound(family, host, port, reuse_port=False)
    if workers == 1:
        return [probe]
    port = probe.getsockname()[1]  # the port the kernel chose for port 0
    probe.close()
    socks: list[socket.socket] = []
    try:
        for _ in range(workers):
            socks.append(_bound(family, host, port, reuse_port=True))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bound(family: socket.AddressFamily, host: str, port: int,
           reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: str, socks: list[socket.socket], host: str, workers: int,
          log_level: str = "warning") -> None:
    """Run the uvicorn factory `app` ("module:function") on `socks`, one worker per socket."""
    config = uvicorn.Config(app, factory=True, host=host, port=socks[0].getsockname()[1],
                            workers=workers, log_level=log_level, access_log=False)
    if workers > 1:
        Workers(config, sockets=socks).run()
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=socks)


class Workers(Multiprocess):
    """`Multiprocess` where process i always serves `sockets[i]`."""

    def init_processes(self) -> None:
        self.processes = [self._start(sock) for sock in self.sockets]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for i, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: killed; dead: reaped
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                logger.error(f"Child process [{process.pid}] failed to start, stopping.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[i] = self._start(self.sockets[i])

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced in turn, the new one serving before the old one stops."""
        for i, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(self.sockets[i])
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck,
                                        self.should_exit):
                new.kill()
                new.join()
                logger.error(f"New child process [{new.pid}] was not ready in time; keeping "
                             f"worker [{old.pid}] and stopping the restart.")
                return
            old.terminate()
            old.join()
            self.processes[i] = new

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN: the number of workers is fixed (--workers), one "
                    "listening socket each.")

    handle_ttou = handle_ttin

    def _start(self, sock: socket.socket) -> Process:
        process = Process(self.config, [sock])
        process.start()
        return process
