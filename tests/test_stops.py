"""brace.stops: stop at attempts or before a sleep that would cross the deadline."""

from __future__ import annotations

import math
from typing import Any

import pytest
import tenacity

import brace
from brace.stops import deadline, limits
from brace.testing import no_waits


def state(attempt: int = 1, elapsed: float | None = 0.0, upcoming_sleep: float = 0.0,
          idle_for: float = 0.0, start: float = 1000.0) -> tenacity.RetryCallState:
    """A hand-built RetryCallState: `elapsed` seconds between start and the last outcome."""
    rs = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    rs.attempt_number = attempt
    rs.start_time = start
    rs.outcome_timestamp = None if elapsed is None else start + elapsed
    rs.upcoming_sleep = upcoming_sleep
    rs.idle_for = idle_for
    return rs


# --- types and composition -----------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"attempts": 3}, {"deadline": 5},
                                    {"attempts": 3, "deadline": 5}])
def test_limits_are_tenacity_stops(kwargs: dict[str, Any]) -> None:
    stop = limits(**kwargs)
    assert isinstance(stop, tenacity.stop.stop_base)
    assert isinstance(stop | tenacity.stop_after_attempt(10), tenacity.stop.stop_base)
    assert isinstance(stop & tenacity.stop_after_attempt(10), tenacity.stop.stop_base)


def test_deadline_is_a_stop_before_delay() -> None:
    stop = deadline(5)
    assert isinstance(stop, tenacity.stop_before_delay)
    assert stop.max_delay == 5.0


def test_limits_with_deadline_only_uses_brace_deadline() -> None:
    stop = limits(deadline=5)
    assert isinstance(stop, deadline)
    assert stop.max_delay == 5.0


def test_repr_of_deadline() -> None:
    assert repr(deadline(5)) == "brace.stops.deadline(5.0)"
    assert repr(deadline(0.25)) == "brace.stops.deadline(0.25)"
    assert repr(limits(deadline=2)) == "brace.stops.deadline(2.0)"


def test_or_composition() -> None:
    stop = limits(attempts=10) | tenacity.stop_after_attempt(2)
    assert stop(state(attempt=1)) is False
    assert stop(state(attempt=2)) is True
    stop = limits(deadline=5) | tenacity.stop_after_attempt(2)
    assert stop(state(attempt=2, elapsed=0.0)) is True
    assert stop(state(attempt=1, elapsed=4.0, upcoming_sleep=1.0)) is True
    assert stop(state(attempt=1, elapsed=1.0, upcoming_sleep=1.0)) is False


def test_and_composition() -> None:
    stop = limits(attempts=2) & limits(deadline=5)
    assert stop(state(attempt=2, elapsed=1.0)) is False  # attempts hit, deadline not
    assert stop(state(attempt=1, elapsed=5.0)) is False  # deadline hit, attempts not
    assert stop(state(attempt=2, elapsed=5.0)) is True


# --- attempts ------------------------------------------------------------------------------


def test_stops_at_attempt_cap() -> None:
    stop = limits(attempts=3)
    assert stop(state(attempt=1)) is False
    assert stop(state(attempt=2)) is False
    assert stop(state(attempt=3)) is True
    assert stop(state(attempt=4)) is True


def test_attempts_only_ignores_time() -> None:
    stop = limits(attempts=3)
    assert stop(state(attempt=1, elapsed=10_000.0, upcoming_sleep=10_000.0)) is False


def test_single_attempt_stops_at_once() -> None:
    assert limits(attempts=1)(state(attempt=1)) is True


# --- deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize(("elapsed", "sleep", "stops"), [
    (0.0, 0.0, False),
    (1.0, 3.0, False),      # would end at 4 < 5
    (4.9, 0.0, False),
    (2.0, 2.999, False),
    (2.0, 3.0, True),       # would end exactly at the deadline
    (4.0, 1.5, True),       # would end past the deadline
    (0.0, 5.0, True),       # the sleep alone reaches it
    (0.0, 6.0, True),
    (5.0, 0.0, True),       # already at the deadline
    (7.0, 0.0, True),
])
def test_deadline_never_begins_a_sleep_ending_past_it(elapsed: float, sleep: float,
                                                      stops: bool) -> None:
    assert deadline(5)(state(elapsed=elapsed, upcoming_sleep=sleep)) is stops
    assert limits(deadline=5)(state(elapsed=elapsed, upcoming_sleep=sleep)) is stops


def test_deadline_with_no_outcome_timestamp_counts_only_the_sleep() -> None:
    assert deadline(5)(state(elapsed=None, upcoming_sleep=1.0)) is False
    assert deadline(5)(state(elapsed=None, upcoming_sleep=5.0)) is True


