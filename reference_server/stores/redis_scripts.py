"""The Redis store's Lua scripts over one pipelined connection per worker process.

Every state change of the Redis store is one `EVALSHA`. Sent through redis-py's pool, each call
checked a connection out and in, packed its arguments in pure Python and went through retry and
observability wrappers: in the profile of hot-SKU reserve+pay that cost more CPU than the rest
of the request (docs/server.md). Here every call is written to one connection and the replies
come back in order (Redis runs one connection's commands in order, and each script is atomic),
parsed by hiredis. Nothing is retried: a call whose connection fails raises redis-py's
`ConnectionError` (a 503 to the client, who retries under the same `Idempotency-Key`); the next
call connects again. A script Redis does not know (after a restart) is loaded and sent again.
redis-py still carries every other command (reads, scans, set-up)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from typing import Any

import hiredis
from redis import exceptions as rexc
from redis.asyncio.connection import parse_url

REPLY_TIMEOUT_SECONDS = 10.0
"""A reply later than this means the connection is stuck: it is closed and its calls fail."""
CONNECT_TIMEOUT_SECONDS = 5.0


class _Pipe(asyncio.Protocol):
    """One connection: requests written in order, each reply resolves the oldest waiter."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future, _ = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked
            self.close(rexc.ConnectionError(f"bad reply stream ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rexc.ConnectionError(f"connection lost ({exc or 'closed'})"))

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self.lost is not None or self.transport is None:
            raise self.lost or rexc.ConnectionError("not connected")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((future, time.monotonic()))
        if not self._out:  # one write per event-loop pass for every call made in it
            loop.call_soon(self._flush)
        self._out.append(hiredis.pack_command(args))
        return future

    def _flush(self) -> None:
        if self.transport is not None and self._out and self.lost is None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def stuck(self, now: float) -> bool:
        return bool(self.waiting) and now - self.waiting[0][1] > REPLY_TIMEOUT_SECONDS

    def close(self, exc: Exception) -> None:
        self._fail(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        self.lost = self.lost or exc
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)


class ScriptChannel:
    """Runs named Lua scripts (`call(name, args)`) over one pipelined connection."""

    def __init__(self, url: str, scripts: dict[str, str]) -> None:
        self.url = url
        self.bodies = scripts
        self.shas = {n: hashlib.sha1(body.encode()).hexdigest() for n, body in scripts.items()}
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def call(self, name: str, args: list[str]) -> Any:
        """The script's reply; `ResponseError` for an error it raised, `ConnectionError` (or
        `BusyLoadingError`) when Redis cannot answer.

        A call whose connection was lost is sent once more on a new connection, as redis-py's
        retry did: every script is safe to run twice (a key's request replays its recorded
        answer, paying or cancelling twice answers the order as it is)."""
        for attempt in range(2):
            try:
                return await self._call(name, args)
            except rexc.ConnectionError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _call(self, name: str, args: list[str]) -> Any:
        pipe = await self._connected()
        reply = await pipe.send(("EVALSHA", self.shas[name], "0", *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            loaded = await pipe.send(("SCRIPT", "LOAD", self.bodies[name]))
            _raise_for(loaded)
            reply = await pipe.send(("EVALSHA", self.shas[name], "0", *args))
        _raise_for(reply)
        return reply

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._pipe is not None:
            self._pipe.close(rexc.ConnectionError("the store is closed"))
            self._pipe = None

    async def _connected(self) -> _Pipe:
        pipe = self._pipe
        if pipe is not None and pipe.lost is None:
            return pipe
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one reconnect for every call that found it broken
            if self._pipe is None or self._pipe.lost is not None:
                self._pipe = await self._connect()
            if self._watchdog is None:
                self._watchdog = asyncio.create_task(self._watch())
            return self._pipe

    async def _connect(self) -> _Pipe:
        opts = parse_url(self.url)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                if "path" in opts:
                    _, pipe = await loop.create_unix_connection(_Pipe, opts["path"])
                else:
                    tls = ssl.create_default_context() if self.url.startswith("rediss:") else None
                    _, pipe = await loop.create_connection(
                        _Pipe, opts.get("host", "localhost"), opts.get("port", 6379), ssl=tls)
                hello: list[tuple[Any, ...]] = []
                if opts.get("password"):
                    hello.append(("AUTH", *([opts["username"]] if opts.get("username") else []),
                                  opts["password"]))
                if opts.get("db"):
                    hello.append(("SELECT", str(opts["db"])))
                for reply in await asyncio.gather(*[pipe.send(cmd) for cmd in hello]):
                    _raise_for(reply)
        except (OSError, TimeoutError) as exc:
            raise rexc.ConnectionError(f"cannot connect ({exc})") from exc
        except rexc.ResponseError as exc:
            raise rexc.ConnectionError(str(exc)) from exc
        return pipe

    async def _watch(self) -> None:
        """Close a connection whose oldest call waits too long (Redis hung, network gone)."""
        while True:
            await asyncio.sleep(1.0)
            pipe = self._pipe
            if pipe is not None and pipe.lost is None and pipe.stuck(time.monotonic()):
                pipe.close(rexc.TimeoutError(f"no reply in {REPLY_TIMEOUT_SECONDS:g} s"))


def _raise_for(reply: Any) -> None:
    if isinstance(reply, hiredis.ReplyError):
        text = str(reply)
        if text.startswith("LOADING"):
            raise rexc.BusyLoadingError(text)
        raise rexc.ResponseError(text)
