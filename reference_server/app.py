"""The FastAPI app: lifespan (store, secret, scenario, background expiry), error mapping, and
the routers of `api/`.

`create_app(config)` builds an app; `app_from_env()` is the uvicorn factory each worker process
calls (configuration comes from `GROUPBUY_*` environment variables, see `ServerConfig`)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaign.scenario import load_scenario
from reference_server import CONTRACT_VERSION
from reference_server.api.hot import HotRoutes
from reference_server.api.main import ROUTERS
from reference_server.api.shedding import LoadShedder
from reference_server.api.steps import expire_now
from reference_server.errors import ApiError, StoreUnavailable, unavailable
from reference_server.startup import reconcile_sale
from reference_server.stores import store_from_url
from reference_server.stores.base import Store

log = logging.getLogger("reference_server")


@dataclass(frozen=True)
class ServerConfig:
    """How a server process starts: its store, its admin token, the scenario it loads."""

    store_url: str
    admin_token: str
    scenario: str | None = None
    secret: str | None = None
    """User-token secret; by default one is created in the store, shared by every worker."""
    expiry_interval: float = 0.5
    max_in_flight: int = 1024
    """Requests a worker process serves at once; more are shed with `503 overloaded`."""

    @classmethod
    def from_env(cls) -> ServerConfig:
        env = os.environ
        return cls(store_url=env["GROUPBUY_STORE"], admin_token=env["GROUPBUY_ADMIN_TOKEN"],
                   scenario=env.get("GROUPBUY_SCENARIO") or None,
                   secret=env.get("GROUPBUY_SECRET") or None,
                   expiry_interval=float(env.get("GROUPBUY_EXPIRY_INTERVAL", "0.5")),
                   max_in_flight=int(env.get("GROUPBUY_MAX_IN_FLIGHT", "1024")))


def error(code: str, message: str) -> JSONResponse:
    err = ApiError(code, message)
    return JSONResponse(err.body(), status_code=err.status)


async def _expiry_loop(store: Store, clock: Callable[[], float], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await expire_now(store, clock)
        except Exception:  # keep expiring after a backend hiccup; the next pass retries
            log.exception("expiry pass failed")


def create_app(config: ServerConfig, clock: Callable[[], float] = time.time) -> FastAPI:
    """The checkout app. `clock` is injectable so tests can move time forward."""
    store: Store = store_from_url(config.store_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        app.state.durability = await store.durability()
        app.state.secret = config.secret or await store.secret(secrets.token_hex(32))
        if config.scenario:  # never replaces a campaign that holds orders (CampaignConflict)
            await reconcile_sale(store, load_scenario(config.scenario).campaign, clock())
        task = asyncio.create_task(_expiry_loop(store, clock, config.expiry_interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()

    app = FastAPI(title="group-buy reference checkout server", version=CONTRACT_VERSION,
                  lifespan=lifespan, redirect_slashes=False)
    app.state.store, app.state.clock, app.state.admin_token = store, clock, config.admin_token
    app.state.durability = None  # read from the live backend at start-up
    _add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(HotRoutes, state=app.state)
    app.add_middleware(LoadShedder, limit=config.max_in_flight)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is `{"error": {"code", "message"}}` with a stable code (CONTRACT.md)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        err = unavailable(exc)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error("invalid", "; ".join(lines) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error("not_found", f"no such path: {request.url.path}")
        if exc.status_code == 405:  # keeps Starlette's Allow header
            return JSONResponse(ApiError("method_not_allowed", f"{request.method} is not "
                                         "allowed here").body(), status_code=405,
                                headers=dict(exc.headers or {}))
        code = "unavailable" if exc.status_code >= 500 else "invalid"
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes (`--workers N`)."""
    logging.basicConfig(level=logging.INFO)
    _die_with_parent()
    return create_app(ServerConfig.from_env())


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when its parent (`groupbuy serve`) dies, even by kill -9,
    so no worker outlives it holding the port and the store."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if sys.platform != "linux" or parent is None:
        return  # not a spawned worker (e.g. `--workers 1`): leave the process alone
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent.pid:  # the parent died while this worker was starting
        os.kill(os.getpid(), signal.SIGTERM)
