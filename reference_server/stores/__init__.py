"""Stores behind one interface (`base.Store`), chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from campaign.redact import redact_url
from reference_server.stores.base import Store

__all__ = ["SCHEMES", "Store", "redact_url", "store_from_url"]

SCHEMES = ("sqlite", "postgresql", "postgres", "redis", "rediss", "unsafe")
"""Every URL scheme `store_from_url` accepts."""


def store_from_url(url: str) -> Store:
    """The store for `url`; ValueError with a one-line reason for an unusable URL."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from reference_server.stores.sqlite import SqliteStore
        return SqliteStore(url)
    if scheme in ("postgresql", "postgres"):
        from reference_server.stores.postgres import PostgresStore
        return PostgresStore(url)
    if scheme in ("redis", "rediss"):
        from reference_server.stores.redis_store import RedisStore
        return RedisStore(url)
    if scheme == "unsafe":
        from reference_server.stores.unsafe import UnsafeStore
        return UnsafeStore(url)
    raise ValueError(f"{url!r}: unknown store; use one of sqlite:///path, postgresql://..., "
                     "redis://..., unsafe:///path")

