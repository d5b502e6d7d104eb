"""Where simulation runs execute: local processes (default) or a Dask distributed cluster.

One small interface, `Executor.map_unordered(fn, tasks)`, yields `(task, result)` pairs as runs
finish; a run that raises yields its exception instead of a result, so one bad run never loses
the others. `make_executor("local" | "dask://host:port", jobs)` picks the implementation.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DASK_CONNECT_TIMEOUT_S = 5.0
MAX_DASK_CHUNK = 16


class ExecutorError(Exception):
    """An executor that cannot be used (bad address, unreachable scheduler): one line."""


class Executor:
    """Runs `fn(task)` for many tasks; use as a context manager so workers are released."""

    workers: int = 1
    name: str = "executor"

    def map_unordered(self, fn: Callable[[T], R],
                      tasks: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        """Yield `(task, fn(task))` in completion order; `(task, exception)` when a run raises."""
        raise NotImplementedError

    def close(self) -> None:
        """Release processes and connections."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Local processes; `jobs=1` runs in this process (simplest to debug, no pickling)."""

    # Bounded in-flight futures keep memory flat for sweeps with very many runs.
    def __init__(self, jobs: int | None = None) -> None:
        self.workers = max(1, jobs or os.cpu_count() or 1)
        self.name = "in-process" if self.workers == 1 else f"local x{self.workers}"
        self._pool: ProcessPoolExecutor | None = None

    def map_unordered(self, fn: Callable[[T], R],
                      tasks: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        if self.workers == 1:
            for task in tasks:
                try:
                    result: R | BaseException = fn(task)
                except Exception as exc:  # reported with its task, the others go on
                    result = exc
                yield task, result
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        pending: dict[Future[R], T] = {}
        todo = iter(tasks)
        limit = self.workers * 64
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                try:
                    task = next(todo)
                except StopIteration:
                    exhausted = True
                    break
                pending[self._pool.submit(fn, task)] = task
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                exc = fut.exception()
                yield task, (exc if exc is not None else fut.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster; `address` is `host:port` or a `Client` to reuse."""

    def __init__(self, address: Any, timeout: float = DASK_CONNECT_TIMEOUT_S) -> None:
        from distributed import Client

        if isinstance(address, Client):
            self._client, self._own = address, False
        else:
            try:
                self._client = Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(f"cannot reach the Dask scheduler at {address} "
                                    f"within {timeout:g} s ({type(exc).__name__}); is "
                                    "`dask scheduler` running there?") from None
            self._own = True
        n = len(self._client.scheduler_info().get("workers", {}))
        self.workers = max(1, n)
        self.name = f"dask {self._client.scheduler.address} ({n} workers)"

    def map_unordered(self, fn: Callable[[T], R],
                      tasks: Iterable[T]) -> Iterator[tuple[T, R | BaseException]]:
        from distributed import as_completed

        task_list = list(tasks)
        if not task_list:
            return
        # Short runs are sent in chunks: one scheduler round trip per task would cost more
        # than the run. About four chunks per worker keeps the tail balanced.
        size = max(1, min(MAX_DASK_CHUNK, len(task_list) // (4 * self.workers)))
        chunks = [task_list[i:i + size] for i in range(0, len(task_list), size)]
        futures = self._client.map(_run_chunk, [fn] * len(chunks), chunks, pure=False)
        index = {fut.key: i for i, fut in enumerate(futures)}
        for fut in as_completed(futures, loop=self._client.loop):
            chunk = chunks[index[fut.key]]
            if fut.status == "error":  # the worker itself failed: every task of the chunk did
                exc = fut.exception()
                for task in chunk:
                    yield task, exc
            else:
                yield from zip(chunk, fut.result(), strict=True)
            fut.release()

    def close(self) -> None:
        if self._own:
            self._client.close()


def _run_chunk(fn: Callable[[T], R], tasks: list[T]) -> list[R | BaseException]:
    out: list[R | BaseException] = []
    for task in tasks:
        try:
            out.append(fn(task))
        except Exception as exc:  # reported with its task, the others go on
            out.append(exc)
    return out


def make_executor(spec: str = "local", jobs: int | None = None) -> Executor:
    """`local` (all cores unless `jobs`), or `dask://host:port` for a Dask scheduler."""
    if spec == "local":
        if jobs is not None and jobs < 1:
            raise ExecutorError(f"--jobs must be at least 1, not {jobs}")
        return LocalExecutor(jobs)
    if spec.startswith("dask://"):
        address = spec.removeprefix("dask://")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ExecutorError(f"bad Dask address {spec!r}; expected dask://HOST:PORT")
        _check_reachable(host, int(port), spec)
        return DaskExecutor(f"tcp://{address}")
    raise ExecutorError(f"unknown executor {spec!r}; use 'local' or 'dask://HOST:PORT'")


def _check_reachable(host: str, port: int, spec: str) -> None:
    # A refused connection fails at once here, instead of after the Dask client's retries.
    try:
        with socket.create_connection((host, port), timeout=DASK_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorError(f"cannot reach the Dask scheduler at {spec} ({reason}); is "
                            "`dask scheduler` running there?") from None
