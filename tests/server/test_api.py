"""HTTP tests of every rule and error path of the checkout contract, against each store."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from tests.support.checkout import HOUR, Lab, assert_conserved, campaign, running_lab
from tests.support.stores import postgres_schema

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lab(real_store_url: str) -> AsyncIterator[Lab]:
    async with running_lab(real_store_url) as lab:
        yield lab


def code(r) -> str:
    return r.json()["error"]["code"]


# -- reading ---------------------------------------------------------------------------------

async def test_health_ping_and_sku_views(lab: Lab) -> None:
    h = (await lab.client.get("/v1/health")).json()
    assert h["status"] == "ok" and h["sale"] == "test sale"
    # the shared test Redis keeps nothing on disk: health must say so (durability, issue 11)
    assert h["safe"] is (lab.store.scheme != "redis")
    assert (await lab.client.get("/v1/ping")).json() == {"ok": True}
    skus = (await lab.client.get("/v1/skus")).json()["skus"]
    assert [s["sku_id"] for s in skus] == ["hot", "grp"]
    hot = (await lab.client.get("/v1/skus/hot")).json()
    assert hot == {"sku_id": "hot", "name": "Hot teapot", "list_price": 10000,
                   "price_now": 10000, "available": 5, "initial": 5}
    r = await lab.client.get("/v1/skus/nope")
    assert r.status_code == 404 and code(r) == "not_found"


async def test_time_discount_counts_hours_from_sale_start(lab: Lab) -> None:
    await lab.load(start=lab.clock.t)  # hour 0: first-hour 50% off
    assert (await lab.client.get("/v1/skus/hot")).json()["price_now"] == 5000
    r = await lab.reserve("u1")
    assert r.json()["amount"] == 5000 and r.json()["list_amount"] == 10000
    lab.clock.advance(HOUR)
    assert (await lab.client.get("/v1/skus/hot")).json()["price_now"] == 10000


# -- reserve, pay, cancel --------------------------------------------------------------------

async def test_reserve_pay_and_ledger(lab: Lab) -> None:
    r = await lab.reserve("u1", quantity=2)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "reserved" and order["user_id"] == "u1"
    assert order["amount"] == 20000 and order["list_amount"] == 20000
    assert order["expires_at"] == pytest.approx(lab.clock.t + 15 * 60)
    (move,) = order["movements"]
    assert move == {"kind": "reserve", "quantity": 2, "at": lab.clock.t, "seq": move["seq"]}
    assert (await lab.client.get("/v1/skus/hot")).json()["available"] == 3
    paid = await lab.pay("u1", order["order_id"])
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    assert paid.json()["gift"] is True  # first of the first-2 gift
    again = await lab.pay("u1", order["order_id"])
    assert again.status_code == 200 and again.json()["paid_at"] == paid.json()["paid_at"]
    led = await lab.ledger()
    assert led["skus"]["hot"] == {"initial": 5, "available": 3, "reserved": 0, "sold": 2,
                                  "released": 0, "refunded": 0}
    assert led["orders"]["paid"] == 1
    assert_conserved(led)


async def test_first_n_gift_follows_payment_order(lab: Lab) -> None:
    ids = [(await lab.reserve(f"u{i}")).json()["order_id"] for i in range(3)]
    gifts = [(await lab.pay(f"u{i}", ids[i])).json()["gift"] for i in (2, 0, 1)]
    assert gifts == [True, True, False]


async def test_sold_out_and_limits(lab: Lab) -> None:
    for i in range(5):
        assert (await lab.reserve(f"u{i}")).status_code == 201
    r = await lab.reserve("late")
    assert r.status_code == 409 and code(r) == "sold_out"
    assert (await lab.reserve("u0", sku="grp", quantity=2)).status_code == 201
    r = await lab.reserve("u0", sku="grp")
    assert r.status_code == 409 and code(r) == "limit_reached"
    r = await lab.reserve("u9", sku="grp", quantity=3)
    assert r.status_code == 422 and code(r) == "invalid"
    assert_conserved(await lab.ledger())


async def test_cancel_releases_stock_once(lab: Lab) -> None:
    oid = (await lab.reserve("u1", quantity=2)).json()["order_id"]
    r = await lab.cancel("u1", oid)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert [m["kind"] for m in r.json()["movements"]] == ["reserve", "release"]
    again = await lab.cancel("u1", oid)
    assert again.status_code == 200 and again.json() == r.json()
    led = await lab.ledger()
    assert led["skus"]["hot"]["available"] == 5 and led["skus"]["hot"]["released"] == 2
    r = await lab.pay("u1", oid)
    assert r.status_code == 409 and code(r) == "order_closed"
    # the limit counts active units only: the cancelled units are free again
    assert (await lab.reserve("u1", quantity=2)).status_code == 201


async def test_cannot_cancel_a_paid_order(lab: Lab) -> None:
    oid = (await lab.reserve("u1")).json()["order_id"]
    await lab.pay("u1", oid)
    r = await lab.cancel("u1", oid)
    assert r.status_code == 409 and code(r) == "order_closed"


async def test_unknown_things_are_not_found(lab: Lab) -> None:
    assert code(await lab.reserve("u1", sku="nope")) == "not_found"
    assert code(await lab.pay("u1", "o-missing")) == "not_found"
    assert code(await lab.cancel("u1", "o-missing")) == "not_found"
    assert code(await lab.as_user("u1", "GET", "/v1/orders/o-missing")) == "not_found"
    assert code(await lab.client.get("/v1/groups/g-missing")) == "not_found"
    assert code(await lab.claim("u1", "nope")) == "not_found"
    assert code(await lab.reserve("u1", sku="grp", group_id="g-missing")) == "not_found"
    r = await lab.client.get("/v1/no/such/path")
    assert r.status_code == 404 and code(r) == "not_found"
    r = await lab.client.delete("/v1/ping")
    assert r.status_code == 405 and code(r) == "method_not_allowed"


# -- identity --------------------------------------------------------------------------------

async def test_identity_rules(lab: Lab) -> None:
    oid = (await lab.reserve("alice")).json()["order_id"]
    assert (await lab.as_user("alice", "GET", f"/v1/orders/{oid}")).status_code == 200
    for r in (await lab.as_user("bob", "GET", f"/v1/orders/{oid}"), await lab.pay("bob", oid),
              await lab.cancel("bob", oid)):
        assert r.status_code == 403 and code(r) == "forbidden"
    assert (await lab.admin("GET", f"/v1/orders/{oid}")).status_code == 200
    r = await lab.client.post("/v1/orders", json={"sku_id": "hot", "quantity": 1},
                              headers={"Idempotency-Key": "k"})
    assert r.status_code == 401 and code(r) == "unauthorized"
    forged = "alice." + "0" * 64
    r = await lab.client.post(f"/v1/orders/{oid}/pay",
                              headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = await lab.as_user("alice", "GET", "/v1/admin/ledger")
    assert r.status_code == 403 and code(r) == "forbidden"
    r = await lab.client.get("/v1/admin/ledger", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await lab.admin("POST", "/v1/orders", json={"sku_id": "hot", "quantity": 1},
                        headers={"Idempotency-Key": "k"})
    assert r.status_code == 403
    r = await lab.admin("POST", "/v1/admin/user-tokens", json={"user_ids": ["bad id!"]})
    assert r.status_code == 422


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"not json", b"", b"[]", b'{"sku_id": "hot"}', b'{"sku_id": "hot", "quantity": 0}',
    b'{"sku_id": "hot", "quantity": "1"}', b'{"sku_id": "hot", "quantity": 1.5}',
    b'{"sku_id": "hot", "quantity": 99999999999999999999999}',
    b'{"sku_id": "h o t", "quantity": 1}', b'{"sku_id": "hot", "quantity": 1, "qty": 1}',
    b'{"sku_id": "' + b"x" * 65 + b'", "quantity": 1}', b'{"sku_id": null, "quantity": 1}',
])
async def test_malformed_reservations_are_422(lab: Lab, body: bytes) -> None:
    r = await lab.as_user("u1", "POST", "/v1/orders", key=lab.key(), content=body)
    assert r.status_code == 422 and code(r) == "invalid", r.text


async def test_idempotency_key_is_required_and_bounded(lab: Lab) -> None:
    body = {"sku_id": "hot", "quantity": 1}
    r = await lab.as_user("u1", "POST", "/v1/orders", json=body)
    assert r.status_code == 422 and code(r) == "invalid"
    r = await lab.as_user("u1", "POST", "/v1/orders", key="k" * 129, json=body)
    assert r.status_code == 422
    r = await lab.as_user("u1", "POST", "/v1/coupons/c10/claim")
    assert r.status_code == 422


# -- idempotency -----------------------------------------------------------------------------

async def test_same_key_same_body_replays_the_first_response(lab: Lab) -> None:
    body = {"sku_id": "hot", "quantity": 1}
    first = await lab.as_user("u1", "POST", "/v1/orders", key="same", json=body)
    second = await lab.as_user("u1", "POST", "/v1/orders", key="same", json=body)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert (await lab.ledger())["orders"]["reserved"] == 1
    r = await lab.as_user("u1", "POST", "/v1/orders", key="same",
                          json={"sku_id": "hot", "quantity": 2})
    assert r.status_code == 422 and code(r) == "idempotency_key_reused"
    # keys are per user: another user's identical key is a new request
    other = await lab.as_user("u2", "POST", "/v1/orders", key="same", json=body)
    assert other.status_code == 201 and other.json()["order_id"] != first.json()["order_id"]


async def test_a_refusal_is_replayed_too(lab: Lab) -> None:
    body = {"sku_id": "nope", "quantity": 1}
    a = await lab.as_user("u1", "POST", "/v1/orders", key="k", json=body)
    b = await lab.as_user("u1", "POST", "/v1/orders", key="k", json=body)
    assert a.status_code == b.status_code == 404 and a.content == b.content


async def test_in_flight_key_is_409_until_stale(lab: Lab) -> None:
    import hashlib

    from reference_server.domain import canonical_json
    body = {"sku_id": "hot", "quantity": 1}
    fp = hashlib.sha256(f"POST /v1/orders {canonical_json(body)}".encode()).hexdigest()
    began = await lab.store.idem_begin("u1", "busy", fp, lab.clock.t)
    assert began.state == "new"
    r = await lab.as_user("u1", "POST", "/v1/orders", key="busy", json=body)
    assert r.status_code == 409 and code(r) == "in_flight"
    lab.clock.advance(31)  # the first worker crashed: its marker goes stale and is taken over
    r = await lab.as_user("u1", "POST", "/v1/orders", key="busy", json=body)
    assert r.status_code == 201


async def test_concurrent_same_key_makes_one_order(lab: Lab) -> None:
    body = {"sku_id": "hot", "quantity": 1}
    rs = await asyncio.gather(*[lab.as_user("u1", "POST", "/v1/orders", key="race", json=body)
                                for _ in range(8)])
    assert {r.status_code for r in rs} <= {201, 409}
    assert len({r.json()["order_id"] for r in rs if r.status_code == 201}) == 1
    assert (await lab.ledger())["orders"]["reserved"] == 1


# -- expiry ----------------------------------------------------------------------------------

async def test_unpaid_reservation_expires_once(lab: Lab) -> None:
    oid = (await lab.reserve("u1", quantity=2)).json()["order_id"]
    lab.clock.advance(15 * 60 - 1)
    assert await lab.expire() == {"expired_orders": 0, "closed_groups": 0}
    lab.clock.advance(2)
    assert await lab.expire() == {"expired_orders": 1, "closed_groups": 0}
    assert await lab.expire() == {"expired_orders": 0, "closed_groups": 0}
    o = (await lab.as_user("u1", "GET", f"/v1/orders/{oid}")).json()
    assert o["status"] == "expired" and [m["kind"] for m in o["movements"]] == [
        "reserve", "release"]
    led = await lab.ledger()
    assert led["skus"]["hot"]["released"] == 2 and led["skus"]["hot"]["available"] == 5
    assert code(await lab.pay("u1", oid)) == "order_closed"


async def test_paying_late_expires_lazily(lab: Lab) -> None:
    oid = (await lab.reserve("u1")).json()["order_id"]
    lab.clock.advance(16 * 60)
    r = await lab.pay("u1", oid)
    assert r.status_code == 409 and code(r) == "order_closed"
    o = (await lab.as_user("u1", "GET", f"/v1/orders/{oid}")).json()
    assert o["status"] == "expired"
    assert (await lab.ledger())["skus"]["hot"]["available"] == 5


async def test_sold_out_frees_expired_stock_first(lab: Lab) -> None:
    for i in range(5):
        await lab.reserve(f"u{i}")
    lab.clock.advance(16 * 60)
    r = await lab.reserve("late")
    assert r.status_code == 201, r.text
    assert (await lab.ledger())["orders"]["expired"] == 5


async def test_payment_timeout_override(lab: Lab) -> None:
    await lab.load(payment_timeout_seconds=2)
    oid = (await lab.reserve("u1")).json()["order_id"]
    lab.clock.advance(3)
    assert (await lab.expire())["expired_orders"] == 1
    assert code(await lab.pay("u1", oid)) == "order_closed"


# -- groups ----------------------------------------------------------------------------------

async def test_group_fills_to_top_tier_and_reprices(lab: Lab) -> None:
    r = await lab.open_group("lead")
    assert r.status_code == 201, r.text
    g, lead = r.json()["group"], r.json()["order"]
    assert g["status"] == "open" and g["members"] == 1 and g["leader_id"] == "lead"
    assert g["top_size"] == 3 and g["min_size"] == 2 and g["tier_reached"] is None
    assert lead["amount"] == 4000 and lead["group_id"] == g["group_id"]  # smallest tier: 20% off
    gid = g["group_id"]
    o2 = (await lab.reserve("m2", sku="grp", group_id=gid)).json()
    o3 = (await lab.reserve("m3", sku="grp", group_id=gid)).json()
    r = await lab.reserve("m4", sku="grp", group_id=gid)
    assert r.status_code == 409 and code(r) == "group_full"
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()
    assert view["members"] == 3 and view["tier_reached"] == 3
    assert view["order_ids"] == [lead["order_id"], o2["order_id"], o3["order_id"]]
    for user, o in (("lead", lead), ("m2", o2), ("m3", o3)):
        assert (await lab.pay(user, o["order_id"])).status_code == 200
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()
    assert view["status"] == "completed" and view["paid_members"] == 3
    assert view["tier_reached"] == 3
    o = (await lab.as_user("m2", "GET", f"/v1/orders/{o2['order_id']}")).json()
    assert o["amount"] == 3500  # re-priced at the tier reached: 30% off
    led = await lab.ledger()
    assert led["groups"]["completed"] == 1 and led["groups"]["leader_rewards"] == 1
    r = await lab.reserve("m5", sku="grp", group_id=gid)
    assert r.status_code == 409 and code(r) == "group_closed"


async def test_group_completes_at_deadline_at_tier_reached(lab: Lab) -> None:
    await lab.load(payment_timeout_seconds=5 * HOUR)  # unpaid members outlive the group
    r = (await lab.open_group("lead")).json()
    gid, lead = r["group"]["group_id"], r["order"]
    o2 = (await lab.reserve("m2", sku="grp", group_id=gid)).json()
    o3 = (await lab.reserve("m3", sku="grp", group_id=gid)).json()
    await lab.pay("lead", lead["order_id"])
    await lab.pay("m2", o2["order_id"])
    lab.clock.advance(4 * HOUR + 1)
    assert (await lab.expire())["closed_groups"] == 1
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()
    assert view["status"] == "completed" and view["tier_reached"] == 2
    assert view["members"] == 2
    o = (await lab.as_user("m3", "GET", f"/v1/orders/{o3['order_id']}")).json()
    assert o["status"] == "cancelled" and o["movements"][-1]["kind"] == "release"
    paid = (await lab.as_user("m2", "GET", f"/v1/orders/{o2['order_id']}")).json()
    assert paid["status"] == "paid" and paid["amount"] == 4000
    assert_conserved(await lab.ledger())


async def test_failed_group_refunds_paid_members_once(lab: Lab) -> None:
    r = (await lab.open_group("lead", quantity=2)).json()
    gid, lead = r["group"]["group_id"], r["order"]
    await lab.pay("lead", lead["order_id"])
    lab.clock.advance(4 * HOUR + 1)
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()  # closed lazily on view
    assert view["status"] == "failed" and view["tier_reached"] is None
    assert (view["members"], view["paid_members"]) == (0, 0)  # refunded: no active member
    assert (await lab.expire())["closed_groups"] == 0
    o = (await lab.as_user("lead", "GET", f"/v1/orders/{lead['order_id']}")).json()
    assert o["status"] == "refunded"
    assert [m["kind"] for m in o["movements"]] == ["reserve", "refund"]
    led = await lab.ledger()
    assert led["skus"]["grp"] == {"initial": 50, "available": 50, "reserved": 0, "sold": 0,
                                  "released": 0, "refunded": 2}
    assert led["groups"]["failed"] == 1 and led["groups"]["leader_rewards"] == 0
    r = await lab.reserve("late", sku="grp", group_id=gid)
    assert code(r) == "group_closed"


async def test_failed_group_with_fallback_price_keeps_paid_orders(lab: Lab) -> None:
    groups = dict(campaign()["groups"], failure_policy="fallback_price",
                  fallback_percent_off=10)
    await lab.load(campaign(groups=groups), group_window_seconds=60)
    r = (await lab.open_group("lead")).json()
    gid, lead = r["group"]["group_id"], r["order"]
    await lab.pay("lead", lead["order_id"])
    lab.clock.advance(61)
    assert (await lab.expire())["closed_groups"] == 1
    o = (await lab.as_user("lead", "GET", f"/v1/orders/{lead['order_id']}")).json()
    assert o["status"] == "paid" and o["amount"] == 4500
    assert (await lab.client.get(f"/v1/groups/{gid}")).json()["status"] == "failed"


async def test_group_join_checks(lab: Lab) -> None:
    gid = (await lab.open_group("lead")).json()["group"]["group_id"]
    r = await lab.reserve("m2", sku="hot", group_id=gid)
    assert r.status_code == 422 and code(r) == "invalid"
    lab.clock.advance(4 * HOUR)
    r = await lab.reserve("m2", sku="grp", group_id=gid)
    assert r.status_code == 409 and code(r) == "group_closed"


async def test_cancelled_member_frees_a_seat(lab: Lab) -> None:
    gid = (await lab.open_group("lead")).json()["group"]["group_id"]
    o2 = (await lab.reserve("m2", sku="grp", group_id=gid)).json()
    await lab.reserve("m3", sku="grp", group_id=gid)
    await lab.cancel("m2", o2["order_id"])
    assert (await lab.reserve("m4", sku="grp", group_id=gid)).status_code == 201


async def test_no_groups_in_sale(lab: Lab) -> None:
    await lab.load(campaign(groups=None))
    r = await lab.open_group("lead")
    assert r.status_code == 422 and code(r) == "invalid"


# -- coupons ---------------------------------------------------------------------------------

async def test_coupon_pool_per_user_limit_and_use(lab: Lab) -> None:
    r = await lab.claim("u1")
    assert r.status_code == 201 and r.json()["coupon_id"] == "c10"
    assert code(await lab.claim("u1")) == "limit_reached"
    await lab.claim("u2")
    await lab.claim("u3")
    r = await lab.claim("u4")
    assert r.status_code == 409 and code(r) == "coupon_exhausted"
    assert code(await lab.reserve("u4", coupon_id="c10")) == "coupon_unavailable"
    o = await lab.reserve("u1", coupon_id="c10")
    assert o.status_code == 201 and o.json()["amount"] == 9000 and o.json()["coupon_id"] == "c10"
    assert code(await lab.reserve("u1", sku="grp", coupon_id="c10")) == "coupon_unavailable"
    led = await lab.ledger()
    assert led["coupons"]["c10"] == {"pool": 3, "issued": 3, "per_user": 1}
    assert_conserved(led)


async def test_concurrent_coupon_claims_never_exceed_pool(lab: Lab) -> None:
    rs = await asyncio.gather(*[lab.claim(f"u{i}") for i in range(12)])
    assert sorted(r.status_code for r in rs) == [201] * 3 + [409] * 9
    claims = (await lab.admin("GET", "/v1/admin/coupon-claims")).json()["claims"]
    assert len(claims) == 3


# -- admin -----------------------------------------------------------------------------------

async def test_exports_page_through_everything(lab: Lab) -> None:
    ids = [(await lab.reserve(f"u{i}", sku="grp")).json()["order_id"] for i in range(5)]
    await lab.open_group("lead")
    await lab.claim("u1")
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await lab.admin("GET", "/v1/admin/orders", params=params)).json()
        seen += [o["order_id"] for o in page["orders"]]
        after = page["next"]
        if after is None:
            break
    assert seen[:5] == ids and len(seen) == 6
    groups = (await lab.admin("GET", "/v1/admin/groups")).json()
    assert len(groups["groups"]) == 1 and groups["next"] is None
    assert len(groups["groups"][0]["order_ids"]) == 1
    r = await lab.admin("GET", "/v1/admin/orders", params={"limit": 1001})
    assert r.status_code == 422
    r = await lab.admin("GET", "/v1/admin/orders", params={"after": "x"})
    assert r.status_code == 422


async def test_reset_and_reload(lab: Lab) -> None:
    await lab.reserve("u1")
    await lab.claim("u1")
    r = await lab.admin("POST", "/v1/admin/reset")
    assert r.status_code == 200
    led = await lab.ledger()
    assert led["skus"]["hot"]["available"] == 5 and led["orders"]["reserved"] == 0
    assert led["coupons"]["c10"]["issued"] == 0


async def test_bad_campaign_names_the_key(lab: Lab) -> None:
    bad = campaign(skus=[{"id": "x", "stock": -1, "list_price": 1.0, "unit_cost": 0}])
    r = await lab.admin("POST", "/v1/admin/sale", json={"campaign": bad})
    assert r.status_code == 422 and "campaign.skus[0].stock" in r.json()["error"]["message"]
    r = await lab.admin("POST", "/v1/admin/sale", json={"campaign": CAMPAIGN_TYPO})
    assert r.status_code == 422 and "campaign.per_user_limt" in r.json()["error"]["message"]
    r = await lab.admin("POST", "/v1/admin/sale",
                        json={"campaign": campaign(), "payment_timeout_seconds": -1})
    assert r.status_code == 422
    huge = campaign(spend_thresholds=[{"spend": 1e308, "off": 1}])
    r = await lab.admin("POST", "/v1/admin/sale", json={"campaign": huge})
    assert r.status_code == 422
    assert "campaign.spend_thresholds[0].spend" in r.json()["error"]["message"]
    assert (await lab.client.get("/v1/health")).json()["sale"] == "test sale"  # unchanged


CAMPAIGN_TYPO = campaign(per_user_limt=3)


async def test_no_sale_loaded(real_store_url: str) -> None:
    async with running_lab(real_store_url, load=False) as lab:
        assert (await lab.client.get("/v1/health")).json()["sale"] is None
        r = await lab.reserve("u1")
        assert r.status_code == 409 and code(r) == "no_sale"
        assert code(await lab.client.get("/v1/skus")) == "no_sale"


async def test_backend_trouble_is_503_and_the_key_can_be_retried(lab: Lab, monkeypatch) -> None:
    from reference_server.errors import StoreUnavailable

    real = lab.store.once

    async def down(*args, **kw):
        raise StoreUnavailable("backend down (test)")
    monkeypatch.setattr(lab.store, "once", down)
    body = {"sku_id": "hot", "quantity": 1}
    r = await lab.as_user("u1", "POST", "/v1/orders", key="retry-me", json=body)
    assert r.status_code == 503 and code(r) == "unavailable"
    monkeypatch.setattr(lab.store, "once", real)
    r = await lab.as_user("u1", "POST", "/v1/orders", key="retry-me", json=body)
    assert r.status_code == 201  # the failed attempt left no in-flight marker behind


async def test_oversized_body_is_413(lab: Lab) -> None:
    r = await lab.as_user("u1", "POST", "/v1/orders", key="big",
                          content=b'{"sku_id": "' + b"x" * 1_000_001 + b'"}')
    assert r.status_code == 413 and code(r) == "too_large"


async def test_unsafe_store_says_what_it_is(tmp_path) -> None:
    async with running_lab(f"unsafe:///{tmp_path}/u.sqlite3") as lab:
        h = (await lab.client.get("/v1/health")).json()
        assert h["store"] == "unsafe" and h["safe"] is False and "oversell" in h["warning"]


# -- regressions -----------------------------------------------------------------------------

async def test_paying_after_the_group_deadline_fails_the_group_first(lab: Lab) -> None:
    # no expiry pass ran at the deadline: the late payment must not count toward completion
    await lab.load(group_window_seconds=60, payment_timeout_seconds=HOUR)
    r = (await lab.open_group("lead")).json()
    gid, lead = r["group"]["group_id"], r["order"]
    o2 = (await lab.reserve("m2", sku="grp", group_id=gid)).json()
    assert (await lab.pay("lead", lead["order_id"])).status_code == 200
    lab.clock.advance(60.005)
    r = await lab.pay("m2", o2["order_id"])
    assert r.status_code == 409 and code(r) == "order_closed", r.text
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()
    assert view["status"] == "failed" and view["tier_reached"] is None
    o = (await lab.as_user("m2", "GET", f"/v1/orders/{o2['order_id']}")).json()
    assert o["status"] == "cancelled" and o["movements"][-1]["kind"] == "release"
    o = (await lab.as_user("lead", "GET", f"/v1/orders/{lead['order_id']}")).json()
    assert o["status"] == "refunded"
    led = await lab.ledger()
    assert led["groups"]["failed"] == 1 and led["groups"]["leader_rewards"] == 0
    assert_conserved(led)
    r = await lab.pay("m2", o2["order_id"])  # and stays closed
    assert r.status_code == 409 and code(r) == "order_closed"
    r = await lab.reserve("m3", sku="grp", group_id=gid)
    assert r.status_code == 409 and code(r) == "group_closed"


async def test_non_ascii_bearer_token_is_401(lab: Lab) -> None:
    good = await lab.token("alice")
    for token in ("\u00e9", good + "\u00e9", "alice.\u00e9"):
        auth = f"Bearer {token}".encode("latin-1")
        for method, path in (("GET", "/v1/admin/ledger"), ("POST", "/v1/orders/o-1/pay"),
                             ("GET", "/v1/orders/o-1")):
            r = await lab.client.request(method, path, headers={"Authorization": auth})
            assert r.status_code == 401 and code(r) == "unauthorized", (token, path, r.text)


@pytest.mark.parametrize("path", ["/v1/admin/orders", "/v1/admin/groups",
                                  "/v1/admin/coupon-claims"])
@pytest.mark.parametrize("param", ["after", "limit"])
async def test_unicode_digits_in_export_queries_are_422(lab: Lab, path: str, param: str) -> None:
    for value in ("\u00b2", "\u0663", "1\u00b2"):
        r = await lab.admin("GET", path, params={param: value})
        assert r.status_code == 422 and code(r) == "invalid", (value, r.text)


async def test_invalid_store_refusals_do_not_record_the_key(lab: Lab) -> None:
    r = await lab.as_user("u1", "POST", "/v1/orders", key="q",
                          json={"sku_id": "hot", "quantity": 3})  # above the per-user limit
    assert r.status_code == 422 and code(r) == "invalid"
    r = await lab.as_user("u1", "POST", "/v1/orders", key="q",
                          json={"sku_id": "hot", "quantity": 1})
    assert r.status_code == 201, r.text
    gid = (await lab.open_group("lead")).json()["group"]["group_id"]
    r = await lab.as_user("u2", "POST", "/v1/orders", key="j",
                          json={"sku_id": "hot", "quantity": 1, "group_id": gid})
    assert r.status_code == 422 and code(r) == "invalid"
    r = await lab.as_user("u2", "POST", "/v1/orders", key="j",
                          json={"sku_id": "grp", "quantity": 1, "group_id": gid})
    assert r.status_code == 201, r.text


async def test_expired_orders_do_not_hold_the_limit_or_group_seats(lab: Lab) -> None:
    assert (await lab.reserve("u1", quantity=2)).status_code == 201
    gid = (await lab.open_group("lead")).json()["group"]["group_id"]
    for user in ("m2", "m3"):
        assert (await lab.reserve(user, sku="grp", group_id=gid)).status_code == 201
    lab.clock.advance(15 * 60 + 1)  # every reservation is past expires_at, none released yet
    r = await lab.reserve("u1", quantity=1)
    assert r.status_code == 201, r.text
    r = await lab.reserve("m4", sku="grp", group_id=gid)
    assert r.status_code == 201, r.text
    assert_conserved(await lab.ledger())


@pytest.mark.parametrize("path", ["/v1/skus/hot%0A", "/v1/orders/o-1%0A",
                                  "/v1/groups/g-1%0A"])
async def test_ids_with_a_trailing_newline_are_422(lab: Lab, path: str) -> None:
    r = await lab.admin("GET", path)
    assert r.status_code == 422 and code(r) == "invalid", r.text


def test_user_token_ids_with_a_trailing_newline_are_refused() -> None:
    from reference_server.auth import user_from_token, user_token
    assert user_from_token("s", user_token("s", "alice\n", 2e9), 1e9) is None
    assert user_from_token("s", user_token("s", "alice", 2e9), 1e9) == "alice"


@pytest.mark.parametrize("body", [b'{"x": 1}', b"not json", b"[]", b"null", b'{"coupon": 1}'])
async def test_claim_body_must_be_empty_or_an_empty_object(lab: Lab, body: bytes) -> None:
    r = await lab.as_user("u1", "POST", "/v1/coupons/c10/claim", key="c", content=body)
    assert r.status_code == 422 and code(r) == "invalid", r.text
    r = await lab.as_user("u1", "POST", "/v1/coupons/c10/claim", key="c", content=b"{}")
    assert r.status_code == 201, r.text


@pytest.mark.postgres
async def test_postgres_key_race_on_unique_user_key_is_in_flight(postgres_url: str) -> None:
    from reference_server.errors import ApiError

    def twice(tx) -> None:
        for _ in range(2):
            tx.run("INSERT INTO claims (claim_id, coupon_id, user_id, idempotency_key, "
                   "claimed_at) VALUES (?, 'c10', 'u1', 'k', 0)", secrets.token_hex(4))

    with postgres_schema(postgres_url) as url:
        async with running_lab(url) as lab:
            with pytest.raises(ApiError) as err:
                await lab.store._call(twice)
            assert err.value.code == "in_flight"


# -- contract 1.2 ----------------------------------------------------------------------------

async def test_contract_1_2_movement_seq_orders_every_movement_of_the_sale(lab: Lab) -> None:
    await lab.load(payment_timeout_seconds=60)
    a = (await lab.reserve("u1")).json()
    b = (await lab.reserve("u2", quantity=2)).json()
    await lab.cancel("u2", b["order_id"])
    c = (await lab.reserve("u3")).json()
    lab.clock.advance(61)
    await lab.expire()  # a and c expire: two more releases
    moves = []
    for user, o in (("u1", a), ("u2", b), ("u3", c)):
        got = (await lab.as_user(user, "GET", f"/v1/orders/{o['order_id']}")).json()
        moves += [m | {"order": o["order_id"]} for m in got["movements"]]
    seqs = [m["seq"] for m in moves]
    assert len(set(seqs)) == len(seqs) == 6 and all(isinstance(s, int) for s in seqs)
    # sorted by seq, the movements are the order the store applied them in
    applied = [(m["order"], m["kind"]) for m in sorted(moves, key=lambda m: m["seq"])]
    assert applied[:4] == [(a["order_id"], "reserve"), (b["order_id"], "reserve"),
                           (b["order_id"], "release"), (c["order_id"], "reserve")]
    available = 5
    for m in sorted(moves, key=lambda m: m["seq"]):
        available += m["quantity"] if m["kind"] in ("release", "refund") else -m["quantity"]
    assert available == (await lab.ledger())["skus"]["hot"]["available"] == 5


async def test_contract_1_2_paid_seq_ranks_payments_and_decides_the_gift(lab: Lab) -> None:
    ids = [(await lab.reserve(f"u{i}")).json()["order_id"] for i in range(3)]
    assert (await lab.as_user("u0", "GET", f"/v1/orders/{ids[0]}")).json()["paid_seq"] is None
    paid = [(await lab.pay(f"u{i}", ids[i])).json() for i in (2, 0, 1)]
    assert [p["paid_seq"] for p in paid] == [1, 2, 3]
    assert [p["gift"] for p in paid] == [True, True, False]  # first_orders_gift.count = 2
    exported = (await lab.admin("GET", "/v1/admin/orders")).json()["orders"]
    assert sorted(o["paid_seq"] for o in exported) == [1, 2, 3]


async def test_contract_1_2_leader_reward_only_for_completed_groups(lab: Lab) -> None:
    done = (await lab.open_group("lead")).json()
    gid = done["group"]["group_id"]
    assert done["group"]["leader_reward"] == 0
    members = [(await lab.reserve(u, sku="grp", group_id=gid)).json() for u in ("m2", "m3")]
    for user, o in (("lead", done["order"]), ("m2", members[0]), ("m3", members[1])):
        await lab.pay(user, o["order_id"])
    view = (await lab.client.get(f"/v1/groups/{gid}")).json()
    assert view["status"] == "completed" and view["leader_reward"] == 500  # 5 yuan
    failed = (await lab.open_group("lone")).json()["group"]["group_id"]
    lab.clock.advance(4 * HOUR + 1)
    await lab.expire()
    exported = (await lab.admin("GET", "/v1/admin/groups")).json()["groups"]
    groups = {g["group_id"]: g for g in exported}
    assert groups[gid]["leader_reward"] == 500 and groups[failed]["leader_reward"] == 0
    assert groups[failed]["status"] == "failed"


async def test_contract_1_2_ledger_names_the_sale_it_holds(lab: Lab) -> None:
    led = await lab.ledger()
    assert led["start"] == lab.clock.t - 2 * HOUR
    assert led["payment_timeout_seconds"] == 15 * 60
    assert led["group_window_seconds"] == 4 * HOUR
    first = led["sale_id"]
    assert isinstance(first, str) and first
    assert (await lab.ledger())["sale_id"] == first  # stable while nothing reloads
    await lab.admin("POST", "/v1/admin/reset")
    after_reset = (await lab.ledger())["sale_id"]
    await lab.load(payment_timeout_seconds=7, group_window_seconds=9)
    led = await lab.ledger()
    assert len({first, after_reset, led["sale_id"]}) == 3
    assert (led["payment_timeout_seconds"], led["group_window_seconds"]) == (7, 9)


async def test_contract_1_2_claim_export_carries_the_idempotency_key(lab: Lab) -> None:
    r = await lab.as_user("u1", "POST", "/v1/coupons/c10/claim", key="claim-key-1")
    assert r.status_code == 201
    claims = (await lab.admin("GET", "/v1/admin/coupon-claims")).json()["claims"]
    assert [(c["user_id"], c["idempotency_key"]) for c in claims] == [("u1", "claim-key-1")]
    assert (await lab.client.get("/v1/health")).json()["contract"] == "1.2"


async def test_contract_1_2_sale_id_survives_a_restart_on_the_same_store(
        real_store_url: str) -> None:
    async with running_lab(real_store_url) as lab:
        sale_id = (await lab.ledger())["sale_id"]
    async with running_lab(real_store_url, load=False) as lab:
        assert (await lab.ledger())["sale_id"] == sale_id


async def test_contract_1_2_store_made_by_a_1_1_server_gains_the_new_columns(tmp_path) -> None:
    import sqlite3
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    async with running_lab(url) as lab:
        oid = (await lab.reserve("u1")).json()["order_id"]
    with sqlite3.connect(tmp_path / "old.sqlite3") as conn:  # back to the 1.1 tables
        for table, column in (("orders", "paid_seq"), ("sale", "sale_id"), ("sale", "move_seq")):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    async with running_lab(url, load=False) as lab:
        paid = (await lab.pay("u1", oid)).json()
        assert paid["status"] == "paid" and paid["paid_seq"] == 1


async def test_contract_1_2_on_the_unsafe_store(tmp_path) -> None:
    async with running_lab(f"unsafe:///{tmp_path}/u.sqlite3") as lab:
        o = (await lab.reserve("u1")).json()
        paid = (await lab.pay("u1", o["order_id"])).json()
        assert paid["paid_seq"] == 1 and isinstance(paid["movements"][0]["seq"], int)
        assert (await lab.ledger())["sale_id"]


async def test_user_tokens_expire(lab: Lab) -> None:
    from reference_server.auth import TOKEN_TTL_SECONDS
    r = await lab.admin("POST", "/v1/admin/user-tokens", json={"user_ids": ["u9"]})
    assert r.json()["expires_at"] == pytest.approx(lab.clock.t + TOKEN_TTL_SECONDS, abs=1)
    token = r.json()["tokens"]["u9"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k"}
    body = {"sku_id": "hot", "quantity": 1}
    assert (await lab.client.post("/v1/orders", json=body, headers=headers)).status_code == 201
    lab.clock.advance(TOKEN_TTL_SECONDS + 1)
    r = await lab.client.post("/v1/orders", json=body, headers=headers)
    assert r.status_code == 401 and code(r) == "unauthorized"


# -- idempotency across faults (issue 11, item 3) ----------------------------------------------

async def _lose_the_reply(lab: Lab, monkeypatch) -> None:
    """The store commits (the change and the key's record), then the connection drops before
    the answer: 503; and the key's record is lost too (as when a Redis worker's marker is
    aborted after the 503)."""
    from reference_server.errors import StoreUnavailable
    real = lab.store.once

    async def commit_then_drop(idem, *args, **kw):
        await real(idem, *args, **kw)
        await lab.store.idem_abort(idem.user_id, idem.key)
        await _forget_key(lab, idem.user_id, idem.key)
        raise StoreUnavailable("connection lost after the commit (test)")
    monkeypatch.setattr(lab.store, "once", commit_then_drop)


async def _forget_key(lab: Lab, user: str, key: str) -> None:
    """Drop the key's replay record whatever its state (it expired, or was never written)."""
    store = lab.store
    if store.scheme == "redis":
        _, gen = await store._sale_gen()
        await store.r.delete(store._k(gen, f"idem:{user}:{key}"))
    else:
        await store._call(lambda tx: tx.run("DELETE FROM idem WHERE user_id = ? AND key = ?",
                                            user, key))


