"""Property tests: every valid policy is bounded; every invalid parameter is rejected."""

from __future__ import annotations

import asyncio
import math
import random
import types
from typing import Any

import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st

import brace
import brace._deadline
from brace.testing import no_waits

# Relative slack for float products (initial * 2**n) computed two ways.
EPS = 1e-9

FAST = settings(derandomize=True, deadline=None, max_examples=100)
FEW = settings(derandomize=True, deadline=None, max_examples=25)


class Clock:
    """Virtual monotonic time starting at 0, so elapsed time is exactly `now`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    initial = draw(st.floats(min_value=0, max_value=5, allow_nan=False))
    max_wait = draw(st.floats(min_value=initial, max_value=60, allow_nan=False))
    return {
        "attempts": draw(st.integers(min_value=1, max_value=20)),
        "initial": initial,
        "max_wait": max_wait,
        "deadline": draw(st.floats(min_value=0, max_value=600, exclude_min=True)),
    }


durations = st.floats(min_value=0, max_value=2, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def window(initial: float, max_wait: float, attempt: int) -> float:
    """The full-jitter window after `attempt` failed: min(max, initial * 2**(attempt-1))."""
    return min(max_wait, initial * 2.0 ** (attempt - 1))


def check_bounded(cfg: dict[str, Any], starts: list[float], sleeps: list[float]) -> None:
    attempts, initial, max_wait, deadline = (cfg["attempts"], cfg["initial"], cfg["max_wait"],
                                             cfg["deadline"])
    assert 1 <= len(starts) <= attempts
    assert len(sleeps) == len(starts) - 1  # a sleep between attempts, none after the last
    assert sum(sleeps) <= deadline
    for n, slept in enumerate(sleeps, start=1):
        assert 0 <= slept <= max_wait
        assert slept <= window(initial, max_wait, n) * (1 + EPS) + EPS
    # Never begins an attempt (nor ends a sleep) at or past the deadline.
    assert starts[-1] < deadline
    assert starts == sorted(starts)


def check_gave_up_for_a_reason(cfg: dict[str, Any], starts: list[float],
                               duration: float) -> None:
    # Fewer attempts than allowed only when the next sleep could have crossed the deadline:
    # the last attempt ended within one maximal window of it.
    if len(starts) < cfg["attempts"]:
        ended = starts[-1] + duration
        assert ended + window(cfg["initial"], cfg["max_wait"], len(starts)) * (1 + EPS) \
            >= cfg["deadline"]


@FAST
@given(cfg=configs(), duration=durations, seed=seeds)
def test_sync_policy_is_bounded(cfg: dict[str, Any], duration: float, seed: int) -> None:
    random.seed(seed)
    policy = brace.Policy(**cfg)
    clock = Clock()
    starts: list[float] = []

    def always_fails() -> None:
        starts.append(clock.now)
        clock.now += duration
        raise ConnectionError("down")

    with pytest.MonkeyPatch.context() as mp:
        virtual = types.SimpleNamespace(monotonic=clock.monotonic)
        mp.setattr(tenacity, "time", virtual)
        mp.setattr(brace._deadline, "time", virtual)
        retrying = policy.retrying(sleep=clock.sleep)
        with pytest.raises(ConnectionError, match="down"):
            retrying(always_fails)

    check_bounded(cfg, starts, clock.sleeps)
    check_gave_up_for_a_reason(cfg, starts, duration)
    assert retrying.statistics["attempt_number"] == len(starts)
    assert retrying.statistics["idle_for"] == pytest.approx(sum(clock.sleeps))


@FAST
@given(cfg=configs(), duration=durations, seed=seeds)
def test_for_attempt_block_is_bounded(cfg: dict[str, Any], duration: float, seed: int) -> None:
    random.seed(seed)
    policy = brace.Policy(**cfg)
    clock = Clock()
    starts: list[float] = []

    with pytest.MonkeyPatch.context() as mp:
        virtual = types.SimpleNamespace(monotonic=clock.monotonic)
        mp.setattr(tenacity, "time", virtual)
        mp.setattr(brace._deadline, "time", virtual)
        with pytest.raises(TimeoutError):
            for attempt in policy.retrying(sleep=clock.sleep):
                with attempt:
                    starts.append(clock.now)
                    clock.now += duration
                    raise TimeoutError("slow")

    check_bounded(cfg, starts, clock.sleeps)
    check_gave_up_for_a_reason(cfg, starts, duration)


@FEW
@given(cfg=configs(), duration=durations, seed=seeds)
def test_async_policy_is_bounded(cfg: dict[str, Any], duration: float, seed: int) -> None:
    random.seed(seed)
    policy = brace.Policy(**cfg)
    clock = Clock()
    starts: list[float] = []

    async def always_fails() -> None:
        starts.append(clock.now)
        clock.now += duration
        raise ConnectionError("down")

    async def main() -> None:
        with pytest.raises(ConnectionError, match="down"):
            await policy.async_retrying(sleep=clock.async_sleep)(always_fails)

    with pytest.MonkeyPatch.context() as mp:
        virtual = types.SimpleNamespace(monotonic=clock.monotonic)
        mp.setattr(tenacity, "time", virtual)
        mp.setattr(brace._deadline, "time", virtual)
        asyncio.run(main())

    check_bounded(cfg, starts, clock.sleeps)
    check_gave_up_for_a_reason(cfg, starts, duration)


@FEW
@given(cfg=configs(), duration=durations, seed=seeds)
def test_async_for_block_is_bounded(cfg: dict[str, Any], duration: float, seed: int) -> None:
    random.seed(seed)
    policy = brace.Policy(**cfg)
    clock = Clock()
    starts: list[float] = []

    async def main() -> None:
        with pytest.raises(ConnectionError):
            async for attempt in policy.async_retrying(sleep=clock.async_sleep):
                with attempt:
                    starts.append(clock.now)
                    clock.now += duration
                    raise ConnectionResetError("reset")

    with pytest.MonkeyPatch.context() as mp:
        virtual = types.SimpleNamespace(monotonic=clock.monotonic)
        mp.setattr(tenacity, "time", virtual)
        mp.setattr(brace._deadline, "time", virtual)
        asyncio.run(main())

    check_bounded(cfg, starts, clock.sleeps)
    check_gave_up_for_a_reason(cfg, starts, duration)


@FAST
@given(cfg=configs(), duration=durations, seed=seeds)
def test_decorator_inside_no_waits_counts_skipped_sleeps(cfg: dict[str, Any], duration: float,
                                                         seed: int) -> None:
    # no_waits() skips the sleeps but the deadline still sees them: the virtual start of the
    # last attempt (real elapsed + skipped sleeps) stays before the deadline.
    random.seed(seed)
    policy = brace.Policy(**cfg)
    clock = Clock()
    starts: list[float] = []

    def always_fails() -> None:
        starts.append(clock.now)
        clock.now += duration
        raise ConnectionError("down")

    wrapped = policy(always_fails)
    with pytest.MonkeyPatch.context() as mp, no_waits():
        virtual = types.SimpleNamespace(monotonic=clock.monotonic)
        mp.setattr(tenacity, "time", virtual)
        mp.setattr(brace._deadline, "time", virtual)
        with pytest.raises(ConnectionError):
            wrapped()

    idle = wrapped.statistics["idle_for"]
    assert 1 <= len(starts) <= cfg["attempts"]
    assert wrapped.statistics["attempt_number"] == len(starts)
    assert 0 <= idle <= cfg["deadline"]
    assert idle <= cfg["max_wait"] * (len(starts) - 1) * (1 + EPS) + EPS
    assert starts[-1] + idle < cfg["deadline"]


@FAST
@given(initial=st.floats(min_value=0, max_value=5, allow_nan=False),
       extra=st.floats(min_value=0, max_value=55, allow_nan=False),
       attempt=st.integers(min_value=1, max_value=64), seed=seeds)
def test_backoff_sample_lies_in_window(initial: float, extra: float, attempt: int,
                                       seed: int) -> None:
    random.seed(seed)
    maximum = initial + extra
    wait = brace.waits.backoff(initial=initial, max_wait=maximum)
    rs = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    rs.attempt_number = attempt
    for _ in range(5):
        value = wait(rs)
        assert 0 <= value <= maximum
        assert value <= window(initial, maximum, attempt) * (1 + EPS) + EPS


# --- invalid parameters --------------------------------------------------------------------

not_numbers = st.one_of(st.text(max_size=3), st.booleans(), st.none(),
                        st.lists(st.integers(), max_size=1))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
negative = st.floats(max_value=0, exclude_max=True, allow_nan=False, allow_infinity=False)


@st.composite
def invalid_params(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One invalid parameter, the rest valid: (name expected in the error, kwargs)."""
    which = draw(st.sampled_from(["attempts", "initial", "max_wait", "max_below", "deadline"]))
    if which == "attempts":
        bad = draw(st.one_of(st.integers(max_value=0),
                             st.floats(allow_nan=True, allow_infinity=True),
                             not_numbers))
        return "attempts", {"attempts": bad}
    if which == "initial":
        bad = draw(st.one_of(negative, non_finite, not_numbers))
        return "initial", {"initial": bad, "max_wait": 60.0}
    if which == "max_wait":
        bad = draw(st.one_of(negative, non_finite, not_numbers))
        return "max_wait", {"initial": 0.0, "max_wait": bad}
    if which == "max_below":
        initial = draw(st.floats(min_value=1e-6, max_value=5))
        below = draw(st.floats(min_value=0, max_value=initial, exclude_max=True))
        return "max_wait", {"initial": initial, "max_wait": below}
    bad = draw(st.one_of(st.floats(max_value=0, allow_nan=False), non_finite, not_numbers))
    return "deadline", {"deadline": bad}


