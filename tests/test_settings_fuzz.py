"""A seeded fuzz of every setting of every preset and named object (DESIGN rules 9 and 28).

Each keyword setting of the presets, of ``brace.breaker``, ``budget``, ``bulkhead``,
``rate_limit``, ``throttle`` and ``brace.testing.chaos``, and of ``no_waits(attempts)`` and
``brace.deadline(seconds)``, is given plausible values and the values users pass by mistake
(huge ints, inf, nan, the extreme floats, huge and negative timedeltas, bools, strings,
None): several settings at once, half the time with one mistake among them. Either
building refuses it with a ValueError or TypeError that names the parameter, in a short
message, or what was built works: a healthy call and a call that fails once then succeeds
(under ``no_waits()``) end as a policy's calls may end, ``explain()`` takes well under a
second, and the object's own acquire/take/spend raises nothing but its refusal. Never an
OverflowError, a ZeroDivisionError or a hang.

A setting added to a signature without a row in the tables below fails
``test_every_setting_is_fuzzed``: add its strategy there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import tenacity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brace
from brace import _config, _explain, _validate
from brace.testing import no_waits, reset_breakers, reset_budgets, reset_limits

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.too_slow])
OBJECT_FUZZ = settings(FUZZ, max_examples=80)
# explain() must answer in well under this (the bound; a typical answer takes
# milliseconds, so a loaded machine still has a wide margin).
EXPLAIN_S = 1.0
# An error message shows a rejected value, never thousands of its digits.
MESSAGE_CHARS = 400

# -- values -----------------------------------------------------------------------------------

HUGE_INTS = [10**400, 2**64 + 1, -(2**64 + 1), 10**5000, -(10**5000),
             _validate.MAX_COUNT + 1, _validate.MAX_ATTEMPTS + 1]
ODD_FLOATS = [math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, -0.0, 0.0, -1.0,
              _validate.MAX_SECONDS, math.nextafter(_validate.MAX_SECONDS, math.inf), 1e-7]
ODD_TIMEDELTAS = [timedelta.max, timedelta.min, timedelta(days=-1), timedelta(microseconds=-1),
                  timedelta(0), timedelta(microseconds=1), timedelta(days=116)]
OTHERS: list[Any] = [True, False, "", "5", "5s", None, b"1", [], (), {}, Decimal("1"),
                     Fraction(1, 3), 1 + 2j, object(), "x" * 10_000]

wild = st.one_of(st.sampled_from([*HUGE_INTS, *ODD_FLOATS, *ODD_TIMEDELTAS, *OTHERS]),
                 st.integers(), st.floats(), st.timedeltas(), st.booleans(),
                 st.text(max_size=3), st.none())


# Plausible values: the right type, in range and at its edges (some just outside).
counts = st.one_of(st.integers(-1, 12), st.integers(1, _validate.MAX_COUNT),
                   st.just(_validate.MAX_COUNT))
attempt_counts = st.one_of(st.integers(0, 30), st.integers(1, _validate.MAX_ATTEMPTS + 1))
durations = st.one_of(
    st.floats(0, 10), st.floats(0, _validate.MAX_SECONDS), st.integers(0, 10**7),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=_validate.MAX_SECONDS)))
ratios = st.floats(0, 1)
rates = st.one_of(st.floats(0, 100), st.floats(0, 2 * _validate.MAX_PER_S),
                  st.sampled_from([_validate.MAX_PER_S, 1e-6]))
names = st.sampled_from(["fuzz", "other", "x" * 200])


def _on_half_second(exc: BaseException) -> float:
    return 0.5


def _on_longest(exc: BaseException) -> timedelta:
    return timedelta(seconds=_validate.MAX_SECONDS)


def _on_yes(exc: BaseException) -> bool:
    return True


def _fallback(exc: BaseException) -> str:
    return "fallback"


# One row per setting (a missing row fails test_every_setting_is_fuzzed): its plausible
# values, or None when none takes effect without Redis (then only mistakes are tried).
POLICY_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "preset": st.sampled_from(["custom", "http"]),
    "attempts": attempt_counts,
    "initial": durations,
    "max_wait": durations,
    "deadline": durations,
    "on": st.sampled_from([(), ValueError, [KeyError, OSError], _on_half_second, _on_longest,
                           _on_yes, [KeyboardInterrupt], int]),
    "retry": st.sampled_from([brace.predicates.transient, tenacity.retry_never,
                              tenacity.retry_if_exception_type(OSError)]),
    "statuses": st.lists(st.integers(0, 700), max_size=3),
    "idempotent_only": st.booleans(),
    "attempt_timeout": durations,
    "breaker": names,
    "budget": names,
    "throttle": names,
    "rate_limit": names,
    "bulkhead": names,
    "hedge_after": durations,
    "hedges": counts,
    "fallback": st.sampled_from([_config.NO_FALLBACK, None, "fallback", _fallback]),
    "chaos": st.one_of(
        st.none(),
        st.builds(brace.testing.chaos, fault=st.sampled_from([ConnectionError, TimeoutError()]),
                  rate=ratios, seed=st.integers(0, 9)),
        st.builds(brace.testing.chaos, outcome=st.just("ok"), latency=durations,
                  rate=ratios, seed=st.integers(0, 9))),
}
# brace.testing.chaos(...): a policy's chaos setting, and the settings it takes.
CHAOS_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "fault": st.sampled_from([None, ConnectionError, ConnectionError("injected"), OSError]),
    "outcome": st.sampled_from([None, "ok"]),
    "latency": st.one_of(st.none(), durations),
    "rate": ratios,
    "enabled": st.sampled_from([True, False, lambda: True]),
    "seed": st.one_of(st.none(), st.integers(-(2**70), 2**70)),
}
BREAKER_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "name": names,
    "fail_max": counts,
    "reset_timeout": durations,
    "success_threshold": counts,
    "exclude": st.sampled_from([(), [KeyError], [_on_yes], [1]]),
    "fallback_state": st.sampled_from(["closed", "open"]),
    "sync_interval": None,
    "failure_ratio": ratios,
    "min_calls": counts,
    "window": durations,
    "slow_call": durations,
    "redis_timeout": None,
}
BUDGET_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "name": names, "ratio": ratios, "min_per_s": rates, "window": durations,
    "redis_timeout": None,
}
BULKHEAD_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "name": names, "max_concurrent": counts, "queue_timeout": durations,
    "adaptive": st.booleans(),
}
THROTTLE_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "name": names, "k": st.one_of(st.floats(0, 2000), st.sampled_from([1.0, 1000.0])),
    "window": durations,
}
RATE_LIMIT_SETTINGS: dict[str, st.SearchStrategy[Any] | None] = {
    "name": names, "per_s": rates, "burst": counts, "processes": counts,
    "redis_timeout": None, "adaptive": st.booleans(),
}
# Settings that need a Redis server: tests/integration/test_fleet.py covers them (given
# alone, their companions above are refused, which the fuzz checks).
NEEDS_REDIS = {"redis", "redis_url"}

OBJECTS: dict[str, tuple[Callable[..., Any], dict[str, st.SearchStrategy[Any] | None]]] = {
    "breaker": (brace.breaker, BREAKER_SETTINGS),
    "budget": (brace.budget, BUDGET_SETTINGS),
    "bulkhead": (brace.bulkhead, BULKHEAD_SETTINGS),
    "rate_limit": (brace.rate_limit, RATE_LIMIT_SETTINGS),
    "throttle": (brace.throttle, THROTTLE_SETTINGS),
}


@st.composite
def _settings(draw: st.DrawFn, table: dict[str, st.SearchStrategy[Any] | None],
              required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Plausible values for some of ``table``'s settings, and half the time one mistake."""
    plausible = {key: value for key, value in table.items() if value is not None}
    given = draw(st.fixed_dictionaries(
        {key: plausible[key] for key in required},
        optional={key: value for key, value in plausible.items() if key not in required}))
    if draw(st.booleans()):
        given[draw(st.sampled_from(sorted(table)))] = draw(wild)
    return given


