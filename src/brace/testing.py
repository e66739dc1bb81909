"""Helpers for testing code that uses brace, and brace's pytest plugin.

``no_waits()`` makes every policy sleep zero seconds while attempts, predicates, the
deadline arithmetic and events stay exactly as in production, so a test of a retried
function runs in milliseconds and can still assert on what happened; ``no_waits(attempts=N)``
also caps every policy at N attempts. ``chaos(...)`` injects faults, outcomes and latency
into a policy's attempts, and ``ChaosTransport`` / ``AsyncChaosTransport`` into any httpx
client's requests (DESIGN rule 33); ``capture_events()``, ``assert_retried()`` and
``assert_not_retried()`` assert on what brace did. The pytest plugin (registered through
the ``pytest11`` entry point) provides the fixtures ``brace_no_waits``, ``brace_events``
and the reset helpers'.

Importing this module does not import httpx: the chaos transports load it on first use.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from brace import _breakers, _budget, _config, _events, _limits, _validate
from brace._chaos import Chaos, chaos, is_injected

if TYPE_CHECKING:
    from brace._chaos_transport import AsyncChaosTransport, ChaosTransport

__all__ = [
    "AsyncChaosTransport",
    "Chaos",
    "ChaosTransport",
    "Event",
    "assert_not_retried",
    "assert_retried",
    "brace_events",
    "brace_no_waits",
    "brace_reset_breakers",
    "brace_reset_budgets",
    "brace_reset_limits",
    "capture_events",
    "chaos",
    "is_injected",
    "no_waits",
    "reset_breakers",
    "reset_budgets",
    "reset_limits",
]


def __getattr__(name: str) -> Any:
    # The chaos transports subclass httpx's: load them (and httpx) on first use only.
    if name in ("ChaosTransport", "AsyncChaosTransport"):
        from brace import _chaos_transport

        return getattr(_chaos_transport, name)
    raise AttributeError(f"module 'brace.testing' has no attribute {name!r}")


@contextlib.contextmanager
def no_waits(attempts: int | None = None) -> Iterator[None]:
    """Within this block no policy sleeps; everything else behaves as in production.

    Covers decorated functions and ``policy.retrying()`` / ``async_retrying()`` blocks, in
    every thread and event loop. Skipped sleeps still count against deadlines.

    Args:
        attempts: Cap every policy at this many attempts inside the block (a test of a
            give-up then needs no slow mock: ``no_waits(attempts=2)``). None: the policies'
            own. Blocks nest; the innermost cap applies.

    Raises:
        TypeError, ValueError: ``attempts`` is not an int >= 1.
    """
    if attempts is not None:
        attempts = _validate.attempts(attempts)
    previous = _config.enter_no_waits(attempts)
    try:
        yield
    finally:
        _config.exit_no_waits(previous)


def reset_breakers() -> None:
    """Close every named breaker (shared Redis state included) and forget them.

    A breaker tripped in one test then never fails the next one, and the next
    ``brace.breaker(name, ...)`` may configure the name afresh.
    """
    _breakers.reset()


def reset_limits() -> None:
    """Forget every bulkhead and rate limit: the next test configures its names afresh."""
    _limits.reset()


def reset_budgets() -> None:
    """Forget every retry budget and what it counted: the next test starts with full ones."""
    _budget.reset()


#: One captured event: its name and its fields (``retry.scheduled``, ``{"attempt": 1, ...}``).
Event = tuple[str, dict[str, Any]]


@contextlib.contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Within this block, collect every brace event as ``(event, fields)``; yield the list.

    Every thread and every asyncio or trio task of the process is seen (the list is filled
    through ``brace.observe``, which every event reaches), in the order the events were
    emitted; each ``fields`` is the event's own dict, as observers receive it. Blocks nest,
    each with its own list. Events are captured whether or not logging keeps them.

    ::

        with brace.testing.capture_events() as events:
            fetch_quote()
        assert [name for name, _ in events] == ["retry.scheduled", "retry.succeeded"]
    """
    events: list[Event] = []
    lock = threading.Lock()

    def collect(event: str, fields: dict[str, Any]) -> None:
        with lock:  # list.append is atomic today; the lock keeps that true everywhere
            events.append((event, fields))

    _events.observe(collect)
    try:
        yield events
    finally:
        _events.unobserve(collect)