async def test_a_retry_with_another_body_after_a_lost_reply_is_422(lab: Lab, monkeypatch) -> None:
    await _lose_the_reply(lab, monkeypatch)
    r = await lab.as_user("u1", "POST", "/v1/orders", key="k", json={"sku_id": "hot",
                                                                     "quantity": 1})
    assert r.status_code == 503
    monkeypatch.undo()
    r = await lab.as_user("u1", "POST", "/v1/orders", key="k", json={"sku_id": "hot",
                                                                     "quantity": 2})
    assert r.status_code == 422 and code(r) == "idempotency_key_reused", r.text
    r = await lab.as_user("u1", "POST", "/v1/orders", key="k", json={"sku_id": "hot",
                                                                     "quantity": 1})
    assert r.status_code == 201 and r.json()["quantity"] == 1  # the first order, not a second
    assert (await lab.ledger())["orders"]["reserved"] == 1


async def test_a_group_retry_with_another_body_after_a_lost_reply_is_422(
        lab: Lab, monkeypatch) -> None:
    await _lose_the_reply(lab, monkeypatch)
    body = {"sku_id": "grp", "quantity": 1}
    assert (await lab.as_user("u1", "POST", "/v1/groups", key="g", json=body)).status_code == 503
    monkeypatch.undo()
    r = await lab.as_user("u1", "POST", "/v1/groups", key="g", json=body | {"quantity": 2})
    assert r.status_code == 422 and code(r) == "idempotency_key_reused", r.text
    r = await lab.as_user("u1", "POST", "/v1/groups", key="g", json=body)
    assert r.status_code == 201 and r.json()["group"]["members"] == 1
    assert (await lab.ledger())["groups"]["open"] == 1


