"""A small admin client for the checkout contract (HTTP only): set up a sale, mint user tokens,
run expiry, and read the final state the checker needs."""

from __future__ import annotations

import time
from typing import Any

import httpx

from loadtests.state import FinalState
from loadtests.target import normalise_host

READ_RETRIES = 3


class ServerError(RuntimeError):
    """The server under test refused or failed an admin call; the message says which and why,
    `status` and `code` carry the HTTP status and the contract's error code when there was an
    answer."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def reach(host: str, admin_token: str) -> dict[str, Any]:
    """`GET /v1/health` of `host`, or ServerError in one line saying why nothing usable answers
    there: nothing listens, or something that is not a checkout server (a wrong path prefix
    behind a gateway, say)."""
    with AdminClient(host, admin_token, timeout=10) as admin:
        try:
            health = admin.health()
        except ServerError as exc:
            if exc.status is None:
                raise
            raise ServerError(f"GET {admin.host}/v1/health answered {exc.status}: no checkout "
                              "server at this address (a wrong port, or a wrong path prefix "
                              "behind a gateway?)", exc.status, exc.code) from None
    if not isinstance(health, dict) or "contract" not in health:
        raise ServerError(f"GET {host}/v1/health answered, but not as a checkout server does "
                          "(no contract version)")
    return health


class AdminClient:
    """Admin calls against one server (`Authorization: Bearer <admin token>`)."""

    def __init__(self, host: str, admin_token: str, timeout: float = 30.0) -> None:
        self.host = normalise_host(host)
        self._http = httpx.Client(base_url=self.host, timeout=timeout,
                                  headers={"Authorization": f"Bearer {admin_token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        # Reads are retried on a broken connection: a server that crashed on the previous call
        # (a 500) may have closed the pooled connection this one went out on.
        tries = READ_RETRIES if method == "GET" else 1
        for attempt in range(tries):
            try:
                resp = self._http.request(method, path, **kw)
                break
            except httpx.TransportError as exc:
                if attempt + 1 < tries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise ServerError(f"{method} {self.host}{path}: "
                                  f"{exc or type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise ServerError(f"{method} {self.host}{path}: "
                                  f"{exc or type(exc).__name__}") from None
        if resp.status_code >= 300:
            code = None
            try:
                err = resp.json()["error"]
                code = str(err["code"])
                why = f"{err['code']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                why = resp.text[:200]
            raise ServerError(f"{method} {path} answered {resp.status_code} ({why})",
                              resp.status_code, code)
        try:
            return resp.json()
        except ValueError:
            raise ServerError(f"{method} {path} answered non-JSON: {resp.text[:200]}") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")

    def load_sale(self, campaign: dict[str, Any], *, payment_timeout_seconds: float | None = None,
                  group_window_seconds: float | None = None) -> dict[str, Any]:
        """POST /v1/admin/sale: load the campaign (the scenario's raw [campaign] table)."""
        body: dict[str, Any] = {"campaign": campaign}
        if payment_timeout_seconds is not None:
            body["payment_timeout_seconds"] = payment_timeout_seconds
        if group_window_seconds is not None:
            body["group_window_seconds"] = group_window_seconds
        return self._call("POST", "/v1/admin/sale", json=body)

    def user_tokens(self, user_ids: list[str]) -> dict[str, str]:
        """Tokens for these user ids, minted 10,000 at a time (the contract's limit)."""
        out: dict[str, str] = {}
        for i in range(0, len(user_ids), 10_000):
            got = self._call("POST", "/v1/admin/user-tokens",
                             json={"user_ids": user_ids[i:i + 10_000]})
            out.update(got["tokens"])
        return out

    def expire(self) -> dict[str, Any]:
        return self._call("POST", "/v1/admin/expire")

    def ledger(self) -> dict[str, Any]:
        return self._call("GET", "/v1/admin/ledger")

    def export(self, what: str) -> list[dict[str, Any]]:
        """All rows of a paged export: `orders`, `groups` or `coupon-claims`."""
        key = "claims" if what == "coupon-claims" else what
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if after is not None:
                params["after"] = after
            page = self._call("GET", f"/v1/admin/{what}", params=params)
            rows.extend(page[key])
            after = page.get("next")
            if not after:
                return rows

    def final_state(self, *, expiry_ran: bool = False) -> FinalState:
        """Ledger and exports, ledger last so its `now` is after every exported row.
        StateError when they do not follow the contract."""
        orders, groups, claims = (self.export("orders"), self.export("groups"),
                                  self.export("coupon-claims"))
        return FinalState.from_json(self.ledger(), orders, groups, claims,
                                    expiry_ran=expiry_ran)
