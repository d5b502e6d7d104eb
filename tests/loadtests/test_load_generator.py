"""Small parts of the load generator's hot path: the journey picker and the name lookups a load
process remembers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadtests.journeys import JourneyPicker
from loadtests.lookups import RememberingResolver


def test_the_picker_follows_the_mix_and_never_draws_a_zero_weight() -> None:
    pick = JourneyPicker({"buy": 3.0, "browse": 1.0, "ping": 0.0})
    rng = random.Random(7)
    counts = Counter(pick(rng) for _ in range(20_000))
    assert set(counts) == {"buy", "browse"}
    assert 0.72 < counts["buy"] / 20_000 < 0.78


class CountingResolver:
    def __init__(self) -> None:
        self.calls = 0
        self.close = lambda: "closed"

    def getaddrinfo(self, *args: object) -> list[object]:
        self.calls += 1
        if args[0] == "nowhere":
            raise OSError("no such host")
        return [("addr", args)]


def test_a_lookup_is_made_once_per_address_and_a_failed_one_again() -> None:
    inner = CountingResolver()
    r = RememberingResolver(inner)
    first = r.getaddrinfo("127.0.0.1", 8000, 0, 1, 6, 0)
    assert r.getaddrinfo("127.0.0.1", 8000, 0, 1, 6, 0) == first and inner.calls == 1
    r.getaddrinfo("127.0.0.1", 8001, 0, 1, 6, 0)
    assert inner.calls == 2
    for _ in range(2):
        with pytest.raises(OSError):
            r.getaddrinfo("nowhere", 80, 0, 1, 6, 0)
    assert inner.calls == 4  # failures are asked again
    assert r.close() == "closed"  # everything else is the hub's resolver's