async def test_a_claim_retry_for_another_coupon_after_a_lost_reply_is_422(
        lab: Lab, monkeypatch) -> None:
    await lab.load(campaign(coupons=[*CAMPAIGN_COUPONS, {"id": "c20", "value": 20,
                                                         "pool": 3, "per_user": 1}]))
    await _lose_the_reply(lab, monkeypatch)
    assert (await lab.as_user("u1", "POST", "/v1/coupons/c10/claim", key="c")).status_code == 503
    monkeypatch.undo()
    r = await lab.as_user("u1", "POST", "/v1/coupons/c20/claim", key="c")
    assert r.status_code == 422 and code(r) == "idempotency_key_reused", r.text
    assert (await lab.ledger())["coupons"]["c20"]["issued"] == 0


async def test_idempotency_records_expire_after_the_ttl(lab: Lab) -> None:
    from reference_server.stores.base import IDEMPOTENCY_TTL_SECONDS
    await lab.load(payment_timeout_seconds=3 * IDEMPOTENCY_TTL_SECONDS)
    body = {"sku_id": "hot", "quantity": 1}
    first = await lab.as_user("u1", "POST", "/v1/orders", key="old", json=body)
    await lab.pay("u1", first.json()["order_id"])
    lab.clock.advance(IDEMPOTENCY_TTL_SECONDS + 1)
    await lab.expire()
    # the replay record is gone: the retry is answered from the order itself, as it is now …
    again = await lab.as_user("u1", "POST", "/v1/orders", key="old", json=body)
    assert again.status_code == 201 and again.json()["order_id"] == first.json()["order_id"]
    assert again.json()["status"] == "paid"
    # … and another request under the key is still refused
    r = await lab.as_user("u1", "POST", "/v1/orders", key="old", json=body | {"quantity": 2})
    assert code(r) == "idempotency_key_reused"