def _retries(subject: object, what: str) -> tuple[int, str, list[str]]:
    # How often ``subject`` was retried, how to name it, and what each retry was about.
    statistics = getattr(subject, "statistics", None)
    if isinstance(statistics, Mapping):  # a decorated function: its latest call
        name = getattr(subject, "__qualname__", None) or repr(subject)
        if "attempt_number" not in statistics:
            raise AssertionError(f"{what}: {name} was never called under its policy")
        attempts = int(statistics["attempt_number"])
        made = f"{attempts} attempt{'' if attempts == 1 else 's'}"
        return attempts - 1, f"the latest call of {name} ({made})", []
    if isinstance(subject, (list, tuple)) and all(
            isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            for item in subject):
        scheduled = [fields for event, fields in subject if event == _events.RETRY_SCHEDULED]
        lines = [f"retry.scheduled callable={fields.get('callable')} "
                 f"attempt={fields.get('attempt')} error={fields.get('error')!r}"
                 for fields in scheduled]
        return len(scheduled), "the captured events", lines
    raise TypeError(f"{what} takes a function decorated by a policy (it reads its "
                    f".statistics) or the list capture_events() yields, got "
                    f"{_validate.shown(subject)}")


def assert_retried(fn_or_events: object, times: int | None = None) -> None:
    """Assert that a call was retried: exactly ``times`` times, or at least once (None).

    Given a decorated function, reads its latest call's ``statistics["attempt_number"]``
    (retries are attempts after the first); given the list ``capture_events()`` yields,
    counts its ``retry.scheduled`` events (every function in the block). The failure
    message says what was seen.

    Raises:
        AssertionError: the count differs.
        TypeError, ValueError: ``times`` is not an int >= 0, or ``fn_or_events`` is
            neither a decorated function nor a list of captured events.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    if times is not None:
        if isinstance(times, bool) or not isinstance(times, int):
            raise TypeError(f"times must be an int >= 0, got {_validate.shown(times)}")
        if times < 0:
            raise ValueError(f"times must be an int >= 0, got {times}")
    retried, subject, seen = _retries(fn_or_events, "assert_retried()")
    if (retried >= 1) if times is None else (retried == times):
        return
    wanted = "at least 1 retry" if times is None else _count(times)
    raise AssertionError(f"expected {wanted}, but {subject} had {_count(retried)}"
                         f"{_listed(seen)}")


def assert_not_retried(fn_or_events: object) -> None:
    """Assert that no call was retried (see ``assert_retried``); the message lists the retries.

    Raises:
        AssertionError: a retry was seen.
        TypeError: ``fn_or_events`` is neither a decorated function nor captured events.
    """
    __tracebackhide__ = True
    retried, subject, seen = _retries(fn_or_events, "assert_not_retried()")
    if retried:
        raise AssertionError(f"expected no retry, but {subject} had {_count(retried)}"
                             f"{_listed(seen)}")


def _count(retries: int) -> str:
    return f"{retries} retr{'y' if retries == 1 else 'ies'}"


#: How many retries a failure message lists, one per line.
_LISTED = 5


def _listed(lines: list[str]) -> str:
    # The first few retries, one per line: enough to see what was retried, never a flood.
    shown = "".join(f"\n  {line}" for line in lines[:_LISTED])
    more = len(lines) - _LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


try:
    import pytest
except ImportError:  # pragma: no cover - brace works without pytest installed
    pass
else:

    @pytest.fixture
    def brace_no_waits(request: pytest.FixtureRequest) -> Iterator[None]:
        """Pytest fixture: the test runs inside ``no_waits()``.

        Parametrize it indirectly to cap attempts too:
        ``@pytest.mark.parametrize("brace_no_waits", [2], indirect=True)``.
        """
        with no_waits(attempts=getattr(request, "param", None)):
            yield

    @pytest.fixture(autouse=True)
    def _brace_restore_active() -> Iterator[None]:
        """Every test starts and ends with the switch as it found it (brace.set_active)."""
        active = _config.is_active()
        yield
        _config.set_active(active)

    @pytest.fixture
    def brace_events() -> Iterator[list[Event]]:
        """Pytest fixture: every brace event of the test, as ``capture_events()`` yields them."""
        with capture_events() as events:
            yield events

    @pytest.fixture
    def brace_reset_breakers() -> Iterator[None]:
        """Pytest fixture: every named breaker is closed and forgotten before and after."""
        reset_breakers()
        yield
        reset_breakers()

    @pytest.fixture
    def brace_reset_budgets() -> Iterator[None]:
        """Pytest fixture: every retry budget is forgotten before and after the test."""
        reset_budgets()
        yield
        reset_budgets()

    @pytest.fixture
    def brace_reset_limits() -> Iterator[None]:
        """Pytest fixture: every bulkhead and rate limit is forgotten before and after."""
        reset_limits()
        yield
        reset_limits()
