"""The hot routes (`api/hot.py`): reserve and pay served below FastAPI's routing answer every
request exactly as the FastAPI routes do, successes, refusals and malformed requests alike —
the same requests against a server without them give the same statuses, headers and bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_server.api.deps import MAX_BODY_BYTES
from tests.support.checkout import ADMIN, Lab, running_lab

pytestmark = pytest.mark.anyio


async def _script(lab: Lab) -> list[tuple[int, str | None, str]]:
    """A buyer's session with every kind of answer the two routes give; each answer as
    (status, content type, body with order ids numbered in order of appearance)."""
    answers: list[httpx.Response] = []
    buy = {"sku_id": "hot", "quantity": 1}

    async def post(user: str | None, path: str, key: str | None = None,
                   token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or await lab.token(user or 'u1')}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        r = await lab.client.post(path, headers=headers, **kw)
        answers.append(r)
        return r

    first = await post("u1", "/v1/orders", "k1", json=buy)
    oid = first.json()["order_id"]
    await post("u1", "/v1/orders", "k1", json=buy)  # replay
    await post("u1", "/v1/orders", "k1", json=buy | {"quantity": 2})  # key reused
    await post("u1", "/v1/orders", json=buy)  # no key: the FastAPI route answers
    await post("u1", "/v1/orders", "bad key with spaces", json=buy)
    await post(None, "/v1/orders", "k2", token=ADMIN, json=buy)  # admin token: forbidden
    await post(None, "/v1/orders", "k3", token="u1.99.forged", json=buy)  # bad token
    await post("u2", "/v1/orders", "k4", content=b"{not json")
    await post("u2", "/v1/orders", "k5", content=json.dumps(buy).encode("utf-16"))
    await post("u2", "/v1/orders", "k6", content=b" " * (MAX_BODY_BYTES + 1))
    await post("u2", "/v1/orders", "k7", content=b"")
    await post("u2", "/v1/orders", "k8", json=[buy])
    await post("u2", "/v1/orders", "k9", json={"sku_id": "nope", "quantity": 1})
    await post("u2", "/v1/orders", "k10", json={"sku_id": "hot", "quantity": 0})
    await post("u2", "/v1/orders", "k11", json=buy | {"extra": 1})
    await post("u1", "/v1/orders", "k12", json=buy | {"quantity": 2})  # over u1's limit
    await post("u1", f"/v1/orders/{oid}/pay")
    await post("u1", f"/v1/orders/{oid}/pay")  # paying twice answers the paid order
    await post("u2", f"/v1/orders/{oid}/pay")  # another user's order
    await post("u1", "/v1/orders/o-none/pay")
    await post("u1", "/v1/orders/bad%20id/pay")  # not an id: the FastAPI route answers
    await post(None, f"/v1/orders/{oid}/pay", token=ADMIN)
    await post(None, f"/v1/orders/{oid}/pay", token="nobody")
    for i in range(3, 9):  # the rest of the 5 units, then sold out
        await post(f"u{i}", "/v1/orders", f"s{i}", json=buy)
    ids: list[str] = []
    out = []
    for r in answers:  # bytes compared exactly, with order ids (which differ) numbered
        body = r.json()
        if isinstance(body, dict) and "order_id" in body and body["order_id"] not in ids:
            ids.append(body["order_id"])
        text = r.text
        for n, order_id in enumerate(ids):
            text = text.replace(order_id, f"order-{n}")
        out.append((r.status_code, r.headers.get("content-type"), text))
    return out


async def test_hot_routes_answer_as_the_fastapi_routes_do(tmp_path: Path) -> None:
    async with running_lab(f"sqlite:///{tmp_path}/hot.sqlite3") as lab:
        hot = await _script(lab)
    async with running_lab(f"sqlite:///{tmp_path}/plain.sqlite3", hot_routes=False) as lab:
        plain = await _script(lab)
    assert [a[0] for a in hot] == [a[0] for a in plain]
    for i, (h, p) in enumerate(zip(hot, plain, strict=True)):
        assert h == p, f"answer {i}: {h} != {p}"
    codes = {json.loads(a[2])["error"]["code"] for a in hot if a[0] >= 400}
    assert codes >= {"idempotency_key_reused", "invalid", "forbidden", "unauthorized",
                     "too_large", "not_found", "limit_reached", "sold_out"}, codes