CAMPAIGN_COUPONS = campaign()["coupons"]


# -- the served spec and the HTTP edges (issue 11, item 8) ---------------------------------------

async def test_405_names_the_allowed_methods(lab: Lab) -> None:
    r = await lab.client.delete("/v1/orders")
    assert r.status_code == 405 and code(r) == "method_not_allowed"
    assert r.headers["allow"] == "POST"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le"])
async def test_only_utf8_json_is_accepted(lab: Lab, encoding: str) -> None:
    body = '{"sku_id": "hot", "quantity": 1}'.encode(encoding)
    r = await lab.as_user("u1", "POST", "/v1/orders", key="u16", content=body)
    assert r.status_code == 422 and code(r) == "invalid" and "UTF-8" in r.text
    assert (await lab.ledger())["orders"]["reserved"] == 0


async def test_the_spec_documents_bodies_headers_auth_and_statuses(lab: Lab) -> None:
    spec = (await lab.client.get("/openapi.json")).json()
    reserve = spec["paths"]["/v1/orders"]["post"]
    assert set(reserve["responses"]) >= {"201", "401", "403", "404", "409", "422", "503"}
    assert "200" not in reserve["responses"]
    body = reserve["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["sku_id", "quantity"] and body["additionalProperties"] is False
    headers = {p["name"]: p for p in reserve["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["required"] is True
    assert reserve["security"] == [{"HTTPBearer": []}]
    err = reserve["responses"]["409"]["content"]["application/json"]["schema"]
    assert err["$ref"].endswith("/Error")
    assert "Retry-After" in reserve["responses"]["503"]["headers"]
    ledger = spec["paths"]["/v1/admin/ledger"]["get"]
    assert ledger["security"] == [{"HTTPBearer": []}] and "200" in ledger["responses"]
