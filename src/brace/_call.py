"""The call path of a decorated function (and of each request on brace's transports).

A healthy call runs the function once, through its gates, with no tenacity objects at all.
Only a failure (or a result the policy retries) enters tenacity, which is seeded with that
first outcome as attempt 1 and takes over from there with the policy's own ``Retrying``:
statistics, attempt numbers, hooks and events are tenacity's, as if it had run from the
start. The fallback, when set, wraps it all.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import pybreaker
import tenacity

from brace import _breakers, _budget, _config, _events, _limits, _validate, predicates, waits
from brace._breakers import CircuitOpenError, gate_for
from brace._deadline import RUNNING, clock, current_call, retry_ends_at, watch_attempt, watchdog
from brace._hedge import Hedger, catch_up, counted, launched
from brace.predicates import LAST_MARK as last_mark
from brace.predicates import NEVER_RETRY

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["async_path", "decorate", "sync_path"]

_state = _config.state
# A Redis-shared breaker's local copy is timed on the clock its storage uses.
_monotonic = time.monotonic
# asyncio's own; under another async library get_running_loop raises RuntimeError.
_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


class _Named:
    """Names a retry loop in events: tenacity names a call by its function's qualified name."""

    __module__ = None  # type: ignore[assignment]  # so the name is the label alone

    def __init__(self, label: str) -> None:
        self.__qualname__ = label


class _Done(tenacity.Future):
    """A finished attempt's outcome, read without ``concurrent.futures``' lock.

    tenacity reads an outcome several times per attempt; a pending future locks each read.
    """

    def __init__(self, attempt_number: int, exc: BaseException | None, value: Any) -> None:
        # No Future.__init__: a finished outcome never waits, so it needs no Condition.
        self.attempt_number = attempt_number
        self._exc = exc
        self._value = value

    @property
    def failed(self) -> bool:
        """Whether the attempt raised."""
        return self._exc is not None

    def done(self) -> bool:
        """Always: the attempt has ended."""
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The attempt's exception, or None."""
        return self._exc

    def result(self, timeout: float | None = None) -> Any:
        """The attempt's value, or raise its exception."""
        if self._exc is not None:
            raise self._exc
        return self._value

    def __repr__(self) -> str:
        return f"<attempt {self.attempt_number}: {'failed' if self._exc else 'returned'}>"


def _settle(state: tenacity.RetryCallState, exc: BaseException | None, value: Any) -> None:
    # RetryCallState.set_exception / set_result, with a _Done outcome.
    state.outcome = _Done(state.attempt_number, exc, value)
    state.outcome_timestamp = clock()


class _CallState(tenacity.RetryCallState):
    """Tenacity's call state, knowing the exhausted-mark number its call began at."""

    after_mark = 0


def _seed(policy: Policy, stats: dict[str, Any], name: str, label: str | None,
          started: float, mark: int, exc: BaseException | None, result: Any, args: Any,
          kwargs: Any) -> tenacity.RetryCallState:
    """Tenacity's call state for a call whose first attempt ran on the fast path."""
    # Named as brace names it (a callable object's class, not its repr with an address).
    state = _CallState(policy.retryer, cast(Any, _Named(label or name)), args, kwargs)
    state.after_mark = mark
    # Attempt 1 ran before tenacity would have started its clock.
    state.start_time = started
    stats.clear()
    stats.update(start_time=started, attempt_number=1, idle_for=0, delay_since_first_attempt=0)
    _settle(state, exc, result)
    return state


def _next_sleep(policy: Policy, stats: dict[str, Any],
                state: tenacity.RetryCallState) -> tuple[bool, Any]:
    """Tenacity's ``iter()``: ``(True, seconds)`` to retry, ``(False, value)`` to end the call.

    The policy's tenacity objects decide (retry -> wait -> stop -> before_sleep), called
    directly (tenacity's action list costs more than they do); pinned by
    ``test_fast_path_is_invisible_next_to_plain_tenacity``.
    """
    outcome = state.outcome
    assert outcome is not None
    explicit = isinstance(outcome.exception(), tenacity.TryAgain)
    if not (explicit or policy.predicate(state)):
        return False, outcome.result()
    upcoming = state.upcoming_sleep = policy.wait(state)
    stats["delay_since_first_attempt"] = state.seconds_since_start
    if policy.stop_object(state):
        return False, policy.give_up(state)
    state.idle_for += upcoming
    stats["idle_for"] += upcoming
    stats["attempt_number"] += 1
    policy.before_sleep(state)
    state.prepare_for_next_attempt()
    return True, upcoming


