"""Name lookups a load process makes once per address, not once per connection."""

from __future__ import annotations

from typing import Any

import gevent


class RememberingResolver:
    """The hub's name resolver, remembering its answers for the run: a load process opens
    thousands of connections to one host, and gevent's default resolver hands every lookup
    to a thread (a switch and a lock each time), which made opening connections the load
    generator's costliest step. Failed lookups are not remembered."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.answers: dict[tuple[Any, ...], Any] = {}

    def getaddrinfo(self, *args: Any) -> Any:
        if args not in self.answers:
            self.answers[args] = self.inner.getaddrinfo(*args)
        return self.answers[args]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def remember_lookups() -> None:
    """Put a `RememberingResolver` in front of this process's gevent hub resolver (once)."""
    hub = gevent.get_hub()
    if not isinstance(hub.resolver, RememberingResolver):
        hub.resolver = RememberingResolver(hub.resolver)
