"""Policy: the decorator (sync and async), immutability, replace, tenacity interop."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
import tenacity

import brace
import brace.testing


def flaky(failures: int, exc: BaseException | None = None,
          result: Any = "ok") -> Callable[..., Any]:
    """A function failing `failures` times, counting calls in `.calls`."""

    def fn(*args: Any, **kwargs: Any) -> Any:
        fn.calls += 1  # type: ignore[attr-defined]
        if fn.calls <= failures:  # type: ignore[attr-defined]
            raise exc if exc is not None else ConnectionError("down")
        return result

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


def async_flaky(failures: int, exc: BaseException | None = None,
                result: Any = "ok") -> Callable[..., Any]:
    sync = flaky(failures, exc, result)

    async def fn(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        try:
            return sync()
        finally:
            fn.calls = sync.calls  # type: ignore[attr-defined]

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn, awaiting it when it is a coroutine function."""
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(*args))
    return fn(*args)


MAKERS = [pytest.param(flaky, id="sync"), pytest.param(async_flaky, id="async")]


pytestmark = pytest.mark.no_waits


@pytest.mark.parametrize("make", MAKERS)
def test_retries_transient_until_success(make: Callable[..., Any]) -> None:
    fn = make(2)
    wrapped = brace.network(fn)
    assert run(wrapped) == "ok"
    assert fn.calls == 3
    assert wrapped.statistics["attempt_number"] == 3


@pytest.mark.parametrize("make", MAKERS)
def test_gives_up_with_the_real_error_after_attempts(make: Callable[..., Any]) -> None:
    fn = make(100, TimeoutError("slow"))
    wrapped = brace.network(attempts=3)(fn)
    with pytest.raises(TimeoutError, match="slow"):
        run(wrapped)
    assert fn.calls == 3


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("exc", [ValueError("bug"), KeyError("k"), TypeError("t"),
                                 PermissionError("denied")])
def test_never_retries_programming_errors(make: Callable[..., Any], exc: Exception) -> None:
    fn = make(100, exc)
    with pytest.raises(type(exc)):
        run(brace.network(fn))
    assert fn.calls == 1


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), asyncio.CancelledError()])
def test_never_retries_exits_even_when_on_says_so(make: Callable[..., Any],
                                                  exc: BaseException) -> None:
    fn = make(100, exc)
    policy = brace.network(on=lambda error: True)  # a predicate that wants everything
    with pytest.raises(type(exc)):
        run(policy(fn))
    assert fn.calls == 1


@pytest.mark.parametrize("exit_type", [BaseException, KeyboardInterrupt, SystemExit,
                                       asyncio.CancelledError, GeneratorExit])
def test_on_refuses_exits_it_could_never_retry(exit_type: type[BaseException]) -> None:
    with pytest.raises(TypeError, match=rf"on= cannot retry {exit_type.__name__}"):
        brace.network(on=exit_type)
    with pytest.raises(TypeError, match="on= cannot retry"):
        brace.network(on=[ValueError, exit_type])


@pytest.mark.parametrize("make", MAKERS)
def test_on_adds_exception_types_and_predicates(make: Callable[..., Any]) -> None:
    class Flaky(Exception):
        pass

    fn = make(2, Flaky())
    assert run(brace.network(on=Flaky)(fn)) == "ok"
    assert fn.calls == 3

    fn = make(2, ValueError("retry me"))
    assert run(brace.network(on=lambda e: "retry me" in str(e))(fn)) == "ok"
    assert fn.calls == 3

    fn = make(0, result=None)
    calls_then_value = brace.network(on=tenacity.retry_if_result(lambda r: r is None),
                                     attempts=2)(fn)
    assert run(calls_then_value) is None  # returns the last result after giving up
    assert fn.calls == 2


def test_sync_wrapper_keeps_metadata() -> None:
    def get_user(uid: int, *, verbose: bool = False) -> str:
        """Fetch a user."""
        return str(uid)

    wrapped = brace.http()(get_user)
    assert wrapped.__name__ == "get_user"
    assert wrapped.__doc__ == "Fetch a user."
    assert wrapped.__wrapped__ is get_user
    assert inspect.signature(wrapped) == inspect.signature(get_user)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped(7) == "7"


def test_async_wrapper_stays_a_coroutine_function() -> None:
    async def load(order_id: int) -> int:
        """Load an order."""
        return order_id

    wrapped = brace.database(load)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "load" and wrapped.__doc__ == "Load an order."
    assert wrapped.__wrapped__ is load
    assert inspect.signature(wrapped) == inspect.signature(load)
    assert asyncio.run(wrapped(5)) == 5
    assert wrapped.statistics["attempt_number"] == 1


def test_decorates_methods() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @brace.network
        def ping(self) -> int:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionError
            return self.calls

    assert Client().ping() == 2


