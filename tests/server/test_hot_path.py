"""The hot path in one store round trip per request (issue 11, item 9): PostgreSQL's server-side
functions and Redis's one EVALSHA keep every answer the multi-step path gave — refusals recorded
and replayed byte for byte, stock given back when the per-user limit refuses, payments ranked
for the gift — and really are one call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.checkout import Lab, assert_conserved, running_lab
from tests.support.stores import (
    POSTGRES_URL,
    REDIS_URL,
    need_service,
    postgres_schema,
    redis_prefix,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lab(real_store_url: str) -> AsyncIterator[Lab]:
    async with running_lab(real_store_url) as lab:
        yield lab


def code(r: Any) -> str:
    return r.json()["error"]["code"]


async def test_stock_and_limit_refusals_are_recorded_and_replayed_byte_for_byte(
        lab: Lab) -> None:
    for user in ("u1", "u2"):  # 4 of the 5 units, two users at their limit of 2
        assert (await lab.reserve(user, quantity=2)).status_code == 201
    limit = await lab.as_user("u1", "POST", "/v1/orders", key="more", json={
        "sku_id": "hot", "quantity": 1})
    assert limit.status_code == 409 and code(limit) == "limit_reached"
    sold_out = await lab.as_user("u3", "POST", "/v1/orders", key="two", json={
        "sku_id": "hot", "quantity": 2})
    assert sold_out.status_code == 409 and code(sold_out) == "sold_out"
    for first, user, key, quantity in ((limit, "u1", "more", 1), (sold_out, "u3", "two", 2)):
        again = await lab.as_user(user, "POST", "/v1/orders", key=key,
                                  json={"sku_id": "hot", "quantity": quantity})
        assert again.status_code == first.status_code and again.content == first.content
    ledger = await lab.ledger()
    assert_conserved(ledger)
    # the limit refusal gave its unit back: one left, and a new buyer gets it
    assert ledger["skus"]["hot"]["available"] == 1
    assert (await lab.reserve("u4")).status_code == 201


async def test_payments_rank_for_the_first_orders_gift(lab: Lab) -> None:
    ids = [(await lab.reserve(f"u{i}")).json()["order_id"] for i in range(3)]
    paid = [(await lab.pay(f"u{i}", oid)).json() for i, oid in enumerate(ids)]
    assert [p["paid_seq"] for p in paid] == [1, 2, 3]
    assert [p["gift"] for p in paid] == [True, True, False]  # the campaign's gift: first 2
    again = await lab.pay("u0", ids[0])
    assert again.status_code == 200 and again.json() == paid[0]
    assert code(await lab.pay("u1", ids[0])) == "forbidden"
    assert code(await lab.pay("u1", "o-none")) == "not_found"
    assert code(await lab.cancel("u0", ids[0])) == "order_closed"


def _count(obj: Any, name: str, calls: list[str]) -> None:
    original = getattr(obj, name)

    async def counted(*args: Any, **kw: Any) -> Any:
        calls.append(name)
        return await original(*args, **kw)
    setattr(obj, name, counted)


async def _store_calls(lab: Lab, *targets: tuple[Any, str]) -> tuple[list[str], list[str]]:
    """The counted methods (object, name) a reserve, then its payment, called."""
    await lab.reserve("warm")  # the sale copy for pricing is read once a second
    reserve: list[str] = []
    pay: list[str] = []
    calls = reserve
    for obj, name in targets:
        _count(obj, name, calls)
    order = (await lab.reserve("u1")).json()
    reserve_calls = list(calls)
    calls.clear()
    assert (await lab.pay("u1", order["order_id"])).status_code == 200
    pay.extend(calls)
    return reserve_calls, pay


@pytest.mark.postgres
async def test_postgres_reserve_and_pay_are_one_call_each() -> None:
    need_service("PostgreSQL", POSTGRES_URL)
    with postgres_schema(POSTGRES_URL) as url:
        async with running_lab(url) as lab:
            # `_run`: the threaded multi-statement path
            calls = await _store_calls(lab, (lab.store, "_call_many"), (lab.store, "_run"))
            assert calls == (["_call_many"], ["_call_many"])
            # an order in a group takes the Python body (its group may complete on payment)
            group = (await lab.open_group("u2")).json()
            counted: list[str] = []
            _count(lab.store, "_call_many", counted)
            _count(lab.store, "_run", counted)
            assert (await lab.pay("u2", group["order"]["order_id"])).status_code == 200
            assert counted == ["_call_many", "_run"]


@pytest.mark.redis
async def test_redis_reserve_and_pay_are_one_command_each() -> None:
    need_service("Redis", REDIS_URL)
    with redis_prefix(REDIS_URL) as url:
        async with running_lab(url) as lab:
            # EVALSHA each (the key, the change and the recorded answer at once), on the
            # pipelined script connection; nothing through redis-py's pool
            calls = await _store_calls(lab, (lab.store.r, "execute_command"),
                                       (lab.store._channel, "call"))
            assert calls == (["call"], ["call"])
