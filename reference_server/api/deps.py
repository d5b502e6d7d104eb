"""Every cross-cutting request concern as a named type a route takes as a parameter: the store,
the clock, the caller (user, user-or-admin, admin), the JSON body, the export page and the
idempotency guard. All are `async def`: FastAPI runs a plain `def` dependency in a worker
thread, which cost 12 thread hops per reserve+pay (profile, docs/server.md)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from starlette.requests import ClientDisconnect

from reference_server.auth import is_admin, user_from_token
from reference_server.domain import canonical_json
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores.base import (
    LAZY_EXPIRY_CODES,
    CreateOp,
    IdemRequest,
    StaleSale,
    Store,
)

MAX_BODY_BYTES = 1_000_000
IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,128}$")
DIGITS = re.compile(r"[0-9]{1,18}")
STALE_RETRIES = 5
Clock = Callable[[], float]


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


StoreDep = Annotated[Store, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]

# -- identity ---------------------------------------------------------------------------------

class BearerIdentity(HTTPBearer):
    """The caller behind `Authorization: Bearer <token>`, as one dependency that is also the
    OpenAPI security scheme: FastAPI solves every dependency of every request anew, and a chain
    (credentials, token, caller, user) cost about a fifth of a worker's time on reserve+pay
    (profile, docs/server.md). `check(request, token)` says who it is, or raises."""

    def __init__(self, check: Callable[[Request, str], str | None]) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description="an admin "
                         "token or a user token (`POST /v1/admin/user-tokens`)")
        self.check = check

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        creds = await super().__call__(request)
        if creds is None or not creds.credentials.strip():
            raise ApiError("unauthorized", "send Authorization: Bearer <token>")
        return self.check(request, creds.credentials.strip())


def _caller(request: Request, token: str) -> str | None:
    """The user id of a user token; None for the admin token."""
    state = request.app.state
    user = user_from_token(state.secret, token, state.clock())
    if user is not None:
        return user
    if is_admin(state.admin_token, token):
        return None
    raise ApiError("unauthorized", "bad user token")


def _user(request: Request, token: str) -> str:
    user = _caller(request, token)
    if user is None:
        raise ApiError("forbidden", "this endpoint needs a user token, not the admin token")
    return user


def _admin(request: Request, token: str) -> None:
    state = request.app.state
    if is_admin(state.admin_token, token):
        return
    if user_from_token(state.secret, token, state.clock()) is not None:
        raise ApiError("forbidden", "admin only")
    raise ApiError("unauthorized", "bad admin token")


Caller = Annotated[str | None, Depends(BearerIdentity(_caller))]
"""A user id, or None for the admin token."""
CurrentUser = Annotated[str, Depends(BearerIdentity(_user))]
"""A user id (the admin token is refused: 403)."""
AdminDep = Depends(BearerIdentity(_admin))
"""For a router's `dependencies=[AdminDep]`: every route of it is admin-only."""

# -- bodies and queries -----------------------------------------------------------------------


async def _read_json(request: Request, required: bool) -> Any:
    try:
        body = await request.body()
    except ClientDisconnect:  # the client gave up (timed out): nobody to answer, nothing to log
        raise ApiError("invalid", "the client disconnected before sending its body") from None
    return decode_json(body, required)


def decode_json(body: bytes, required: bool) -> Any:
    """A request body as JSON: UTF-8 only, no NaN or Infinity, at most `MAX_BODY_BYTES`; a
    blank body reads as {} unless `required`."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError("too_large", f"body over {MAX_BODY_BYTES} bytes")
    if not body.strip() and not required:
        return {}
    if not body:
        raise ApiError("invalid", "a JSON body is required")
    try:  # UTF-8 only: json.loads would also guess UTF-16 and UTF-32 from raw bytes
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("invalid", "the body must be JSON in UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError("invalid", "the body is not valid UTF-8 JSON") from None


async def json_body(request: Request) -> Any:
    """The request's JSON body (required)."""
    return await _read_json(request, required=True)


