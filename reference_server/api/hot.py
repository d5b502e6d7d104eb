"""The two hottest routes, reserve (`POST /v1/orders`) and pay (`POST /v1/orders/{id}/pay`),
served below FastAPI's routing and dependency injection when the caller is a user with a
well-formed request: a user token and (reserve) a valid `Idempotency-Key`. Any other request
(no or bad token, the admin token, a missing key, another path) falls through to the FastAPI
routes, which answer it as they always have and which the OpenAPI spec describes.

Both paths call the same functions (`orders.reserve_answer`, `orders.pay_answer`) and render
errors the same way (`ApiError`, `errors.unavailable`), so a request gets the same answer either
way. Why it exists: in the profile of hot-SKU reserve+pay, FastAPI's route matching and
dependency solving cost more CPU than the checkout itself (docs/server.md)."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.datastructures import State
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.api.deps import IDEMPOTENCY_KEY, MAX_BODY_BYTES, IdempotencyGuard, decode_json
from reference_server.api.models import ID
from reference_server.api.routes.orders import pay_answer, reserve_answer
from reference_server.auth import user_from_token
from reference_server.errors import ApiError, StoreUnavailable, unavailable

RESERVE = "/v1/orders"
ORDERS, PAY = "/v1/orders/", "/pay"


class HotRoutes:
    """Pure ASGI middleware in front of the app's routes; `state` is the app's state (store,
    clock, secret)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == RESERVE:
                await self._reserve(scope, receive, send)
                return
            if path.startswith(ORDERS) and path.endswith(PAY):
                order_id = path[len(ORDERS):-len(PAY)]
                user = self._user(scope) if ID.fullmatch(order_id) else None
                if user is not None:
                    await _answer(send, *await _guarded(
                        pay_answer(self.state.store, order_id, user, self.state.clock())))
                    return
        await self.app(scope, receive, send)

    def _user(self, scope: Scope) -> str | None:
        """The user behind a valid user token in `Authorization: Bearer`, else None."""
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return user_from_token(self.state.secret, token.strip(), self.state.clock())

    async def _reserve(self, scope: Scope, receive: Receive, send: Send) -> None:
        user, key = self._user(scope), _header(scope, b"idempotency-key")
        if user is None or key is None or not IDEMPOTENCY_KEY.fullmatch(key):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body: nobody to answer
        if not complete:  # over the limit: the route answers `too_large` as it always has
            await self.app(scope, _replay(body, more=True, receive=receive), send)
            return
        state = self.state
        guard = IdempotencyGuard(state.store, state.clock, user, key, "POST", RESERVE)
        try:
            data = decode_json(body, required=True)
        except ApiError as exc:
            await _answer(send, exc.status, exc)
            return
        await _answer(send, *await _guarded(reserve_answer(guard, data)))


async def _guarded(call: Awaitable[tuple[int, str]]) -> tuple[int, str | ApiError]:
    """(status, JSON body) of a route's answer, or the error the app's handlers would render."""
    try:
        return await call
    except ApiError as exc:
        return exc.status, exc
    except StoreUnavailable as exc:
        err = unavailable(exc)
        return err.status, err


async def _answer(send: Send, status: int, body: str | ApiError) -> None:
    if isinstance(body, ApiError):  # rendered exactly as the app's exception handlers do
        raw = JSONResponse(body.body(), status_code=status).body
    else:
        raw = body.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-length", str(len(raw)).encode()), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive) -> tuple[bytes | None, bool]:
    """The request body and whether it is all there (False past `MAX_BODY_BYTES`); None when
    the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY_BYTES:
            return b"".join(chunks), False


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` for the app behind: the part of the body already read, then the rest."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": more}
    return again
