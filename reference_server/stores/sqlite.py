"""`sqlite:///path` — the embedded default store.

WAL mode, `BEGIN IMMEDIATE` write transactions (one writer at a time across all worker
processes, so guarded updates cannot race) under a lock file the workers share
(`<database>.write-lock`), waited for at most 10 s. The default `synchronous=FULL`
fsyncs the write-ahead log at every commit, so an acknowledged order survives a crash of the
server and a power cut; `?synchronous=NORMAL` is faster but a power cut or OS crash can lose the
last commits, so it counts as unsafe durability.

The token-signing secret is not kept in the database file (which may sit under `results/`, which
CI uploads) but in a private file of the state folder (`auth.state_dir()`), one per database."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from reference_server.auth import private_file, state_dir
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.base import Durability
from reference_server.stores.sql import MIGRATIONS, SCHEMA, Deferred, SqlStore

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
WRITE_LOCK_POLL_SECONDS = 0.0002


def sqlite_path(url: str) -> tuple[Path, dict[str, str]]:
    """`sqlite:///rel/path` is relative to the working directory, `sqlite:////abs/path`
    absolute (the SQLAlchemy convention); query options come back as a dict."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ValueError(f"{url}: expected sqlite:///relative/path or sqlite:////absolute/path")
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Path(path), opts


class _SqliteTx:
    lock = ""
    exclusive = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def run(self, sql: str, *params: Any) -> int:
        return self.conn.execute(sql, params).rowcount

    def next_seq(self) -> int:
        # every SQLite write transaction is exclusive, so a counter row costs no contention
        return int(self.conn.execute("UPDATE sale SET move_seq = move_seq + 1 WHERE id = 1 "
                                     "RETURNING move_seq").fetchone()[0])


_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


