"""uvicorn's worker supervisor, with a listening socket of its own for each worker.

`groupbuy serve --workers N` binds N sockets on the port with SO_REUSEPORT (`serve._listen`):
the kernel spreads new connections over them evenly. Worker i — and any worker that replaces it
after a crash or a SIGHUP restart — serves socket i alone; a socket without a worker would
hold the connections the kernel gave it unanswered. Everything else (signals, health checks,
stopping) is uvicorn's `Multiprocess`."""

from __future__ import annotations

import logging
from socket import socket

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


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

    def _start(self, sock: socket) -> Process:
        process = Process(self.config, [sock])
        process.start()
        return process
