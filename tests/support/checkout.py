"""The reference server in process, for its tests: a test campaign, a fake clock and a small
client that speaks the contract; `SMALL_SCENARIO`, a sale for real server processes."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from reference_server.api.hot import HotRoutes
from reference_server.app import ServerConfig, create_app

ADMIN = "admin-test-token"
T0 = 1_800_000_000.0
HOUR = 3600.0

CAMPAIGN: dict[str, Any] = {
    "name": "test sale",
    "per_user_limit": 2,
    "payment_timeout_minutes": 15,
    "skus": [
        {"id": "hot", "name": "Hot teapot", "stock": 5, "list_price": 100.0, "unit_cost": 40.0},
        {"id": "grp", "name": "Group tea", "stock": 50, "list_price": 50.0, "unit_cost": 20.0},
    ],
    "phases": [{"name": "burst", "hours": 2}, {"name": "tail", "hours": 10}],
    "groups": {"window_hours": 4, "leader_reward": 5.0, "failure_policy": "refund",
               "tiers": [{"size": 2, "percent_off": 20}, {"size": 3, "percent_off": 30}]},
    "time_discounts": [{"name": "first-hour", "start_hour": 0, "end_hour": 1,
                        "percent_off": 50}],
    "first_orders_gift": {"count": 2, "gift_cost": 1.0},
    "coupons": [{"id": "c10", "value": 10, "min_spend": 0, "pool": 3, "per_user": 1}],
}


def campaign(**changes: Any) -> dict[str, Any]:
    """A copy of CAMPAIGN with top-level keys replaced."""
    out = copy.deepcopy(CAMPAIGN)
    out.update(changes)
    return out


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Lab:
    """A contract client over an in-process app, with a fake clock."""

    def __init__(self, client: httpx.AsyncClient, clock: Clock, app: Any) -> None:
        self.client = client
        self.clock = clock
        self.app = app
        self._tokens: dict[str, str] = {}
        self._n = 0

    @property
    def store(self) -> Any:
        return self.app.state.store

    async def admin(self, method: str, path: str, headers: dict[str, str] | None = None,
                    **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}", **(headers or {})}
        return await self.client.request(method, path, headers=headers, **kw)

    async def load(self, camp: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
        body = {"campaign": camp or CAMPAIGN, "start": self.clock.t - 2 * HOUR, **extra}
        r = await self.admin("POST", "/v1/admin/sale", json=body)
        assert r.status_code == 200, r.text
        return r

    async def token(self, user: str) -> str:
        if user not in self._tokens:
            r = await self.admin("POST", "/v1/admin/user-tokens", json={"user_ids": [user]})
            assert r.status_code == 200, r.text
            self._tokens[user] = r.json()["tokens"][user]
        return self._tokens[user]

    async def as_user(self, user: str, method: str, path: str, key: str | None = None,
                      **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token(user)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.request(method, path, headers=headers, **kw)

    def key(self) -> str:
        self._n += 1
        return f"k-{self._n}"

    async def reserve(self, user: str, sku: str = "hot", quantity: int = 1,
                      **extra: Any) -> httpx.Response:
        return await self.as_user(user, "POST", "/v1/orders", key=self.key(),
                                  json={"sku_id": sku, "quantity": quantity, **extra})

    async def pay(self, user: str, order_id: str) -> httpx.Response:
        return await self.as_user(user, "POST", f"/v1/orders/{order_id}/pay")

    async def cancel(self, user: str, order_id: str) -> httpx.Response:
        return await self.as_user(user, "POST", f"/v1/orders/{order_id}/cancel")

    async def open_group(self, user: str, sku: str = "grp", quantity: int = 1) -> httpx.Response:
        return await self.as_user(user, "POST", "/v1/groups", key=self.key(),
                                  json={"sku_id": sku, "quantity": quantity})

    async def claim(self, user: str, coupon: str = "c10") -> httpx.Response:
        return await self.as_user(user, "POST", f"/v1/coupons/{coupon}/claim", key=self.key())

    async def ledger(self) -> dict[str, Any]:
        r = await self.admin("GET", "/v1/admin/ledger")
        assert r.status_code == 200, r.text
        return r.json()

    async def expire(self) -> dict[str, int]:
        r = await self.admin("POST", "/v1/admin/expire")
        assert r.status_code == 200, r.text
        return r.json()


@asynccontextmanager
async def running_lab(store_url: str, load: bool = True,
                      hot_routes: bool = True) -> AsyncIterator[Lab]:
    """An app on `store_url`, started (lifespan) and wired to a client, with the test sale;
    without `hot_routes`, every request goes through the FastAPI routes (`api/hot.py`)."""
    clock = Clock()
    app = create_app(ServerConfig(store_url, ADMIN, expiry_interval=3600.0), clock)
    if not hot_routes:  # the middleware stack is built on the first request, not before
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HotRoutes]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lab") as client:
            lab = Lab(client, clock, app)
            if load:
                await lab.load()
            yield lab


def assert_conserved(ledger: dict[str, Any]) -> None:
    for sku, c in ledger["skus"].items():
        assert c["initial"] == c["available"] + c["reserved"] + c["sold"], (sku, c)
        assert min(c.values()) >= 0, (sku, c)


# -- a sale for real server processes ---------------------------------------------------------

SMALL_SCENARIO = """
[campaign]
name = "race sale"
per_user_limit = 1
payment_timeout_minutes = 15
[[campaign.skus]]
id = "hot"
stock = {stock}
list_price = 100.0
unit_cost = 40.0
[[campaign.skus]]
id = "grp"
stock = 1000
list_price = 50.0
unit_cost = 20.0
[[campaign.phases]]
name = "burst"
hours = 2
[campaign.groups]
window_hours = 4
tiers = [{{ size = 2, percent_off = 20 }}, {{ size = 3, percent_off = 30 }}]
[[campaign.coupons]]
id = "c5"
value = 5
pool = {pool}
per_user = 1
"""
