"""A burst of buyers for race tests: many reserve the same SKU at once, then every one that got
an order cancels it at once, so an oversell heals within a second and only the order the store
applied its movements in (contract 1.2 `seq`) can still prove it. Records a typed history as a
load test would, reads the final state, and hands both to the checker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from campaign.rules import CampaignRules
from loadtests.api import AdminClient
from loadtests.checker import Report, Rules, check, rules_from_campaign
from loadtests.history import History, Op

CAMPAIGN: dict[str, Any] = {
    "name": "race burst",
    "per_user_limit": 1,
    "skus": [{"id": "last-units", "stock": 20, "list_price": 100.0, "unit_cost": 40.0}],
    "phases": [{"name": "burst", "hours": 1}],
}


SCENARIO = """# the race burst's sale (a server started on it keeps it across worker starts)
[campaign]
name = "race burst"
per_user_limit = 1
[[campaign.skus]]
id = "last-units"
stock = 20
list_price = 100.0
unit_cost = 40.0
[[campaign.phases]]
name = "burst"
hours = 1
"""


def scenario_file(folder: Path) -> Path:
    """The burst's sale as a scenario file, for the server under test to start with: a worker
    that starts late reloads its scenario's campaign unless the store already holds it."""
    path = folder / "race_burst.toml"
    path.write_text(SCENARIO)
    return path


def rules() -> Rules:
    return rules_from_campaign(CampaignRules.model_validate(CAMPAIGN), payment_timeout=60)


async def _call(client: httpx.AsyncClient, ops: list[Op], user: str, token: str, op: str,
                path: str, body: dict[str, Any] | None, key: str | None,
                **fields: Any) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    start = time.time()
    try:
        resp = await client.post(path, json=body, headers=headers)
        status, data = resp.status_code, resp.json()
    except (httpx.HTTPError, ValueError):
        status, data = None, {}
    end = time.time()
    if status is not None and 200 <= status < 300:
        outcome, code = "ok", None
    elif status is not None and 400 <= status < 500 and isinstance(data.get("error"), dict):
        outcome, code = "fail", data["error"]["code"]
    else:
        outcome, code = "unknown", f"http_{status}" if status else "connection"
    if outcome == "ok" and "order_id" in data:
        fields["order_id"] = data["order_id"]
    ops.append(Op(worker=0, arrival=len(ops), journey="burst", user=user, op=op, key=key,
                  intended=start, start=start, end=end, outcome=outcome, status=status,
                  code=code, **fields))
    return data if outcome == "ok" else None


async def _burst(host: str, tokens: dict[str, str], sku: str, waves: int) -> list[Op]:
    ops: list[Op] = []
    users = list(tokens)
    size = -(-len(users) // waves)
    got: list[dict[str, Any] | None] = []
    for w in range(waves):
        # Each wave on connections of its own, a moment after the last: a server's workers
        # share the listening socket, so different waves land on different workers.
        limits = httpx.Limits(max_connections=size + 1)
        async with httpx.AsyncClient(base_url=host, timeout=30, limits=limits) as client:
            got += await asyncio.gather(*(
                _call(client, ops, u, tokens[u], "reserve", "/v1/orders",
                      {"sku_id": sku, "quantity": 1}, f"k-{uuid.uuid4().hex}", sku_id=sku,
                      quantity=1)
                for u in users[w * size:(w + 1) * size]))
        if waves > 1:
            await asyncio.sleep(0.05)
    limits = httpx.Limits(max_connections=len(users) + 1)
    async with httpx.AsyncClient(base_url=host, timeout=30, limits=limits) as client:
        await asyncio.gather(*(
            _call(client, ops, u, tokens[u], "cancel", f"/v1/orders/{o['order_id']}/cancel",
                  None, None, order_id=o["order_id"])
            for u, o in zip(users, got, strict=True) if o is not None))
    return ops


def race(host: str, admin_token: str, buyers: int = 60, waves: int = 1) -> Report:
    """Load the burst sale, run one burst, check it (the report's stats say what the buyers
    were answered)."""
    with AdminClient(host, admin_token) as admin:
        admin.load_sale(CAMPAIGN, payment_timeout_seconds=60)
        users = [f"b{i}" for i in range(buyers)]
        tokens = admin.user_tokens(users)
        ops = asyncio.run(_burst(host, tokens, CAMPAIGN["skus"][0]["id"], waves))
        state = admin.final_state()
    ops.sort(key=lambda o: o.start)
    report = check(History(ops), state, rules())
    report.stats["answers"] = dict(Counter(f"{o.op} {o.code or o.outcome}" for o in ops))
    # Plain facts, without the checker: more reservations acknowledged than units, or stock
    # not back where it started once every order was cancelled, mean the store went wrong.
    stock = CAMPAIGN["skus"][0]["stock"]
    row = state.ledger.skus.get(CAMPAIGN["skus"][0]["id"])
    acked = sum(1 for o in ops if o.op == "reserve" and o.outcome == "ok")
    report.stats["went_wrong"] = acked > stock or row is None or row.available != stock
    return report
