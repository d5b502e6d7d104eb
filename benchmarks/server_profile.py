"""Where a reference-server worker spends its time on hot-SKU reserve+pay: py-spy samples one
server process (1 worker) while `server_speed.py`'s client drives it, then prints each
function's share of the samples (inclusive, and the top by own time).

    .venv/bin/pip install py-spy      # not a project dependency
    .venv/bin/python benchmarks/server_profile.py [--store sqlite|postgresql|redis]
                                                  [--seconds 10] [--top 40]

Shares are of all samples of the process (the event loop and, for SQLite and PostgreSQL's
general path, the database threads); idle waits are not sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import server_speed as speed

from loadtests.server import ServerProcess


def summarise(raw: Path, top: int) -> str:
    """py-spy's raw (folded) output as `share  function (file)` lines."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [re.sub(r" \((.*?):\d+\)", r" (\1)", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{total} samples; inclusive share:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "own time:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(15)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=["sqlite", "postgresql", "redis"], default="sqlite")
    ap.add_argument("--seconds", type=int, default=10, help="sampling time (default 10)")
    ap.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("server_profile: py-spy is not installed (.venv/bin/pip install py-spy)",
              file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gb-profile-"))
    scenario = tmp / "speed.toml"
    scenario.write_text(speed.SCENARIO)
    tag = tmp.name.rsplit("-", 1)[-1].lower()
    schema, prefix = f"gbprofile_{re.sub(r'[^a-z0-9]', '', tag)}", f"gbprofile-{tag}"
    url = {"sqlite": f"sqlite:///{tmp}/profile.sqlite3",
           "postgresql": f"{speed.PG}?schema={schema}",
           "redis": f"{speed.REDIS}?prefix={prefix}"}[args.store]
    raw = tmp / "profile.txt"
    try:
        with ServerProcess(scenario, url, 1, speed.ADMIN, tmp / "server.log",
                           allow_unsafe_durability=True) as server:
            users = [f"p{i}" for i in range(32)]
            r = httpx.post(f"http://127.0.0.1:{server.port}/v1/admin/user-tokens",
                           json={"user_ids": users},
                           headers={"Authorization": f"Bearer {speed.ADMIN}"})
            tokens = [r.json()["tokens"][u] for u in users]
            sampler = subprocess.Popen(
                [spy, "record", "-p", str(server.proc.pid), "-d", str(args.seconds), "-r", "250",
                 "-f", "raw", "-o", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run = asyncio.run(speed._measure(server.port, tokens, args.seconds, 32, buy=True))
            sampler.wait(timeout=60)
    finally:
        speed._cleanup(schema if args.store == "postgresql" else None,
                       prefix if args.store == "redis" else None)
    print(f"{args.store}, 1 worker: {run.ops / args.seconds:,.0f} reserve+pay pairs/s while "
          "sampled")
    print(summarise(raw, args.top))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