async def optional_json_body(request: Request) -> Any:
    """The request's JSON body; an empty (or blank) body reads as {}."""
    return await _read_json(request, required=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json would accept NaN and Infinity


JsonBody = Annotated[Any, Depends(json_body)]
OptionalJsonBody = Annotated[Any, Depends(optional_json_body)]


async def page(
        after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
        limit: Annotated[str | None, Query(description="rows per page, 1-1000 (500)")] = None,
) -> tuple[int, int]:
    after_s, limit_s = after or "0", limit or "500"
    if not DIGITS.fullmatch(after_s):
        raise ApiError("invalid", "after: a cursor from a previous page")
    if not DIGITS.fullmatch(limit_s) or not 1 <= int(limit_s) <= 1000:
        raise ApiError("invalid", "limit: an integer from 1 to 1000")
    return int(after_s), int(limit_s)


Page = Annotated[tuple[int, int], Depends(page)]

# -- idempotency ------------------------------------------------------------------------------


class IdempotencyGuard:
    """Runs a creating request at most once per (user, `Idempotency-Key`) and replays its first
    response (CONTRACT.md, "Idempotency"): the store claims the key, makes the change and
    records the answer in one step (`Store.once`)."""

    def __init__(self, store: Store, clock: Clock, user: str, key: str, method: str,
                 path: str) -> None:
        self.store, self.clock, self.user, self.key = store, clock, user, key
        self._what = f"{method} {path}"
        self._fingerprint: str | None = None

    def fingerprint(self, data: Any) -> str:
        """The request's fingerprint (its method, path and body); computed once per request."""
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(
                f"{self._what} {canonical_json(data)}".encode()).hexdigest()
        return self._fingerprint

    async def run(self, data: Any, build: Callable[[float], Awaitable[CreateOp]]) -> Response:
        """`answer` as a response."""
        status, body = await self.answer(data, build)
        return Response(body, status_code=status, media_type="application/json")

    async def answer(self, data: Any,
                     build: Callable[[float], Awaitable[CreateOp]]) -> tuple[int, str]:
        """The request's answer, (status, JSON body): `build(now)` checks and prices the
        request under the loaded sale; the store runs it. Priced again when the sale changed
        meanwhile; a refusal an expired but unreleased order may cause (sold out, limit, seat)
        is retried once after expiry."""
        idem = IdemRequest(self.user, self.key, self.fingerprint(data))
        record_lazy = False
        for _ in range(STALE_RETRIES):
            now = self.clock()
            try:
                op = await build(now)
            except ApiError as exc:
                if exc.code == "invalid":  # invalid requests are not recorded (CONTRACT.md)
                    raise
                op = CreateOp("refusal", (exc,), str)
            try:
                begun = await self.store.once(idem, op, now, record_refusals=record_lazy)
            except StaleSale:
                self.store.forget_recent_sale()
                continue  # another sale was loaded meanwhile: price under that one
            except ApiError as exc:
                if exc.code not in LAZY_EXPIRY_CODES or record_lazy:
                    raise
                await self.store.expire_due(self.clock())
                record_lazy = True
                continue
            break
        else:
            raise StoreUnavailable("the sale kept changing while pricing the request")
        if begun.state == "mismatch":
            raise ApiError("idempotency_key_reused", "this Idempotency-Key was used for a "
                           "different request")
        if begun.state == "in_flight":
            raise ApiError("in_flight", "a request with this Idempotency-Key is in progress")
        return begun.status, begun.body


async def idempotency_guard(request: Request, user: CurrentUser, key: Annotated[str, Header(
        alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY.pattern,
        description="1-128 printable ASCII characters, unique per user and request")],
                            ) -> IdempotencyGuard:
    if not IDEMPOTENCY_KEY.fullmatch(key):  # the header pattern already said so; belt and braces
        raise ApiError("invalid", "Idempotency-Key header: 1-128 printable ASCII characters")
    state = request.app.state
    return IdempotencyGuard(state.store, state.clock, user, key, request.method, request.url.path)


Idempotent = Annotated[IdempotencyGuard, Depends(idempotency_guard)]
