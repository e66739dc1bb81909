"""Shared tenacity wait strategies, and the one place brace sleeps.

``backoff`` is tenacity's own full-jitter wait; it composes with tenacity waits via ``+``.
Sleeping goes through :func:`sleep` / :func:`async_sleep` so that
:func:`brace.testing.no_waits` can make every policy sleep zero seconds while the computed
waits, attempts and events stay exactly what they would be.
"""

from __future__ import annotations

import asyncio
import time

import tenacity

from brace import _validate

__all__ = ["async_sleep", "backoff", "sleep", "waits_disabled"]

# Depth of nested no_waits() blocks; a plain int so every thread and event loop sees it.
_no_waits_depth = 0


def waits_disabled() -> bool:
    """Return True while :func:`brace.testing.no_waits` is active."""
    return _no_waits_depth > 0


def _enter_no_waits() -> None:
    global _no_waits_depth
    _no_waits_depth += 1


def _exit_no_waits() -> None:
    global _no_waits_depth
    _no_waits_depth -= 1


def backoff(initial: float = 0.1, max: float = 5.0) -> tenacity.wait_random_exponential:
    """Exponential backoff with full jitter.

    Attempt n waits uniform(0, min(max, initial * 2**(n-1))).

    Full jitter spreads a herd of clients best (AWS, "Exponential Backoff And Jitter"); this is
    exactly ``tenacity.wait_random_exponential(multiplier=initial, max=max)``, returned as is.

    Raises:
        TypeError, ValueError: ``initial`` or ``max`` is not a finite number of seconds >= 0,
            or ``max < initial``.
    """
    low, high = _validate.wait_range(initial, max, "max")
    return tenacity.wait_random_exponential(multiplier=low, max=high)


def sleep(seconds: float) -> None:
    """Sleep for ``seconds``, or not at all inside :func:`brace.testing.no_waits`."""
    if _no_waits_depth:
        return
    time.sleep(seconds)


async def async_sleep(seconds: float) -> None:
    """Asyncio sleep for ``seconds``, or only yield to the loop inside ``no_waits()``."""
    await asyncio.sleep(0 if _no_waits_depth else seconds)
