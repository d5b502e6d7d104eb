"""Errors with a stable code (CONTRACT.md, "Errors"), raised by stores and the HTTP layer."""

from __future__ import annotations

import logging

from campaign.redact import redact_url

log = logging.getLogger("reference_server")

STATUS = {
    "invalid": 422,
    "idempotency_key_reused": 422,
    "in_flight": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "sold_out": 409,
    "limit_reached": 409,
    "group_full": 409,
    "group_closed": 409,
    "coupon_exhausted": 409,
    "coupon_unavailable": 409,
    "order_closed": 409,
    "no_sale": 409,
    "too_large": 413,
    "unavailable": 503,
    "overloaded": 503,
}


class ApiError(Exception):
    """A refusal the client should see: `code` is one of CONTRACT.md's stable codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class StoreUnavailable(Exception):
    """The backend itself is in trouble (down, locked too long): the one case for a 503."""


def unavailable(exc: StoreUnavailable) -> ApiError:
    """What a client is told when the store is in trouble; the cause goes to the log, with any
    password in a store URL redacted."""
    log.error("store unavailable: %s", redact_url(str(exc)))
    return ApiError("unavailable", "the store is unavailable; retry later")
