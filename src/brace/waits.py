"""Shared tenacity wait strategies, and the one place brace sleeps.

``backoff`` is tenacity's own full-jitter wait; it composes with tenacity waits via ``+``.
Sleeping goes through ``sleep`` / ``async_sleep`` so that
``brace.testing.no_waits()`` can make every policy sleep zero seconds while the computed
waits, attempts and events stay exactly what they would be.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import tenacity

from brace import _config, _validate, predicates

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["async_pause", "async_sleep", "backoff", "retry_after", "server_delay", "sleep",
           "waits_disabled"]

_state = _config.state


def waits_disabled() -> bool:
    """Return True while ``brace.testing.no_waits()`` is active."""
    return _state.no_waits > 0


def backoff(initial: _validate.Duration = 0.1,
            max_wait: _validate.Duration = 5.0) -> tenacity.wait_random_exponential:
    """Exponential backoff with full jitter.

    Attempt n waits uniform(0, min(max_wait, initial * 2**(n-1))). Both are seconds or a
    ``datetime.timedelta``.

    Full jitter spreads a herd of clients best (AWS, "Exponential Backoff And Jitter"); this is
    exactly ``tenacity.wait_random_exponential(multiplier=initial, max=max_wait)``, returned
    as is.

    Raises:
        TypeError, ValueError: ``initial`` or ``max_wait`` is not a finite number of seconds
            >= 0, or ``max_wait < initial``.
    """
    low, high = _validate.wait_range(initial, max_wait, "max_wait")
    return tenacity.wait_random_exponential(multiplier=low, max=high)


def _parse_delay(value: str, unit: float) -> float | None:
    try:
        seconds = float(value) * unit
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def server_delay(value: object) -> float | None:
    """Seconds a response (or an exception carrying one) asks the client to wait, or None.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI) and ``Retry-After`` (seconds or
    an HTTP-date). Garbage, negative and non-finite values count as absent.
    """
    response = predicates.response_of(value)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        delay = _parse_delay(millis, 0.001)
        if delay is not None:
            return delay
    raw = headers.get("retry-after")
    if raw is None:
        return None
    delay = _parse_delay(raw, 1.0)
    if delay is not None:
        return delay
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class retry_after(tenacity.wait.wait_base):  # lower case, as tenacity names its waits
    """Wait what the server asked for (Retry-After), else what ``fallback`` computes.

    The server's delay is capped at ``max_wait`` (seconds or a ``datetime.timedelta``; None,
    the default: not capped). A delay longer than what is left of the deadline makes
    ``brace.stops.deadline`` give up at once instead of sleeping.

    Raises:
        TypeError, ValueError: ``fallback`` is not a tenacity wait, or ``max_wait`` is not a
            finite number of seconds >= 0.
    """

    def __init__(self, fallback: tenacity.wait.wait_base | None = None,
                 max_wait: _validate.Duration | None = None) -> None:
        if fallback is not None and not isinstance(fallback, tenacity.wait.wait_base):
            raise TypeError(f"fallback= must be a tenacity wait, got {fallback!r}")
        self.fallback = fallback if fallback is not None else backoff()
        self.max_wait = None if max_wait is None else _validate.seconds(max_wait, "max_wait")

    def __call__(self, retry_state: RetryCallState) -> float:
        """Return the server's delay (capped) or the fallback wait."""
        delay = server_delay(predicates.outcome_value(retry_state))
        # Said once, for this attempt: brace's retry.scheduled event names the source.
        retry_state.brace_wait_source = (  # type: ignore[attr-defined]
            retry_state.attempt_number, "backoff" if delay is None else "retry_after")
        if delay is None:
            return float(self.fallback(retry_state))
        return delay if self.max_wait is None else min(delay, self.max_wait)

    def __repr__(self) -> str:
        return (f"brace.waits.retry_after(fallback={self.fallback!r}, "
                f"max_wait={self.max_wait!r})")


def sleep(seconds: float) -> None:
    """Sleep for ``seconds``, or not at all inside ``brace.testing.no_waits()``."""
    if _state.no_waits:
        return
    time.sleep(seconds)


async def async_pause(seconds: float) -> None:
    """Sleep ``seconds`` in the running async library, whatever ``no_waits()`` says."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        import anyio

        await anyio.sleep(seconds)
        return
    await asyncio.sleep(seconds)


async def async_sleep(seconds: float) -> None:
    """Sleep ``seconds`` in the running async library, or only yield inside ``no_waits()``.

    asyncio sleeps itself; any other library (trio) through anyio, which speaks to it.
    """
    await async_pause(0 if _state.no_waits else seconds)
