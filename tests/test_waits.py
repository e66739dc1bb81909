"""brace.waits: full-jitter backoff, and sleeps that no_waits() can switch off."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest
import tenacity

import brace
from brace.testing import no_waits
from brace.waits import async_sleep, backoff, sleep, waits_disabled


def state_at(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


def samples(wait: Any, attempt: int, n: int = 400) -> list[float]:
    state = state_at(attempt)
    return [wait(state) for _ in range(n)]


# --- backoff -------------------------------------------------------------------------------


def test_backoff_is_tenacitys_full_jitter_wait() -> None:
    wait = backoff(initial=0.2, max_wait=10)
    assert type(wait) is tenacity.wait_random_exponential
    assert wait.multiplier == 0.2
    assert wait.max == 10
    assert wait.min == 0
    assert wait.exp_base == 2


def test_backoff_defaults() -> None:
    wait = backoff()
    assert isinstance(wait, tenacity.wait_random_exponential)
    assert (wait.multiplier, wait.max) == (0.1, 5.0)


def test_backoff_accepts_ints_and_zero() -> None:
    wait = backoff(1, 60)
    assert (wait.multiplier, wait.max) == (1.0, 60.0)
    zero = backoff(0, 0)
    assert all(w == 0 for w in samples(zero, 3, 20))
    same = backoff(2, 2)
    assert all(0 <= w <= 2 for w in samples(same, 5, 50))


@pytest.mark.parametrize(("initial", "maximum"), [(0.1, 5.0), (0.2, 10.0), (1.0, 30.0),
                                                  (0.05, 0.25), (1.0, 60.0), (3.0, 4.0)])
def test_sampled_waits_lie_within_the_full_jitter_window(initial: float, maximum: float) -> None:
    random.seed(20240601)
    wait = backoff(initial=initial, max_wait=maximum)
    for attempt in range(1, 12):
        window = min(maximum, initial * 2 ** (attempt - 1))
        values = samples(wait, attempt)
        assert all(0 <= v <= window for v in values), (attempt, window, min(values), max(values))
        # Full jitter: values spread over the whole window, not a constant or a narrow band.
        assert len(set(values)) > len(values) // 2
        assert min(values) < 0.1 * window
        assert max(values) > 0.9 * window
        mean = sum(values) / len(values)
        assert 0.4 * window < mean < 0.6 * window


def test_window_grows_then_caps() -> None:
    random.seed(7)
    wait = backoff(initial=1.0, max_wait=8.0)
    highs = [max(samples(wait, attempt, 300)) for attempt in range(1, 8)]
    # windows 1, 2, 4, 8, 8, 8, 8
    assert highs[0] <= 1 < highs[1] <= 2 < highs[2] <= 4 < highs[3] <= 8
    assert all(7 < h <= 8 for h in highs[3:])


def test_very_late_attempts_stay_capped() -> None:
    random.seed(3)
    wait = backoff(initial=0.5, max_wait=3.0)
    values = samples(wait, 10_000, 100)
    assert all(0 <= v <= 3.0 for v in values)
    assert max(values) > 2.5


def test_seeded_sampling_is_reproducible() -> None:
    wait = backoff(0.1, 5)
    random.seed(99)
    first = samples(wait, 4, 20)
    random.seed(99)
    assert samples(wait, 4, 20) == first


def test_backoff_composes_with_plus() -> None:
    random.seed(11)
    combined = backoff(initial=0.5, max_wait=2.0) + tenacity.wait_fixed(1)
    assert isinstance(combined, tenacity.wait.wait_base)
    for attempt in (1, 2, 3, 6):
        window = min(2.0, 0.5 * 2 ** (attempt - 1))
        values = samples(combined, attempt, 200)
        assert all(1.0 <= v <= 1.0 + window for v in values)
        assert max(values) - min(values) > 0.5 * window
    # Composes in a real tenacity.Retrying: the sleeps it asks for lie in the window + 1.
    slept: list[float] = []
    retrying = tenacity.Retrying(wait=combined, stop=tenacity.stop_after_attempt(4),
                                 sleep=slept.append, reraise=True)
    with pytest.raises(ConnectionError):
        retrying(_always_fails)
    assert len(slept) == 3
    assert all(1.0 <= s <= 1.0 + min(2.0, 0.5 * 2 ** i) for i, s in enumerate(slept))


def _always_fails() -> None:
    raise ConnectionError("down")


INVALID: list[Any] = [
    pytest.param({"initial": -0.1}, "initial", id="negative-initial"),
    pytest.param({"initial": -1, "max_wait": 5}, "initial", id="negative-int-initial"),
    pytest.param({"initial": math.nan}, "initial", id="nan-initial"),
    pytest.param({"initial": math.inf}, "initial", id="inf-initial"),
    pytest.param({"initial": -math.inf}, "initial", id="minus-inf-initial"),
    pytest.param({"initial": "0.1"}, "initial", id="str-initial"),
    pytest.param({"initial": True}, "initial", id="bool-initial"),
    pytest.param({"initial": None}, "initial", id="none-initial"),
    pytest.param({"max_wait": -1}, "max_wait", id="negative-max"),
    pytest.param({"max_wait": math.nan}, "max_wait", id="nan-max"),
    pytest.param({"max_wait": math.inf}, "max_wait", id="inf-max"),
    pytest.param({"max_wait": "5"}, "max_wait", id="str-max"),
    pytest.param({"max_wait": False}, "max_wait", id="bool-max"),
    pytest.param({"initial": 2.0, "max_wait": 1.0}, "max_wait", id="max-below-initial"),
    pytest.param({"initial": 0.2, "max_wait": 0.1}, "max_wait", id="max-below-initial-small"),
]


@pytest.mark.parametrize(("kwargs", "name"), INVALID)
def test_invalid_backoff_parameters_are_rejected_by_name(kwargs: dict[str, Any],
                                                         name: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        backoff(**kwargs)
    assert name in str(info.value)


def test_type_errors_and_value_errors_are_distinguished() -> None:
    with pytest.raises(TypeError, match="initial"):
        backoff(initial="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_wait"):
        backoff(max_wait=True)
    with pytest.raises(ValueError, match="initial"):
        backoff(initial=-1)
    with pytest.raises(ValueError, match="max_wait"):
        backoff(initial=1, max_wait=0.5)


# --- sleep / async_sleep / no_waits --------------------------------------------------------


def test_sleep_is_skipped_inside_no_waits() -> None:
    with no_waits():
        start = time.monotonic()
        sleep(5)
        sleep(3600)
        assert time.monotonic() - start < 1.0


def test_async_sleep_is_skipped_inside_no_waits() -> None:
    async def main() -> float:
        start = time.monotonic()
        await async_sleep(5)
        await async_sleep(3600)
        return time.monotonic() - start

    with no_waits():
        assert asyncio.run(main()) < 1.0


def test_async_sleep_still_yields_to_the_loop_inside_no_waits() -> None:
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        task = asyncio.ensure_future(other())
        await async_sleep(10)
        order.append("after sleep")
        await task

    with no_waits():
        asyncio.run(main())
    assert order == ["other", "after sleep"]


def test_zero_sleep_outside_no_waits_returns() -> None:
    assert not waits_disabled()
    start = time.monotonic()
    sleep(0)
    asyncio.run(async_sleep(0))
    assert time.monotonic() - start < 1.0


def test_waits_disabled_reflects_nesting() -> None:
    assert waits_disabled() is False
    with no_waits():
        assert waits_disabled() is True
        with no_waits():
            assert waits_disabled() is True
        assert waits_disabled() is True  # the outer block is still active
    assert waits_disabled() is False


def test_no_waits_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), no_waits():
        assert waits_disabled() is True
        raise RuntimeError("boom")
    assert waits_disabled() is False


def test_no_waits_keeps_computed_waits_and_attempts() -> None:
    # Inside no_waits() a policy still computes (and reports) the same waits; it only skips
    # the sleeping.
    random.seed(5)
    policy = brace.Policy(attempts=4, initial=1.0, max_wait=10.0, deadline=10_000)
    with no_waits():
        retrying = policy.retrying()
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            for attempt in retrying:
                with attempt:
                    raise ConnectionError("down")
        assert time.monotonic() - start < 1.0
    assert retrying.statistics["attempt_number"] == 4
    assert retrying.statistics["idle_for"] > 0


def test_public_names() -> None:
    assert brace.waits.backoff is backoff
    assert set(brace.waits.__all__) >= {"async_sleep", "backoff", "sleep", "waits_disabled"}


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"max_wait": 10**400}, "max_wait"),
    ({"initial": 10**400, "max_wait": 10**401}, "initial"),
])
def test_huge_int_waits_are_rejected_by_name(kwargs: dict[str, Any], name: str) -> None:
    # An int too large for a float is not a finite number of seconds: a ValueError naming
    # the parameter, not an OverflowError from float().
    with pytest.raises(ValueError, match=name):
        backoff(**kwargs)