def test_bare_and_called_preset_are_equivalent() -> None:
    fn1, fn2 = flaky(1), flaky(1)
    assert brace.network(fn1)() == brace.network()(fn2)() == "ok"
    assert fn1.calls == fn2.calls == 2


def test_policies_are_immutable_hashable_and_replace_derives() -> None:
    base = brace.http(deadline=10)
    assert base == brace.http(deadline=10)
    assert hash(base) == hash(brace.http(deadline=10))
    payments = base.replace(attempts=2)
    assert (base.attempts, payments.attempts) == (brace.http().attempts, 2)
    assert payments.deadline == 10 and payments.preset == "http"
    with pytest.raises(AttributeError):
        base.attempts = 9  # type: ignore[misc]
    assert len({base, payments, brace.http(deadline=10)}) == 2
    with pytest.raises(TypeError, match=r"unknown policy parameter.*atempts"):
        base.replace(atempts=3)


def test_preset_defaults_are_policies() -> None:
    assert isinstance(brace.http, brace.Policy)
    assert isinstance(brace.http(), brace.Policy)
    assert brace.presets.http is brace.http
    assert brace.presets.get("http") is brace.http
    with pytest.raises(TypeError):
        brace.http(lambda: None, attempts=3)  # type: ignore[call-overload]


def test_tenacity_kwargs_behaves_like_the_decorator() -> None:
    policy = brace.network(attempts=3, initial=0, max_wait=0)
    fn = flaky(5)
    legacy = tenacity.retry(**policy.tenacity_kwargs())(fn)
    with pytest.raises(ConnectionError):
        legacy()
    assert fn.calls == 3
    fn = flaky(1, ValueError("bug"))
    with pytest.raises(ValueError):
        tenacity.retry(**policy.tenacity_kwargs())(fn)()
    assert fn.calls == 1
    kwargs = policy.tenacity_kwargs()
    assert {"retry", "wait", "stop", "before_sleep", "reraise"} <= set(kwargs)
    assert isinstance(kwargs["retry"], tenacity.retry_base)
    assert isinstance(kwargs["wait"], brace.waits.retry_after)
    assert isinstance(kwargs["wait"].fallback, tenacity.wait_random_exponential)
    assert isinstance(kwargs["stop"], tenacity.stop.stop_base)


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize(("said", "seconds"), [(0.5, 0.5), (0.0, 0.0), (2, 2.0),
                                               (datetime.timedelta(milliseconds=250), 0.25)])
def test_on_may_return_the_wait_for_that_error(make: Callable[..., Any], said: Any,
                                               seconds: float) -> None:
    class Busy(Exception):
        pass

    scheduled: list[dict[str, Any]] = []
    observer = brace.observe(lambda event, fields: scheduled.append(fields)
                             if event == "retry.scheduled" else None)
    fn = make(2, Busy())
    try:
        with brace.testing.no_waits():
            assert run(brace.network(on=lambda e: said if isinstance(e, Busy) else False,
                                     initial=1, max_wait=5)(fn)) == "ok"
    finally:
        brace.unobserve(observer)
    assert fn.calls == 3  # 0.0 retries at once: it does not mean "no"
    assert [f["wait_s"] for f in scheduled] == [seconds, seconds]


def test_on_returning_a_wait_leaves_other_errors_to_the_backoff() -> None:
    waits: list[float] = []
    errors = iter([LookupError("slow down"), ConnectionError("refused")])

    @brace.network(on=lambda e: 0.75 if isinstance(e, LookupError) else False,
                   initial=0.1, max_wait=0.1)
    def call() -> str:
        error = next(errors, None)
        if error is not None:
            raise error
        return "ok"

    observer = brace.observe(lambda event, fields: waits.append(fields["wait_s"])
                             if event == "retry.scheduled" else None)
    try:
        with brace.testing.no_waits():
            assert call() == "ok"
    finally:
        brace.unobserve(observer)
    assert waits[0] == 0.75 and 0 <= waits[1] <= 0.1


def test_a_wait_from_on_that_does_not_fit_the_deadline_gives_up() -> None:
    calls = 0

    @brace.network(on=lambda e: 60.0, deadline=5)
    def call() -> None:
        nonlocal calls
        calls += 1
        raise LookupError("come back in a minute")

    with brace.testing.no_waits(), pytest.raises(LookupError):
        call()
    assert calls == 1


@pytest.mark.parametrize("said", [None, "1", [0.5], float("nan"), -1.0, float("inf")])
def test_on_returning_anything_else_is_an_error_naming_on(said: Any) -> None:
    @brace.network(on=lambda e: said)
    def call() -> None:
        raise LookupError("x")

    with brace.testing.no_waits(), pytest.raises((TypeError, ValueError), match="on="):
        call()