def _settle(fut: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if fut.done():
        return
    ok, value = outcome
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Busy(Exception):
    """Another process holds the database's write lock: try again shortly."""


class StoreInUse(Exception):
    """Another server holds this SQLite file."""


def _take_stored_secret(tx: _SqliteTx) -> str | None:
    row = tx.one("SELECT v FROM meta WHERE k = 'secret'")
    tx.run("DELETE FROM meta WHERE k = 'secret'")
    return None if row is None else str(row["v"])


def _migrate(tx: _SqliteTx) -> None:
    """Add the columns a store made by an older server lacks (additions only)."""
    for table, column, kind in MIGRATIONS:
        have = {r["name"] for r in tx.all(f"PRAGMA table_info({table})")}
        if column not in have:
            tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class SqliteStore(SqlStore):
    """Two connections per worker process. Writes run on the event loop itself, in batches:
    every write queued while the loop was busy commits in one transaction, each in its own
    savepoint, and is answered only after the commit (group commit), under a lock file the
    worker processes share. Reads run on a thread with a connection of their own (in WAL mode
    readers never wait for the writer).

    Why on the loop: on a database thread every statement gave up Python's GIL and had to win
    it back from the busy event loop while the database stayed locked, and two thirds of the
    time the lock was held went to that waiting (docs/server.md). On the loop a batch runs
    without a thread switch; the cost is that the loop waits for the commit's fsync."""

    scheme = "sqlite"

    def __init__(self, url: str) -> None:
        self.path, opts = sqlite_path(url)
        self.synchronous = opts.get("synchronous", "FULL").upper()
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"{url}: synchronous must be NORMAL or FULL")
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._queue: list[_Job] = []
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._busy_since: float | None = None
        self._conn: sqlite3.Connection | None = None
        """The writer: used on the event loop (and by `_open` before serving)."""
        self._read_conn: sqlite3.Connection | None = None
        self._write_lock: int | None = None
        """A file descriptor of `<database>.write-lock`, flocked around every write."""

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._reads, self._open)

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # the writer never sleeps in SQLite's busy handler once serving (it would stall
            # the event loop): a locked database is retried by `_flush`. Opening may wait:
            # switching a new file to WAL needs the lock another worker starting may hold.
            conn = self._connect(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA busy_timeout = 0")
            self._write_lock = os.open(f"{self.path}.write-lock", os.O_RDWR | os.O_CREAT,
                                       0o600)
            self._conn = conn
            ddl = SCHEMA.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT")
            self._setup(lambda tx: [tx.run(s) for s in ddl.split(";") if s.strip()])
            self._setup(_migrate)
            self._read_conn = self._connect(BUSY_TIMEOUT_MS)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc} ({self.path})") from exc

    def _setup(self, fn: Callable[[_SqliteTx], Any]) -> None:
        """A write at start-up, on the calling thread, waiting for the lock if need be."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                outcome = self._commit([(fn, (), None)])  # type: ignore[list-item]
            except _Busy:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"SQLite: {self.path} stayed locked by another "
                                           "process") from None
                time.sleep(WRITE_LOCK_POLL_SECONDS)
                continue
            ok, value = outcome[0]
            if not ok:
                raise value
            return

    def claim(self) -> IO[str]:
        """Lock the database for this process (closing the returned file releases it, and so
        does the process's death): one server per SQLite file, because a second one would load
        its own campaign into the first one's store."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(f"{self.path}.lock", "a+")  # noqa: SIM115 - the caller closes it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise StoreInUse(f"{self.path} is in use by another server (pid {holder}); stop it "
                             "first or use another --store") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    async def durability(self) -> Durability:
        settings = {"synchronous": self.synchronous, "journal_mode": "wal"}
        if self.synchronous == "NORMAL":
            return Durability(settings, "SQLite synchronous=NORMAL: a power cut or OS crash can "
                              "lose the last acknowledged orders (use ?synchronous=FULL)")
        return Durability(settings)

    def secret_path(self) -> Path:
        """The private file holding this database's token-signing secret."""
        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return state_dir() / f"sqlite-secret-{key}"

    async def secret(self, proposed: str) -> str:
        # a 1.1 store kept the secret inside the database file: move it out, keep its value
        old = await self._call(_take_stored_secret)
        return private_file(self.secret_path(), old or proposed)

    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        queued, self._queue = self._queue, []
        for _, _, fut in queued:
            _settle(fut, (False, StoreUnavailable("the SQLite store is closed")))
        if self._conn is not None:
            self._conn.close()
            self._conn = None

        def _close_reader() -> None:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
        await asyncio.get_running_loop().run_in_executor(self._reads, _close_reader)
        self._reads.shutdown(wait=True)
        if self._write_lock is not None:
            os.close(self._write_lock)
            self._write_lock = None

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self._reads, self._read, fn, args)
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, args, fut))
        if self._flush_handle is None:  # after every other ready callback of this pass
            self._flush_handle = loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        """Commit every queued write together; when another process holds the lock, try
        again in `WRITE_LOCK_POLL_SECONDS` (for at most the busy timeout)."""
        self._flush_handle = None
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            outcomes = self._commit(batch)
        except _Busy:
            now = time.monotonic()
            self._busy_since = self._busy_since or now
            if now - self._busy_since > BUSY_TIMEOUT_MS / 1000:
                self._busy_since = None
                err = StoreUnavailable(f"SQLite: {self.path} stayed locked by another process "
                                       f"for {BUSY_TIMEOUT_MS / 1000:g} s")
                outcomes = [(False, err) for _ in batch]
            else:
                self._queue = batch + self._queue
                self._flush_handle = asyncio.get_running_loop().call_later(
                    WRITE_LOCK_POLL_SECONDS, self._flush)
                return
        self._busy_since = None
        for (_, _, fut), outcome in zip(batch, outcomes, strict=True):
            _settle(fut, outcome)

    def _commit(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run every job of the batch in one write transaction, each inside its own savepoint
        (a refusal undoes only its own job), and commit once. Returns (ok, result or error)
        per job, only after the commit: nothing is acknowledged before it is durable. `_Busy`
        when another process holds the write lock (nothing ran)."""
        conn = self._conn
        if conn is None:
            return [(False, StoreUnavailable("the SQLite store is closed")) for _ in batch]
        if not self._lock_writes():
            raise _Busy()
        out: list[tuple[bool, Any]] = []
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                # a writer that does not take our lock
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise _Busy() from None
                raise
            for fn, args, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = fn(_SqliteTx(conn), *args)
                except Deferred as d:  # useful work done, still a refusal: keep the work
                    conn.execute("RELEASE job")
                    out.append((False, d.error))
                    continue
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(exc, sqlite3.OperationalError):
                        exc = StoreUnavailable(f"SQLite: {exc}")
                    out.append((False, exc))
                    continue
                conn.execute("RELEASE job")
                out.append((True, result))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(False, StoreUnavailable(f"SQLite: {exc}")) for _ in batch]
        finally:
            self._unlock_writes()
        return out

    def _lock_writes(self) -> bool:
        """Take the write lock the worker processes share, without waiting.

        SQLite's own busy handler sleeps 1, 2, 5, … up to 100 ms between tries, so a worker
        waiting for another one's commit kept sleeping long after the lock was free; here a
        waiting writer tries again every `WRITE_LOCK_POLL_SECONDS`. `BEGIN IMMEDIATE` still
        guards against writers that do not take this lock."""
        if self._write_lock is None:
            return True
        try:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_writes(self) -> None:
        if self._write_lock is not None:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """A read-only transaction on the reader connection (its own thread)."""
        conn = self._read_conn
        if conn is None:
            raise StoreUnavailable("the SQLite store is closed")
        try:
            conn.execute("BEGIN")
            try:
                return fn(_SqliteTx(conn), *args)
            finally:
                conn.execute("COMMIT")
        except ApiError:
            raise
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite: {exc}") from exc