PRESETS = [brace.presets.get(name) for name in brace.presets.names()]


def _settings_of(factory: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(factory).parameters.values()
    return {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_every_setting_is_fuzzed(kind: str) -> None:
    factory, table = OBJECTS[kind]
    assert _settings_of(factory) - NEEDS_REDIS == set(table)


def test_every_policy_and_chaos_setting_is_fuzzed() -> None:
    assert {field.name for field in dataclasses.fields(brace.Policy)} == set(POLICY_SETTINGS)
    assert _settings_of(brace.testing.chaos) == set(CHAOS_SETTINGS)


# -- the property -----------------------------------------------------------------------------


def _fresh() -> None:
    reset_breakers()
    reset_budgets()
    reset_limits()


def _built(factory: Callable[..., Any], given: dict[str, Any]) -> Any:
    """What ``factory(**given)`` builds, or None when it refused naming a given setting."""
    try:
        return factory(**given)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert len(message) < MESSAGE_CHARS, message[:MESSAGE_CHARS]
        # A setting given, or (a combination: nothing to inject ...) the ones to give.
        named = [name for name in {*given, *_settings_of(factory)} if name in message]
        assert named, f"{message!r} names none of {sorted(given)}"
        return None


class Flaky:
    """Fails its first call with a ConnectionError (a transient error), then answers."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("down")
        return "ok"


def _healthy() -> str:
    return "ok"


# How a call may end: its answer, the fallback, the function's own error once retries or
# the deadline ran out, or a gate's refusal. Anything else (OverflowError, ZeroDivisionError,
# a ValueError at call time ...) is a bug.
ENDINGS = (ConnectionError, TimeoutError, brace.BraceError)


def _ended_well(run: Callable[[], Any], injected: bool = False) -> None:
    try:
        result = run()
    except ENDINGS:
        return
    # A chaos setting's outcome (any value) may stand in for the answer.
    assert injected or result in ("ok", "fallback", None)


def _calls(policy: brace.Policy) -> None:
    """A healthy call and a failing-then-succeeding one, sync where allowed, and async."""
    injected = policy.chaos is not None and policy.chaos.outcome is not None
    try:
        healthy, flaky = policy(_healthy), policy(Flaky())
    except TypeError as exc:  # only async functions can be cut off or hedged
        assert "attempt_timeout=" in str(exc) or "hedge_after=" in str(exc)
    else:
        _ended_well(healthy, injected)
        _ended_well(flaky, injected)

    async def ahealthy() -> str:
        return "ok"

    aflaky = Flaky()

    async def flaky_async() -> str:
        return aflaky()

    _ended_well(lambda: asyncio.run(policy(ahealthy)()), injected)
    _ended_well(lambda: asyncio.run(policy(flaky_async)()), injected)


class Hang(Exception):
    """Raised into a block that ran past its time: a hang fails the test, quickly."""


@contextlib.contextmanager
def _at_most(seconds: float) -> Iterator[None]:
    # SIGALRM interrupts the main thread (where pytest and its xdist workers run tests).
    if (not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _explained_quickly(policy: brace.Policy) -> None:
    started = time.perf_counter()
    with _at_most(5 * EXPLAIN_S):
        data = policy.explain()
        _explain.render_text(data)  # what `python -m brace explain` prints
    took = time.perf_counter() - started
    assert took < EXPLAIN_S, f"explain() took {took:.2f} s"
    assert data["attempts"] == policy.attempts <= _validate.MAX_ATTEMPTS
    assert len(data["schedule"]) == policy.attempts


def _check_policy(policy: brace.Policy) -> None:
    # Every number a call computes with is finite and within its documented bound.
    for name in ("initial", "max_wait", "deadline", "attempt_timeout", "hedge_after"):
        value = getattr(policy, name)
        assert value is None or 0 <= value <= _validate.MAX_SECONDS, (name, value)
    with no_waits():
        _calls(policy)
    _explained_quickly(policy)


@pytest.mark.parametrize("preset", PRESETS, ids=brace.presets.names())
@FUZZ
@given(data=st.data())
def test_a_preset_refuses_a_setting_by_name_or_works(preset: brace.Preset,
                                                     data: st.DataObject) -> None:
    given_settings = data.draw(_settings(POLICY_SETTINGS))
    _fresh()
    policy = _built(preset, given_settings)
    if policy is not None:
        _check_policy(policy)


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    """Backoff schedules over every scale. Many distinct waits (a tiny initial under a huge
    max_wait) under a deadline that leaves them room are the costly case for explain."""
    initial = draw(st.one_of(st.sampled_from([0.0, 5e-324, 1e-7]),
                             st.floats(-9, 3).map(lambda exponent: 10**exponent)))
    # Up to 40 distinct waits: max_wait is initial doubled that many times.
    max_wait = min(_validate.MAX_SECONDS, initial * 2 ** draw(st.integers(0, 40)))
    deadline = min(_validate.MAX_SECONDS,
                   max(max_wait, 1e-3) * 10 ** draw(st.floats(0, 6)))
    attempts = draw(st.one_of(st.integers(1, 40), st.sampled_from([999, 1000])))
    # An on= callable may answer with its own wait, which explain cannot sample its way
    # around (1,000 attempts of 1,001 samples each took seconds).
    on = draw(st.sampled_from([(), _on_half_second]))
    return {"attempts": attempts, "initial": initial, "max_wait": max_wait,
            "deadline": deadline, "on": on}


@settings(derandomize=True, database=None, deadline=None, max_examples=60,
          suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules())
def test_any_schedule_is_explained_quickly(schedule: dict[str, Any]) -> None:
    policy = brace.network(**schedule)
    _explained_quickly(policy)
    assert 0 <= policy.explain()["rides_out_s"] <= policy.deadline


@settings(derandomize=True, database=None, deadline=None, max_examples=150,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_bad_setting_is_named(data: st.DataObject) -> None:
    # One setting at a time, the rest the defaults: the error names exactly that one.
    kinds = {**{f"preset {p.preset}": (p, POLICY_SETTINGS) for p in PRESETS}, **OBJECTS}
    kind = data.draw(st.sampled_from(sorted(kinds)))
    factory, table = kinds[kind]
    name = data.draw(st.sampled_from(sorted(set(table) - {"name"})))
    value = data.draw(wild)
    _fresh()
    given_settings = {name: value} if kind.startswith("preset") else {"name": "one",
                                                                       name: value}
    try:
        factory(**given_settings)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert name in message, f"{kind}: {message!r} does not name {name}"
        assert len(message) < MESSAGE_CHARS


# -- the named objects ------------------------------------------------------------------------


def _objects(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return _settings(OBJECTS[kind][1], required=("name",))


def _policy_for(kind: str, name: str) -> brace.Policy:
    policy = brace.network(attempts=3, **{kind: name})
    _check_policy(policy)
    return policy


@OBJECT_FUZZ
@given(given_settings=_objects("breaker"))
def test_a_breaker_refuses_a_setting_by_name_or_works(given_settings: dict[str, Any]) -> None:
    _fresh()
    cb = _built(brace.breaker, given_settings)
    if cb is None:
        return
    name = given_settings["name"]
    info = brace.breakers()[name]
    assert info.fail_max <= _validate.MAX_COUNT
    assert 0 < info.reset_timeout <= _validate.MAX_SECONDS
    policy = _policy_for("breaker", name)
    cb.force_open()  # refused with the time left, whatever the reset_timeout
    with pytest.raises(brace.CircuitOpenError) as refused:
        policy(_healthy)()
    assert 0 <= refused.value.remaining_s <= _validate.MAX_SECONDS
    cb.close()
    _ended_well(policy(_healthy))


@OBJECT_FUZZ
@given(given_settings=_objects("budget"))
def test_a_budget_refuses_a_setting_by_name_or_works(given_settings: dict[str, Any]) -> None:
    _fresh()
    budget = _built(brace.budget, given_settings)
    if budget is None:
        return
    assert 0 <= budget.ratio <= 1
    assert 0 <= budget.min_per_s <= _validate.MAX_PER_S
    assert 0 < budget.window <= _validate.MAX_SECONDS
    assert math.isfinite(budget.min_per_s * budget.window)
    _policy_for("budget", given_settings["name"])
    for _ in range(3):
        budget.record_call()
        assert budget.try_spend() in (True, False)


@OBJECT_FUZZ
@given(given_settings=_objects("bulkhead"))
def test_a_bulkhead_refuses_a_setting_by_name_or_works(given_settings: dict[str, Any]) -> None:
    _fresh()
    bulkhead = _built(brace.bulkhead, given_settings)
    if bulkhead is None:
        return
    assert 1 <= bulkhead.max_concurrent <= _validate.MAX_COUNT
    assert 0 <= bulkhead.queue_timeout <= _validate.MAX_SECONDS
    _policy_for("bulkhead", given_settings["name"])
    bulkhead.acquire("fuzz", _validate.MAX_SECONDS)  # a free slot: taken at once
    try:
        if bulkhead.max_concurrent == 1:  # full, and no time to wait: refused at once
            with pytest.raises(brace.BulkheadFullError):
                bulkhead.acquire("fuzz", 0.0)
    finally:
        bulkhead.release()
    assert bulkhead.in_use == 0
    assert 1 <= bulkhead.limit <= bulkhead.max_concurrent
    bulkhead.sample(0.01, False)  # learns (adaptive), or ignores it


@OBJECT_FUZZ
@given(given_settings=_objects("throttle"))
def test_a_throttle_refuses_a_setting_by_name_or_works(given_settings: dict[str, Any]) -> None:
    _fresh()
    throttle = _built(brace.throttle, given_settings)
    if throttle is None:
        return
    assert 1.0 <= throttle.k <= 1000.0
    assert 0.01 <= throttle.window <= _validate.MAX_SECONDS
    _policy_for("throttle", given_settings["name"])
    throttle.record(False)
    assert 0.0 <= throttle.probability < 1.0
    try:
        throttle.admit("fuzz")
    except brace.ThrottledError as refused:
        assert 0.0 < refused.probability < 1.0


@OBJECT_FUZZ
@given(given_settings=_objects("rate_limit"))
def test_a_rate_limit_refuses_a_setting_by_name_or_works(
        given_settings: dict[str, Any]) -> None:
    _fresh()
    rate = _built(brace.rate_limit, given_settings)
    if rate is None:
        return
    assert _validate.MAX_PER_S >= rate.per_s > 0
    assert 1 <= rate.burst <= _validate.MAX_COUNT
    assert 1 <= rate.processes <= _validate.MAX_COUNT
    _policy_for("rate_limit", given_settings["name"])
    assert rate.take_now() in (True, False)
    for remaining in (0.0, 1.0, _validate.MAX_SECONDS):
        try:
            wait = rate.reserve("fuzz", remaining)
        except brace.RateLimitedError:
            continue
        assert 0 <= wait < max(remaining, 1e-9)
        rate.give_back()
    for throttled in (True, False):  # learns (adaptive), or ignores it
        rate.learn(throttled)
    assert 0 < rate.rate <= rate.per_s


# -- the other settings: no_waits(attempts=) and brace.deadline(seconds) -----------------------


@FUZZ
@given(attempts=st.one_of(st.integers(0, 1001), wild), seconds=st.one_of(durations, wild))
def test_test_helpers_and_deadline_scopes_refuse_by_name_or_work(attempts: Any,
                                                                 seconds: Any) -> None:
    for build, name in ((lambda: no_waits(attempts=attempts), "attempts"),
                        (lambda: brace.deadline(seconds), "seconds")):
        try:
            scope = build()
            with no_waits(), scope:
                _ended_well(brace.network(Flaky()))
        except (ValueError, TypeError) as exc:
            assert name in str(exc) and len(str(exc)) < MESSAGE_CHARS


@FUZZ
@given(given_settings=_settings(CHAOS_SETTINGS))
def test_a_chaos_setting_refuses_by_name_or_works(given_settings: dict[str, Any]) -> None:
    _fresh()
    chaos = _built(brace.testing.chaos, given_settings)
    if chaos is not None:
        _check_policy(brace.network(attempts=3, chaos=chaos))


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(("value", "shown"), [
    (10**5000, "an int of about 5001 digits"),  # repr() would raise: over 4,300 digits
    (-(10**400), "a negative int of about 401 digits"),
    (10**99, repr(10**99)),  # up to 100 digits: shown as they are
    ("x" * 1000, repr("x" * 1000)[:100] + "..."),
    (_BadRepr(), "<_BadRepr object>"),
    (timedelta.max, repr(timedelta.max)),
], ids=["int-5001-digits", "negative-int", "int-100-digits", "long-str", "bad-repr",
        "timedelta"])
def test_a_refused_value_is_shown_briefly(value: object, shown: str) -> None:
    assert _validate.shown(value) == shown
    with pytest.raises((TypeError, ValueError)) as refused:
        brace.network(deadline=value)
    assert str(refused.value).startswith("deadline must be a finite number of seconds")
    assert str(refused.value).endswith(f"got {shown}")
