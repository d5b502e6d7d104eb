"""PostgreSQL sends the reserves (and the payments) that wait for a connection together, as one
call of a `_many` function: one transaction and one commit for all of them (issue 11, item 9).
Each request must still get exactly the answer it would get alone — refusals, replays, ranks,
fallbacks — a call that fails must fail every request in it and leave nothing half-done, and
calls on several SKUs at once must not deadlock each other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from reference_server.stores import postgres
from tests.support.checkout import Lab, assert_conserved, campaign, running_lab
from tests.support.stores import POSTGRES_URL, need_service, postgres_schema

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    need_service("PostgreSQL", POSTGRES_URL)
    with postgres_schema(POSTGRES_URL) as url:
        async with running_lab(url) as lab:
            yield lab


def code(r: Any) -> str:
    return r.json()["error"]["code"]


@contextlib.asynccontextmanager
async def held(lab: Lab) -> AsyncIterator[list[psycopg.AsyncConnection]]:
    """Every leased connection taken away, so requests queue up; handed back on exit."""
    hot = lab.store._hot
    conns = [await hot.acquire() for _ in range(postgres.ASYNC_POOL_SIZE)]
    try:
        yield conns
    finally:
        for conn in conns:
            hot.release(conn)


async def together(lab: Lab, kind: str, requests: list[Any],
                   reaching: int | None = None) -> tuple[list[Any], list[int]]:
    """Run the request coroutines while the connections are held, release them once `reaching`
    of them (default: all) wait for the store, and return the answers and the size of each
    `_many` call."""
    reaching = len(requests) if reaching is None else reaching
    sizes: list[int] = []
    call_many = lab.store._call_many

    async def counted(conn: Any, sql: str, params: tuple[Any, ...]) -> Any:
        sizes.append(len(params[1]))
        return await call_many(conn, sql, params)
    lab.store._call_many = counted
    async with held(lab):
        tasks = [asyncio.ensure_future(r) for r in requests]
        batched = lab.store._batched[kind]
        for _ in range(500):
            if len(batched.waiting) == reaching:
                break
            await asyncio.sleep(0.01)
        assert len(batched.waiting) == reaching, "the requests never reached the store"
    answers = await asyncio.gather(*tasks)
    lab.store._call_many = call_many
    return answers, sizes


async def test_waiting_reserves_go_in_one_call_and_each_gets_its_own_answer(lab: Lab) -> None:
    await lab.token("u0")
    # hot has 5 units and a limit of 2 per user: 7 buyers of one, one of the group SKU, and u0
    # sends one request twice under one key; a buyer of three is refused above the store
    body = {"sku_id": "hot", "quantity": 1}
    requests = [lab.as_user(f"u{i}", "POST", "/v1/orders", key="k", json=body) for i in range(7)]
    requests += [lab.as_user("u0", "POST", "/v1/orders", key="k", json=body),
                 lab.as_user("u7", "POST", "/v1/orders", key="big",
                             json={"sku_id": "hot", "quantity": 3}),
                 lab.as_user("u8", "POST", "/v1/orders", key="g",
                             json={"sku_id": "grp", "quantity": 1})]
    answers, sizes = await together(lab, "reserve", requests, reaching=9)
    # u0's second request waits for the next call (never two of one key in a call), and the two
    # refused for stock are tried once more after a lazy expiry, as they would be alone
    assert sizes[0] == 8 and sum(sizes) == 11
    statuses = [a.status_code for a in answers]
    assert statuses == [201] * 5 + [409, 409, 201, 422, 201]
    assert answers[7].content == answers[0].content  # the same key: the same order
    assert answers[9].status_code == 201  # the group SKU is not short of stock
    assert [code(a) for a in answers[5:7]] == ["sold_out"] * 2
    assert code(answers[8]) == "invalid"
    # every answer, refusals too, was recorded as its key's: the retry gets the same bytes
    for i, a in enumerate(answers[:7]):
        again = await lab.as_user(f"u{i}", "POST", "/v1/orders", key="k", json=body)
        assert (again.status_code, again.content) == (a.status_code, a.content)
    ledger = await lab.ledger()
    assert_conserved(ledger)
    assert ledger["skus"]["hot"]["available"] == 0 and ledger["skus"]["hot"]["reserved"] == 5


async def test_a_refusal_rolls_back_alone(lab: Lab) -> None:
    first = await lab.as_user("u1", "POST", "/v1/orders", key="same",
                              json={"sku_id": "hot", "quantity": 1})
    assert first.status_code == 201
    # the same key with another body raises inside the call (nothing recorded for it); the
    # requests beside it still commit
    answers, sizes = await together(lab, "reserve", [
        lab.as_user("u1", "POST", "/v1/orders", key="same",
                    json={"sku_id": "hot", "quantity": 2}),
        lab.as_user("u2", "POST", "/v1/orders", key="a", json={"sku_id": "hot", "quantity": 1}),
        lab.as_user("u3", "POST", "/v1/orders", key="a", json={"sku_id": "grp", "quantity": 1})])
    assert sizes == [3]
    assert [a.status_code for a in answers] == [422, 201, 201]
    ledger = await lab.ledger()
    assert_conserved(ledger)
    assert ledger["skus"]["hot"]["reserved"] == 2 and ledger["skus"]["grp"]["reserved"] == 1


async def test_waiting_payments_go_in_one_call_ranked_densely(lab: Lab) -> None:
    ids = [(await lab.reserve(f"u{i}")).json()["order_id"] for i in range(4)]
    group_order = (await lab.open_group("u9")).json()["order"]["order_id"]
    await lab.token("u9")
    answers, sizes = await together(lab, "pay", [
        *(lab.pay(f"u{i}", oid) for i, oid in enumerate(ids)),
        lab.pay("u0", ids[0]),          # the same order again: same answer
        lab.pay("u2", ids[1]),          # another user's order
        lab.pay("u1", "o-nosuch"),      # no such order
        lab.pay("u9", group_order)])    # in a group: the Python body
    # the second payment of ids[0] and the other user's payment of ids[1] wait for the next
    # call: never one order twice in a call
    assert sizes == [6, 2]
    paid = [a.json() for a in answers[:4]]
    assert all(a.status_code == 200 for a in answers[:4])
    assert sorted(p["paid_seq"] for p in paid) == [1, 2, 3, 4]
    assert all(p["gift"] == (p["paid_seq"] <= 2) for p in paid)  # the campaign's first 2
    assert answers[4].status_code == 200 and answers[4].json() == paid[0]
    assert code(answers[5]) == "forbidden" and code(answers[6]) == "not_found"
    assert answers[7].status_code == 200 and answers[7].json()["status"] == "paid"
    assert answers[7].json()["paid_seq"] == 5
    ledger = await lab.ledger()
    assert_conserved(ledger)
    assert ledger["skus"]["hot"]["sold"] == 4


async def wait_for_store(lab: Lab, kind: str, count: int) -> None:
    for _ in range(500):
        if len(lab.store._batched[kind].waiting) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the requests never reached the store")


async def test_a_call_that_fails_fails_every_request_in_it_and_half_does_nothing(
        lab: Lab) -> None:
    body = {"sku_id": "hot", "quantity": 1}
    for user in ("u1", "u2", "u3"):
        await lab.token(user)
    with psycopg.connect(POSTGRES_URL, autocommit=True,
                         options=f"-c search_path={lab.store.schema}") as other:
        async with held(lab) as conns:
            for conn in conns:  # the call gives up after 0.3 s
                await conn.execute("SET statement_timeout = 300")
            # another transaction holds the hot SKU's row: the call's group-SKU reservation
            # (first, in SKU order) succeeds, then the hot one waits until the call is cancelled
            other.execute("BEGIN")
            other.execute("SELECT * FROM skus WHERE sku_id = 'hot' FOR UPDATE")
            tasks = [asyncio.ensure_future(lab.as_user(u, "POST", "/v1/orders", key="x", json=b))
                     for u, b in (("u1", body), ("u2", body),
                                  ("u3", {"sku_id": "grp", "quantity": 1}))]
            await wait_for_store(lab, "reserve", 3)
        answers = await asyncio.gather(*tasks)
        other.execute("ROLLBACK")
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {code(a) for a in answers} == {"unavailable"}
    ledger = await lab.ledger()
    assert ledger["skus"]["grp"]["reserved"] == 0 and ledger["skus"]["hot"]["reserved"] == 0
    assert ledger["orders"]["reserved"] == 0
    for conn in list(lab.store._hot.free):
        await conn.execute("RESET statement_timeout")
    for user, b in (("u1", body), ("u2", body), ("u3", {"sku_id": "grp", "quantity": 1})):
        again = await lab.as_user(user, "POST", "/v1/orders", key="x", json=b)
        assert again.status_code == 201, again.text
    assert_conserved(await lab.ledger())


async def test_connections_lost_to_a_restart_are_replaced_and_the_call_sent_again(
        lab: Lab) -> None:
    body = {"sku_id": "hot", "quantity": 1}
    await lab.token("u1")
    await lab.token("u2")
    async with held(lab) as conns:
        # every leased connection's backend dies while the requests wait (as in a restart of
        # PostgreSQL): the call finds its connection dead, and the next, and goes on a new one
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                          ([c.info.backend_pid for c in conns],))
        tasks = [asyncio.ensure_future(lab.as_user(u, "POST", "/v1/orders", key="x", json=body))
                 for u in ("u1", "u2")]
        await wait_for_store(lab, "reserve", 2)
    answers = await asyncio.gather(*tasks)
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    for user, first in zip(("u1", "u2"), answers, strict=True):
        again = await lab.as_user(user, "POST", "/v1/orders", key="x", json=body)
        assert again.content == first.content
    ledger = await lab.ledger()
    assert_conserved(ledger)
    assert ledger["skus"]["hot"]["reserved"] == 2


async def test_concurrent_calls_on_several_skus_do_not_deadlock(lab: Lab) -> None:
    skus = [{"id": s, "name": s, "stock": 500, "list_price": 10.0, "unit_cost": 4.0}
            for s in ("a", "b", "c")]
    await lab.load(campaign(skus=skus, per_user_limit=100, groups=None, coupons=[],
                            first_orders_gift=None))
    deadlocks: list[Exception] = []
    retry = postgres._raise_unless_retry

    def recorded(exc: Exception, attempt: int) -> None:
        if isinstance(exc, psycopg.errors.DeadlockDetected):
            deadlocks.append(exc)
        retry(exc, attempt)
    postgres._raise_unless_retry = recorded
    try:
        async def buyer(i: int) -> None:
            for n in range(6):  # each call mixes SKUs in another order
                sku = "abc"[(i + n) % 3] if i % 2 else "cba"[(i + n) % 3]
                r = await lab.as_user(f"u{i}", "POST", "/v1/orders", key=f"{n}",
                                      json={"sku_id": sku, "quantity": 1})
                assert r.status_code == 201, r.text
                assert (await lab.pay(f"u{i}", r.json()["order_id"])).status_code == 200
        for i in range(24):
            await lab.token(f"u{i}")
        await asyncio.gather(*(buyer(i) for i in range(24)))
    finally:
        postgres._raise_unless_retry = retry
    assert deadlocks == []
    ledger = await lab.ledger()
    assert_conserved(ledger)
    assert sum(ledger["skus"][s]["sold"] for s in "abc") == 24 * 6
