"""`redis://host:port/db[?prefix=name]` — every state change is one Lua script (atomic).

Scripts live in `reference_server/redis_scripts.lua`; redis-py loads them with SCRIPT LOAD and
calls them with EVALSHA. Prices come from `campaign.pricing` in Python and are passed in; a
script refuses (`stale`) when the sale was reloaded in between, and the call is priced again.

Durability: an acknowledged order survives a Redis restart only with `appendonly yes` and
`appendfsync always`. The Redis on the development machine runs without persistence, which is
fine for tests but not for production."""

from __future__ import annotations

import functools
import inspect
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rexc

from reference_server.domain import (
    ClaimRow,
    GroupRow,
    OrderRow,
    PricedReserve,
    Sale,
    new_id,
    sale_from_record,
)
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.base import (
    IDEMPOTENCY_STALE_SECONDS,
    IDEMPOTENCY_TTL_SECONDS,
    CreateOp,
    Durability,
    ExportKind,
    ExportRow,
    IdemBegin,
    IdemRequest,
    SaleRecord,
    StaleSale,
    Store,
    records_refusal,
)
from reference_server.stores.redis_scripts import ScriptChannel

PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EXPIRY_BATCH = 500
STALE_RETRIES = 5
POOL_SIZE = 64
"""Connections per worker process; requests beyond it wait for one (blocking pool)."""
POOL_WAIT_SECONDS = 10.0
BACKEND_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError)


