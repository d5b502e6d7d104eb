"""`postgresql://user@host:port/db[?schema=name]` — the production SQL store (psycopg 3).

The hot path is server-side PL/pgSQL functions (`reference_server/postgres_functions.sql`,
installed at start) on connections leased from psycopg's async pool: a plain reservation (the
idempotency key, the guarded stock update, the order and the recorded answer) and paying an
order outside a group. The requests that wait for a connection go together, one call and one
transaction for all of them (`_Batched`): one commit flush, the hot SKU's row locked once.
Everything else runs the transaction bodies SQLite runs (`stores/sql.py`: guarded `UPDATE … WHERE
available >= q`, `SELECT … FOR UPDATE` on groups, orders and claims, unique constraints and
CHECKs as the backstop) on a threaded psycopg pool, so the event loop never waits on a lock.
Deadlocks and serialisation failures are retried. With `synchronous_commit = on`
(PostgreSQL's default) a committed — acknowledged — order survives a crash."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from reference_server.domain import OrderRow, PricedReserve
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.base import (
    IDEMPOTENCY_STALE_SECONDS,
    IDEMPOTENCY_TTL_SECONDS,
    CreateOp,
    Durability,
    IdemBegin,
    IdemRequest,
    StaleSale,
)
from reference_server.stores.sql import MIGRATIONS, SCHEMA, Deferred, SqlStore

T = TypeVar("T")
POOL_SIZE = 6
"""Connections of the threaded pool (the multi-statement transaction bodies) per worker."""
ASYNC_POOL_SIZE = 4
"""Connections of the async pool (the hot path) per worker. More made it slower before the
hot path sent requests together: with 2 workers on a hot SKU, 4 did about 1,220 reserve+pay
pairs/s, 8 about 1,100, 16 about 990 (two alternating runs each, `benchmarks/server_speed.py`'s
client): every call on a hot row waits for the one before it anyway."""
RETRIES = 5
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def split_schema(url: str) -> tuple[str, str]:
    """The connection URL without `schema=`, and the schema (default `groupbuy`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), "groupbuy")
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"{url}: schema must be a lower-case SQL identifier")
    rest = urlencode([(k, v) for k, v in query if k != "schema"], quote_via=quote)
    return urlunsplit(parts._replace(scheme="postgresql", query=rest)), schema


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTx:
    lock = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        key = zlib.crc32(schema.encode())
        self.exclusive = f"SELECT pg_advisory_xact_lock({key})"
        self.shared = f"SELECT pg_advisory_xact_lock_shared({key})"

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        return self.conn.execute(_pg_sql(sql), params).fetchone()  # type: ignore[return-value]

    def all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.conn.execute(_pg_sql(sql), params).fetchall()  # type: ignore[return-value]

    def run(self, sql: str, *params: Any) -> int:
        return self.conn.execute(_pg_sql(sql), params).rowcount

    def next_seq(self) -> int:
        # a SEQUENCE, not a counter row: no lock shared by every SKU (CONTRACT.md 1.2)
        row = self.conn.execute("SELECT nextval('move_seq') AS seq").fetchone()
        return int(row["seq"])  # type: ignore[index]


