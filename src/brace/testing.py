"""Helpers for testing code that uses brace, and brace's pytest plugin.

``no_waits()`` makes every policy sleep zero seconds while attempts, predicates, the
deadline arithmetic and events stay exactly as in production, so a test of a retried
function runs in milliseconds and can still assert on what happened; ``no_waits(attempts=N)``
also caps every policy at N attempts. The pytest plugin
(registered through the ``pytest11`` entry point) provides the fixture ``brace_no_waits``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from brace import _breakers, _budget, _config, _limits, _validate

__all__ = [
    "brace_no_waits",
    "brace_reset_breakers",
    "brace_reset_budgets",
    "brace_reset_limits",
    "no_waits",
    "reset_breakers",
    "reset_budgets",
    "reset_limits",
]


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