@FAST
@given(case=invalid_params())
def test_every_invalid_parameter_is_rejected_at_construction(
        case: tuple[str, dict[str, Any]]) -> None:
    name, kwargs = case
    with pytest.raises((ValueError, TypeError)) as info:
        brace.Policy(**kwargs)
    assert name in str(info.value)
    # Presets derive policies the same way, and reject the same values.
    with pytest.raises((ValueError, TypeError)) as info:
        brace.network(**kwargs)
    assert name in str(info.value)


@FAST
@given(cfg=configs())
def test_every_valid_configuration_builds(cfg: dict[str, Any]) -> None:
    policy = brace.Policy(**cfg)
    assert policy.attempts == cfg["attempts"]
    assert policy.deadline == float(cfg["deadline"])
    assert isinstance(policy.stop, tenacity.stop.stop_base)
    assert isinstance(policy.wait, brace.waits.retry_after)
    assert policy.wait.max_wait is None  # it caps the backoff, never a server's Retry-After
    assert policy.wait.fallback.max == policy.max_wait
    assert isinstance(policy.wait.fallback, tenacity.wait_random_exponential)
    assert policy.wait.fallback.multiplier == cfg["initial"]
    assert policy.wait.fallback.max == cfg["max_wait"]


# -- extreme numbers: a ValueError at build time, or a call that behaves ------------------------

