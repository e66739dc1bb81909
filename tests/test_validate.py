"""One convention for settings (DESIGN "One convention for settings"), checked in one place.

A duration is a float of seconds or a ``datetime.timedelta`` and its name carries no unit;
settings after a name are keyword-only; the old, suffixed names are refused (no aliases).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import brace
from brace import _breakers, _budget, _limits, _validate


def _created(name: str) -> bool:
    return any(found is not None for found in (
        _breakers.find(name), _budget.find(name), _limits.find_bulkhead_if(name),
        _limits.find_rate_limit_if(name)))


# --- the old names are gone ------------------------------------------------------------------

OLD_NAMES: list[Any] = [
    pytest.param(lambda: brace.breaker("old", sync_s=1), "sync_s", id="breaker-sync_s"),
    pytest.param(lambda: brace.breaker("old", failure_ratio=0.5, window_s=30), "window_s",
                 id="breaker-window_s"),
    pytest.param(lambda: brace.breaker("old", slow_call_s=2), "slow_call_s",
                 id="breaker-slow_call_s"),
    pytest.param(lambda: brace.budget("old", window_s=1), "window_s", id="budget-window_s"),
    pytest.param(lambda: brace.bulkhead("old", max_wait_s=1), "max_wait_s",
                 id="bulkhead-max_wait_s"),
    pytest.param(lambda: brace.waits.backoff(max=1), "max", id="backoff-max"),
    pytest.param(lambda: brace.waits.retry_after(max=1), "max", id="retry_after-max"),
]


@pytest.mark.parametrize(("build", "old"), OLD_NAMES)
def test_old_names_are_refused(build: Callable[[], object], old: str) -> None:
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{old}'"):
        build()


POSITIONAL: list[Any] = [
    pytest.param(lambda: brace.budget("pos", 0.2), id="budget-ratio"),
    pytest.param(lambda: brace.budget("pos", 0.2, 10, 10), id="budget-all"),
    pytest.param(lambda: brace.bulkhead("pos", 4), id="bulkhead-max_concurrent"),
    pytest.param(lambda: brace.bulkhead("pos", 4, 0.5), id="bulkhead-all"),
    pytest.param(lambda: brace.rate_limit("pos", 50), id="rate_limit-per_s"),
    pytest.param(lambda: brace.rate_limit("pos", 50, 10), id="rate_limit-all"),
]


@pytest.mark.parametrize("build", POSITIONAL)
def test_settings_after_the_name_are_keyword_only(build: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match="positional argument"):
        build()
    assert not _created("pos")


# --- a timedelta is a duration ---------------------------------------------------------------


def test_a_policys_durations_accept_a_timedelta() -> None:
    assert brace.http(deadline=timedelta(seconds=5)).deadline == 5.0
    policy = brace.http(initial=timedelta(milliseconds=200), max_wait=timedelta(seconds=10),
                        deadline=timedelta(minutes=1), attempt_timeout=timedelta(seconds=2),
                        hedge_after=timedelta(milliseconds=50))
    assert (policy.initial, policy.max_wait, policy.deadline, policy.attempt_timeout,
            policy.hedge_after) == (0.2, 10.0, 60.0, 2.0, 0.05)
    # Stored as seconds: the same configuration whichever way it was written.
    same = brace.http(initial=0.2, max_wait=10, deadline=60, attempt_timeout=2,
                      hedge_after=0.05)
    assert policy == same and hash(policy) == hash(same)


def test_breaker_durations_accept_a_timedelta() -> None:
    cb = brace.breaker("td", reset_timeout=timedelta(seconds=7), failure_ratio=0.5,
                       window=timedelta(minutes=1), slow_call=timedelta(milliseconds=1500))
    assert cb.reset_timeout == 7.0
    gate = _breakers.find("td")
    assert gate is not None and gate._ratio is not None
    assert (gate._ratio.window.window, gate._slow) == (60.0, 1.5)
    # The same settings in seconds are the same configuration, not a conflict.
    assert brace.breaker("td", reset_timeout=7, window=60.0, slow_call=1.5) is cb
    with pytest.raises(ValueError, match=r"window=datetime\.timedelta"):
        brace.breaker("td", window=30)
    settings = _validate.breaker_settings(
        {"redis_url": "redis://127.0.0.1:1/0", "sync_interval": timedelta(milliseconds=200)},
        _breakers.DEFAULTS)
    assert settings["sync_interval"] == 0.2


def test_budget_bulkhead_and_wait_durations_accept_a_timedelta() -> None:
    budget = brace.budget("td", window=timedelta(seconds=30))
    assert budget.window == 30.0
    assert repr(budget) == "brace.budget('td', ratio=0.2, min_per_s=10.0, window=30.0)"
    assert brace.budget("td", window=30) is budget
    assert brace.bulkhead("td", queue_timeout=timedelta(milliseconds=500)).queue_timeout == 0.5
    wait = brace.waits.backoff(initial=timedelta(milliseconds=100),
                               max_wait=timedelta(seconds=5))
    assert (wait.multiplier, wait.max) == (0.1, 5.0)
    assert brace.waits.retry_after(max_wait=timedelta(seconds=10)).max_wait == 10.0
    stop = brace.stops.limits(attempts=3, deadline=timedelta(seconds=2))
    assert stop is not None


# Every duration setting, built with a bad value for one parameter.
DURATIONS: list[Any] = [
    pytest.param(lambda v: brace.http(deadline=v), "deadline", id="deadline"),
    pytest.param(lambda v: brace.http(initial=v), "initial", id="initial"),
    pytest.param(lambda v: brace.http(max_wait=v), "max_wait", id="max_wait"),
    pytest.param(lambda v: brace.http(attempt_timeout=v), "attempt_timeout",
                 id="attempt_timeout"),
    pytest.param(lambda v: brace.http(hedge_after=v), "hedge_after", id="hedge_after"),
    pytest.param(lambda v: brace.breaker("bad", reset_timeout=v), "reset_timeout",
                 id="reset_timeout"),
    pytest.param(lambda v: brace.breaker("bad", redis_url="redis://127.0.0.1:1/0",
                                         sync_interval=v), "sync_interval",
                 id="sync_interval"),
    pytest.param(lambda v: brace.breaker("bad", failure_ratio=0.5, window=v), "window",
                 id="breaker-window"),
    pytest.param(lambda v: brace.breaker("bad", slow_call=v), "slow_call", id="slow_call"),
    pytest.param(lambda v: brace.budget("bad", window=v), "window", id="budget-window"),
    pytest.param(lambda v: brace.bulkhead("bad", queue_timeout=v), "queue_timeout",
                 id="queue_timeout"),
    pytest.param(lambda v: brace.waits.backoff(initial=v), "initial", id="backoff-initial"),
    pytest.param(lambda v: brace.waits.backoff(max_wait=v), "max_wait", id="backoff-max_wait"),
    pytest.param(lambda v: brace.waits.retry_after(max_wait=v), "max_wait",
                 id="retry_after-max_wait"),
    # Refused before Redis is asked (nothing listens on port 1).
    pytest.param(lambda v: brace.breaker("bad", redis_url="redis://127.0.0.1:1/0",
                                         redis_timeout=v), "redis_timeout",
                 id="breaker-redis_timeout"),
    pytest.param(lambda v: brace.budget("bad", redis_url="redis://127.0.0.1:1/0",
                                        redis_timeout=v), "redis_timeout",
                 id="budget-redis_timeout"),
    pytest.param(lambda v: brace.rate_limit("bad", redis_url="redis://127.0.0.1:1/0",
                                            redis_timeout=v), "redis_timeout",
                 id="rate_limit-redis_timeout"),
]


@pytest.mark.parametrize("value", [timedelta(seconds=-1), timedelta(microseconds=-1),
                                   timedelta.max, -1.0, math.inf, math.nan],
                         ids=["minus-1s", "minus-1us", "timedelta.max", "-1", "inf", "nan"])
@pytest.mark.parametrize(("build", "name"), DURATIONS)
def test_bad_durations_are_refused_naming_the_parameter(
        build: Callable[[object], object], name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a finite number of seconds") as info:
        build(value)
    assert repr(value) in str(info.value)  # says what it was given, a timedelta as such
    assert not _created("bad")


@pytest.mark.parametrize(("build", "name"), DURATIONS)
def test_a_duration_of_another_type_is_a_type_error(build: Callable[[object], object],
                                                    name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be .*\(or a datetime\.timedelta\)"):
        build("5s")


REDIS_TIMEOUTS: list[Any] = [
    pytest.param(lambda **kw: brace.breaker("bad", **kw), id="breaker"),
    pytest.param(lambda **kw: brace.budget("bad", **kw), id="budget"),
    pytest.param(lambda **kw: brace.rate_limit("bad", **kw), id="rate_limit"),
]


@pytest.mark.parametrize("value", [0, 0.0009, 60.5, timedelta(minutes=2)],
                         ids=["0", "0.9ms", "60.5", "2min"])
@pytest.mark.parametrize("build", REDIS_TIMEOUTS)
def test_redis_timeout_is_refused_outside_its_range(build: Callable[..., object],
                                                    value: object) -> None:
    with pytest.raises(ValueError, match=r"^redis_timeout must be a finite number of "
                       r"seconds in \[0\.001, 60\], got "):
        build(redis_url="redis://127.0.0.1:1/0", redis_timeout=value)
    assert not _created("bad")


@pytest.mark.parametrize("build", REDIS_TIMEOUTS)
def test_redis_timeout_without_redis_is_refused(build: Callable[..., object]) -> None:
    # It would bound nothing (rule 21: say no instead of ignoring).
    with pytest.raises(TypeError, match=r"^redis_timeout= bounds brace's waits on Redis: "
                       r"pass redis= or redis_url= too"):
        build(redis_timeout=0.1)
    assert not _created("bad")


# -- every count bounded at build time -----------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda n: brace.network(attempts=n),
    lambda n: brace.stops.limits(attempts=n),
    lambda n: brace.network(hedge_after=0.1, hedges=n),
    lambda n: brace.breaker("bounded", fail_max=n),
    lambda n: brace.breaker("bounded", success_threshold=n),
    lambda n: brace.breaker("bounded", failure_ratio=0.5, min_calls=n),
    lambda n: brace.bulkhead("bounded", max_concurrent=n),
    lambda n: brace.rate_limit("bounded", per_s=10, burst=n),
    lambda n: brace.rate_limit("bounded", per_s=10, processes=n),
], ids=["attempts", "stops.limits", "hedges", "fail_max", "success_threshold", "min_calls",
        "max_concurrent", "burst", "processes"])
@pytest.mark.parametrize("huge", [10**9 + 1, 2**64 + 1, 10**30, 10**400, 10**5000],
                         ids=["1e9+1", "2**64+1", "1e30", "1e400", "1e5000"])
def test_a_count_beyond_its_documented_maximum_is_refused_at_build_time(build: Any,
                                                                       huge: int) -> None:
    # Never an OverflowError, never a hang, never a message thousands of digits long.
    with pytest.raises(ValueError, match=r"must be an int in 1-\d+, got one above") as info:
        build(huge)
    assert len(str(info.value)) < 200


def test_attempts_stop_at_the_documented_maximum() -> None:
    from brace import _validate

    assert brace.network(attempts=_validate.MAX_ATTEMPTS).attempts == 1000
    with pytest.raises(ValueError, match="attempts must be an int in 1-1000"):
        brace.network(attempts=1001)
    # explain() of the largest policy is quick: at most 1,000 waits, summed in closed form
    # beyond brace._explain.EXACT_WAITS.
    import time

    started = time.process_time()
    explained = brace.network(attempts=1000, deadline=1e7).explain()
    assert time.process_time() - started < 1.0
    assert explained["attempts"] == 1000 and explained["rides_out_s"] > 0