def _replay(policy: Policy, stats: dict[str, Any], attempt: Callable[..., Any],
            name: str, label: str | None, started: float, mark: int,
            exc: BaseException | None, result: Any, args: Any, kwargs: Any,
            discard: Callable[[Any], Any] | None = None) -> Any:
    """Hand a failed (or retried) first attempt to tenacity; ``discard`` frees retried values."""
    state = _seed(policy, stats, name, label, started, mark, exc, result, args, kwargs)
    token = retry_ends_at.set(started + policy.deadline)  # limits never wait past it
    try:
        while True:
            previous = state.outcome
            again, value = _next_sleep(policy, stats, state)
            if not again:
                return value
            if discard is not None and previous is not None and not previous.failed:
                discard(previous.result())
            waits.sleep(value)
            try:
                outcome = attempt(*args, **kwargs)
            except BaseException as error:
                _settle(state, error, None)
            else:
                _settle(state, None, outcome)
    finally:
        retry_ends_at.reset(token)


async def _areplay(policy: Policy, stats: dict[str, Any], attempt: Callable[..., Any],
                   name: str, label: str | None, started: float, mark: int,
                   exc: BaseException | None, result: Any, args: Any, kwargs: Any,
                   discard: Callable[[Any], Any] | None = None,
                   count: list[int] | None = None) -> Any:
    """``_replay``'s twin; ``discard`` frees retried values, ``count`` counts hedges."""
    state = _seed(policy, stats, name, label, started, mark, exc, result, args, kwargs)
    token = retry_ends_at.set(started + policy.deadline)
    try:
        while True:
            if count is not None:
                catch_up(state, stats, count)
            previous = state.outcome
            again, value = _next_sleep(policy, stats, state)
            if not again:
                return value
            if discard is not None and previous is not None and not previous.failed:
                await discard(previous.result())
            await waits.async_sleep(value)
            try:
                outcome = await attempt(*args, **kwargs)
            except BaseException as error:
                _settle(state, error, None)
            else:
                _settle(state, None, outcome)
    finally:
        retry_ends_at.reset(token)


def _gated(policy: Policy, fn: Callable[..., Any], name: str,
           breaker: str | pybreaker.CircuitBreaker,
           check: Callable[[Any], bool] | None) -> Callable[..., Any]:
    """One sync attempt through the breaker's gate; a healthy breaker costs a flag read."""
    gates = _breakers.registry if isinstance(breaker, str) else {}

    def attempt(*args: Any, **kwargs: Any) -> Any:
        # Looked up per call (reset_breakers() forgets breakers): one dict look-up.
        gate = gates.get(breaker) or gate_for(breaker)  # type: ignore[arg-type]
        if not (gate.fast or gate.fresh_until > _monotonic()):
            return gate.call(policy, name, fn, *args, **kwargs)
        # Closed with nothing counted: admitted, and a plain success has nothing to record.
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            gate.settle(policy, name, False, exc, None)
            raise
        if (check is not None and check(result)) or not (gate.fast or gate.fresh_until):
            gate.settle(policy, name, False, None, result)
        return result

    return attempt


