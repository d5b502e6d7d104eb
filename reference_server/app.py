"""The FastAPI app: validation, identity, idempotency and error mapping over a `Store`.

`create_app(config)` builds an app; `app_from_env()` is the uvicorn factory each worker process
calls (configuration comes from `GROUPBUY_*` environment variables, see `ServerConfig`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaign.errors import problems_from_validation
from campaign.pricing import to_cents
from campaign.rules import CampaignRules
from campaign.scenario import load_scenario
from reference_server import CONTRACT_VERSION
from reference_server.auth import USER_ID, is_admin, user_from_token, user_token
from reference_server.domain import (
    Sale,
    canonical_json,
    group_view,
    order_view,
    price_now,
    quote,
    sale_from_record,
)
from reference_server.errors import ApiError, StoreUnavailable
from reference_server.stores import store_from_url
from reference_server.stores.base import ReserveRequest, SaleRecord, Store
from reference_server.stores.unsafe import WARNING as UNSAFE_WARNING

log = logging.getLogger("reference_server")

MAX_BODY_BYTES = 1_000_000
MAX_TOKENS_PER_CALL = 10_000
ID = USER_ID  # SKU, order, group and coupon ids follow the user-id pattern
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
Ident = Annotated[str, Field(pattern=ID.pattern)]
M = TypeVar("M", bound=BaseModel)
DIGITS = re.compile(r"[0-9]{1,18}")
LAZY_EXPIRY_CODES = frozenset({"sold_out", "limit_reached", "group_full"})


@dataclass(frozen=True)
class ServerConfig:
    """How a server process starts: its store, its admin token, the scenario it loads."""

    store_url: str
    admin_token: str
    scenario: str | None = None
    secret: str | None = None
    """User-token secret; by default one is created in the store, shared by every worker."""
    expiry_interval: float = 0.5

    @classmethod
    def from_env(cls) -> ServerConfig:
        env = os.environ
        return cls(store_url=env["GROUPBUY_STORE"], admin_token=env["GROUPBUY_ADMIN_TOKEN"],
                   scenario=env.get("GROUPBUY_SCENARIO") or None,
                   secret=env.get("GROUPBUY_SECRET") or None,
                   expiry_interval=float(env.get("GROUPBUY_EXPIRY_INTERVAL", "0.5")))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReserveBody(_Body):
    sku_id: Ident
    quantity: StrictInt = Field(ge=1, le=1000)
    coupon_id: Ident | None = None
    group_id: Ident | None = None


class OpenGroupBody(_Body):
    sku_id: Ident
    quantity: StrictInt = Field(ge=1, le=1000)
    coupon_id: Ident | None = None


class SaleBody(_Body):
    campaign: dict[str, Any]
    payment_timeout_seconds: StrictFloat | StrictInt | None = Field(None, gt=0, le=30 * 86400)
    group_window_seconds: StrictFloat | StrictInt | None = Field(None, gt=0, le=365 * 86400)
    start: StrictFloat | StrictInt | None = Field(None, ge=0, le=1e11)


class UserTokensBody(_Body):
    user_ids: list[Annotated[str, Field(pattern=USER_ID.pattern)]] = Field(
        max_length=MAX_TOKENS_PER_CALL)


def sale_record(rules: CampaignRules, start: float, payment_timeout: float | None = None,
                group_window: float | None = None) -> SaleRecord:
    """The stored form of a sale; timings default to the campaign's own."""
    pt = payment_timeout if payment_timeout is not None else rules.payment_timeout_minutes * 60
    gw = group_window
    if gw is None:
        gw = rules.groups.window_hours * 3600 if rules.groups else 0.0
    return SaleRecord(canonical_json(rules.model_dump(mode="json")), start, float(pt), float(gw))


def error(code: str, message: str) -> JSONResponse:
    err = ApiError(code, message)
    return JSONResponse(err.body(), status_code=err.status)


