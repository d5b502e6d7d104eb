"""Property: no client input, however malformed, gets a 5xx — and stock is conserved whatever
sequence of calls arrives (hypothesis, in-process app on SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.checkout import ADMIN, Lab, assert_conserved, running_lab

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=10)
ids = st.sampled_from(["hot", "grp", "c10", "o-x", "g-x", "", "a" * 65, "../etc", "ä", "%00"])
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"sku_id": ids, "quantity": json_values}),
    st.fixed_dictionaries({"sku_id": st.sampled_from(["hot", "grp"]),
                           "quantity": st.integers(-3, 5)},
                          optional={"coupon_id": ids, "group_id": ids}),
    st.fixed_dictionaries({"campaign": json_values}),
    st.fixed_dictionaries({"user_ids": st.lists(st.text(max_size=70), max_size=3)}),
    st.sampled_from([b'{"sku_id": "hot", "quantity": NaN}', b'{"quantity": Infinity}',
                     b'{"campaign": {"spend_thresholds": [{"spend": Infinity, "off": 1}]}}',
                     b"[" * 5000, b'{"sku_id": "hot", "quantity": 1e400}',
                     b'{"campaign": {"name": "x", "skus": [{"id": "a", "stock": 1, "list_price": 1,'
                     b' "unit_cost": 0}], "phases": [{"name": "p", "hours": 1}],'
                     b' "spend_thresholds": [{"spend": 1e308, "off": 1}]}}', b"\xff\xfe"]),
)
PATHS = ["/v1/orders", "/v1/orders/{id}", "/v1/orders/{id}/pay", "/v1/orders/{id}/cancel",
         "/v1/groups", "/v1/groups/{id}", "/v1/coupons/{id}/claim", "/v1/skus/{id}",
         "/v1/admin/user-tokens", "/v1/admin/ledger", "/v1/admin/orders?after={id}&limit={id}",
         "/v1/admin/groups", "/v1/admin/coupon-claims", "/v1/admin/expire", "/v1/health",
         "/v1/admin/sale", "/v1/admin/reset", "/v1/{id}"]
requests = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.sampled_from(PATHS), ids,
    st.sampled_from(["user", "other", "admin", "none", "garbage"]),
    st.one_of(st.none(), st.text(max_size=130)), st.one_of(bodies, st.binary(max_size=40)))


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[asyncio.AbstractEventLoop, Lab]]:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.sqlite3"
    lab = loop.run_until_complete(stack.enter_async_context(running_lab(url)))
    try:
        yield loop, lab
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def _send(lab: Lab, method: str, path: str, ident: str, who: str, key: str | None,
                body: Any) -> int:
    headers: dict[str, str] = {}
    if who in ("user", "other"):
        headers["Authorization"] = f"Bearer {await lab.token(who)}"
    elif who == "admin":
        headers["Authorization"] = f"Bearer {ADMIN}"
    elif who == "garbage":
        headers["Authorization"] = "Bearer \x7f.not-a-token"
    if key is not None:
        headers["Idempotency-Key"] = key.encode("ascii", "replace").decode()
    kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = await lab.client.request(method, path.replace("{id}", ident), headers=headers, **kw)
    if r.status_code >= 500:
        raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return r.status_code


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(reqs=st.lists(requests, min_size=1, max_size=6))
def test_no_input_gets_a_5xx_and_stock_is_conserved(live, reqs) -> None:
    loop, lab = live
    for method, path, ident, who, key, body in reqs:
        loop.run_until_complete(_send(lab, method, path, ident, who, key, body))
    assert_conserved(loop.run_until_complete(lab.ledger()))
