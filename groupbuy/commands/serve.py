"""`groupbuy serve SCENARIO`: run the reference checkout server (uvicorn) for a scenario."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys

from campaign.scenario import load_scenario
from groupbuy.commands._common import RESULTS, add_scenario_arg
from reference_server.stores.base import Store

DEFAULT_STORE = f"sqlite:///{RESULTS / 'server.sqlite3'}"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the reference checkout server for a scenario",
                       description="Serve the checkout contract (reference_server/CONTRACT.md) "
                       "for the scenario's [campaign]; state survives restarts.")
    add_scenario_arg(p)
    p.add_argument("--store", default=DEFAULT_STORE, metavar="URL",
                   help="sqlite:///rel/path, sqlite:////abs/path, postgresql://…[?schema=s], "
                   "redis://…[?prefix=p], or unsafe:///path (deliberately oversells; demos "
                   f"only). Default: {DEFAULT_STORE}")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="uvicorn worker processes (default 1)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000,
                   help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--admin-token", default=None, metavar="T",
                   help="admin bearer token (default: $GROUPBUY_ADMIN_TOKEN, else a random one, "
                   "printed)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from groupbuy.cli import UsageError
    from reference_server.errors import StoreUnavailable
    from reference_server.stores import store_from_url

    if not 1 <= args.workers <= 64:
        raise UsageError("--workers: from 1 to 64")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port: from 0 to 65535")
    load_scenario(args.scenario)  # a bad scenario is a one-line-per-problem error, exit 2
    try:
        store = store_from_url(args.store)
    except ValueError as exc:
        raise UsageError(f"--store: {exc}") from None
    try:  # fail here, in one line, rather than in every worker with a traceback
        asyncio.run(_open_and_close(store))
    except (StoreUnavailable, OSError) as exc:
        raise UsageError(f"--store: cannot open {args.store}: {' '.join(str(exc).split())}"
                         ) from None
    token = args.admin_token or os.environ.get("GROUPBUY_ADMIN_TOKEN") or secrets.token_hex(16)
    port = args.port or _free_port(args.host)
    os.environ.update(GROUPBUY_STORE=args.store, GROUPBUY_ADMIN_TOKEN=token,
                      GROUPBUY_SCENARIO=os.path.abspath(args.scenario))

    import uvicorn

    print(f"groupbuy serve: http://{args.host}:{port}  (store {args.store}, "
          f"{args.workers} worker(s); Ctrl-C stops)", flush=True)
    print(f"admin token: {token}", flush=True)
    if not store.safe:
        from reference_server.stores.unsafe import WARNING
        print(f"WARNING: {WARNING}", file=sys.stderr, flush=True)
    try:
        uvicorn.run("reference_server.app:app_from_env", factory=True, host=args.host,
                    port=port, workers=args.workers, log_level=args.log_level,
                    access_log=False)
    except OSError as exc:
        print(f"groupbuy serve: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
        return 2
    return 0


async def _open_and_close(store: Store) -> None:
    await store.open()
    await store.close()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