def split_prefix(url: str) -> tuple[str, str]:
    """The connection URL without `prefix=`, and the key prefix (default `groupbuy`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = next((v for k, v in query if k == "prefix"), "groupbuy")
    if not PREFIX.fullmatch(prefix):
        raise ValueError(f"{url}: prefix must be 1-64 letters, digits, _ . -")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"], quote_via=quote)
    return urlunsplit(parts._replace(query=rest)), prefix


def _scripts() -> tuple[dict[str, str], str]:
    text = resources.files("reference_server").joinpath("redis_scripts.lua").read_text()
    chunks = re.split(r"^-- @(\w+)(?: (\w+))?$", text, flags=re.M)
    prelude, load, bodies = "", "", {}
    for i in range(1, len(chunks), 3):
        kind, name, body = chunks[i], chunks[i + 1], chunks[i + 2]
        if kind == "prelude":
            prelude = body
        elif kind == "load":
            load = body
        else:
            bodies[name] = body
    return {name: prelude + body for name, body in bodies.items()}, load


def _num(value: float) -> str:
    return repr(float(value))


class RedisStore(Store):
    scheme = "redis"

    def __init__(self, url: str) -> None:
        self.url, self.prefix = split_prefix(url)
        self._r: aioredis.Redis | None = None
        self._script_channel: ScriptChannel | None = None
        self._cached: tuple[tuple, Sale] | None = None

    @property
    def r(self) -> aioredis.Redis:
        if self._r is None:
            raise StoreUnavailable("the Redis store is closed")
        return self._r

    async def open(self) -> None:
        # a blocking pool: under a burst a request waits for a free connection (up to
        # POOL_WAIT_SECONDS) instead of failing with "Too many connections"
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, decode_responses=True, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS)
        self._r = aioredis.Redis(connection_pool=pool)
        self._script_channel = ScriptChannel(self.url, self.script_bodies())
        await self._r.ping()

    def script_bodies(self) -> dict[str, str]:
        """The Lua scripts by name (`load` included), as `_eval` runs them."""
        bodies, load = _scripts()
        return bodies | {"load": load}

    async def durability(self) -> Durability:
        try:
            got = await self.r.config_get("append*")
        except rexc.ResponseError as exc:  # CONFIG disabled or renamed (managed Redis)
            return Durability({}, f"Redis: cannot read appendonly/appendfsync ({exc}); "
                              "cannot tell whether acknowledged orders survive a restart")
        settings = {k: str(got.get(k, "?")) for k in ("appendonly", "appendfsync")}
        if settings["appendonly"] != "yes":
            return Durability(settings, "Redis appendonly=no: a restart of Redis loses every "
                              "order (needs appendonly yes, appendfsync always)")
        if settings["appendfsync"] != "always":
            return Durability(settings, f"Redis appendfsync={settings['appendfsync']}: a crash "
                              "can lose acknowledged orders (needs appendfsync always)")
        return Durability(settings)

    async def close(self) -> None:
        if self._script_channel is not None:
            await self._script_channel.close()
            self._script_channel = None
        if self._r is not None:
            await self._r.aclose(close_connection_pool=True)
            self._r = None

    @property
    def _channel(self) -> ScriptChannel:
        if self._script_channel is None:
            raise StoreUnavailable("the Redis store is closed")
        return self._script_channel

    # -- helpers ----------------------------------------------------------------------------
    async def _sale_gen(self) -> tuple[Sale | None, str | None]:
        """The current sale and its generation; the campaign JSON is re-read only when the
        sale's identity (generation, fingerprint, timing) changed."""
        key = f"{self.prefix}:sale"
        ident = tuple(await self.r.hmget(key, "gen", "fingerprint", "start",
                                         "payment_timeout", "group_window", "sale_id"))
        if ident[0] is None or ident[1] is None:
            return None, None
        if self._cached is not None and self._cached[0] == ident:
            return self._cached[1], ident[0]
        campaign = await self.r.hget(key, "campaign")
        if campaign is None:
            return None, None
        sale = sale_from_record(campaign, float(ident[2]), float(ident[3]), float(ident[4]),
                                ident[5] or "")
        self._cached = (ident, sale)
        return sale, ident[0]

    async def _need_sale(self) -> tuple[Sale, str]:
        sale, gen = await self._sale_gen()
        if sale is None or gen is None:
            raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
        return sale, gen

    async def _eval(self, name: str, sale_id: str, now: float, sale: Sale | None,
                    *args: Any) -> list[str]:
        """Run a script; `sale_id` is the sale the arguments were priced under ('*': any)."""
        groups = sale.rules.groups if sale is not None else None
        tiers = ",".join(str(t.size) for t in groups.tiers) if groups else ""
        policy = groups.failure_policy if groups else ""
        argv = [self.prefix, sale_id, _num(now), tiers, policy, *[str(a) for a in args]]
        out = await self._channel.call(name, argv)
        if out[0] == "stale":
            raise StaleSale()
        if out[0] == "err":
            raise ApiError(out[1], out[2])
        return list(out[1:])

    async def _priced(self, name: str, now: float, build: Any) -> list[str]:
        """Call a script with arguments taken from the current sale, again if it changed."""
        for _ in range(STALE_RETRIES):
            sale = await self.recent_sale()
            if sale is None:
                raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
            try:
                return await self._eval(name, sale.sale_id, now, sale, *build(sale))
            except StaleSale:
                self.forget_recent_sale()
                continue
        raise StoreUnavailable("the sale kept changing while pricing an order")

    async def _current(self, name: str, now: float, *args: Any) -> list[str]:
        sale, _ = await self._sale_gen()
        return await self._eval(name, "*", now, sale, *args)

    def _k(self, gen: str, rest: str) -> str:
        return f"{self.prefix}:{gen}:{rest}"

    # -- set-up -----------------------------------------------------------------------------
    async def secret(self, proposed: str) -> str:
        key = f"{self.prefix}:secret"
        await self.r.set(key, proposed, nx=True)
        return str(await self.r.get(key))

    async def load_sale(self, record: SaleRecord, if_absent: bool) -> bool:
        sale = sale_from_record(record.campaign_json, record.start, record.payment_timeout,
                                record.group_window)
        _, old_gen = await self._sale_gen()
        args: list[Any] = [self.prefix, "1" if if_absent else "0", sale.fingerprint,
                           record.campaign_json, _num(record.start),
                           _num(record.payment_timeout), _num(record.group_window),
                           new_id("s"), len(sale.rules.skus)]
        for s in sale.rules.skus:
            args += [s.id, s.stock]
        for c in sale.rules.coupons:
            args += [c.id, c.pool, c.per_user]
        gen = await self._channel.call("load", [str(a) for a in args])
        if gen and old_gen is not None:
            await self._drop_generation(old_gen)
        return bool(gen)

    async def _drop_generation(self, gen: str) -> None:
        batch: list[str] = []
        async for key in self.r.scan_iter(match=self._k(gen, "*"), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await self.r.unlink(*batch)
                batch = []
        if batch:
            await self.r.unlink(*batch)

    async def reset(self) -> None:
        h = await self.r.hgetall(f"{self.prefix}:sale")
        if "campaign" not in h:
            raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
        await self.load_sale(SaleRecord(h["campaign"], float(h["start"]),
                                        float(h["payment_timeout"]), float(h["group_window"])),
                             if_absent=False)

    async def sale(self) -> Sale | None:
        return (await self._sale_gen())[0]

    async def skus(self) -> dict[str, dict[str, int]]:
        sale, gen = await self._sale_gen()
        if sale is None or gen is None:
            return {}
        ids = sorted(s.id for s in sale.rules.skus)
        rows = await self._snapshot(gen, [f"sku:{i}" for i in ids])
        return {i: {k: int(v) for k, v in row.items()} for i, row in zip(ids, rows, strict=True)
                if row}

    async def _snapshot(self, gen: str, keys: list[str]) -> list[dict[str, str]]:
        """HGETALL of these keys of generation `gen`, atomically, while `gen` is still the
        loaded sale (a reload drops the old generation's keys soon after): a read straddling a
        reload is `StoreUnavailable` (503, retry) rather than a half-empty answer."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hget(f"{self.prefix}:sale", "gen")
            for key in keys:
                pipe.hgetall(self._k(gen, key))
            current, *rows = await pipe.execute()
        if current != gen:
            raise StoreUnavailable("the sale was reloaded during the read; retry")
        return rows

    # -- state changes ----------------------------------------------------------------------
    @staticmethod
    def _reserve_args(p: PricedReserve) -> list[Any]:
        req, g = p.req, p.new_group
        prices = ",".join(f"{k}:{v}" for k, v in p.prices.items())
        return [req.user_id, req.sku_id, req.quantity, req.idempotency_key, p.order_id,
                req.group_id or "", req.coupon_id or "", p.per_user_limit, _num(p.expires_at),
                p.amount, p.list_amount, prices, g.group_id if g else "",
                _num(g.deadline) if g else "", g.top_size if g else 0, g.min_size if g else 0,
                req.fingerprint]

    async def reserve(self, priced: PricedReserve, now: float) -> OrderRow:
        out = await self._eval("reserve", priced.sale_id, now, None,
                               *self._reserve_args(priced))
        return _order_row(out)

    async def open_group(self, priced: PricedReserve, now: float) -> tuple[GroupRow, OrderRow]:
        reply = await self._eval("reserve", priced.sale_id, now, None,
                                 *self._reserve_args(priced))
        order, rest = _take(reply[1:])
        group, rest = _take(rest)
        return GroupRow.from_fields(group, rest[1:]), OrderRow.from_fields(order)

    async def pay(self, order_id: str, user_id: str | None, now: float) -> OrderRow:
        def build(sale: Sale) -> list[Any]:
            gift = sale.rules.first_orders_gift
            return [order_id, user_id or "", gift.count if gift else 0]
        return _order_row(await self._priced("pay", now, build))

    async def cancel(self, order_id: str, user_id: str | None, now: float) -> OrderRow:
        return _order_row(await self._current("cancel", now, order_id, user_id or ""))

    async def claim_coupon(self, coupon_id: str, user_id: str, key: str,
                           now: float) -> ClaimRow:
        out = await self._current("claim", now, coupon_id, user_id, key, new_id("c"))
        return ClaimRow.from_fields(dict(zip(out[::2], out[1::2], strict=True)))

    async def expire_due(self, now: float) -> tuple[int, int]:
        sale, gen = await self._sale_gen()
        if sale is None or gen is None:
            return 0, 0
        try:
            out = await self._eval("expire", sale.sale_id, now, sale, EXPIRY_BATCH)
        except StaleSale:
            return 0, 0
        return int(out[0]), int(out[1])

    # -- reads ------------------------------------------------------------------------------
    async def order(self, order_id: str) -> OrderRow | None:
        _, gen = await self._sale_gen()
        if gen is None:
            return None
        row = await self.r.hgetall(self._k(gen, f"order:{order_id}"))
        return OrderRow.from_fields(row) if row else None

    async def group(self, group_id: str) -> GroupRow | None:
        _, gen = await self._sale_gen()
        if gen is None:
            return None
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k(gen, f"group:{group_id}"))
            pipe.lrange(self._k(gen, f"gorders:{group_id}"), 0, -1)
            row, ids = await pipe.execute()
        return GroupRow.from_fields(row, list(ids)) if row else None

    async def ledger_counts(self) -> dict[str, Any]:
        sale, gen = await self._need_sale()
        counts, *coupons = await self._snapshot(
            gen, ["counts", *[f"coupon:{c.id}" for c in sale.rules.coupons]])
        n = {k: int(v) for k, v in counts.items()}
        return {
            "coupons": {c.id: {k: int(row[k]) for k in ("pool", "issued", "per_user")}
                        for c, row in zip(sale.rules.coupons, coupons, strict=True)},
            "groups": {s: n.get(f"g:{s}", 0) for s in ("open", "completed", "failed")}
            | {"leader_rewards": n.get("leader_rewards", 0)},
            "orders": {s: n.get(f"o:{s}", 0)
                       for s in ("reserved", "paid", "cancelled", "expired", "refunded")},
        }

    async def export(self, kind: ExportKind, after: int,
                     limit: int) -> tuple[list[ExportRow], int | None]:
        _, gen = await self._sale_gen()
        if gen is None:
            return [], None
        single = {"orders": "order", "groups": "group", "claims": "claim"}[kind]
        ids = await self.r.zrangebyscore(self._k(gen, kind), f"({after}", "+inf",
                                         start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        async with self.r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self._k(gen, f"{single}:{i}"))
                if kind == "groups":
                    pipe.lrange(self._k(gen, f"gorders:{i}"), 0, -1)
            res = await pipe.execute()
        rows: list[ExportRow]
        if kind == "groups":
            rows = [GroupRow.from_fields(res[j], res[j + 1]) for j in range(0, len(res), 2)]
            last = res[-2] if res else {}
        elif kind == "claims":
            rows, last = [ClaimRow.from_fields(r) for r in res], res[-1] if res else {}
        else:
            rows, last = [OrderRow.from_fields(r) for r in res], res[-1] if res else {}
        return rows, (int(last["seq"]) if more else None)

    # -- idempotency ------------------------------------------------------------------------
    async def once(self, idem: IdemRequest, op: CreateOp, now: float, *,
                   record_refusals: bool) -> IdemBegin:
        """One EVALSHA: the reserve or claim script checks the key, makes the change and
        records its reply as the key's answer, atomically. A replay renders the recorded reply
        with `op.render`, as the first answer was rendered. Refusals are recorded with a second
        call (`idem_put`), only when they are the answer."""
        if op.kind == "refusal":
            return await super().once(idem, op, now, record_refusals=record_refusals)
        extra = [idem.user_id, idem.key, idem.fingerprint, IDEMPOTENCY_STALE_SECONDS,
                 IDEMPOTENCY_TTL_SECONDS]
        try:
            if op.kind == "claim":
                reply = await self._current("claim", now, *op.args, new_id("c"), *extra)
            else:
                (priced,) = op.args
                reply = await self._eval("reserve", priced.sale_id, now, None,
                                         *self._reserve_args(priced), *extra)
        except ApiError as exc:
            if not records_refusal(exc, record_refusals):
                raise
            status, body = exc.status, json.dumps(exc.body())
            await self._current("idem_put", now, idem.user_id, idem.key, idem.fingerprint,
                                status, body, IDEMPOTENCY_TTL_SECONDS)
            return IdemBegin("done", status, body)
        if reply[0] == "idem":
            state = reply[1]
            if state != "replay":
                return IdemBegin(state)  # type: ignore[arg-type]
            if reply[3]:  # a recorded refusal (or an answer recorded the older way)
                return IdemBegin("replay", int(reply[2]), reply[3])
            return IdemBegin("replay", int(reply[2]), op.render(_row(op, json.loads(reply[4])[1:])))
        return IdemBegin("done", 201, op.render(_row(op, reply)))

    async def idem_begin(self, user_id: str, key: str, fingerprint: str,
                         now: float) -> IdemBegin:
        out = await self._current("idem_begin", now, user_id, key, fingerprint,
                                  IDEMPOTENCY_STALE_SECONDS, IDEMPOTENCY_TTL_SECONDS)
        if out[0] == "replay":
            return IdemBegin("replay", int(out[1]), out[2])
        return IdemBegin(out[0])  # type: ignore[arg-type]

    async def idem_finish(self, user_id: str, key: str, status: int, body: str) -> None:
        await self._current("idem_finish", 0.0, user_id, key, status, body)

    async def idem_abort(self, user_id: str, key: str) -> None:
        await self._current("idem_abort", 0.0, user_id, key)


def _take(items: list[Any]) -> tuple[dict[str, str], list[Any]]:
    """A hash an order script returned as `n, n flat items`, and what follows it."""
    n = int(items[0])
    flat = items[1:1 + n]
    return dict(zip(flat[::2], flat[1::2], strict=True)), items[1 + n:]


def _row(op: CreateOp, reply: list[Any]) -> Any:
    """What a reserve or claim script's reply (after 'ok') holds, as `op.render` takes it."""
    if op.kind == "claim":
        return ClaimRow.from_fields(dict(zip(reply[::2], reply[1::2], strict=True)))
    if op.kind == "open_group":
        order, rest = _take(reply[1:])
        group, rest = _take(rest)
        return GroupRow.from_fields(group, rest[1:]), OrderRow.from_fields(order)
    return _order_row(reply)


def _order_row(reply: list[Any]) -> OrderRow:
    """The order an order script returned after its id."""
    return OrderRow.from_fields(_take(reply[1:])[0])


def _backend_errors_as_unavailable(cls: type) -> type:
    """Wrap every public coroutine so a Redis outage is a 503, never a 500 (the private
    helpers are only reached through them, so they need no handlers of their own)."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not inspect.iscoroutinefunction(fn):
            continue

        def wrap(f: Any) -> Any:
            @functools.wraps(f)
            async def guarded(*args: Any, **kw: Any) -> Any:
                try:
                    return await f(*args, **kw)
                except BACKEND_ERRORS as exc:
                    raise StoreUnavailable(f"Redis: {exc}") from exc
            return guarded
        setattr(cls, name, wrap(fn))
    return cls


_backend_errors_as_unavailable(RedisStore)
