"""`sqlite:///path` — the embedded default store.

WAL mode, `BEGIN IMMEDIATE` write transactions (one writer at a time across all worker
processes, so guarded updates cannot race) and a busy timeout. `synchronous=NORMAL` in WAL mode
keeps every committed transaction across a crash of the server process (`kill -9`); use
`?synchronous=FULL` to survive a power cut as well."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.sql import MIGRATIONS, SCHEMA, Deferred, SqlStore

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000


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


def _migrate(tx: _SqliteTx) -> None:
    """Add the columns a store made by an older server lacks (additions only)."""
    for table, column, kind in MIGRATIONS:
        have = {r["name"] for r in tx.all(f"PRAGMA table_info({table})")}
        if column not in have:
            tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class SqliteStore(SqlStore):
    """One connection per worker process, used from one thread so the event loop never blocks
    on the database lock."""

    scheme = "sqlite"

    def __init__(self, url: str) -> None:
        self.path, opts = sqlite_path(url)
        self.synchronous = opts.get("synchronous", "NORMAL").upper()
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"{url}: synchronous must be NORMAL or FULL")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc} ({self.path})") from exc
        self._conn = conn
        ddl = SCHEMA.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT")
        self._transact(lambda tx: [tx.run(s) for s in ddl.split(";") if s.strip()], (), True)
        self._transact(_migrate, (), True)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._transact, fn, args, write)

    def _transact(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the SQLite store is closed")
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                out = fn(_SqliteTx(conn), *args)
            except Deferred as d:
                conn.execute("COMMIT")
                raise d.error from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out
        except ApiError:
            raise
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"SQLite: {exc}") from exc
