"""SQLite writes on the event loop (`stores/sqlite.py`): they wait for another process's write
— through the shared lock file or SQLite's own lock — without blocking the loop, give up with a
503 after the busy timeout, and run together once the lock is free."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import time
from pathlib import Path

import pytest

from reference_server.stores import sqlite as sqlite_store
from tests.support.checkout import running_lab

pytestmark = pytest.mark.anyio


async def test_writes_wait_for_the_other_workers_lock_without_blocking_the_loop(
        tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    async with running_lab(f"sqlite:///{db}") as lab:
        for u in ("u1", "u2", "u3"):
            await lab.token(u)
        with open(f"{db}.write-lock", "a+") as other:  # another worker mid-commit
            fcntl.flock(other, fcntl.LOCK_EX)
            buys = asyncio.gather(*[lab.reserve(u) for u in ("u1", "u2", "u3")])
            await asyncio.sleep(0.5)
            ping = await lab.client.get("/v1/ping")  # the loop still serves meanwhile
            assert ping.status_code == 200
            assert not buys.done()
            fcntl.flock(other, fcntl.LOCK_UN)
            rs = await asyncio.wait_for(buys, 5)
        assert [r.status_code for r in rs] == [201, 201, 201]
        assert (await lab.ledger())["skus"]["hot"]["reserved"] == 3


async def test_a_writer_that_ignores_the_lock_file_is_waited_for(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    async with running_lab(f"sqlite:///{db}") as lab:
        await lab.token("u1")
        other = sqlite3.connect(db, isolation_level=None)  # e.g. the sqlite3 shell
        other.execute("BEGIN IMMEDIATE")
        buy = asyncio.ensure_future(lab.reserve("u1"))
        await asyncio.sleep(0.3)
        assert not buy.done()
        other.execute("COMMIT")
        other.close()
        r = await asyncio.wait_for(buy, 5)
        assert r.status_code == 201, r.text


async def test_a_lock_held_past_the_busy_timeout_is_a_503(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 300)
    db = tmp_path / "s.sqlite3"
    async with running_lab(f"sqlite:///{db}") as lab:
        await lab.token("u1")
        with open(f"{db}.write-lock", "a+") as other:
            fcntl.flock(other, fcntl.LOCK_EX)
            t0 = time.monotonic()
            r = await asyncio.wait_for(lab.reserve("u1"), 5)
            waited = time.monotonic() - t0
            fcntl.flock(other, fcntl.LOCK_UN)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
        assert waited >= 0.3
        again = await lab.as_user("u1", "POST", "/v1/orders", key="again",
                                  json={"sku_id": "hot", "quantity": 1})
        assert again.status_code == 201, again.text


async def test_opening_waits_for_another_worker_starting_on_a_new_file(tmp_path: Path) -> None:
    # two workers starting on a new file: one switches it to WAL while the other opens it.
    # Opening must wait for the lock, not fail (a worker that fails to start stops the server)
    path = tmp_path / "new.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store = sqlite_store.SqliteStore(f"sqlite:///{path}")
    opening = asyncio.ensure_future(store.open())
    await asyncio.sleep(0.3)
    assert not opening.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(opening, 10)
    await store.close()