def create_app(config: ServerConfig, clock: Callable[[], float] = time.time) -> FastAPI:
    """The checkout app. `clock` is injectable so tests can move time forward."""
    store: Store = store_from_url(config.store_url)
    secret_box: dict[str, str] = {}

    async def expiry_loop() -> None:
        while True:
            await asyncio.sleep(config.expiry_interval)
            try:
                await store.expire_due(clock())
            except Exception:  # keep expiring after a backend hiccup; the next pass retries
                log.exception("expiry pass failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        secret_box["secret"] = config.secret or await store.secret(secrets.token_hex(32))
        if config.scenario:
            rules = load_scenario(config.scenario).campaign
            await store.load_sale(sale_record(rules, clock()), if_absent=True)
        task = asyncio.create_task(expiry_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()

    app = FastAPI(title="group-buy reference checkout server", version=CONTRACT_VERSION,
                  lifespan=lifespan, redirect_slashes=False)
    app.state.store = store

    # -- errors -----------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("store unavailable: %s", exc)
        return error("unavailable", "the store is unavailable; retry later")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error("invalid", "; ".join(lines) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error("not_found", f"no such path: {request.url.path}")
        if exc.status_code == 405:
            return error("method_not_allowed", f"{request.method} is not allowed here")
        code = "unavailable" if exc.status_code >= 500 else "invalid"
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code)

    # -- request helpers --------------------------------------------------------------------
    def bearer(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("unauthorized", "send Authorization: Bearer <token>")
        return token.strip()

    def require_admin(request: Request) -> None:
        token = bearer(request)
        if is_admin(config.admin_token, token):
            return
        if user_from_token(secret_box["secret"], token) is not None:
            raise ApiError("forbidden", "admin only")
        raise ApiError("unauthorized", "bad admin token")

    def caller(request: Request) -> str | None:
        """The user id of a user token; None for the admin token."""
        token = bearer(request)
        user = user_from_token(secret_box["secret"], token)
        if user is not None:
            return user
        if is_admin(config.admin_token, token):
            return None
        raise ApiError("unauthorized", "bad user token")

    def require_user(request: Request) -> str:
        user = caller(request)
        if user is None:
            raise ApiError("forbidden", "this endpoint needs a user token, not the admin token")
        return user

    async def read_json(request: Request, *, required: bool = True) -> Any:
        """The request's JSON body; an empty (or blank) body reads as {} when not `required`."""
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError("too_large", f"body over {MAX_BODY_BYTES} bytes")
        if not body.strip() and not required:
            return {}
        if not body:
            raise ApiError("invalid", "a JSON body is required")
        try:
            return json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise ApiError("invalid", "the body is not valid JSON") from None

    def parse(model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError("invalid", "; ".join(problems_from_validation(exc))) from None

    def check_id(kind: str, value: str) -> str:
        if not ID.fullmatch(value):
            raise ApiError("invalid", f"{kind}: 1-64 letters, digits, _ . -")
        return value

    async def current_sale() -> Sale:
        sale = await store.sale()
        if sale is None:
            raise ApiError("no_sale", "no sale is loaded (POST /v1/admin/sale)")
        return sale

    async def idempotent(request: Request, user: str, data: Any,
                         act: Callable[[], Awaitable[Any]]) -> Response:
        """Run `act` at most once per (user, Idempotency-Key); replay its first response."""
        key = request.headers.get("idempotency-key")
        if key is None or not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError("invalid", "Idempotency-Key header: 1-128 printable ASCII characters")
        fp = hashlib.sha256(f"{request.method} {request.url.path} {canonical_json(data)}"
                            .encode()).hexdigest()
        begun = await store.idem_begin(user, key, fp, clock())
        if begun.state == "replay":
            return Response(begun.body, status_code=begun.status,
                            media_type="application/json")
        if begun.state == "mismatch":
            raise ApiError("idempotency_key_reused", "this Idempotency-Key was used for a "
                           "different request")
        if begun.state == "in_flight":
            raise ApiError("in_flight", "a request with this Idempotency-Key is in progress")
        try:
            payload = await act()
            status = 201
        except ApiError as exc:
            if exc.code == "invalid":  # invalid requests are not recorded (CONTRACT.md)
                with contextlib.suppress(Exception):
                    await store.idem_abort(user, key)
                raise
            if exc.code == "in_flight":  # the store saw the key's first request still running
                raise
            payload, status = exc.body(), exc.status
        except BaseException:
            with contextlib.suppress(Exception):
                await store.idem_abort(user, key)
            raise
        body = json.dumps(payload)
        await store.idem_finish(user, key, status, body)
        return Response(body, status_code=status, media_type="application/json")

    async def with_lazy_expiry(fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run `fn`; if stock looked sold out, the user's limit reached or the group full
        (each possibly held by an expired, not yet released order), expire what is due and
        try once more."""
        try:
            return await fn()
        except ApiError as exc:
            if exc.code not in LAZY_EXPIRY_CODES:
                raise
            expired, _ = await store.expire_due(clock())
            if not expired:
                raise
            return await fn()

    # -- anyone -----------------------------------------------------------------------------
    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        sale = await store.sale()
        out: dict[str, Any] = {"status": "ok", "contract": CONTRACT_VERSION,
                               "store": store.scheme, "sale": sale.name if sale else None,
                               "safe": store.safe}
        if not store.safe:
            out["warning"] = UNSAFE_WARNING
        return out

    @app.get("/v1/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    def sku_view(sale: Sale, sku_id: str, counters: dict[str, int]) -> dict[str, Any]:
        sku = sale.sku(sku_id)
        return {"sku_id": sku.id, "name": sku.name, "list_price": to_cents(sku.list_price),
                "price_now": price_now(sale, sku, clock()), "available": counters["available"],
                "initial": counters["initial"]}

    @app.get("/v1/skus")
    async def skus() -> dict[str, Any]:
        sale = await current_sale()
        counters = await store.skus()
        return {"skus": [sku_view(sale, s.id, counters[s.id]) for s in sale.rules.skus
                         if s.id in counters]}

    @app.get("/v1/skus/{sku_id}")
    async def sku(sku_id: str) -> dict[str, Any]:
        check_id("sku_id", sku_id)
        sale = await current_sale()
        counters = await store.skus()
        if sku_id not in counters:
            raise ApiError("not_found", f"no SKU {sku_id!r} in this sale")
        return sku_view(sale, sku_id, counters[sku_id])

    @app.get("/v1/groups/{group_id}")
    async def get_group(group_id: str) -> dict[str, Any]:
        check_id("group_id", group_id)
        found = await store.group(group_id)
        if found is None:
            raise ApiError("not_found", f"no group {group_id!r}")
        row, _ = found
        if row["status"] == "open" and float(row["deadline"]) <= clock():
            await store.expire_due(clock())
            found = await store.group(group_id)
            assert found is not None
        return group_view(found[0], found[1], await store.sale())

    # -- users ------------------------------------------------------------------------------
    @app.post("/v1/orders")
    async def reserve(request: Request) -> Response:
        user = require_user(request)
        data = await read_json(request)
        body = parse(ReserveBody, data)

        async def act() -> dict[str, Any]:
            req = ReserveRequest(user, body.sku_id, body.quantity,
                                 request.headers["idempotency-key"], body.coupon_id,
                                 body.group_id)
            return order_view(await with_lazy_expiry(lambda: store.reserve(req, clock())))
        return await idempotent(request, user, data, act)

    @app.get("/v1/orders/{order_id}")
    async def get_order(order_id: str, request: Request) -> dict[str, Any]:
        user = caller(request)
        check_id("order_id", order_id)
        row = await store.order(order_id)
        if row is None:
            raise ApiError("not_found", f"no order {order_id!r}")
        if user is not None and row["user_id"] != user:
            raise ApiError("forbidden", "this order belongs to another user")
        return order_view(row)

    @app.post("/v1/orders/{order_id}/pay")
    async def pay(order_id: str, request: Request) -> dict[str, Any]:
        user = require_user(request)
        check_id("order_id", order_id)
        return order_view(await store.pay(order_id, user, clock()))

    @app.post("/v1/orders/{order_id}/cancel")
    async def cancel(order_id: str, request: Request) -> dict[str, Any]:
        user = require_user(request)
        check_id("order_id", order_id)
        return order_view(await store.cancel(order_id, user, clock()))

    @app.post("/v1/groups")
    async def open_group(request: Request) -> Response:
        user = require_user(request)
        data = await read_json(request)
        body = parse(OpenGroupBody, data)

        async def act() -> dict[str, Any]:
            req = ReserveRequest(user, body.sku_id, body.quantity,
                                 request.headers["idempotency-key"], body.coupon_id)
            group, order = await with_lazy_expiry(lambda: store.open_group(req, clock()))
            found = await store.group(group["group_id"])
            ids = found[1] if found else [order["order_id"]]
            return {"group": group_view(group, ids, await store.sale()),
                    "order": order_view(order)}
        return await idempotent(request, user, data, act)

    @app.post("/v1/coupons/{coupon_id}/claim")
    async def claim(coupon_id: str, request: Request) -> Response:
        user = require_user(request)
        check_id("coupon_id", coupon_id)
        if await read_json(request, required=False) != {}:
            raise ApiError("invalid", "the claim body must be empty or {}")

        async def act() -> dict[str, Any]:
            row = await store.claim_coupon(coupon_id, user, request.headers["idempotency-key"],
                                           clock())
            return {k: row[k] for k in ("claim_id", "coupon_id", "user_id", "claimed_at")}
        return await idempotent(request, user, {}, act)

    # -- admin ------------------------------------------------------------------------------
    @app.post("/v1/admin/sale")
    async def load_sale(request: Request) -> dict[str, Any]:
        require_admin(request)
        body = parse(SaleBody, await read_json(request))
        try:
            rules = CampaignRules.model_validate(body.campaign)
        except ValidationError as exc:
            lines = [f"campaign.{p}" for p in problems_from_validation(exc)]
            raise ApiError("invalid", "\n".join(lines)) from None
        record = sale_record(rules, body.start if body.start is not None else clock(),
                             body.payment_timeout_seconds, body.group_window_seconds)
        _check_prices(sale_from_record(record.campaign_json, record.start,
                                       record.payment_timeout, record.group_window))
        await store.load_sale(record, if_absent=False)
        return {"sale": rules.name, "start": record.start,
                "payment_timeout_seconds": record.payment_timeout,
                "group_window_seconds": record.group_window,
                "skus": await store.skus()}

    @app.post("/v1/admin/reset")
    async def reset(request: Request) -> dict[str, Any]:
        require_admin(request)
        await store.reset()
        return {"sale": (await current_sale()).name, "skus": await store.skus()}

    @app.post("/v1/admin/user-tokens")
    async def user_tokens(request: Request) -> dict[str, Any]:
        require_admin(request)
        body = parse(UserTokensBody, await read_json(request))
        return {"tokens": {u: user_token(secret_box["secret"], u) for u in body.user_ids}}

    @app.post("/v1/admin/expire")
    async def expire(request: Request) -> dict[str, int]:
        require_admin(request)
        expired, closed = await store.expire_due(clock())
        return {"expired_orders": expired, "closed_groups": closed}

    @app.get("/v1/admin/ledger")
    async def ledger(request: Request) -> dict[str, Any]:
        require_admin(request)
        sale = await current_sale()
        return {"sale": sale.name, "sale_id": sale.sale_id, "start": sale.start,
                "payment_timeout_seconds": sale.payment_timeout,
                "group_window_seconds": sale.group_window, "now": clock(),
                "skus": await store.skus(), **await store.ledger_counts()}

    def page(request: Request) -> tuple[int, int]:
        after_s = request.query_params.get("after") or "0"
        limit_s = request.query_params.get("limit") or "500"
        if not DIGITS.fullmatch(after_s):
            raise ApiError("invalid", "after: a cursor from a previous page")
        if not DIGITS.fullmatch(limit_s) or not 1 <= int(limit_s) <= 1000:
            raise ApiError("invalid", "limit: an integer from 1 to 1000")
        return int(after_s), int(limit_s)

    @app.get("/v1/admin/orders")
    async def export_orders(request: Request) -> dict[str, Any]:
        require_admin(request)
        rows, nxt = await store.export("orders", *page(request))
        return {"orders": [order_view(r) for r in rows], "next": _cursor(nxt)}

    @app.get("/v1/admin/groups")
    async def export_groups(request: Request) -> dict[str, Any]:
        require_admin(request)
        rows, nxt = await store.export("groups", *page(request))
        sale = await store.sale()
        return {"groups": [group_view(r, r["order_ids"], sale) for r in rows],
                "next": _cursor(nxt)}

    @app.get("/v1/admin/coupon-claims")
    async def export_claims(request: Request) -> dict[str, Any]:
        require_admin(request)
        rows, nxt = await store.export("claims", *page(request))
        keep = ("claim_id", "coupon_id", "user_id", "claimed_at", "order_id", "idempotency_key")
        return {"claims": [{k: r.get(k) for k in keep} for r in rows], "next": _cursor(nxt)}

    return app


def _check_prices(sale: Sale) -> None:
    """Price every SKU once (alone, in a group, with each coupon) so a campaign whose numbers
    overflow the arithmetic is refused now rather than failing every later order."""
    try:
        for sku in sale.rules.skus:
            for coupon in [None, *sale.rules.coupons]:
                for in_group in (False, True):
                    quote(sale, sku, sale.rules.per_user_limit, coupon, sale.start, in_group)
    except (OverflowError, ValueError) as exc:
        raise ApiError("invalid", f"campaign: amounts out of range ({exc})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json would accept NaN and Infinity


def _cursor(seq: int | None) -> str | None:
    return None if seq is None else str(seq)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes (`--workers N`)."""
    logging.basicConfig(level=logging.INFO)
    return create_app(ServerConfig.from_env())
