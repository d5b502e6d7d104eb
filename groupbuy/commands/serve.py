"""`groupbuy serve SCENARIO`: run the reference checkout server (uvicorn) for a scenario.

Nothing is written before the port and the store are claimed: the listening socket is bound
first, a SQLite file is locked against a second server, the store's durability is read, and a
store holding orders of a different campaign is left alone unless `--reset` says otherwise."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from typing import IO

from campaign.rules import CampaignRules
from campaign.scenario import load_scenario
from groupbuy.commands._common import (
    RESULTS,
    Renamed,
    add_admin_token_args,
    add_scenario_arg,
    admin_token_from,
)
from reference_server.stores import redact_url
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
                   "only)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="uvicorn worker processes")
    p.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (0.0.0.0: every IPv4 interface, :: every IPv6 "
                   "one)")
    p.add_argument("--host", dest="listen", action=Renamed, new="--listen")  # the old name
    p.add_argument("--port", type=int, default=8000,
                   help="TCP port to listen on (0 picks a free one and prints it)")
    add_admin_token_args(p, "the server's", "$GROUPBUY_ADMIN_TOKEN, else a random one written "
                         "to a private file; its path is printed")
    p.add_argument("--reset", action="store_true",
                   help="the store holds orders of a different campaign: DELETE them and "
                   "serve this one (without it, serve refuses and changes nothing)")
    p.add_argument("--allow-unsafe-durability", action="store_true",
                   help="serve even when the store's settings can lose acknowledged orders "
                   "(e.g. Redis without appendfsync always); /v1/health still says so")
    p.add_argument("--max-in-flight", type=int, default=1024, metavar="N",
                   help="requests each worker serves at once; more get 503 overloaded with "
                   "Retry-After")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="what uvicorn logs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from groupbuy.cli import UsageError
    from reference_server.errors import StoreUnavailable
    from reference_server.startup import CampaignConflict
    from reference_server.stores import store_from_url

    if not 1 <= args.workers <= 64:
        raise UsageError("--workers: from 1 to 64")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port: from 0 to 65535")
    if not 1 <= args.max_in_flight <= 100_000:
        raise UsageError("--max-in-flight: from 1 to 100000")
    rules = load_scenario(args.scenario).campaign  # a bad scenario: one line per problem, exit 2
    shown = redact_url(args.store)
    try:
        store = store_from_url(args.store)
    except ValueError as exc:
        raise UsageError(f"--store: {redact_url(str(exc))}") from None
    token, token_source = _admin_token(args)
    from groupbuy.workers import listen, serve  # uvicorn: the server extra, when serving

    try:  # claim the port first: a second server must not touch the running one's store
        socks = listen(args.listen, args.port, args.workers)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}:{args.port}: {exc.strerror}") from None
    with contextlib.ExitStack() as stack:
        for sock in socks:
            stack.callback(sock.close)
        lock = _claim_store(store)
        if lock is not None:
            stack.enter_context(lock)
        try:  # one line here rather than a traceback in every worker
            outcome, warning = asyncio.run(_prepare(store, rules, args))
        except (StoreUnavailable, OSError) as exc:
            raise UsageError(f"--store: cannot open {shown}: "
                             f"{redact_url(' '.join(str(exc).split()))}") from None
        except CampaignConflict as exc:
            raise UsageError(f"--store {shown}: {exc}") from None
        if warning and not args.allow_unsafe_durability and store.safe:
            raise UsageError(f"--store {shown}: {warning}. Fix the setting, or accept the risk "
                             "with --allow-unsafe-durability")
        port = socks[0].getsockname()[1]
        os.environ.update(GROUPBUY_STORE=args.store, GROUPBUY_ADMIN_TOKEN=token,
                          GROUPBUY_SCENARIO=os.path.abspath(args.scenario),
                          GROUPBUY_MAX_IN_FLIGHT=str(args.max_in_flight))
        shown_host = f"[{args.listen}]" if ":" in args.listen else args.listen
        print(f"groupbuy serve: http://{shown_host}:{port}  (store {shown}, {args.workers} "
              f"worker(s), campaign {outcome}; Ctrl-C stops)", flush=True)
        print(f"admin token: {token_source}", flush=True)
        if not store.safe:
            from reference_server.stores.unsafe import WARNING
            print(f"WARNING: {WARNING}", file=sys.stderr, flush=True)
        if warning:
            print(f"WARNING: {warning} (--allow-unsafe-durability)", file=sys.stderr, flush=True)
        serve("reference_server.app:app_from_env", socks, args.listen, args.workers,
              args.log_level)
    return 0


async def _prepare(store: Store, rules: CampaignRules,
                   args: argparse.Namespace) -> tuple[str, str | None]:
    """Open the store, read its durability, reconcile the campaign; close it again."""
    from reference_server.startup import reconcile_sale

    await store.open()
    try:
        durability = await store.durability()
        if durability.warning and not args.allow_unsafe_durability and store.safe:
            return "untouched", durability.warning  # refuse before writing anything
        outcome = await reconcile_sale(store, rules, time.time(), reset=args.reset)
        return outcome, durability.warning
    finally:
        await store.close()


def _admin_token(args: argparse.Namespace) -> tuple[str, str]:
    """The admin token and where it is (never what it is): a file, the environment, else a
    random one kept in a private file."""
    from reference_server.auth import private_file, state_dir

    token, source = admin_token_from(args)
    if token is not None:
        return token, source
    file = state_dir() / "admin-token"
    return private_file(file, secrets.token_hex(16)), f"in {file} (read it from there)"


def _claim_store(store: Store) -> contextlib.AbstractContextManager[None] | None:
    """A SQLite file serves one server at a time: lock it for this process's lifetime."""
    from groupbuy.cli import UsageError
    from reference_server.stores.sqlite import SqliteStore, StoreInUse

    if not isinstance(store, SqliteStore):
        return None
    try:
        return _held(store.claim())
    except StoreInUse as exc:
        raise UsageError(f"--store: {exc}") from None


@contextlib.contextmanager
def _held(handle: IO[str]) -> Iterator[None]:
    try:
        yield
    finally:
        handle.close()
