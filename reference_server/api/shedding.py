"""Load shedding: at most `limit` requests in flight per worker process; one more gets an
immediate `503 overloaded` with `Retry-After`, so the requests already accepted keep a bounded
latency instead of every request queueing behind the store."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset({"/v1/health"})
"""Always answered: a load balancer must see an overloaded server as alive."""
RETRY_AFTER_SECONDS = 1
BODY = json.dumps({"error": {"code": "overloaded", "message": "too many requests in progress; "
                             f"retry after {RETRY_AFTER_SECONDS} s"}}).encode()


class LoadShedder:
    """Pure ASGI middleware (cheap: no request object is built for a shed request)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]})
            await send({"type": "http.response.body", "body": BODY})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