class PostgresStore(SqlStore):
    scheme = "postgresql"

    def __init__(self, url: str) -> None:
        self.conninfo, self.schema = split_schema(url)
        self._threads = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="pg")
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._hot: _Leased | None = None
        self._lock_key = zlib.crc32(self.schema.encode())
        self._batched = {
            "reserve": _Batched(self, RESERVE_MANY, key=slice(0, 2), shared_at=4,
                                shared=(IDEMPOTENCY_STALE_SECONDS, IDEMPOTENCY_TTL_SECONDS)),
            "pay": _Batched(self, PAY_MANY, key=slice(0, 1))}

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._open)
        apool = AsyncConnectionPool(self.conninfo, min_size=1, max_size=ASYNC_POOL_SIZE,
                                    open=False, timeout=10, kwargs=self._conn_kwargs())
        try:
            await apool.open(wait=True, timeout=10)
            hot = await _Leased.take(apool, ASYNC_POOL_SIZE)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            await apool.close()
            raise StoreUnavailable(f"PostgreSQL: {exc}".strip()) from exc
        self._apool, self._hot = apool, hot

    def _open(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"SELECT pg_advisory_lock({zlib.crc32(self.schema.encode())})")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                conn.execute(f"SET search_path TO {self.schema}")
                with conn.transaction():
                    for stmt in SCHEMA.format(serial="BIGSERIAL PRIMARY KEY").split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute("CREATE SEQUENCE IF NOT EXISTS move_seq")
                    for table, column, kind in MIGRATIONS:  # columns newer than the store
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "
                                     f"{column} {kind}")
                    conn.execute(_functions_sql())
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}".strip()) from exc
        self._pool = ConnectionPool(self.conninfo, min_size=1, max_size=POOL_SIZE, open=False,
                                    timeout=10, kwargs=self._conn_kwargs())
        self._pool.open(wait=True, timeout=10)

    def _conn_kwargs(self) -> dict[str, Any]:
        # keep the URL's own `options` (e.g. -c synchronous_commit=…): they are part of the
        # durability the store reports
        options = conninfo_to_dict(self.conninfo).get("options") or ""
        return {"autocommit": True, "row_factory": dict_row,
                "options": f"{options} -c search_path={self.schema}".strip()}

    async def durability(self) -> Durability:
        def read(tx: _PgTx) -> dict[str, str]:
            return {k: str(tx.one(f"SHOW {k}")[k])  # type: ignore[index]
                    for k in ("synchronous_commit", "fsync")}
        settings = await self._query(read)
        problems = []
        if settings["synchronous_commit"] == "off":
            problems.append("synchronous_commit=off: a crash of PostgreSQL loses the last "
                            "acknowledged commits")
        if settings["fsync"] != "on":
            problems.append("fsync=off: an OS crash or power cut can lose acknowledged commits "
                            "(or corrupt the cluster)")
        return Durability(settings, "PostgreSQL " + "; ".join(problems) if problems else None)

    async def close(self) -> None:
        for batched in self._batched.values():
            batched.cancel()
        if self._hot is not None:
            await self._hot.give_back()
            self._hot = None
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
        pool = self._pool
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(self._threads, pool.close)
            self._pool = None
        self._threads.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._transact, fn, args, write)

    def _transact(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is closed")
        for attempt in range(RETRIES):
            try:
                with self._pool.connection() as conn:
                    deferred: ApiError | None = None
                    with conn.transaction():
                        tx = _PgTx(conn, self.schema)
                        if write:  # a load or reset (exclusive) waits for this change, and
                            tx.one(tx.shared)  # this change for a load or reset in progress
                        try:
                            out = fn(tx, *args)
                        except Deferred as d:
                            deferred = d.error
                    if deferred is not None:
                        raise deferred
                    return out
            except HANDLED as exc:
                _raise_unless_retry(exc, attempt)
        raise AssertionError("unreachable")

    # -- the hot path: requests batched into one call of a server-side function -------------
    async def once(self, idem: IdemRequest, op: CreateOp, now: float, *,
                   record_refusals: bool) -> IdemBegin:
        if op.kind != "reserve" or not _plain(op.args[0]):
            return await super().once(idem, op, now, record_refusals=record_refusals)
        p: PricedReserve = op.args[0]
        req = p.req
        row = await self._batched["reserve"].call(
            (idem.user_id, idem.key, idem.fingerprint, now, record_refusals, p.sale_id,
             p.order_id, req.sku_id, req.quantity, p.per_user_limit, p.amount, p.list_amount,
             json.dumps(p.prices), p.expires_at, json.dumps(now)))
        outcome = row["outcome"]
        if outcome in ("mismatch", "in_flight"):
            return IdemBegin(outcome)
        body = row["body"]
        if body is None:  # the order, kept as its row: rendered as the first answer was
            body = op.render(OrderRow.from_fields(json.loads(row["snapshot"])))
        return IdemBegin(outcome, int(row["status"]), body)

    async def pay(self, order_id: str, user_id: str | None, now: float) -> OrderRow:
        for _ in range(RETRIES):
            sale = await self.recent_sale()
            if sale is None:
                raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
            gift = sale.rules.first_orders_gift
            try:
                row = await self._batched["pay"].call(
                    (order_id, user_id or "", now, sale.sale_id, gift.count if gift else 0))
            except StaleSale:
                self.forget_recent_sale()
                continue
            if row["outcome"] == "fallback":  # in a group, or expired: the Python body
                return await super().pay(order_id, user_id, now)
            return OrderRow.from_fields(json.loads(row["snapshot"]))
        raise StoreUnavailable("the sale kept changing while paying an order")

    async def _call_many(self, conn: psycopg.AsyncConnection, sql: str,
                         params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """One statement (autocommit: its own transaction), retried on a deadlock; psycopg's
        errors become the store's."""
        for attempt in range(RETRIES):
            try:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()  # type: ignore[return-value]
            except HANDLED as exc:
                _raise_unless_retry(exc, attempt)
        raise AssertionError("unreachable")


RESERVE_MANY = ("SELECT * FROM gb_reserve_many_v2(%s, %s::text[], %s::text[], %s::text[], "
                "%s::float8[], %s, %s, %s::boolean[], %s::text[], %s::text[], %s::text[], "
                "%s::integer[], %s::integer[], %s::bigint[], %s::bigint[], %s::text[], "
                "%s::float8[], %s::text[])")
PAY_MANY = ("SELECT * FROM gb_pay_many_v2(%s, %s::text[], %s::text[], %s::float8[], "
            "%s::text[], %s::bigint[])")


class _Batched:
    """Calls of one server-side function, sent together. A request waits while every leased
    connection is busy; when one frees up, everything waiting by then (up to `MAX_BATCH`) goes
    as one call of the function's `_many` form: one transaction, one commit. Under load that
    lets a hot SKU go faster than one commit flush per request; alone, a request goes at once,
    as a batch of one. At most one sender waits for a connection at a time.

    `args` are one request's parameters after the lock key; PostgreSQL gets a list per
    parameter, and `shared` (the same for every request) once, at position `shared_at`.
    Requests with the same `args[key]` (the order paid, the user's key) never share a call: the
    later one waits for the next."""

    def __init__(self, store: PostgresStore, sql: str, key: slice, shared: tuple[Any, ...] = (),
                 shared_at: int = 0) -> None:
        self.store, self.sql, self.key = store, sql, key
        self.shared, self.shared_at = shared, shared_at
        self.waiting: list[tuple[tuple[Any, ...], asyncio.Future[dict[str, Any]]]] = []
        self.sending = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def call(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """The function's row for `args`; its refusal raised as the store's error."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((args, future))
        if not self.sending:
            self._start()
        return await future

    def _start(self) -> None:
        self.sending = True
        task = asyncio.get_running_loop().create_task(self._send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self) -> None:
        batch: list[tuple[tuple[Any, ...], asyncio.Future[dict[str, Any]]]] = []
        try:
            await asyncio.sleep(0)  # the requests of this loop pass join the batch
            hot = self.store._hot
            if hot is None:
                raise StoreUnavailable("the PostgreSQL store is closed")
            conn = await _acquire(hot)
            batch = self._take()
            self.sending = False
            if self.waiting:
                self._start()
            params = self._params(batch)
            # A connection found dead (PostgreSQL restarted) is replaced and the call sent again:
            # both functions are safe to repeat (a reservation replays its key's answer, paying
            # a paid order answers it), so a call that committed before the loss answers alike.
            for attempt in range(ASYNC_POOL_SIZE + 1):
                try:
                    rows = await self.store._call_many(conn, self.sql, params)
                    break
                except StoreUnavailable:
                    if not conn.broken or attempt == ASYNC_POOL_SIZE:
                        raise
                finally:
                    hot.release(conn)
                conn = await _acquire(hot)
        except BaseException as exc:
            if not batch:  # no connection: everything waiting fails alike
                batch, self.waiting, self.sending = self.waiting, [], False
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for row in rows:
            future = batch[row["item"] - 1][1]
            if not future.done():
                error = _item_error(row)
                if error is None:
                    future.set_result(row)
                else:
                    future.set_exception(error)
        for _, future in batch:
            if not future.done():  # a function that left a request out is a bug: say so
                future.set_exception(StoreUnavailable(f"PostgreSQL: no answer from {self.sql}"))

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[dict[str, Any]]]]:
        batch, rest, keys = [], [], set()
        for request in self.waiting:
            key = request[0][self.key]
            if len(batch) == MAX_BATCH or key in keys:
                rest.append(request)
            else:
                batch.append(request)
                keys.add(key)
        self.waiting = rest
        return batch

    def _params(self, batch: list[tuple[tuple[Any, ...], Any]]) -> tuple[Any, ...]:
        columns = [list(column) for column in zip(*(args for args, _ in batch), strict=True)]
        return (self.store._lock_key, *columns[:self.shared_at], *self.shared,
                *columns[self.shared_at:])

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


async def _acquire(hot: _Leased) -> psycopg.AsyncConnection:
    try:
        return await hot.acquire()
    except PoolTimeout as exc:
        raise StoreUnavailable(f"PostgreSQL: {exc}") from None


MAX_BATCH = 32
"""Requests per call of a `_many` function at most: each is a subtransaction, and past 64 a
transaction makes every other backend's snapshots slower."""


class _Leased:
    """A fixed set of the async pool's connections, handed out from a free list: checking a
    connection out of `AsyncConnectionPool` and back (its lock, its timeout task, its checks)
    cost about as much CPU as the hot-path call itself (profile, docs/server.md). A connection
    that broke goes back to the pool, which replaces it, and a fresh one is taken."""

    def __init__(self, pool: AsyncConnectionPool, conns: list[psycopg.AsyncConnection]) -> None:
        self.pool = pool
        self.free = conns
        self.waiting: collections.deque[asyncio.Future[psycopg.AsyncConnection]] = \
            collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def take(cls, pool: AsyncConnectionPool, size: int) -> _Leased:
        return cls(pool, [await pool.getconn() for _ in range(size)])

    async def acquire(self) -> psycopg.AsyncConnection:
        if self.free:
            return self.free.pop()
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            return await asyncio.wait_for(waiter, self.pool.timeout)
        except TimeoutError:
            raise PoolTimeout(f"no connection in {self.pool.timeout:g} s") from None

    def release(self, conn: psycopg.AsyncConnection) -> None:
        if conn.broken or conn.closed \
                or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            task = asyncio.get_running_loop().create_task(self._replace(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        self._hand_over(conn)

    def _hand_over(self, conn: psycopg.AsyncConnection) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.free.append(conn)

    async def _replace(self, conn: psycopg.AsyncConnection) -> None:
        await self.pool.putconn(conn)  # the pool closes it and opens another in its place
        while True:
            try:
                fresh = await self.pool.getconn()
            except PoolTimeout:
                continue  # the database is down: keep trying; callers wait, then time out
            self._hand_over(fresh)
            return

    async def give_back(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for conn in self.free:
            await self.pool.putconn(conn)
        self.free = []


HANDLED = (pgerrors.RaiseException, pgerrors.UniqueViolation, pgerrors.DeadlockDetected,
           pgerrors.SerializationFailure, psycopg.OperationalError, PoolTimeout)


def _raise_unless_retry(exc: Exception, attempt: int) -> None:
    """Raise the store's error for a `HANDLED` psycopg error; return to retry a deadlock or a
    serialisation failure (up to `RETRIES` attempts)."""
    if isinstance(exc, pgerrors.RaiseException):  # a server-side function refused
        raise _refusal(exc.diag.message_primary or "") from None
    if isinstance(exc, pgerrors.UniqueViolation):
        raise _unique_error(exc.diag.constraint_name or "") from None
    if isinstance(exc, pgerrors.DeadlockDetected | pgerrors.SerializationFailure):
        if attempt == RETRIES - 1:
            raise StoreUnavailable("PostgreSQL: repeated deadlocks") from None
        return
    raise StoreUnavailable(f"PostgreSQL: {exc}") from exc


def _unique_error(constraint: str) -> Exception:
    # A request taking over a stale in-flight key raced the still-running first one and lost
    # on UNIQUE (user_id, idempotency_key): that request is in flight.
    if constraint.endswith("_user_id_idempotency_key_key"):
        return ApiError("in_flight", "a request with this Idempotency-Key is in progress")
    return StoreUnavailable(f"PostgreSQL: a duplicate {constraint or 'row'}; retry")


def _item_error(row: dict[str, Any]) -> Exception | None:
    """The store's error for one request of a `_many` call that raised, else None."""
    if row["outcome"] == "raise":
        return _refusal(row["detail"] or "")
    if row["outcome"] == "unique":
        return _unique_error(row["detail"] or "")
    return None


def _plain(p: PricedReserve) -> bool:
    """A reservation the server-side function makes: no group to join or open, no coupon."""
    return p.req.group_id is None and p.req.coupon_id is None and p.new_group is None


def _refusal(message: str) -> Exception:
    """`groupbuy:<code>:<message>` or `groupbuy:stale` from a function, as the store's error."""
    if not message.startswith("groupbuy:"):
        return StoreUnavailable(f"PostgreSQL: {message}")
    _, code, text = [*message.split(":", 2), ""][:3]
    return StaleSale() if code == "stale" else ApiError(code, text)


@lru_cache(maxsize=1)
def _functions_sql() -> str:
    return resources.files("reference_server").joinpath("postgres_functions.sql").read_text()
