"""The server under test, as a URL: one normal form for `--host`, and the one HTTP client every
shopper journey uses (Locust's `FastHttpSession`), with the same base URL, path prefix, TLS and
proxy whatever the journey.

A host is `http(s)://HOST[:PORT][/PREFIX]`: a checkout server behind a gateway at
`https://shop.example.com/checkout` is reached at `…/checkout/v1/orders`. A trailing slash is
dropped (`http://h:8000/` is `http://h:8000`), so no request ever goes to `//v1/…`. The proxy
comes from the environment (`HTTPS_PROXY` / `HTTP_PROXY`, minus `NO_PROXY`), as for every other
HTTP client.
"""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class HostError(ValueError):
    """A `--host` that is not a server URL; the message says what is wrong, in one line."""


def normalise_host(url: str) -> str:
    """`url` in normal form: the scheme in lower case, no trailing slash, no query.
    HostError when it is not an http(s) URL of a server."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise HostError(f"{url!r} is not a server URL; want http(s)://HOST[:PORT][/PREFIX], "
                        "e.g. http://127.0.0.1:8000")
    if parts.query or parts.fragment:
        raise HostError(f"{url!r}: a server URL has no ?query or #fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise HostError(f"{url!r}: {exc}") from None
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))


def proxy_for(host: str) -> tuple[str, int] | None:
    """(proxy host, port) the environment names for `host`, or None (no proxy, or NO_PROXY
    covers it)."""
    parts = urlsplit(host)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not p.hostname:
        return None
    return p.hostname, p.port or (443 if p.scheme == "https" else 80)


def open_session(host: str, request_event: Any, user: Any, *, timeout: float,
                 connect_timeout: float, concurrency: int) -> Any:
    """A `FastHttpSession` on `host` (normal form): `timeout` s to wait for an answer,
    `connect_timeout` s to connect (TLS handshake included), `concurrency` connections, the
    environment's proxy, and no automatic retries (a journey retries by itself, and records
    every attempt)."""
    from locust.contrib.fasthttp import FastHttpSession

    proxy = proxy_for(host)
    return FastHttpSession(host, request_event=request_event, user=user,
                           network_timeout=timeout, connection_timeout=connect_timeout,
                           concurrency=concurrency, max_retries=0,
                           proxy_host=proxy[0] if proxy else None,
                           proxy_port=proxy[1] if proxy else None)
