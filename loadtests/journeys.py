"""Shopper journeys: what one arrival does (browse, buy, abandon, cancel, group, coupon, retry,
timeout, ping), each request recorded in the history and reported to Locust's statistics.

An operation's intended start is its actual start minus the arrival's lag (how late the
arrival itself started), so a load generator that falls behind shows in every request's
latency from intended start, not only in the first.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import gevent

from loadtests.history import PROBES, Op
from loadtests.plan import Plan

UNKNOWN_RETRIES = 3
"""How often a journey sends a request again after an unknown outcome (as shoppers' apps do)."""
RETRY_BACKOFF_SECONDS = 0.5
CLIENT_TIMEOUT_SECONDS = 0.001
"""The 'timeout' journey sends its first request, waits this long and hangs up without reading
the answer: its outcome is unknown."""


@dataclass
class Arrival:
    """One arrival: who, which journey, when it was meant to start and when it did."""

    worker: int
    number: int
    journey: str
    user: str
    token: str
    intended: float
    started: float = 0.0
    fresh: bool = False
    """The shopper id is a fresh one of its own (adversarial journeys)."""

    @property
    def lag(self) -> float:
        return max(0.0, self.started - self.intended)


@dataclass
class Answer:
    """What came back: outcome ok / fail / unknown, HTTP status, error code, JSON body."""

    outcome: str
    status: int | None
    code: str | None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def classify(status: int | None, body: dict[str, Any], error: str | None = None) -> Answer:
    """A 2xx with its body is ok; a 4xx with a contract error code is a definite fail; a 5xx, a
    4xx the contract does not explain, a cut-short answer, a timeout or a lost connection is
    unknown: the server may or may not have acted."""
    if error is not None or not status:
        return Answer("unknown", None, error or "connection", {})
    if 200 <= status < 300:
        if not body:  # an answer cut short: whatever the server did, the client cannot tell
            return Answer("unknown", status, "truncated", {})
        return Answer("ok", status, None, body)
    err = body.get("error") if isinstance(body, dict) else None
    if 400 <= status < 500 and isinstance(err, dict) and isinstance(err.get("code"), str):
        return Answer("fail", status, err["code"], body)
    return Answer("unknown", status, f"http_{status}", body)


Send = Callable[[str, str, str, dict[str, str], Any, float | None], tuple[int | None, bytes,
                                                                          str | None, float]]
"""send(method, path, name, headers, json body, timeout) -> (status, body bytes, error,
response time ms); implemented over Locust's FastHttpSession by `loadtests.openload`."""


class Shopper:
    """Runs one arrival's journey against the contract, recording every operation."""

    def __init__(self, plan: Plan, arrival: Arrival, send: Send,
                 record: Callable[[Op], None], groups: GroupBoard,
                 seed: float, orders: OrderBoard | None = None) -> None:
        self.plan, self.a, self.send, self.record = plan, arrival, send, record
        self.groups, self.seed = groups, seed
        self.orders = orders if orders is not None else OrderBoard()

    @cached_property
    def rng(self) -> random.Random:
        """This shopper's own random stream, made on first use (seeding one costs more than a
        ping journey, which never draws)."""
        return random.Random(self.seed)

    # -- plumbing ---------------------------------------------------------------------------

    def call(self, op: str, method: str, path: str, name: str, *, body: Any = None,
             key: str | None = None, timeout: float | None = None,
             **fields: Any) -> Answer:
        headers = {"Authorization": f"Bearer {self.a.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        start = time.time()
        status, raw, error = None, b"", "aborted"  # kept if the run stops mid-request
        try:
            status, raw, error, _ = self.send(method, path, name, headers, body, timeout)
        finally:
            # Also when the greenlet is killed at the end of the run: the request was sent and
            # its outcome is unknown, so it must be in the history.
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {}
            ans = classify(status, parsed if isinstance(parsed, dict) else {}, error)
            rec = {"worker": self.a.worker, "arrival": self.a.number, "journey": self.a.journey,
                   "user": self.a.user, "op": op, "key": key,
                   "intended": start - self.a.lag, "start": start, "end": time.time(),
                   "outcome": ans.outcome, "status": ans.status, "code": ans.code,
                   "name": name}
            if timeout is not None and timeout < self.plan.request_timeout:
                rec["client_timeout"] = timeout
            rec.update({k: v for k, v in fields.items() if v is not None})
            self._note_result(op, ans, rec)
            # A misspelt field fails here, not later; types are checked when it is read back.
            self.record(Op(**rec))
        return ans

    @staticmethod
    def _note_result(op: str, ans: Answer, rec: dict[str, Any]) -> None:
        b = ans.body
        if not ans.ok:
            return
        if op == "view_group":
            if isinstance(b.get("status"), str):
                rec["seen_status"] = b["status"]
            if isinstance(b.get("members"), int) and not isinstance(b["members"], bool):
                rec["seen_members"] = b["members"]
        elif op == "open_group":
            rec["group_id"] = (b.get("group") or {}).get("group_id")
            rec["order_id"] = (b.get("order") or {}).get("order_id")
        elif op == "claim":
            rec["claim_id"] = b.get("claim_id")
        elif "order_id" in b:
            rec["order_id"] = b["order_id"]

    def think(self, lo: float = 0.05, hi: float = 0.3) -> None:
        gevent.sleep(self.rng.uniform(lo, hi))

    def new_key(self) -> str:
        return f"k-{uuid.uuid4().hex}"

    def sku(self) -> str:
        return self.rng.choice(self.plan.skus)

    def reserve(self, sku: str, *, key: str | None = None, coupon: str | None = None,
                group: str | None = None, timeout: float | None = None, quantity: int = 1,
                name: str = "POST /v1/orders", probe: str | None = None
                ) -> tuple[Answer, str]:
        key = key or self.new_key()
        body: dict[str, Any] = {"sku_id": sku, "quantity": quantity}
        if coupon:
            body["coupon_id"] = coupon
        if group:
            body["group_id"] = group
        op = "join" if group else "reserve"

        def send() -> Answer:
            return self.call(op, "POST", "/v1/orders", name, body=body, key=key,
                             timeout=timeout, sku_id=sku, quantity=quantity, coupon_id=coupon,
                             group_id=group, probe=probe)
        # The timeout journey hangs up on purpose and retries by itself.
        ans = send() if timeout is not None else self.until_known(send)
        if ans.ok and probe is None and self.a.journey != "adversarial":
            self.orders.add(ans.body.get("order_id"))
        return ans, key

    def pay(self, order_id: str, probe: str | None = None) -> Answer:
        return self.until_known(lambda: self.call(
            "pay", "POST", f"/v1/orders/{order_id}/pay", "POST /v1/orders/{id}/pay",
            order_id=order_id, probe=probe))

    def cancel(self, order_id: str, probe: str | None = None) -> Answer:
        return self.until_known(lambda: self.call(
            "cancel", "POST", f"/v1/orders/{order_id}/cancel", "POST /v1/orders/{id}/cancel",
            order_id=order_id, probe=probe))

    def until_known(self, send: Callable[[], Answer]) -> Answer:
        """Send, and while the outcome is unknown (a fault cut it, a 5xx) or the first attempt
        is still `in_flight`, wait a little and send the same request again: same
        idempotency key, or a pay / cancel, which are idempotent by nature. Each attempt is in
        the history; the checker proves none took effect twice."""
        ans = send()
        for attempt in range(UNKNOWN_RETRIES):
            if ans.outcome != "unknown" and ans.code != "in_flight":
                break
            gevent.sleep(RETRY_BACKOFF_SECONDS * (attempt + 1))
            ans = send()
        return ans

    # -- journeys ---------------------------------------------------------------------------

    def run(self) -> None:
        getattr(self, f"j_{self.a.journey}")()

    def j_browse(self) -> None:
        self.call("browse", "GET", "/v1/skus", "GET /v1/skus")
        self.think()
        sku = self.sku()
        self.call("browse", "GET", f"/v1/skus/{sku}", "GET /v1/skus/{id}", sku_id=sku)

    def j_ping(self) -> None:
        self.call("ping", "GET", "/v1/ping", "GET /v1/ping")

    def j_buy(self) -> None:
        ans, _ = self.reserve(self.sku())
        if ans.ok:
            self.think()
            self.pay(ans.body["order_id"])

    def j_abandon(self) -> None:
        self.reserve(self.sku())

    def j_cancel(self) -> None:
        ans, _ = self.reserve(self.sku())
        if ans.ok:
            self.think()
            self.cancel(ans.body["order_id"])

    def j_coupon(self) -> None:
        if not self.plan.coupons:
            self.j_buy()
            return
        cid = self.rng.choice(self.plan.coupons)
        got = self.call("claim", "POST", f"/v1/coupons/{cid}/claim", "POST /v1/coupons/{id}/claim",
                        key=self.new_key(), coupon_id=cid)
        if not got.ok:
            return
        self.think()
        ans, _ = self.reserve(self.sku(), coupon=cid)
        if ans.ok:
            self.think()
            self.pay(ans.body["order_id"])

    def j_group(self) -> None:
        sku = self.plan.skus[-1]
        gid = self.groups.pick(sku, self.rng)
        if gid is not None:
            ans, _ = self.reserve(sku, group=gid)
        else:
            key = self.new_key()
            ans = self.call("open_group", "POST", "/v1/groups", "POST /v1/groups",
                            body={"sku_id": sku, "quantity": 1}, key=key, sku_id=sku,
                            quantity=1)
            if ans.ok:
                self.groups.add(sku, ans.body["group"]["group_id"],
                                ans.body["group"].get("deadline", time.time()))
                ans = Answer("ok", ans.status, None, ans.body["order"])
                self.orders.add(ans.body.get("order_id"))
        if gid is not None and not ans.ok and ans.code in ("group_full", "group_closed"):
            self.groups.remove(sku, gid)
        # Some members never pay, so some groups stay below their size and fail.
        if ans.ok and self.rng.random() < 0.75:
            self.think(0.1, 0.5)
            self.pay(ans.body["order_id"])

    def j_retry(self) -> None:
        sku = self.sku()
        ans, key = self.reserve(sku)
        self.think(0.0, 0.05)
        again, _ = self.reserve(sku, key=key, name="POST /v1/orders [same key]")
        order = (ans.body if ans.ok else again.body).get("order_id")
        if order and (ans.ok or again.ok):
            self.think()
            self.pay(order)

    def j_timeout(self) -> None:
        sku = self.sku()
        ans, key = self.reserve(sku, timeout=CLIENT_TIMEOUT_SECONDS,
                                name="POST /v1/orders [client timeout]")
        for attempt in range(4):
            if ans.outcome != "unknown" and ans.code != "in_flight":
                break
            gevent.sleep(0.1 * (attempt + 1))
            ans, _ = self.reserve(sku, key=key, name="POST /v1/orders [same key]")
        if ans.ok:
            self.think()
            self.pay(ans.body["order_id"])


    # -- adversarial journey: requests a correct server refuses or ignores -----------------

    def j_adversarial(self) -> None:
        """One probe (`loadtests.history.PROBES`) as a fresh shopper of its own, so that no
        other arrival's claims or orders change what the right answer is."""
        if not self.a.fresh:
            self.j_browse()  # no fresh shopper id left: a probe's premise would not hold
            return
        start = self.rng.randrange(len(PROBES))
        for i in range(len(PROBES)):
            probe = PROBES[(start + i) % len(PROBES)]
            if getattr(self, f"p_{probe}")():
                return
        self.j_browse()

    def p_unclaimed_coupon(self) -> bool:
        if not self.plan.coupons:
            return False
        self.reserve(self.sku(), coupon=self.rng.choice(self.plan.coupons),
                     probe="unclaimed_coupon", name="POST /v1/orders [adversarial]")
        return True

    def p_used_coupon(self) -> bool:
        """Claim once, spend it on an order, cancel that order (the claim stays used), then
        name the coupon again."""
        if not self.plan.coupons:
            return False
        cid = self.rng.choice(self.plan.coupons)
        got = self.call("claim", "POST", f"/v1/coupons/{cid}/claim",
                        "POST /v1/coupons/{id}/claim", key=self.new_key(), coupon_id=cid)
        if not got.ok:
            return True
        sku = self.sku()
        ans, _ = self.reserve(sku, coupon=cid)
        if not ans.ok:
            return True
        self.cancel(ans.body["order_id"])
        self.reserve(sku, coupon=cid, probe="used_coupon", name="POST /v1/orders [adversarial]")
        return True

    def p_foreign_pay(self) -> bool:
        oid = self.orders.pick(self.rng)
        if oid is None:
            return False
        self.pay(oid, probe="foreign_pay")
        return True

    def p_foreign_cancel(self) -> bool:
        oid = self.orders.pick(self.rng)
        if oid is None:
            return False
        self.cancel(oid, probe="foreign_cancel")
        return True

    def _seen_group(self, want: str) -> tuple[str, str, Answer] | None:
        for sku, gid in self.groups.known(self.rng):
            seen = self.call("view_group", "GET", f"/v1/groups/{gid}", "GET /v1/groups/{id}",
                             group_id=gid, sku_id=sku)
            status = seen.body.get("status")
            full = status == "open" and isinstance(seen.body.get("members"), int) and \
                seen.body["members"] >= seen.body.get("top_size", 1 << 30)
            if seen.ok and ((want == "closed" and status in ("completed", "failed"))
                            or (want == "full" and full)):
                return sku, gid, seen
            return None  # one look per probe: the next arrival tries another group
        return None

    def p_closed_group(self) -> bool:
        found = self._seen_group("closed")
        if found is None:
            return False
        sku, gid, _ = found
        self.reserve(sku, group=gid, probe="closed_group", name="POST /v1/orders [adversarial]")
        return True

    def p_full_group(self) -> bool:
        found = self._seen_group("full")
        if found is None:
            return False
        sku, gid, _ = found
        self.reserve(sku, group=gid, probe="full_group", name="POST /v1/orders [adversarial]")
        return True

    def p_late_pay(self) -> bool:
        """Reserve, wait until the payment timeout has certainly passed, then pay."""
        ans, _ = self.reserve(self.sku())
        if ans.ok:
            gevent.sleep(self.plan.payment_timeout + LATE_PAY_MARGIN_SECONDS)
            self.pay(ans.body["order_id"], probe="late_pay")
        return True

    def p_altered_retry(self) -> bool:
        """Reserve, then send another request under the same idempotency key."""
        sku = self.sku()
        ans, key = self.reserve(sku)
        others = [s for s in self.plan.skus if s != sku]
        if others:
            self.reserve(self.rng.choice(others), key=key, probe="altered_retry",
                         name="POST /v1/orders [adversarial]")
        elif self.plan.coupons:
            self.reserve(sku, key=key, coupon=self.plan.coupons[0], probe="altered_retry",
                         name="POST /v1/orders [adversarial]")
        else:
            self.reserve(sku, key=key, quantity=2, probe="altered_retry",
                         name="POST /v1/orders [adversarial]")
        if ans.ok:
            self.cancel(ans.body["order_id"])
        return True


LATE_PAY_MARGIN_SECONDS = 0.5


class OrderBoard:
    """Recent orders of regular shoppers in this load process: targets for the adversarial
    journey's attempts to pay or cancel someone else's order."""

    def __init__(self, keep: int = 200) -> None:
        self._ids: list[str] = []
        self._keep = keep

    def add(self, order_id: str | None) -> None:
        if order_id:
            self._ids.append(order_id)
            if len(self._ids) > 2 * self._keep:
                del self._ids[:self._keep]

    def pick(self, rng: random.Random) -> str | None:
        return rng.choice(self._ids) if self._ids else None


class GroupBoard:
    """Groups this load process knows of: open ones later arrivals can join, and every one an
    adversarial journey may look at."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, float]] = {}
        self._all: list[tuple[str, str]] = []

    def add(self, sku: str, group_id: str, deadline: float) -> None:
        self._open.setdefault(sku, {})[group_id] = deadline
        self._all.append((sku, group_id))

    def known(self, rng: random.Random) -> list[tuple[str, str]]:
        """Every group seen, oldest first from a random start (old ones are likelier closed)."""
        if not self._all:
            return []
        i = rng.randrange(min(len(self._all), 50))
        return self._all[i:] + self._all[:i]

    def remove(self, sku: str, group_id: str) -> None:
        self._open.get(sku, {}).pop(group_id, None)

    def pick(self, sku: str, rng: random.Random, join_chance: float = 0.7) -> str | None:
        """A random open group to join, or None to open a new one."""
        now = time.time()
        live = {g: d for g, d in self._open.get(sku, {}).items() if d > now + 0.5}
        self._open[sku] = live
        if not live or rng.random() >= join_chance:
            return None
        return rng.choice(sorted(live))


class JourneyPicker:
    """Draws journey names by the mix weights (the cumulative weights computed once)."""

    def __init__(self, mix: dict[str, float]) -> None:
        self.names = [n for n, w in mix.items() if w > 0]
        self.cum_weights = list(itertools.accumulate(mix[n] for n in self.names))

    def __call__(self, rng: random.Random) -> str:
        return rng.choices(self.names, cum_weights=self.cum_weights)[0]
