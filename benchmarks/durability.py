"""Durability matrix: acknowledged orders lost per kill -9 of the store, per store setting.

    .venv/bin/python benchmarks/durability.py [--settings redis-always,postgres-off,…]
                                              [--kills 2] [--seconds 12] [--rate-scale 2]

For each setting, a private store (`loadtests.instances`: redis-server or initdb/pg_ctl on a
free port, never the shared services) or a SQLite file backs the reference server, and
`groupbuy loadtest`'s harness drives the flash sale against it while its `[faults]` crash the
store mid-run: `restart_store` runs `python -m loadtests.instances restart FOLDER` (kill -9,
start again on the same data) for Redis and PostgreSQL; for SQLite, which lives inside the
server, `kill_server` kills every server process and restarts it on the same file. Then the
checker compares what clients were told with what the store kept: acknowledged orders
missing afterwards, divided by the kills, is the figure.

A process kill is not a power cut: data the store wrote into the operating system's page
cache survives it. So settings that only lose on an OS crash (Redis `appendfsync everysec`,
SQLite `synchronous=NORMAL`) show no loss here, and the table says so instead of calling them
safe. Prints the table and writes results/benchmarks/durability.md and .json.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _results import write_results

from campaign.load import Faults, StoreRestart
from loadtests.harness import run_loadtest
from loadtests.history import read_run
from loadtests.instances import InstanceError, PrivatePostgres, PrivateRedis
from loadtests.plan import ScenarioFile
from loadtests.state import FinalState

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "flash_sale.toml"


@dataclass(frozen=True)
class Setting:
    """One store setting of the matrix."""

    name: str
    store: str
    """redis, postgres or sqlite"""
    option: str
    documented: bool
    """The setting docs/server.md recommends (must lose nothing)."""
    process_kill_shows: str
    """What a process kill can show for it."""


SETTINGS = [
    Setting("redis-always", "redis", "appendonly yes, appendfsync always", True,
            "every acknowledged write was fsynced: none lost"),
    Setting("redis-everysec", "redis", "appendonly yes, appendfsync everysec", False,
            "loses up to ~1 s only on an OS crash or power cut; a process kill keeps the page "
            "cache, so it cannot show that loss"),
    Setting("redis-none", "redis", "no persistence (appendonly no, no snapshots)", False,
            "everything is lost with the process"),
    Setting("postgres-on", "postgres", "synchronous_commit = on", True,
            "a commit is acknowledged after its WAL is flushed: none lost"),
    Setting("postgres-off", "postgres", "synchronous_commit = off", False,
            "commits still in the WAL buffers (shared memory) die with the processes"),
    Setting("sqlite-full", "sqlite", "WAL, synchronous = FULL", True,
            "none lost (FULL also survives a power cut)"),
    Setting("sqlite-normal", "sqlite", "WAL, synchronous = NORMAL", False,
            "loses only on an OS crash or power cut; a process kill cannot show it"),
]
BY_NAME = {s.name: s for s in SETTINGS}


def kill_times(seconds: float, kills: int) -> list[float]:
    """Kills spread over the middle of the run."""
    return [round(seconds * (i + 1) / (kills + 1), 2) for i in range(kills)]


def measure(setting: Setting, work: Path, *, kills: int, seconds: float,
            rate_scale: float) -> dict[str, Any]:
    """One loadtest against the setting with `kills` crashes of its store; the losses."""
    run_dir = work / setting.name
    times = kill_times(seconds, kills)
    instance: PrivateRedis | PrivatePostgres | None = None
    try:
        if setting.store == "redis":
            instance = PrivateRedis(work / f"{setting.name}-data",
                                    appendonly=setting.name != "redis-none",
                                    appendfsync="everysec" if "everysec" in setting.name
                                    else "always").start()
            store_url = f"{instance.url}?prefix=durability"
        elif setting.store == "postgres":
            instance = PrivatePostgres(synchronous_commit="on" if setting.name.endswith("on")
                                       else "off").start()
            store_url = instance.url
        else:
            sync = "FULL" if setting.name.endswith("full") else "NORMAL"
            store_url = f"sqlite:///{run_dir / 'store.sqlite3'}?synchronous={sync}"
        if instance is not None:
            cmd = f"{sys.executable} -m loadtests.instances restart {instance.folder}"
            faults = Faults(restart_store=[StoreRestart(at=t, command=cmd) for t in times])
        else:
            faults = Faults(kill_server=times, restart_delay_seconds=0.5)
        source = ScenarioFile.read(SCENARIO)
        sched = source.schedule(duration=seconds, rate_scale=rate_scale)
        res = run_loadtest(source, sched, run_dir, store=store_url, workers=2, seed=7,
                           progress=False, faults=faults,
                           allow_unsafe_durability=not setting.documented)
    finally:
        if instance is not None:
            instance.stop()
    history = read_run(run_dir)
    state = FinalState.load(run_dir / "state.json") if (run_dir / "state.json").is_file() \
        else None
    kept = {o.order_id for o in state.orders} if state else set()
    acked = {op.order_id for op in history.ops if op.creates and op.outcome == "ok"}
    lost = acked - kept
    paid_ok = {op.order_id for op in history.ops if op.op == "pay" and op.outcome == "ok"}
    paid_kept = {o.order_id for o in state.orders if o.ever_paid} if state else set()
    return {"setting": setting.name, "option": setting.option, "documented": setting.documented,
            "kills": len(res.faults), "acknowledged_orders": len(acked), "lost_orders": len(lost),
            "lost_per_kill": len(lost) / max(1, len(res.faults)),
            "acknowledged_payments": len(paid_ok), "lost_payments": len(paid_ok - paid_kept),
            "invariants_broken": [r.name for r in res.report.broken],
            "process_kill_shows": setting.process_kill_shows, "run_dir": str(run_dir)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| store setting | kills | acknowledged orders | lost | lost per kill | "
             "acknowledged payments lost | recommended | what a process kill shows |",
             "| --- | ---: | ---: | ---: | ---: | ---: | :---: | --- |"]
    for r in rows:
        lines.append(f"| {r['setting']} ({r['option']}) | {r['kills']} | "
                     f"{r['acknowledged_orders']} | {r['lost_orders']} | "
                     f"{r['lost_per_kill']:.1f} | {r['lost_payments']} | "
                     f"{'yes' if r['documented'] else 'no'} | {r['process_kill_shows']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default=",".join(s.name for s in SETTINGS),
                   help="comma-separated settings (default: all): "
                   + ", ".join(s.name for s in SETTINGS))
    p.add_argument("--kills", type=int, default=2, help="store kills per run (default 2)")
    p.add_argument("--seconds", type=float, default=12, help="load seconds per run")
    p.add_argument("--rate-scale", type=float, default=2.0, help="flash sale rate multiplier")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    p.add_argument("--out", metavar="DIR", default=None, help="where the table goes (default "
                   "results/benchmarks)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        p.error(f"unknown setting(s) {unknown}; known: {sorted(BY_NAME)}")
    work = Path(tempfile.mkdtemp(prefix="groupbuy-durability-"))
    work.chmod(0o755)  # the postgres user must reach private clusters below it
    rows = []
    try:
        for name in names:
            print(f"{name}: {args.kills} kill(s) of the store in {args.seconds:g} s of load …",
                  flush=True)
            rows.append(measure(BY_NAME[name], work, kills=args.kills, seconds=args.seconds,
                                rate_scale=args.rate_scale))
            r = rows[-1]
            print(f"  {r['lost_orders']} of {r['acknowledged_orders']} acknowledged orders lost "
                  f"({r['lost_per_kill']:.1f} per kill); broken: {r['invariants_broken']}",
                  flush=True)
    except InstanceError as exc:  # a store binary is missing: say which and how to get it
        print(f"durability: {exc}; or leave those settings out with --settings",
              file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    print("\n" + text)
    extra = {"out_dir": Path(args.out)} if args.out else {}
    write_results("durability", text + f"\n\nmachine: {platform.platform()}; "
                  f"{args.kills} kill(s) per run, {args.seconds:g} s of flash-sale load at "
                  f"{args.rate_scale:g}x\n", {"rows": rows, "args": vars(args)}, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())