def test_tenacity_kwargs_on_an_async_function() -> None:
    policy = brace.network(attempts=3, initial=0, max_wait=0)
    fn = async_flaky(1)
    legacy = tenacity.retry(**policy.tenacity_kwargs())(fn)
    assert inspect.iscoroutinefunction(legacy)
    assert asyncio.run(legacy()) == "ok"
    assert fn.calls == 2


def test_retrying_is_a_real_tenacity_retrying() -> None:
    policy = brace.network(attempts=3)
    retrying = policy.retrying()
    assert isinstance(retrying, tenacity.Retrying)
    attempts = 0
    for attempt in retrying:
        with attempt:
            attempts += 1
            if attempts < 3:
                raise ConnectionError
    assert attempts == 3
    assert retrying.statistics["attempt_number"] == 3

    attempts = 0
    with pytest.raises(ConnectionError):
        for attempt in policy.retrying():
            with attempt:
                attempts += 1
                raise ConnectionError("always")
    assert attempts == 3


def test_async_retrying_is_a_real_tenacity_async_retrying() -> None:
    policy = brace.network(attempts=4)
    retrying = policy.async_retrying()
    assert isinstance(retrying, tenacity.AsyncRetrying)

    async def main() -> int:
        attempts = 0
        async for attempt in retrying:
            with attempt:
                attempts += 1
                if attempts < 4:
                    raise TimeoutError
        return attempts

    assert asyncio.run(main()) == 4


def test_retrying_accepts_tenacity_overrides(clock: Any) -> None:
    policy = brace.network(attempts=3, initial=1, max_wait=1)
    with pytest.raises(ConnectionError):
        for attempt in policy.retrying(sleep=clock.sleep):
            with attempt:
                raise ConnectionError
    assert len(clock.sleeps) == 2
    assert all(0 <= s <= 1 for s in clock.sleeps)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -3}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"initial": -0.1}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"initial": math.inf}, "initial"),
        ({"max_wait": math.inf}, "max_wait"),
        ({"max_wait": -1}, "max_wait"),
        ({"initial": 2, "max_wait": 1}, "max_wait"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -5}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"deadline": math.nan}, "deadline"),
        ({"deadline": "10"}, "deadline"),
        ({"on": "ConnectionError"}, "on="),
        ({"on": int}, "on="),
        ({"on": ValueError("instance")}, "on="),
        ({"on": [ConnectionError, 3]}, "on="),
        ({"on": {ValueError}}, "on="),
        ({"retry": "transient"}, "retry="),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        brace.network(**kwargs)
    assert name in str(info.value)
    with pytest.raises((ValueError, TypeError)):
        brace.http.replace(**kwargs)


def test_decorating_a_non_function_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        brace.network()(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        brace.network()(brace.predicates.transient)  # type: ignore[arg-type]


def test_async_attempt_timeout_times_out_each_attempt_and_retries() -> None:
    calls = 0

    @brace.network(attempts=3, attempt_timeout=0.05)
    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            await asyncio.sleep(10)  # cut off after 0.05 s
        return "fast"

    assert asyncio.run(slow_then_fast()) == "fast"
    assert calls == 3

    @brace.network(attempts=2, attempt_timeout=0.05)
    async def hangs() -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError, match=r"attempt timed out after 0\.05 s"):
        asyncio.run(hangs())


@pytest.mark.parametrize("failures", [0, 1, 2, 5])
def test_fast_path_is_invisible_next_to_plain_tenacity(failures: int, clock: Any) -> None:
    """Statistics, attempt numbers and events match tenacity running from the first call."""
    from structlog.testing import capture_logs

    policy = brace.network(attempts=4, initial=1, max_wait=1)

    def run_with(decorate: Callable[[Callable[..., Any]], Any]) -> tuple[Any, ...]:
        import random

        random.seed(3)
        clock.now = 1000.0

        def flaky_call() -> str:
            clock.advance(0.5)  # each call takes half a virtual second
            flaky_call.calls += 1  # type: ignore[attr-defined]
            if flaky_call.calls <= failures:  # type: ignore[attr-defined]
                raise ConnectionError("down")
            return "ok"

        flaky_call.calls = 0  # type: ignore[attr-defined]
        wrapped = decorate(flaky_call)
        with capture_logs() as logs:
            try:
                outcome: Any = wrapped()
            except ConnectionError as exc:
                outcome = type(exc)
        stats = dict(wrapped.statistics)
        for event in logs:
            event.pop("elapsed_s", None)  # wall-clock noise aside, all must match
        return outcome, flaky_call.calls, stats, logs  # type: ignore[attr-defined]

    brace_run = run_with(policy)  # under no_waits (autouse): sleeps are skipped
    tenacity_run = run_with(
        lambda fn: tenacity.retry(sleep=lambda s: None, **policy.tenacity_kwargs())(fn))
    assert brace_run == tenacity_run
    assert brace_run[2]["attempt_number"] == min(failures + 1, 4)