def _agated(policy: Policy, fn: Callable[..., Any], name: str,
            breaker: str | pybreaker.CircuitBreaker,
            check: Callable[[Any], bool] | None) -> Callable[..., Any]:
    """The async twin of ``_gated``."""
    gates = _breakers.registry if isinstance(breaker, str) else {}

    async def attempt(*args: Any, **kwargs: Any) -> Any:
        gate = gates.get(breaker) or gate_for(breaker)  # type: ignore[arg-type]
        if not (gate.fast or gate.fresh_until > _monotonic()):
            return await gate.acall(policy, name, fn, *args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            gate.settle(policy, name, False, exc, None)
            raise
        if (check is not None and check(result)) or not (gate.fast or gate.fresh_until):
            gate.settle(policy, name, False, None, result)
        return result

    return attempt


def sync_path(policy: Policy, fn: Callable[..., Any], *, name: str, label: str | None = None,
              breaker: str | pybreaker.CircuitBreaker | None,
              discard: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
    """``fn`` under ``policy``: fast path, then tenacity; with a ``statistics`` dict.

    ``name`` names the callable in breaker events, ``label`` (transports) the retry loop;
    ``discard`` frees retried values.
    """
    check = policy.result_check
    fn = _limits.limited(policy, fn, name, False)
    attempt = fn if breaker is None else _gated(policy, fn, name, breaker, check)
    budget = policy.budget
    budgets = _budget.registry
    stats: dict[str, Any] = {}

    def core(*args: Any, **kwargs: Any) -> Any:
        if not _state.active:  # brace.set_active(False): one plain attempt
            return attempt(*args, **kwargs)
        started, mark = clock(), last_mark[0]
        if budget is not None:
            # Looked up per call (reset_budgets() forgets budgets): one dict look-up.
            (budgets.get(budget) or _budget.lookup(budget)).record_call()  # type: ignore[arg-type]
        try:
            result = attempt(*args, **kwargs)
        except NEVER_RETRY:
            raise  # an interrupt or exit: at once, no machinery
        except BaseException as exc:
            return _replay(policy, stats, attempt, name, label, started, mark, exc, None, args,
                           kwargs, discard)
        if check is not None and check(result):
            return _replay(policy, stats, attempt, name, label, started, mark, None, result,
                           args, kwargs, discard)
        stats["start_time"], stats["attempt_number"] = started, 1  # no tuple is built
        stats["idle_for"] = stats["delay_since_first_attempt"] = 0
        return result

    core.statistics = stats  # type: ignore[attr-defined]
    return core


def async_path(policy: Policy, fn: Callable[..., Any], *, name: str, label: str | None = None,
               breaker: str | pybreaker.CircuitBreaker | None,
               attempt_timeouts: bool = True, hedge: bool = True,
               discard: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
    """The async twin of ``sync_path``, with the deadline and attempt timeouts enforced.

    An attempt (or sleep) still running when the deadline passes is cancelled, so an async
    call never outlives its deadline (an asyncio watchdog; an anyio cancel scope on trio);
    those cancellations become TimeoutErrors. ``attempt_timeouts=False`` leaves
    ``attempt_timeout`` to the callee (the transports make it httpx's timeout, so the
    caller sees httpx's own timeout errors). With the policy's ``hedge_after`` (and
    ``hedge``), each attempt may race copies of itself; ``discard`` frees values that lost
    or were retried.
    """
    attempt_timeout = policy.attempt_timeout if attempt_timeouts else None
    fn = _limits.limited(policy, fn, name, True)

    async def bounded(*args: Any, **kwargs: Any) -> Any:
        call = current_call.get()
        if call is not None and call[1][2] != RUNNING:
            raise TimeoutError(call[0].message)  # the call's deadline passed meanwhile
        own = watch_attempt(attempt_timeout)
        if own is None and attempt_timeout is not None:
            return await _scoped_attempt(fn, attempt_timeout, args, kwargs)
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError as cancelled:
            # The watchdog's cancellations become TimeoutErrors: transient, retried (an
            # attempt timeout) or ending the call (the deadline). Others propagate.
            watches: tuple[Any, ...] = (own, call)
            for watched in watches:
                if watched is not None:
                    error = watched[0].timeout_error(watched[1], watched[2], cancelled)
                    if error is not None:
                        raise error from None
            raise
        finally:
            if own is not None:
                own[0].release(own[1])

    check = policy.result_check
    # Later attempts check the call's deadline first (`bounded`); the first attempt goes
    # straight to the function unless an attempt timeout stands between them (the core
    # itself turns a deadline into a TimeoutError).
    inner: Callable[..., Any] = bounded
    first_try = bounded if attempt_timeout is not None else fn
    if breaker is not None:
        inner = _agated(policy, inner, name, breaker, check)
        first_try = _agated(policy, first_try, name, breaker, check)
    hedger = Hedger(policy, name, discard) if hedge and policy.hedge_after else None
    if hedger is not None:
        inner, first_try = hedger.wrap(inner), hedger.wrap(first_try)
    budget = policy.budget
    budgets = _budget.registry
    deadline = policy.deadline
    message = f"deadline of {deadline:g} s reached"
    stats: dict[str, Any] = {}
    # The loop last served (weakly: a closed loop must be freed) and its watchdog.
    last: list[Any] = [None, None]

    async def slow(args: Any, kwargs: Any, started: float, mark: int,
                   exc: BaseException | None, result: Any, call: Any) -> Any:
        # Later attempts read the call's watch to tell its deadline from other cancellations.
        token = current_call.set(call)
        try:
            return await _areplay(policy, stats, inner, name, label, started, mark, exc, result,
                                  args, kwargs, discard,
                                  None if hedger is None else launched.get())
        finally:
            current_call.reset(token)

    async def unwatched(args: Any, kwargs: Any, started: float, mark: int) -> Any:
        # Not asyncio (trio): an anyio cancel scope cuts the call off at its deadline; a
        # cancellation that is not the scope's own (the caller's) passes through untouched.
        import anyio

        with anyio.move_on_after(deadline - (clock() - started)):
            return await plain(args, kwargs, started, mark)
        error = TimeoutError(message)
        predicates.mark_exhausted(error)  # the deadline ended the call
        raise error

    async def plain(args: Any, kwargs: Any, started: float, mark: int) -> Any:
        if not _state.active:
            return await inner(*args, **kwargs)
        try:
            result = await first_try(*args, **kwargs)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # cancellation (of any library), an interrupt or exit: at once
            return await slow(args, kwargs, started, mark, exc, None, None)
        if check is not None and check(result):
            return await slow(args, kwargs, started, mark, None, result, None)
        stats["start_time"] = started
        stats["attempt_number"] = 1
        stats["idle_for"] = 0
        stats["delay_since_first_attempt"] = 0
        return result

    async def core(*args: Any, **kwargs: Any) -> Any:
        started, mark = clock(), last_mark[0]
        if budget is not None:
            (budgets.get(budget) or _budget.lookup(budget)).record_call()  # type: ignore[arg-type]
        loop: asyncio.AbstractEventLoop | None
        try:
            loop = _running_loop()
        except RuntimeError:  # no asyncio loop running (trio)
            loop = None
        task = None if loop is None else _current_task(loop)
        if loop is None or task is None:
            return await unwatched(args, kwargs, started, mark)
        cached = last[0]
        if cached is None or cached() is not loop:
            last[0], last[1] = weakref.ref(loop), watchdog(loop, deadline, message)
        dog = last[1]
        # Watchdog.watch and .release, inlined: this is every healthy async call's cost.
        at = loop.time() + deadline
        watch = [at, task, RUNNING]
        watches = dog.watches
        watches.append(watch)
        if not dog.armed:
            dog.arm(loop, at)
        try:
            if not _state.active:
                return await inner(*args, **kwargs)
            try:
                result = await first_try(*args, **kwargs)
            except BaseException as exc:
                if isinstance(exc, NEVER_RETRY):
                    error = (dog.timeout_error(watch, task, exc)
                             if isinstance(exc, asyncio.CancelledError) else None)
                    if error is None:
                        raise  # cancelled by the caller, an interrupt or exit: at once
                    exc = error  # the deadline passed
                return await slow(args, kwargs, started, mark, exc, None, (dog, watch, task))
            if check is not None and check(result):
                return await slow(args, kwargs, started, mark, None, result,
                                  (dog, watch, task))
            stats["start_time"] = started
            stats["attempt_number"] = 1
            stats["idle_for"] = 0
            stats["delay_since_first_attempt"] = 0
            return result
        except asyncio.CancelledError as cancelled:
            error = dog.timeout_error(watch, task, cancelled)  # cancelled in a backoff sleep
            if error is not None:
                predicates.mark_exhausted(error)  # the deadline ended the call
                raise error from None
            raise
        finally:
            watch[1] = None
            while watches and watches[0][1] is None:
                watches.popleft()

    call = core if hedger is None else counted(core, stats, _state)
    call.statistics = stats  # type: ignore[attr-defined]
    return call


def _fallback_reason(policy: Policy, exc: BaseException) -> str | None:
    if isinstance(exc, CircuitOpenError):
        return "breaker_open"
    if not policy.counts(exc):
        return None  # a bug or a refusal the policy would not retry: it raises
    if policy.breaker is not None and gate_for(policy.breaker).is_open():
        return "breaker_open"
    return "retries_exhausted"


def _fallback_value(policy: Policy, name: str, exc: BaseException) -> Any:
    reason = _fallback_reason(policy, exc)
    if reason is None:
        raise exc
    _events.degraded(name, policy.preset, reason, exc)
    return policy.fallback(exc) if callable(policy.fallback) else policy.fallback


async def _scoped_attempt(fn: Callable[..., Any], attempt_timeout: float, args: Any,
                          kwargs: Any) -> Any:
    """One attempt off asyncio (trio), cut off after ``attempt_timeout`` by an anyio scope."""
    import anyio

    with anyio.move_on_after(attempt_timeout):
        return await fn(*args, **kwargs)
    raise TimeoutError(f"attempt timed out after {attempt_timeout:g} s")


def decorate(policy: Policy, fn: Callable[..., Any]) -> Any:
    """``fn`` under ``policy``, outer to inner: fallback -> retry -> breaker -> timeout -> call.

    Raises:
        TypeError: ``fn`` is not a function, or ``attempt_timeout`` is set on a sync one.
    """
    if isinstance(fn, tenacity.retry_base) or not callable(fn):
        raise TypeError(f"a policy decorates a function, got {fn!r}")
    name = _validate.callable_name(fn)
    asynchronous = _validate.is_async(fn)
    _validate.decoratable(fn, name, asynchronous, policy.attempt_timeout, policy.hedge_after)
    path = async_path if asynchronous else sync_path
    core = path(policy, fn, name=name, breaker=policy.breaker)
    stats = core.statistics  # type: ignore[attr-defined]
    if policy.fallback is _config.NO_FALLBACK:
        functools.update_wrapper(core, fn)
        core.statistics = stats  # type: ignore[attr-defined]
        return core
    wrapper: Any
    if asynchronous:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await core(*args, **kwargs)
            except Exception as exc:
                return _fallback_value(policy, name, exc)
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return core(*args, **kwargs)
            except Exception as exc:
                return _fallback_value(policy, name, exc)
    functools.update_wrapper(wrapper, fn)
    # One statistics dict, shared with the retry layer (tenacity issue 519).
    wrapper.statistics = stats
    return wrapper
