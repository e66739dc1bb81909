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

from brace import _config, _events, _validate, predicates

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["NEVER", "async_pause", "async_sleep", "backoff", "parse_server_delay",
           "retry_after", "server_delay", "sleep", "waits_disabled"]

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


#: A server delay too large to represent: "longer than any deadline" (the call gives up).
NEVER = math.inf
# Digits beyond this are a delay of more than 31 years: longer than any deadline.
_MAX_DIGITS = 9


def _digits(value: str, unit: float) -> float | None:
    # RFC 9110 delta-seconds (and retry-after-ms): ASCII digits only. Not "1e3", "+1",
    # "1.5", "1_000", "-0" or another script's digits, which float() and int() accept.
    value = value.strip(" \t")
    if not value or not value.isascii() or not value.isdigit():
        return None
    if len(value.lstrip("0")) > _MAX_DIGITS:
        return NEVER
    return int(value) * unit


def _http_date(value: str) -> float | None:
    # An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms): seconds from
    # now, 0 for a date in the past.
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def parse_server_delay(headers: object) -> tuple[float | None, str | None]:
    """The delay ``headers`` ask for, strictly parsed, and the first value that was refused.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI) and ``Retry-After`` (seconds or
    an HTTP-date); when both are valid, the later moment wins. A value that is not ASCII
    digits (or, for ``Retry-After``, an HTTP-date) is refused: ``(None, "Retry-After: 1e3")``
    when nothing valid remains. A valid value too large to represent is ``NEVER``.
    """
    get = getattr(headers, "get", None)
    if get is None:
        return None, None
    delays: list[float] = []
    refused = None
    millis = get("retry-after-ms")
    if millis is not None:
        delay = _digits(str(millis), 0.001)
        if delay is None:
            refused = f"retry-after-ms: {millis}"
        else:
            delays.append(delay)
    raw = get("retry-after")
    if raw is not None:
        text = str(raw)
        delay = _digits(text, 1.0)
        if delay is None and not text.strip(" \t").lstrip("+-").replace(".", "").isdigit():
            delay = _http_date(text)
        if delay is None:
            refused = refused or f"Retry-After: {raw}"
        else:
            delays.append(delay)
    return (max(delays) if delays else None), (None if delays else refused)


def server_delay(value: object) -> float | None:
    """Seconds a response (or an exception carrying one) asks the client to wait, or None.

    See ``parse_server_delay``: refused values count as absent; a valid delay too large to
    represent is ``math.inf`` (longer than any deadline).
    """
    response = predicates.response_of(value)
    return parse_server_delay(getattr(response, "headers", None))[0]


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
        self._refused = False  # whether a refused header value was reported

    def __call__(self, retry_state: RetryCallState) -> float:
        """Return the server's delay (capped) plus jitter, or the fallback wait.

        The server's delay is a floor: never resent before it. Above it, up to the
        fallback's current step of jitter (its own draw), so a herd told the same moment
        does not resend at once; under brace's call path the jitter never reaches past the
        call's deadline (a floor that fits is kept).
        """
        response = predicates.response_of(predicates.outcome_value(retry_state))
        delay, refused = parse_server_delay(getattr(response, "headers", None))
        if refused is not None and not self._refused:
            self._refused = True  # once per policy (per client): a misbehaving server is noisy
            _events.retry_after_ignored(retry_state.get_fn_name, refused)
        # Said once, for this attempt: brace's retry.scheduled event names the source.
        retry_state.brace_wait_source = (  # type: ignore[attr-defined]
            retry_state.attempt_number, "backoff" if delay is None else "retry_after")
        jitter = float(self.fallback(retry_state))
        if delay is None:
            return jitter
        if self.max_wait is not None and delay >= self.max_wait:
            return self.max_wait
        if math.isinf(delay):
            return delay
        call = getattr(retry_state, "call", None)
        if call is not None:
            room = call.remaining() - delay
            # Strictly inside the deadline: a sleep that would end on it is not begun.
            jitter = min(jitter, max(0.0, room * 0.999))
        total = delay + jitter
        return total if self.max_wait is None else min(total, self.max_wait)

    def __repr__(self) -> str:
        return (f"brace.waits.retry_after(fallback={self.fallback!r}, "
                f"max_wait={self.max_wait!r})")


def sleep(seconds: float) -> None:
    """Sleep for ``seconds``, or not at all inside ``brace.testing.no_waits()``."""
    if _state.no_waits:
        _state.skipped += seconds  # the time a real run lets pass (token buckets read it)
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
    if _state.no_waits:
        _state.skipped += seconds  # the time a real run lets pass (token buckets read it)
        seconds = 0
    await async_pause(seconds)
