"""Policy: an immutable preset configuration that *is* a tenacity retryer.

A Policy builds its tenacity objects once (``Retrying`` and ``AsyncRetrying`` with brace's
predicate, full-jitter wait, attempts-or-deadline stop and event hooks) and hands them out:
as a decorator, as ``tenacity_kwargs()`` for ``tenacity.retry``, or as ``retrying()`` /
``async_retrying()`` for ``for attempt in ...`` blocks. All three behave identically.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import functools
import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast, overload

import pybreaker
import tenacity
from tenacity import _utils as _tenacity_utils

from brace import _breakers, _events, _validate, predicates, stops, waits

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["NO_FALLBACK", "OnSpec", "Policy", "Retried", "is_active", "set_active"]

#: The ``fallback`` default: no fallback, errors propagate. (None is a valid fallback value.)
NO_FALLBACK: Any = type("NoFallback", (), {"__repr__": lambda self: "NO_FALLBACK"})()
# When the current async call must end (time.monotonic()), for the attempts inside it.
_call_deadline: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "brace_call_deadline", default=None)


class _Watch:
    """One async call's deadline, watched by a :class:`_Watchdog`."""

    __slots__ = ("converted", "deadline", "done", "fired", "message", "task")

    def __init__(self, deadline: float, message: str, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline  # loop.time() at which the call (or attempt) must end
        self.message = message  # what the TimeoutError says
        self.task = task
        self.done = False  # the call ended
        self.fired = False  # the watchdog cancelled the task for this deadline
        self.converted = False  # ...and that cancellation became a TimeoutError

    def timeout_error(self) -> TimeoutError:
        """Turn the watchdog's cancellation back into a TimeoutError (once)."""
        if not self.converted:
            self.converted = True
            uncancel = getattr(self.task, "uncancel", None)  # 3.11+: keep the count right
            if uncancel is not None:
                uncancel()
        return TimeoutError(self.message)


class _Watchdog:
    """Cancels async calls whose deadline passed: one timer per loop and deadline length.

    A timer per call (``asyncio.timeout``) costs microseconds on every healthy call. Calls
    of one deadline length end their deadlines in the order they started, so a FIFO with a
    single timer armed for its head is enough; finished calls leave at the head.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        # Weakly: the registry is keyed by loop, and a strong reference here would keep
        # every loop (and its watchdogs) alive forever.
        self._loop = weakref.ref(loop)
        self.seconds = seconds
        self.watches: collections.deque[_Watch] = collections.deque()
        # Whether a timer is pending. Not the TimerHandle: it references the loop.
        self.armed = False

    def watch(self, task: asyncio.Task[Any], message: str) -> _Watch:
        loop = task.get_loop()
        watch = _Watch(loop.time() + self.seconds, message, task)
        self.watches.append(watch)
        if not self.armed:
            self.armed = True
            loop.call_at(watch.deadline, self._fire)
        return watch

    def release(self, watch: _Watch) -> None:
        watch.done = True
        watches = self.watches
        while watches and watches[0].done:
            watches.popleft()

    def _fire(self) -> None:
        self.armed = False
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        watches = self.watches
        while watches:
            head = watches[0]
            if head.done:
                watches.popleft()
            elif head.deadline <= now:
                watches.popleft()
                head.fired = True
                head.task.cancel()
            else:
                self.armed = True
                loop.call_at(head.deadline, self._fire)
                break


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Watchdog]] = (
    weakref.WeakKeyDictionary())


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop running: another async library (trio)
        return None


def _watchdog(seconds: float) -> _Watchdog:
    loop = asyncio.get_running_loop()
    per_loop = _watchdogs.get(loop)
    if per_loop is None:
        per_loop = _watchdogs[loop] = {}
    dog = per_loop.get(seconds)
    if dog is None:
        dog = per_loop[seconds] = _Watchdog(loop, seconds)
    return dog


def _tenacity_clock() -> float:
    # The clock tenacity's RetryCallState reads (through its module's `time`): the fast
    # path's first attempt must be timed on it, or deadlines and statistics would disagree.
    return tenacity.time.monotonic()  # type: ignore[attr-defined, no-any-return]


class _Switch:
    """The one switch (``brace.set_active``): off, every policy makes one plain attempt."""

    def __init__(self) -> None:
        raw = os.environ.get("BRACE_ACTIVE", "1").strip().lower()
        if raw not in _SWITCH_VALUES:
            raise ValueError(f"BRACE_ACTIVE must be one of 1, 0, true, false, yes, no, on, off; "
                             f"got {raw!r}")
        self.active = _SWITCH_VALUES[raw]


_SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                  "0": False, "false": False, "no": False, "off": False}
_switch = _Switch()


def set_active(active: bool) -> None:
    """Turn every policy on (True) or into a single plain attempt (False).

    Off, decorated functions, ``retrying()`` blocks and brace's httpx transports make exactly
    one attempt and never sleep; breakers, timeouts and fallbacks stay in force. For
    emergencies and for tests that want to see the first error. ``BRACE_ACTIVE=0`` in the
    environment sets it off at import.
    """
    if not isinstance(active, bool):
        raise TypeError(f"set_active() takes a bool, got {active!r}")
    _switch.active = active


def is_active() -> bool:
    """Return whether policies retry (see :func:`set_active`)."""
    return _switch.active


# Outcomes that end a call at once whatever a predicate says.
_NEVER_RETRY = (*predicates.NEVER_RETRY, pybreaker.CircuitBreakerError)

#: What ``on=`` accepts: exception types, a tenacity retry object (sees results too), or a
#: plain callable that receives the exception and returns True to retry it.
OnSpec = type[BaseException] | tenacity.retry_base | Callable[[BaseException], bool]


class Retried(Protocol[P, R]):
    """A function decorated by a policy: same call signature, plus tenacity's statistics."""

    #: tenacity's statistics of the latest call (attempt_number, idle_for, ...).
    statistics: dict[str, Any]
    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function under the policy."""
        ...

    # Without __get__ a type checker treats a decorated method as a plain attribute and keeps
    # demanding `self` (the same fix as tenacity issue 532).
    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Retried[P, R]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Retried[..., R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Bind like a function."""
        ...


def _normalize_on(on: object) -> tuple[OnSpec, ...]:
    items: Sequence[object]
    if isinstance(on, (list, tuple)):
        items = on
    elif isinstance(on, (set, frozenset)):
        raise TypeError("on= must be an exception type, a predicate, or a list/tuple of them "
                        "(a set has no stable order)")
    else:
        items = (on,)
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise TypeError(f"on= accepts exception types, got the class {item.__name__!r}, "
                                "which is not a subclass of BaseException")
        elif isinstance(item, BaseException) or not callable(item):
            raise TypeError(f"on= accepts exception types or predicates, got {item!r}")
    return cast("tuple[OnSpec, ...]", tuple(items))


@dataclasses.dataclass(frozen=True)
class Policy:
    """How to retry one kind of call: an immutable, hashable tenacity configuration.

    Build one from a preset (``brace.http(deadline=10)``) and use it as a decorator on sync
    or async functions, derive others with :meth:`replace`, or drop it into tenacity code
    with :meth:`tenacity_kwargs`, :meth:`retrying` or :meth:`async_retrying`.

    Args:
        preset: The name events report in their ``preset`` field.
        attempts: Maximum number of calls, first one included (int >= 1).
        initial: Backoff window of the first retry in seconds (finite, >= 0).
        max_wait: Largest wait between attempts in seconds (finite, >= initial).
        deadline: Seconds after the first call past which no sleep may end (finite, > 0);
            the policy gives up rather than sleep past it.
        on: Extra retry conditions, OR-ed with ``retry``: exception types, tenacity retry
            objects, or callables receiving the exception.
        retry: The preset's own retry predicate (a tenacity retry object).
        statuses: HTTP statuses to retry, read from results and exceptions
            (:class:`brace.predicates.status`); ints in 100-599.
        idempotent_only: Never resend a non-idempotent HTTP request (POST, PATCH) unless it
            carries an ``Idempotency-Key`` header or failed before it was sent.
        attempt_timeout: Seconds one attempt may take (finite, > 0, <= deadline). Async
            functions run each attempt under an asyncio timeout; brace's httpx transports
            make it the request's timeout. Sync functions cannot be interrupted safely, so
            it is a TypeError there: set the client's own timeout instead.
        breaker: A breaker name (``brace.breaker(name)``, created with defaults on first use)
            or a ``pybreaker.CircuitBreaker``. Every attempt passes through it; only failures
            the policy would retry count against it. Decorated functions only.
        budget: A retry budget name (``brace.predicates.budget(name)``, created with defaults
            on first use) or a :class:`brace.predicates.budget`: retries only while they stay
            under its share of calls; when it refuses, the call gives up at once.
        fallback: Returned instead of raising when retries are exhausted or the breaker is
            open; a callable is called with the error. Bugs (errors the policy would not
            retry) still raise. Decorated functions only.

    Raises:
        TypeError, ValueError: at construction, naming the bad parameter and its range.
    """

    preset: str = "custom"
    attempts: int = 4
    initial: float = 0.1
    max_wait: float = 5.0
    deadline: float = 20.0
    on: OnSpec | Sequence[OnSpec] = ()
    retry: tenacity.retry_base = predicates.transient
    statuses: Sequence[int] = ()
    idempotent_only: bool = True
    attempt_timeout: float | None = None
    breaker: str | pybreaker.CircuitBreaker | None = None
    budget: str | predicates.budget | None = None
    # Fallback values need not be hashable: compared, but left out of the hash.
    fallback: Any = dataclasses.field(default=NO_FALLBACK, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str) or not self.preset:
            raise TypeError(f"preset must be a non-empty str, got {self.preset!r}")
        _validate.attempts(self.attempts)
        initial, max_wait = _validate.wait_range(self.initial, self.max_wait, "max_wait")
        deadline = _validate.seconds(self.deadline, "deadline", allow_zero=False)
        if not isinstance(self.retry, tenacity.retry_base):
            raise TypeError(f"retry= must be a tenacity retry object (tenacity.retry_base), "
                            f"got {self.retry!r}")
        statuses = tuple(sorted({predicates._check_status(code) for code in self.statuses}))
        if not isinstance(self.idempotent_only, bool):
            raise TypeError(f"idempotent_only must be a bool, got {self.idempotent_only!r}")
        if self.attempt_timeout is not None:
            timeout = _validate.seconds(self.attempt_timeout, "attempt_timeout",
                                        allow_zero=False)
            if timeout > deadline:
                raise ValueError(f"attempt_timeout must be <= deadline ({deadline!r}), "
                                 f"got {self.attempt_timeout!r}")
            object.__setattr__(self, "attempt_timeout", timeout)
        object.__setattr__(self, "statuses", statuses)
        if self.breaker is not None and not (
                (isinstance(self.breaker, str) and self.breaker)
                or isinstance(self.breaker, pybreaker.CircuitBreaker)):
            raise TypeError(f"breaker= must be a breaker name (non-empty str) or a "
                            f"pybreaker.CircuitBreaker, got {self.breaker!r}")
        if self.budget is not None and not (
                (isinstance(self.budget, str) and self.budget)
                or isinstance(self.budget, predicates.budget)):
            raise TypeError(f"budget= must be a budget name (non-empty str) or a "
                            f"brace.predicates.budget, got {self.budget!r}")
        # Frozen: normalise through object.__setattr__ so equal configs hash equal.
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "max_wait", max_wait)
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "on", _normalize_on(self.on))

    # -- derived tenacity objects (built once per policy) ----------------------------------

    @functools.cached_property
    def predicate(self) -> tenacity.retry_base:
        """The full retry predicate: ``retry | on...``, behind the never-retry guard."""
        return _Observed(self, self._retryable)

    @functools.cached_property
    def _retryable(self) -> tenacity.retry_base:
        # What tenacity retries: a failure, unless resending the request would be unsafe.
        if self.idempotent_only:
            return self._failure & predicates.idempotent
        return self._failure

    @functools.cached_property
    def _failure(self) -> tenacity.retry_base:
        # A transient failure of the dependency: what breakers count and fallbacks cover.
        combined = self.retry
        if self.statuses:
            combined = combined | predicates.status(*self.statuses)
        on: tuple[OnSpec, ...] = self.on  # type: ignore[assignment]
        types = tuple(item for item in on if isinstance(item, type))
        if types:
            combined = combined | tenacity.retry_if_exception_type(types)
        for item in on:
            if isinstance(item, tenacity.retry_base):
                combined = combined | item
            elif not isinstance(item, type):
                combined = combined | tenacity.retry_if_exception(item)
        return combined

    def _counts(self, exc: BaseException | None, result: Any = None) -> bool:
        """Return whether the outcome is a transient failure (breakers count, fallbacks cover).

        Unlike the retry decision this ignores idempotency: a 503 to a POST is a failure of
        the dependency even though the POST is not resent.
        """
        if isinstance(exc, _NEVER_RETRY):
            return False
        state = tenacity.RetryCallState(self._sync_retrying, None, (), {})
        if exc is None:
            state.set_result(result)
        else:
            state.set_exception((type(exc), exc, exc.__traceback__))
        return bool(self._failure(state))

    @functools.cached_property
    def wait(self) -> tenacity.wait.wait_base:
        """The wait strategy: the server's Retry-After, else full-jitter backoff, <= max_wait."""
        return waits.retry_after(fallback=waits.backoff(self.initial, self.max_wait),
                                 max=self.max_wait)

    @functools.cached_property
    def stop(self) -> tenacity.stop.stop_base:
        """The stop strategy: :func:`brace.stops.limits` of attempts and deadline."""
        return stops.limits(attempts=self.attempts, deadline=self.deadline)

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make ``tenacity.retry`` / ``Retrying`` behave like this policy.

        ``@tenacity.retry(**policy.tenacity_kwargs())`` retries, waits, stops and emits
        events exactly as ``@policy`` does. Sleeping is left to tenacity (it picks a sync or
        async sleep per function), so :func:`brace.testing.no_waits` does not reach it: use
        the decorator or :meth:`retrying` where tests must not sleep.
        """
        return {
            "retry": self.predicate,
            "wait": self.wait,
            "stop": self.stop,
            "before_sleep": self._before_sleep,
            "retry_error_callback": self._give_up,
            "reraise": True,
        }

    @functools.cached_property
    def _sync_retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(sleep=waits.sleep, **self.tenacity_kwargs())

    @functools.cached_property
    def _async_retrying(self) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(sleep=waits.async_sleep, **self.tenacity_kwargs())

    def retrying(self, **overrides: Any) -> tenacity.Retrying:
        """A fresh ``tenacity.Retrying`` for ``for attempt in policy.retrying(): with attempt:``.

        ``overrides`` go to ``Retrying.copy`` (for example ``name=`` names the block in
        events, ``sleep=`` injects a sleep function).
        """
        overrides.setdefault("enabled", _switch.active)
        return self._sync_retrying.copy(**overrides)

    def async_retrying(self, **overrides: Any) -> tenacity.AsyncRetrying:
        """A fresh ``tenacity.AsyncRetrying`` for ``async for attempt in ...`` blocks."""
        overrides.setdefault("enabled", _switch.active)
        return self._async_retrying.copy(**overrides)

    def client(self, **httpx_kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` whose every request goes through this policy.

        ``httpx_kwargs`` go to ``httpx.Client`` (``base_url=``, ``timeout=``, ``proxy=``,
        ``verify=``, ``limits=``, ``mounts=``, ...); every transport the client would use,
        proxies from the environment included, is wrapped in :class:`brace.RetryTransport`.
        ``breaker_per_host=True`` gives each host its own breaker, named
        ``"{breaker}:{host}"`` (``breaker`` defaults to the preset's name).
        """
        from brace import _transport  # httpx only when used

        return _transport.client(self, **httpx_kwargs)

    def async_client(self, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose every request goes through this policy."""
        from brace import _transport

        return _transport.async_client(self, **httpx_kwargs)

    def explain(self) -> dict[str, Any]:
        """What this policy retries and its schedule, as ``python -m brace explain`` prints it.

        A plain dict (JSON-serialisable): retried and never-retried outcomes, one row per
        attempt with the wait range computed from this policy's own wait object, the
        worst-case elapsed time, where the deadline cuts the schedule, and the breaker.
        """
        from brace import __main__

        return __main__.explain(self)

    def replace(self, **overrides: Any) -> Policy:
        """Return a new Policy with ``overrides`` applied; this one is unchanged."""
        names = {field.name for field in dataclasses.fields(Policy)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown policy parameter(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(names))}")
        values = {name: getattr(self, name) for name in names}
        values.update(overrides)
        return Policy(**values)

    def __call__(self, fn: Callable[P, R], /) -> Retried[P, R]:
        """Decorate ``fn`` (sync or async) so every call runs under this policy.

        Layers, outer to inner: fallback -> retry -> circuit breaker -> per-attempt timeout
        (async) -> call.
        """
        if isinstance(fn, tenacity.retry_base) or not callable(fn):
            raise TypeError(f"a policy decorates a function, got {fn!r}")
        is_async = _tenacity_utils.is_coroutine_callable(fn)
        if self.attempt_timeout is not None and not is_async:
            raise TypeError(
                f"attempt_timeout= cannot interrupt the sync function "
                f"{_tenacity_utils.get_callback_name(fn)}: set its client's own timeout "
                "(for example httpx.Client(timeout=...) or a driver's connect_timeout), "
                "or use brace's httpx client, which applies attempt_timeout per request")
        wrapped = self._async_wrapper(fn) if is_async else self._sync_wrapper(fn)
        if self.fallback is not NO_FALLBACK:
            wrapped = self._with_fallback(fn, wrapped, is_async)
        return wrapped  # type: ignore[no-any-return]

    # -- the fast path ------------------------------------------------------------------------
    # A healthy call runs the function once, with no tenacity objects at all; only a failure
    # (or a result the policy retries) enters tenacity, which replays that first outcome as
    # attempt 1. Statistics, attempt numbers, hooks and events are tenacity's, as if it had
    # run from the start.

    @functools.cached_property
    def _result_check(self) -> Callable[[Any], bool] | None:
        """How the fast path tells a result the policy may retry (None: results never are)."""
        exception_only = (tenacity.retry_if_exception,)
        if not isinstance(self.retry, exception_only) or any(
                isinstance(item, tenacity.retry_base) and not isinstance(item, exception_only)
                for item in self.on):  # type: ignore[union-attr]
            return lambda result: self._counts(None, result)  # a predicate may read results
        if self.statuses:
            codes = frozenset(self.statuses)
            return lambda result: predicates.status_of(result) in codes
        return None

    def _sync_wrapper(self, fn: Callable[..., Any]) -> Any:
        inner = fn if self.breaker is None else self._gated_sync(fn, self.breaker)
        retrying = self._sync_retrying
        result_check = self._result_check
        counted = self.budget is not None
        stats: dict[str, Any] = {}

        def slow(first: _Replay, args: Any, kwargs: Any) -> Any:
            copy = retrying.copy()
            copy._local.statistics = stats  # shared, as tenacity's own wraps() does
            return copy(first, *args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not _switch.active:  # brace.set_active(False): one plain attempt
                return inner(*args, **kwargs)
            started = _tenacity_clock()
            if counted:
                self._budget().record_call()  # type: ignore[union-attr]
            try:
                result = inner(*args, **kwargs)
            except predicates.NEVER_RETRY:
                raise  # an interrupt or exit: at once, no machinery
            except BaseException as exc:
                return slow(_Replay(inner, fn, started, exc, None), args, kwargs)
            if result_check is not None and result_check(result):
                return slow(_Replay(inner, fn, started, None, result), args, kwargs)
            stats.clear()
            stats.update(start_time=started, attempt_number=1, idle_for=0,
                         delay_since_first_attempt=0)
            return result

        wrapper.statistics = stats  # type: ignore[attr-defined]
        return wrapper

    def _async_wrapper(self, fn: Callable[..., Any]) -> Any:
        inner = self._bounded(fn)
        if self.breaker is not None:
            inner = self._gated_async(inner, self.breaker)
        retrying = self._async_retrying
        result_check = self._result_check
        deadline = self.deadline
        deadline_message = f"deadline of {deadline:g} s reached"
        counted = self.budget is not None
        # The fast path's first attempt: straight to the function when there is no breaker
        # or attempt timeout between them (the wrapper itself turns a deadline into a
        # TimeoutError); later attempts go through `inner`.
        first_try = fn if self.breaker is None and self.attempt_timeout is None else inner
        stats: dict[str, Any] = {}
        last_loop: Any = None  # a weak reference to the loop last_dog serves
        last_dog: Any = None

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal last_loop, last_dog
            started = _tenacity_clock()
            task = _current_task()
            if counted:
                self._budget().record_call()  # type: ignore[union-attr]
            if task is None:  # not asyncio (trio): tenacity alone, no deadline watch
                return await plain(*args, **kwargs)
            # An attempt (or sleep) still running when the deadline passes is cancelled, so
            # an async call never outlives its deadline; attempts read the watch.
            loop = task.get_loop()
            if last_loop is None or last_loop() is not loop:
                last_loop, last_dog = weakref.ref(loop), _watchdog(deadline)
            dog = last_dog
            watch = dog.watch(task, deadline_message)
            token = _call_deadline.set(watch)
            try:
                if not _switch.active:
                    return await inner(*args, **kwargs)
                try:
                    result = await first_try(*args, **kwargs)
                except BaseException as exc:
                    if isinstance(exc, predicates.NEVER_RETRY):
                        if not (isinstance(exc, asyncio.CancelledError) and watch.fired
                                and not watch.converted):
                            raise  # cancelled by the caller, an interrupt or exit: at once
                        exc = watch.timeout_error()  # the deadline passed
                    first = _AsyncReplay(inner, fn, started, exc, None)
                else:
                    if result_check is None or not result_check(result):
                        stats.clear()
                        stats.update(start_time=started, attempt_number=1, idle_for=0,
                                     delay_since_first_attempt=0)
                        return result
                    first = _AsyncReplay(inner, fn, started, None, result)
                copy = retrying.copy()
                copy._local.statistics = stats
                return await copy(first, *args, **kwargs)
            except asyncio.CancelledError:
                if watch.fired and not watch.converted:  # cancelled in a backoff sleep
                    raise watch.timeout_error() from None
                raise
            finally:
                _call_deadline.reset(token)
                dog.release(watch)

        async def plain(*args: Any, **kwargs: Any) -> Any:
            copy = retrying.copy(enabled=_switch.active)
            copy._local.statistics = stats
            return await copy(inner, *args, **kwargs)

        wrapper.statistics = stats  # type: ignore[attr-defined]
        return wrapper

    def _bounded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """One async attempt, cut off at attempt_timeout or at the call's deadline."""
        attempt_timeout = self.attempt_timeout

        @_same_name(fn)
        async def attempt(*args: Any, **kwargs: Any) -> Any:
            call = _call_deadline.get()
            if call is not None and call.fired:
                raise call.timeout_error()
            own: _Watch | None = None
            if attempt_timeout is not None and (task := _current_task()) is not None:
                dog = _watchdog(attempt_timeout)
                own = dog.watch(task, f"attempt timed out after {attempt_timeout:g} s")
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                # The watchdog's cancellations become TimeoutErrors: transient, retried
                # (an attempt timeout) or ending the call (the deadline). Others propagate.
                for watch in (own, call):
                    if watch is not None and watch.fired and not watch.converted:
                        raise watch.timeout_error() from None
                raise
            finally:
                if own is not None:
                    dog.release(own)

        return attempt

    # -- circuit breaker: one gate per attempt, outside pybreaker's lock --------------------

    def _gated_sync(self, fn: Callable[..., Any],
                    spec: str | pybreaker.CircuitBreaker) -> Callable[..., Any]:
        name = _tenacity_utils.get_callback_name(fn)

        @_same_name(fn)
        def attempt(*args: Any, **kwargs: Any) -> Any:
            return self._call_gated(spec, name, fn, *args, **kwargs)

        return attempt

    def _gated_async(self, fn: Callable[..., Any],
                     spec: str | pybreaker.CircuitBreaker) -> Callable[..., Any]:
        name = _tenacity_utils.get_callback_name(fn)

        @_same_name(fn)
        async def attempt(*args: Any, **kwargs: Any) -> Any:
            return await self._acall_gated(spec, name, fn, *args, **kwargs)

        return attempt

    def _call_gated(self, spec: str | pybreaker.CircuitBreaker, name: str,
                    fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One attempt through the breaker: gate, call outside pybreaker's lock, record."""
        gate = _breakers.gate_for(spec)  # looked up per call: reset_breakers() forgets
        trial = gate.enter(name)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record(gate, trial, exc, None)
            raise
        # A healthy call through a closed, quiet breaker has nothing to record.
        check = self._result_check
        if trial or (check is not None and check(result)) or not gate.quiet_success():
            self._record(gate, trial, None, result)
        return result

    async def _acall_gated(self, spec: str | pybreaker.CircuitBreaker, name: str,
                           fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The async twin of :meth:`_call_gated`."""
        gate = _breakers.gate_for(spec)
        trial = gate.enter(name)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record(gate, trial, exc, None)
            raise
        check = self._result_check
        if trial or (check is not None and check(result)) or not gate.quiet_success():
            self._record(gate, trial, None, result)
        return result

    def _record(self, gate: _breakers.Gate, trial: bool, exc: BaseException | None,
                result: Any) -> None:
        if isinstance(exc, predicates.NEVER_RETRY):
            # Cancelled or interrupted: no verdict on the dependency, but a trial must end
            # so the breaker can admit another one.
            if trial:
                gate.release()
            return
        if exc is None:
            check = self._result_check  # the fast path's test: cheap for plain results
            counted = check is not None and check(result) and self._counts(None, result)
        else:
            counted = self._counts(exc)
        if not counted:
            gate.record(trial, None)  # like pybreaker's `exclude`: counts as a success
        elif exc is not None:
            gate.record(trial, exc)
        else:
            gate.record(trial, _breakers.CountedResult(_events.describe_result(result)))

    def _budget(self) -> predicates.budget | None:
        spec = self.budget
        if spec is None or isinstance(spec, predicates.budget):
            return spec
        # Looked up per call, like breakers: reset_budgets() forgets them.
        return predicates.budget._registry.get(spec) or predicates.budget(spec)

    def _breaker_is_open(self) -> bool:
        if self.breaker is None:
            return False
        return _breakers.gate_for(self.breaker).breaker.current_state == pybreaker.STATE_OPEN

    # -- fallback: the outermost layer ------------------------------------------------------

    def _fallback_for(self, exc: BaseException) -> str | None:
        if isinstance(exc, _breakers.CircuitOpenError):
            return "breaker_open"
        if not self._counts(exc):
            return None  # a bug or a refusal the policy would not retry: it raises
        return "breaker_open" if self._breaker_is_open() else "retries_exhausted"

    def _fallback_value(self, name: str, exc: BaseException, reason: str) -> Any:
        _events.degraded(name, self.preset, reason, _events.describe_error(exc))
        return self.fallback(exc) if callable(self.fallback) else self.fallback

    def _with_fallback(self, fn: Callable[..., Any], retried: Any, is_async: bool) -> Any:
        name = _tenacity_utils.get_callback_name(fn)
        wrapper: Any
        if is_async:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await retried(*args, **kwargs)
                except Exception as exc:
                    reason = self._fallback_for(exc)
                    if reason is None:
                        raise
                    return self._fallback_value(name, exc, reason)
        else:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return retried(*args, **kwargs)
                except Exception as exc:
                    reason = self._fallback_for(exc)
                    if reason is None:
                        raise
                    return self._fallback_value(name, exc, reason)
        # One statistics dict, shared with tenacity's wrapper (tenacity issue 519).
        wrapper.statistics = retried.statistics
        return wrapper

    # -- event hooks -----------------------------------------------------------------------

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        _events.retry_scheduled(retry_state.get_fn_name(), self.preset,
                                retry_state.attempt_number, retry_state.upcoming_sleep,
                                retry_state.outcome)

    def _give_up(self, retry_state: RetryCallState) -> Any:
        # Called by tenacity when the stop fires: log, then surface the real error (or the
        # last retried result), never a RetryError.
        reason = "attempts" if retry_state.attempt_number >= self.attempts else "deadline"
        _events.retry_gave_up(retry_state.get_fn_name(), self.preset,
                              retry_state.attempt_number, retry_state.seconds_since_start or 0.0,
                              retry_state.outcome, reason)
        assert retry_state.outcome is not None
        return retry_state.outcome.result()


class _Replay:
    """What tenacity calls once the fast path failed.

    Attempt 1 replays the outcome the fast path already saw; later attempts call the
    function. Named like the function, for events.
    """

    def __init__(self, inner: Callable[..., Any], fn: Callable[..., Any], started: float,
                 exc: BaseException | None, result: Any) -> None:
        self.inner = inner
        self.started = started
        self._first: tuple[BaseException | None, Any] | None = (exc, result)
        self.__qualname__ = getattr(fn, "__qualname__", type(fn).__qualname__)
        self.__module__ = getattr(fn, "__module__", type(fn).__module__)

    def _replayed(self) -> Any:
        assert self._first is not None
        exc, result = self._first
        self._first = None
        if exc is not None:
            raise exc
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._first is None:
            return self.inner(*args, **kwargs)
        return self._replayed()


class _AsyncReplay(_Replay):
    """The coroutine twin of :class:`_Replay` (tenacity awaits what it calls)."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._first is None:
            return await self.inner(*args, **kwargs)
        return self._replayed()


def _same_name(fn: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """functools.wraps, also for callable objects: events name the object's class."""

    def decorate(inner: Callable[..., Any]) -> Callable[..., Any]:
        functools.update_wrapper(inner, fn)
        if not hasattr(fn, "__qualname__"):
            inner.__qualname__ = type(fn).__qualname__
            inner.__module__ = type(fn).__module__
        return inner

    return decorate


class _Observed(tenacity.retry_base):
    """The policy's predicate: guards NEVER_RETRY and reports how retried calls ended.

    tenacity consults the retry predicate on every outcome, in decorators and in
    ``for attempt`` blocks alike, so this is the one place that sees a call end after
    retries without a stop firing.
    """

    def __init__(self, policy: Policy, inner: tenacity.retry_base) -> None:
        self.policy = policy
        self.inner = inner

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return the inner decision; never retry cancellation, exits or an open breaker."""
        outcome = retry_state.outcome
        assert outcome is not None
        replay = retry_state.fn
        budget = self.policy._budget()
        if retry_state.attempt_number == 1:
            if isinstance(replay, _Replay):
                # Attempt 1 ran on the fast path, before tenacity started its clock (and
                # the wrapper counted the call for the budget).
                retry_state.start_time = replay.started
                retry_state.retry_object.statistics["start_time"] = replay.started
            elif budget is not None:  # a retrying() block or a transport: count it here
                budget.record_call()
        exc = outcome.exception()
        reason = "not_retryable"
        tripped = False  # this attempt's own failure met an open breaker
        if isinstance(exc, _NEVER_RETRY):
            decision = False
            if isinstance(exc, pybreaker.CircuitBreakerError):
                reason = "breaker_open"
        else:
            decision = bool(self.inner(retry_state))
            if decision and self.policy._breaker_is_open():
                # This attempt's failure tripped (or met) an open breaker: stop here with the
                # real error instead of sleeping towards a certain rejection.
                decision, reason, tripped = False, "breaker_open", True
            elif (decision and budget is not None
                  and retry_state.attempt_number < self.policy.attempts  # else: no retry
                  and not budget.try_spend()):
                # Retries are over their share of calls: give up rather than add load.
                decision, reason, tripped = False, "budget_exhausted", True
                _events.retry_budget_exhausted(retry_state.get_fn_name(), self.policy.preset,
                                               budget.name, retry_state.attempt_number)
        # A first-attempt rejection is reported by `breaker.rejected` alone.
        if not decision and (retry_state.attempt_number > 1 or tripped):
            name = retry_state.get_fn_name()
            elapsed = retry_state.seconds_since_start or 0.0
            if exc is None and reason == "not_retryable":
                _events.retry_succeeded(name, self.policy.preset, retry_state.attempt_number,
                                        elapsed)
            else:
                _events.retry_gave_up(name, self.policy.preset, retry_state.attempt_number,
                                      elapsed, outcome, reason)
        return decision

    def __repr__(self) -> str:
        return repr(self.inner)