def test_outside_no_waits_idle_for_is_already_in_elapsed() -> None:
    # Real sleeps advance the clock, so idle_for must not be counted twice.
    stop = deadline(5)
    assert stop(state(elapsed=3.0, idle_for=3.0, upcoming_sleep=1.0)) is False


def test_inside_no_waits_idle_for_counts_as_elapsed() -> None:
    stop = deadline(5)
    with no_waits():
        # 1 s of real time plus 3 s of skipped sleeps, then a 0.5 s sleep: 4.5 < 5.
        assert stop(state(elapsed=1.0, idle_for=3.0, upcoming_sleep=0.5)) is False
        # 1 + 3 + 1 = 5: the sleep would end at the deadline.
        assert stop(state(elapsed=1.0, idle_for=3.0, upcoming_sleep=1.0)) is True
        assert stop(state(elapsed=0.0, idle_for=6.0, upcoming_sleep=0.0)) is True
        assert limits(attempts=10, deadline=5)(
            state(elapsed=1.0, idle_for=3.0, upcoming_sleep=1.0)) is True
    # The same state outside no_waits() is well inside the deadline.
    assert stop(state(elapsed=1.0, idle_for=3.0, upcoming_sleep=1.0)) is False


def test_combined_limits_stop_at_whichever_comes_first() -> None:
    stop = limits(attempts=3, deadline=5)
    assert stop(state(attempt=1, elapsed=0.0, upcoming_sleep=1.0)) is False
    assert stop(state(attempt=2, elapsed=1.0, upcoming_sleep=1.0)) is False
    assert stop(state(attempt=3, elapsed=1.0, upcoming_sleep=0.1)) is True   # attempts
    assert stop(state(attempt=2, elapsed=4.0, upcoming_sleep=1.0)) is True   # deadline


def test_limits_in_a_real_retrying_with_virtual_sleeps(clock: Any) -> None:
    # Each attempt takes 1 s, each wait 1 s; deadline 5: attempts start at 0, 2, 4; after the
    # third, a sleep would end at 6 > 5, so it gives up without sleeping.
    clock.now = 0.0
    starts: list[float] = []

    def fn() -> None:
        starts.append(clock.now)
        clock.advance(1.0)
        raise ConnectionError("down")

    retrying = tenacity.Retrying(stop=limits(attempts=10, deadline=5),
                                 wait=tenacity.wait_fixed(1), sleep=clock.sleep, reraise=True)
    with pytest.raises(ConnectionError):
        retrying(fn)
    assert starts == [0.0, 2.0, 4.0]
    assert clock.sleeps == [1.0, 1.0]
    assert clock.now == 5.0


def test_limits_in_a_real_retrying_inside_no_waits(clock: Any) -> None:
    # The skipped sleeps still count: same attempts as a real run, no virtual time passes
    # during sleeps.
    clock.now = 0.0
    calls: list[float] = []

    def fn() -> None:
        calls.append(clock.now)
        raise ConnectionError("down")

    retrying = tenacity.Retrying(stop=limits(attempts=100, deadline=5),
                                 wait=tenacity.wait_fixed(2), sleep=brace.waits.sleep,
                                 reraise=True)
    with no_waits(), pytest.raises(ConnectionError):
        retrying(fn)
    # Sleeps would end at 2 and 4; a third would end at 6 > 5.
    assert len(calls) == 3
    assert retrying.statistics["idle_for"] == 4


# --- validation ----------------------------------------------------------------------------


def test_limits_needs_attempts_or_deadline() -> None:
    with pytest.raises(ValueError, match="attempts") as info:
        limits()
    assert "deadline" in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "3", 3.0])
def test_bad_attempts_are_rejected_by_name(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="attempts"):
        limits(attempts=bad)
    with pytest.raises((ValueError, TypeError), match="attempts"):
        limits(attempts=bad, deadline=5)


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, "5", True])
def test_bad_deadline_is_rejected_by_name(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="deadline"):
        limits(deadline=bad)
    with pytest.raises((ValueError, TypeError), match="deadline"):
        limits(attempts=3, deadline=bad)
    with pytest.raises((ValueError, TypeError), match="deadline"):
        deadline(bad)


def test_error_types() -> None:
    with pytest.raises(TypeError):
        limits(attempts="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        limits(attempts=True)
    with pytest.raises(ValueError):
        limits(attempts=0)
    with pytest.raises(ValueError):
        limits(deadline=math.nan)
    with pytest.raises(TypeError):
        limits(deadline="5")  # type: ignore[arg-type]


def test_huge_int_deadline_is_rejected_by_name() -> None:
    # Not a finite number of seconds: ValueError naming deadline, not OverflowError.
    with pytest.raises(ValueError, match="deadline"):
        limits(deadline=10**400)