EXTREMES = st.sampled_from([0, 0.0, -0.0, -1, 5e-324, 1e-9, 0.5, 3, 1e7, 1e8, 1e308,
                            float("nan"), float("inf"), float("-inf"), 10**400])


def _build(factory: Any, **kwargs: Any) -> Any:
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as exc:
        named = [name for name in kwargs if name in str(exc)]
        assert named, f"{exc} names none of {sorted(kwargs)}"
        return None


@FAST
@given(initial=EXTREMES, max_wait=EXTREMES, deadline=EXTREMES, attempt_timeout=EXTREMES,
       attempts=st.sampled_from([0, 1, 3, 8]))
def test_extreme_policy_numbers(initial: Any, max_wait: Any, deadline: Any,
                                attempt_timeout: Any, attempts: int) -> None:
    policy = _build(brace.network, initial=initial, max_wait=max_wait, deadline=deadline,
                    attempt_timeout=attempt_timeout, attempts=attempts)
    if policy is None:
        return
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with no_waits(), pytest.raises(ConnectionError):
        asyncio.run(policy(down)())
    assert 1 <= calls <= attempts


@FAST
@given(fail_max=st.sampled_from([0, 1, 2, 10**18, -1]), reset_timeout=EXTREMES)
def test_extreme_breaker_numbers(fail_max: int, reset_timeout: Any) -> None:
    brace.testing.reset_breakers()
    cb = _build(brace.breaker, name="extreme", fail_max=fail_max, reset_timeout=reset_timeout)
    if cb is None:
        return

    @brace.network(attempts=1, breaker="extreme")
    def down() -> None:
        raise ConnectionError("down")

    for _ in range(min(fail_max, 3)):
        with pytest.raises((ConnectionError, brace.CircuitOpenError)):
            down()
    if fail_max <= 3:
        # Open: rejected until reset_timeout passes (a tiny one may have passed already,
        # and the call is the trial).
        with pytest.raises((brace.CircuitOpenError, ConnectionError)) as info:
            down()
        if isinstance(info.value, brace.CircuitOpenError):
            assert 0 <= info.value.remaining_s <= reset_timeout
    brace.testing.reset_breakers()


@FAST
@given(ratio=EXTREMES, min_per_s=EXTREMES, window=EXTREMES)
def test_extreme_budget_numbers(ratio: Any, min_per_s: Any, window: Any) -> None:
    brace.testing.reset_budgets()
    budget = _build(brace.budget, name="extreme", ratio=ratio, min_per_s=min_per_s,
                    window=window)
    if budget is None:
        return
    calls = 0

    @brace.network(attempts=3, budget=budget)
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with no_waits():
        for _ in range(3):
            with pytest.raises(ConnectionError):
                down()
    assert 3 <= calls <= 9
    brace.testing.reset_budgets()
