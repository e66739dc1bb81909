"""Bounded memory whatever the names (DESIGN rule 28), measured with tracemalloc.

brace's per-host breakers evict the least recently used closed host beyond
``MAX_AUTHORITY_BREAKERS``; the breakers, budgets, bulkheads and rate limits made by name
stay until the ``reset_*`` helpers or ``brace.forget`` release them, and then nothing of
them stays. The default run makes a thousand objects of each kind (and a thousand hosts
past the bound); ``-m slow`` makes the 100,000 of issue 23.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brace
from brace import _breakers, _budget, _limits, _transport
from brace.testing import reset_breakers, reset_budgets, reset_limits

# Objects made per kind: enough for their memory to dwarf the noise, few enough for a quick
# run; the slow run makes the 100,000.
COUNTS = [1_000, pytest.param(100_000, marks=pytest.mark.slow, id="100000")]

#: What one object made by name may take at most, in bytes (docs/operating.md: about 1.2 KB
#: a breaker, 2.7 KB with a failure ratio, 1.6 KB a budget, 1.1 KB a bulkhead, 0.4 KB a rate
#: limit on CPython 3.11).
PER_OBJECT = 4096


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """Bytes Python has allocated and not freed, after a full collection."""
    tracemalloc.start()

    def now() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    try:
        yield now
    finally:
        tracemalloc.stop()


def _names(count: int, prefix: str) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def _empty() -> dict[str, int]:
    """How many objects each registry of named objects holds."""
    return {"breakers": len(_breakers.registry), "breaker settings": len(_breakers._settings),
            "budgets": len(_budget.registry), "bulkheads": len(_limits._bulkheads),
            "rate limits": len(_limits._rate_limits)}


# -- per-host breakers ------------------------------------------------------------------------


@pytest.mark.parametrize("hosts", COUNTS)
def test_per_host_breakers_stay_within_the_documented_bound(
        hosts: int, traced: Callable[[], int]) -> None:
    bound = _transport.MAX_AUTHORITY_BREAKERS
    start = traced()
    for i in range(bound):  # the registry full: every breaker still wanted
        _transport._authority_breaker(f"GET https://warm-{i}.example")
    full = traced()
    assert _transport.authority_breakers() == bound
    # Then ever new hosts, as a client crawling the web would meet them.
    for i in range(hosts):
        _transport._authority_breaker(f"GET https://host-{i}.example:8443")
    after = traced()

    assert _transport.authority_breakers() <= bound
    assert len(brace.breakers()) <= bound  # evicted breakers are forgotten, not leaked
    assert f"https://host-{hosts - 1}.example:8443" in brace.breakers()
    # The whole registry at its bound: a few MB (about 2.7 KB a host, docs/operating.md) ...
    assert full - start < bound * PER_OBJECT
    assert after - start < bound * PER_OBJECT
    # ... and nothing more however many hosts follow: what varies is which tenth is evicted.
    assert after - full < bound * PER_OBJECT // 10


# -- named objects ----------------------------------------------------------------------------

KINDS: dict[str, tuple[Callable[[str], Any], Callable[[], None]]] = {
    "breaker": (lambda name: brace.breaker(name, failure_ratio=0.5), reset_breakers),
    "budget": (brace.budget, reset_budgets),
    "bulkhead": (brace.bulkhead, reset_limits),
    "rate limit": (brace.rate_limit, reset_limits),
}


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_reset_helpers_free_named_objects(kind: str, count: int,
                                              traced: Callable[[], int]) -> None:
    make, reset = KINDS[kind]
    names = _names(count, kind)
    start = traced()
    sample = weakref.ref(make(names[0]))
    for name in names[1:]:
        make(name)
    grown = traced() - start
    # The measure sees them (so the checks below can fail), and each is small.
    assert count * 200 < grown < count * PER_OBJECT

    reset()
    assert set(_empty().values()) == {0}
    # Back to the start: reset clears each registry's dict, its table included.
    assert traced() - start < grown // 100
    assert sample() is None  # collected (a breaker is a cycle): nothing holds on to it


@pytest.mark.parametrize("count", COUNTS)
def test_forget_frees_every_kind_of_named_object(count: int,
                                                 traced: Callable[[], int]) -> None:
    names = _names(count, "tenant")
    start = traced()
    made = [brace.breaker(names[0], failure_ratio=0.5), brace.budget(names[0]),
            brace.bulkhead(names[0]), brace.rate_limit(names[0])]
    samples = [weakref.ref(item) for item in made]
    del made
    for name in names[1:]:  # a tenant's breaker, budget, bulkhead and rate limit
        brace.breaker(name, failure_ratio=0.5)
        brace.budget(name)
        brace.bulkhead(name)
        brace.rate_limit(name)
    grown = traced() - start
    assert count * 1000 < grown < 4 * count * PER_OBJECT

    assert all(brace.forget(name) for name in names)
    assert set(_empty().values()) == {0}
    # A dict keeps its table until it next resizes: each registry's table stays (about
    # 25 B per name at the peak, 5 tables), nothing of the objects.
    assert traced() - start < grown // 10
    assert [sample() for sample in samples] == [None] * 4
    assert not any(brace.forget(name) for name in names[:10])  # nothing left to forget
