"""Shared tenacity stop strategies: stop at whichever of attempts or deadline comes first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tenacity

from brace import _validate, predicates, waits
from brace._deadline import past

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["deadline", "limits"]


class deadline(tenacity.stop_before_delay):  # lower case, as tenacity names its stops
    """Give up rather than begin a sleep that would end past ``seconds`` after the first call.

    This is tenacity's ``stop_before_delay`` (``stop_after_delay`` overshoots by the last
    sleep). A server's Retry-After counts in full even where the wait caps it: if the server
    will not be ready before the deadline, retrying is pointless. Inside
    ``brace.testing.no_waits()`` the sleeps that were skipped still count against the
    deadline, so a test sees the same attempts a real run would make.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(_validate.seconds(seconds, "deadline", allow_zero=False))

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True when the upcoming sleep would end at or past the deadline."""
        elapsed = retry_state.seconds_since_start or 0.0
        if waits.waits_disabled():
            elapsed += retry_state.idle_for
        upcoming = retry_state.upcoming_sleep
        asked = waits.server_delay(predicates.outcome_value(retry_state))
        if asked is not None:
            upcoming = max(upcoming, asked)
        return past(elapsed, upcoming, self.max_delay)

    def __repr__(self) -> str:
        return f"brace.stops.deadline({self.max_delay!r})"


def limits(attempts: int | None = None, deadline: float | None = None) -> tenacity.stop.stop_base:
    """Stop after ``attempts`` calls or before a sleep that would cross ``deadline`` seconds.

    At least one of the two is required. The result is a genuine tenacity stop object
    (``stop_after_attempt(attempts) | brace.stops.deadline(deadline)``) that composes with
    tenacity's own stops via ``|`` and ``&``.

    Raises:
        TypeError, ValueError: ``attempts`` is not an int >= 1, ``deadline`` is not a finite
            number of seconds > 0, or both are None.
    """
    parts: list[tenacity.stop.stop_base] = []
    if attempts is not None:
        parts.append(tenacity.stop_after_attempt(_validate.attempts(attempts)))
    if deadline is not None:
        parts.append(_deadline_stop(deadline))
    if not parts:
        raise ValueError("limits() needs attempts (int >= 1) or deadline (seconds > 0), or both")
    if len(parts) == 1:
        return parts[0]
    return tenacity.stop_any(*parts)


_deadline_stop = deadline
