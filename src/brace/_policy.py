"""Policy: how to retry one kind of call, frozen, and the tenacity objects it builds once.

A Policy *holds* a tenacity ``Retrying`` and ``AsyncRetrying`` (brace's retry decision,
full-jitter wait, attempts-or-deadline stop and event hooks) and hands them out: as a
decorator (through the call path in ``_call.py``, which runs healthy calls without them),
as ``tenacity_kwargs()`` for ``tenacity.retry``, or as ``retrying()`` / ``async_retrying()``
for ``for attempt in ...`` blocks. Breakers and fallbacks apply to decorators and brace's
transports; ``tenacity_kwargs()`` and ``retrying()`` carry the retry, wait, stop, budget
and events.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

import pybreaker
import tenacity

from brace import _budget, _call, _config, _events, _explain, _validate, predicates, stops, waits
from brace._breakers import gate_for
from brace._deadline import gave_up, past, remaining
from brace._outcome import Kind, Outcome, classify, mark_exhausted

if TYPE_CHECKING:
    import aiohttp
    import httpx
    import requests
    from tenacity import RetryCallState

    from brace._chaos import Chaos

P = ParamSpec("P")
R = TypeVar("R")
# What binding leaves of a signature (Retried.__get__): the parameters after the first,
# and the type of the first (the instance or class it binds to).
_Rest = ParamSpec("_Rest")
_First = TypeVar("_First")

__all__ = ["OnSpec", "Policy", "Retried"]

# Outcomes that end a call at once whatever a predicate says: exits, and a gate's refusal.
#: What ``on=`` accepts: exception types, a tenacity retry object (sees results too), or a
#: plain callable that receives the exception and returns True to retry it (False not to),
#: or the seconds to wait before retrying it (a float or a ``datetime.timedelta``).
OnSpec = (type[BaseException] | tenacity.retry_base
          | Callable[[BaseException], bool | float | datetime.timedelta])


class Retried(Generic[P, R]):
    """A function decorated by a policy: same call signature, plus tenacity's statistics.

    Only a type: a decorated function is a plain function at run time (it binds, and keeps
    its name, signature and docstring), and type checkers see this class in its place.
    """

    __module__ = "brace"

    #: tenacity's statistics of the latest call (attempt_number, idle_for, ...).
    statistics: dict[str, Any]
    #: The function that was decorated.
    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function under the policy."""
        raise NotImplementedError  # never instantiated: a type for checkers only

    # Binding, spelled out for type checkers (tenacity issue 532): without __get__ a checker
    # treats a decorated method as a plain attribute and keeps demanding `self`. mypy and
    # pyright also run the wrapped object's own __get__ under @staticmethod/@classmethod, so
    # the overloads drop the first parameter only when the instance (or, for a classmethod,
    # the class) is what it accepts; a staticmethod whose first parameter accepts its own
    # class or instance is mistaken for a method. `self` is typed `Callable` so that mypy
    # solves the first parameter's type (it does not through a generic class's arguments),
    # and Retried is a plain Generic class, not a Protocol, because pyright ignores
    # overloads whose `self` is a `Callable` inside a Protocol.
    @overload
    def __get__(  # a classmethod, through the class
        self: Callable[Concatenate[_First, _Rest], R], instance: None, owner: _First, /
    ) -> Retried[_Rest, R]: ...
    @overload
    def __get__(  # a method or staticmethod, through the class: unbound
        self, instance: None, owner: type | None = None, /
    ) -> Retried[P, R]: ...
    @overload
    def __get__(  # a method, through an instance
        self: Callable[Concatenate[_First, _Rest], R], instance: _First,
        owner: type | None = None, /,
    ) -> Retried[_Rest, R]: ...
    @overload
    def __get__(  # a classmethod, through an instance
        self: Callable[Concatenate[_First, _Rest], R], instance: object, owner: _First, /
    ) -> Retried[_Rest, R]: ...
    @overload
    def __get__(  # a staticmethod, through an instance
        self, instance: object, owner: type | None = None, /
    ) -> Retried[P, R]: ...
    def __get__(self, instance: object, owner: object = None, /) -> Any:
        """Bind like a function: through an instance, drop the first parameter."""
        raise NotImplementedError  # never instantiated: a type for checkers only


@dataclasses.dataclass(frozen=True)
class Policy:
    """How to retry one kind of call: an immutable, hashable tenacity configuration.

    Build one from a preset (``brace.http(deadline=10)``) and use it as a decorator on sync
    or async functions, derive others with ``replace()``, or drop it into tenacity code
    with ``tenacity_kwargs()``, ``retrying()`` or ``async_retrying()``.

    Args:
        preset: The name events report in their ``preset`` field.
        attempts: Maximum number of calls, first one included (int in 1-1000).
        initial: Backoff window of the first retry in seconds (0-1e7).
        max_wait: Largest wait between attempts in seconds (initial-1e7).
        deadline: Seconds after the first call past which no sleep may end (> 0, <= 1e7);
            the policy gives up rather than sleep past it.
        on: Extra retry conditions, OR-ed with ``retry``: exception types, tenacity retry
            objects, or callables receiving the exception and returning True/False, or the
            seconds (float or ``timedelta``) to wait before retrying that error.
        retry: The preset's own retry predicate (a tenacity retry object).
        statuses: HTTP statuses to retry, read from results and exceptions
            (``brace.predicates.status``); ints in 100-599.
        idempotent_only: Never resend a non-idempotent HTTP request (POST, PATCH) unless it
            carries an ``Idempotency-Key`` header or failed before it was sent.
        attempt_timeout: Seconds one attempt may take (finite, > 0, <= deadline). Async
            functions have each attempt cancelled when it runs longer (a transient
            ``TimeoutError``); brace's httpx transports make it the request's timeout. Sync
            functions cannot be interrupted safely, so it is a TypeError there: set the
            client's own timeout instead.
        breaker: A breaker name (``brace.breaker(name)``, created with defaults on first use)
            or a ``pybreaker.CircuitBreaker``. Every attempt passes through it; only failures
            the policy would retry count against it. Decorated functions and brace's httpx
            transports (not ``tenacity_kwargs()`` or ``retrying()``).
        budget: A retry budget name (``brace.budget(name)``, created with defaults on first
            use) or a ``brace.Budget``: retries only while they stay under its share of
            calls; when it refuses, the call gives up at once.
        throttle: A throttle name (``brace.throttle(name)``): every attempt passes it, and
            it refuses attempts locally (``ThrottledError``, never retried) while the
            dependency fails most of them.
        rate_limit: A rate limit name (``brace.rate_limit(name)``): every attempt takes a
            token, waiting only while the deadline allows.
        bulkhead: A bulkhead name (``brace.bulkhead(name)``): every attempt takes a slot.
        hedge_after: Seconds (finite, > 0, < deadline) after which an async attempt that
            has not answered is raced by a copy; the first answer the policy would not
            retry wins and the others are cancelled. Async functions and, on the async
            transport, idempotent requests or those with an ``Idempotency-Key`` only.
        hedges: Most copies one attempt may start (int in [1, attempts - 1], default 1);
            every copy is an attempt.
        fallback: Returned instead of raising when retries are exhausted or the breaker is
            open; a callable is called with the error. Bugs (errors the policy would not
            retry) still raise. Decorated functions only.
        chaos: A ``brace.testing.chaos(...)`` setting: faults, outcomes or latency injected
            inside each attempt, so the policy retries, counts and reports them as real
            ones (for tests, or behind its ``enabled`` flag). Decorated functions and
            brace's httpx transports (not ``tenacity_kwargs()`` or ``retrying()``).

    Raises:
        TypeError, ValueError: at construction, naming the bad parameter and its range.
    """

    __module__ = "brace"

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
    budget: str | _budget.Budget | None = None
    throttle: str | None = None
    rate_limit: str | None = None
    bulkhead: str | None = None
    hedge_after: float | None = None
    hedges: int | None = None
    # Fallback values need not be hashable: compared, but left out of the hash.
    fallback: Any = dataclasses.field(default=_config.NO_FALLBACK, hash=False)
    # Compared and hashed by identity (each setting has its own random sequence).
    chaos: Chaos | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str) or not self.preset:
            raise TypeError(f"preset must be a non-empty str, got "
                            f"{_validate.shown(self.preset)}")
        _validate.attempts(self.attempts)
        initial, max_wait = _validate.wait_range(self.initial, self.max_wait, "max_wait")
        deadline = _validate.seconds(self.deadline, "deadline", allow_zero=False)
        if not isinstance(self.retry, tenacity.retry_base):
            raise TypeError(f"retry= must be a tenacity retry object (tenacity.retry_base), "
                            f"got {_validate.shown(self.retry)}")
        statuses = _validate.statuses(self.statuses)
        _validate.flag(self.idempotent_only, "idempotent_only")
        if self.attempt_timeout is not None:
            timeout = _validate.seconds(self.attempt_timeout, "attempt_timeout",
                                        allow_zero=False)
            if timeout > deadline:
                raise ValueError(f"attempt_timeout must be <= deadline ({deadline!r}), "
                                 f"got {_validate.shown(self.attempt_timeout)}")
            object.__setattr__(self, "attempt_timeout", timeout)
        object.__setattr__(self, "statuses", statuses)
        _validate.named(self.breaker, "breaker", (pybreaker.CircuitBreaker,),
                        "a breaker name (non-empty str) or a pybreaker.CircuitBreaker")
        _validate.named(self.budget, "budget", (_budget.Budget,), "a budget name (non-empty "
                        "str) or a brace.Budget (from brace.budget(name))")
        for gate in ("throttle", "rate_limit", "bulkhead"):
            _validate.named(getattr(self, gate), gate, (), f"a name (non-empty str, see "
                            f"brace.{gate}())")
        object.__setattr__(self, "hedge_after", _validate.hedging(
            self.hedge_after, self.hedges, self.attempts, deadline)[0])
        # Frozen: normalise through object.__setattr__ so equal configs hash equal.
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "max_wait", max_wait)
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "on", _validate.on_spec(self.on))
        _validate.chaos(self.chaos)

    # -- the retry decision (private: the call path and tenacity read these) -----------------

    @functools.cached_property
    def _failure(self) -> tenacity.retry_base:
        """A transient failure of the dependency: what breakers count and fallbacks cover.

        The preset's ``retry``, the ``statuses`` and ``on=``, OR-ed; idempotency aside.
        """
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
                combined = combined | _OnCallable(item)
        return combined

    @functools.cached_property
    def _predicate(self) -> tenacity.retry_base:
        """What tenacity consults after each attempt: the outcome's verdict, reporting the end.

        tenacity has no hook for a call that ends without its stop firing (a success after
        retries, an error that is not retried), but consults the retry predicate on every
        outcome; so this predicate reports those ends, and only those.
        """
        return _Reported(self)

    def _counts(self, exc: BaseException | None, result: Any = None) -> bool:
        """Return whether an outcome is a failure of the dependency (breakers count it).

        Unlike the retry decision this ignores idempotency: a 503 to a POST is a failure of
        the dependency even though the POST is not resent. Cancellations, interrupts and
        refusals are never failures.
        """
        return classify(self, exc, result).failure

    @functools.cached_property
    def _result_check(self) -> Callable[[Any], bool] | None:
        """A cheap test for a returned value the policy may retry (None: values never are)."""
        exception_only = (tenacity.retry_if_exception,)
        if not isinstance(self.retry, exception_only) or any(
                isinstance(item, tenacity.retry_base) and not isinstance(item, exception_only)
                for item in self.on):  # type: ignore[union-attr]
            return lambda result: True  # a predicate may read results: judge every one
        if self.statuses:
            codes = frozenset(self.statuses)
            plain = _PLAIN_RESULTS
            return lambda result: (type(result) not in plain
                                   and predicates.status_of(result) in codes)
        return None

    # -- waits, stops and hooks ---------------------------------------------------------------

    @functools.cached_property
    def wait(self) -> tenacity.wait.wait_base:
        """The wait strategy: the server's Retry-After in full, else full-jitter backoff.

        ``max_wait`` caps the backoff, not the server: a Retry-After is never cut short; one
        that does not fit in what is left of the deadline makes the stop give up at once.
        """
        wait: tenacity.wait.wait_base = waits.retry_after(
            fallback=waits.backoff(self.initial, self.max_wait))
        on: tuple[OnSpec, ...] = self.on  # type: ignore[assignment]
        if any(not isinstance(item, (type, tenacity.retry_base)) for item in on):
            wait = _OnWait(wait)  # an on= callable may return the wait for its error
        return wait

    @functools.cached_property
    def stop(self) -> tenacity.stop.stop_base:
        """The stop strategy: ``brace.stops.limits`` of attempts and deadline."""
        return stops.limits(attempts=self.attempts, deadline=self.deadline)

    @functools.cached_property
    def _stop(self) -> _Stop:
        """The stop tenacity runs: ``stop``, then an open breaker, then an empty budget.

        The budget comes last and spends a retry only when nothing else stops the call.
        """
        return _Stop(self.attempts, self.deadline, self.breaker, self.budget)

    def _before(self, retry_state: RetryCallState) -> None:
        # Counts the call for the budget where no call path did (retrying(), tenacity code).
        if retry_state.attempt_number == 1:
            _budget.lookup(self.budget).record_call()  # type: ignore[arg-type]

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        # tenacity's before_sleep hook: the one emitter of retry.scheduled.
        said = getattr(retry_state, "brace_wait_source", None)  # waits.retry_after's
        source: str | Callable[[], str] = (
            said[1] if said is not None and said[0] == retry_state.attempt_number else
            lambda: ("retry_after" if waits.server_delay(predicates.outcome_value(retry_state))
                     is not None else "backoff"))
        _events.retry_scheduled(
            retry_state.get_fn_name, self.preset, retry_state.attempt_number,
            retry_state.upcoming_sleep, retry_state.outcome, source)

    def _give_up(self, retry_state: RetryCallState) -> Any:
        # tenacity's retry_error_callback, called when the stop fires: report, then the real
        # error or last result (such as a 503 response), never a tenacity.RetryError.
        self._give_up_report(retry_state)
        assert retry_state.outcome is not None
        return retry_state.outcome.result()

    def _give_up_report(self, retry_state: RetryCallState) -> None:
        # The stop fired: mark what the call gives up on, and say why.
        reason = self._stop.reasons.pop(retry_state, "stop")
        # Retries ran out: an enclosing policy must not retry this again (retry at one layer).
        mark_exhausted(predicates.outcome_value(retry_state))
        if reason == "budget_exhausted":
            _events.retry_budget_exhausted(retry_state.get_fn_name(), self.preset,
                                           _budget.lookup(self.budget).name,  # type: ignore[arg-type]
                                           retry_state.attempt_number)
        self._ended(retry_state, reason)

    def _ended(self, retry_state: RetryCallState, reason: str) -> None:
        # The one emitter of retry.succeeded and retry.gave_up.
        name = retry_state.get_fn_name  # called only when the event is kept
        elapsed = retry_state.seconds_since_start or 0.0
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed and reason == "not_retryable":
            _events.retry_succeeded(name, self.preset, retry_state.attempt_number, elapsed)
        else:
            _events.retry_gave_up(name, self.preset, retry_state.attempt_number, elapsed,
                                  outcome, reason)

    # -- tenacity objects -----------------------------------------------------------------------

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make ``tenacity.retry`` / ``Retrying`` behave like this policy.

        ``@tenacity.retry(**policy.tenacity_kwargs())`` retries, waits, stops, spends the
        budget and emits events as ``@policy`` does. Sleeping is left to tenacity (it picks
        a sync or async sleep per function), so ``brace.testing.no_waits()`` does not reach
        it: use the decorator or ``retrying()`` where tests must not sleep.

        Raises:
            TypeError: the policy has a ``breaker=``, ``fallback=``, ``hedge_after=`` or
                ``chaos=``, which tenacity cannot apply (a breaker gates each attempt, a
                fallback wraps the call, hedges race attempts, chaos runs inside them): use
                the policy as a decorator, or drop them with ``policy.replace(...)``.
        """
        self._refuse_outside_the_call_path("tenacity_kwargs()")
        return self._tenacity_kwargs()

    def _refuse_outside_the_call_path(self, where: str) -> None:
        unapplied = [name for name, unset in (("breaker", self.breaker is None),
                                              ("fallback", self.fallback is _config.NO_FALLBACK),
                                              ("hedge_after", self.hedge_after is None),
                                              ("chaos", self.chaos is None))
                     if not unset]
        if unapplied:
            shown = " and ".join(f"{name}=" for name in unapplied)
            raise TypeError(f"{where} cannot apply {shown} (tenacity has no place for them): "
                            f"decorate the function with the policy instead, or drop them "
                            f"with policy.replace({', '.join(f'{n}=...' for n in unapplied)})")

    def _tenacity_kwargs(self) -> dict[str, Any]:
        kwargs = {"retry": self._predicate, "wait": self.wait, "stop": self._stop,
                  "before_sleep": self._before_sleep, "retry_error_callback": self._give_up,
                  "reraise": True}
        if self.budget is not None:
            kwargs["before"] = self._before
        return kwargs

    @functools.cached_property
    def _retryer(self) -> tenacity.Retrying:
        # The policy's own tenacity.Retrying, built once (retrying() copies it).
        return tenacity.Retrying(sleep=waits.sleep, **self._tenacity_kwargs())

    @functools.cached_property
    def _async_retryer(self) -> tenacity.AsyncRetrying:
        # The policy's own tenacity.AsyncRetrying, built once.
        return tenacity.AsyncRetrying(sleep=waits.async_sleep, **self._tenacity_kwargs())

    def retrying(self, **overrides: Any) -> tenacity.Retrying:
        """A fresh ``tenacity.Retrying`` for ``for attempt in policy.retrying(): with attempt:``.

        ``overrides`` go to ``Retrying.copy`` (for example ``name=`` names the block in
        events, ``sleep=`` injects a sleep function).
        """
        self._refuse_outside_the_call_path("retrying()")
        overrides.setdefault("enabled", _config.state.active)
        return self._retryer.copy(**overrides)

    def async_retrying(self, **overrides: Any) -> tenacity.AsyncRetrying:
        """A fresh ``tenacity.AsyncRetrying`` for ``async for attempt in ...`` blocks."""
        self._refuse_outside_the_call_path("async_retrying()")
        overrides.setdefault("enabled", _config.state.active)
        return self._async_retryer.copy(**overrides)

    # -- httpx clients, explain, derive, decorate -------------------------------------------------

    def client(self, **httpx_kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` whose every request goes through this policy.

        ``httpx_kwargs`` go to ``httpx.Client`` (``base_url=``, ``timeout=``, ``proxy=``,
        ``verify=``, ``limits=``, ``mounts=``, ...); every transport the client would use,
        proxies from the environment included, is wrapped in ``brace.RetryTransport``.
        Without a breaker on the policy, every authority (``scheme://host:port``) gets its
        own failure-ratio breaker; ``breaker=`` (a name, a ``pybreaker.CircuitBreaker``, or
        None for none) replaces them.
        """
        from brace import _transport  # httpx only when used

        return _transport.client(self, **httpx_kwargs)

    def async_client(self, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose every request goes through this policy."""
        from brace import _transport

        return _transport.async_client(self, **httpx_kwargs)

    def session(self, **adapter_kwargs: Any) -> requests.Session:
        """A ``requests.Session`` whose every request goes through this policy.

        ``brace.RetryAdapter(self, **adapter_kwargs)`` is mounted on ``http://`` and
        ``https://`` (``breaker=``, ``propagate=``, ``pool_connections=``,
        ``pool_maxsize=``, ``pool_block=``); the session is a context manager, as
        requests' always is.
        Needs requests (``pip install 'brace[requests]'``).
        """
        from brace import _requests  # requests only when used

        return _requests.session(self, **adapter_kwargs)

    def aiohttp_middleware(self, **middleware_kwargs: Any) -> Any:
        """An aiohttp client middleware sending every request through this policy.

        ``aiohttp.ClientSession(middlewares=[brace.http.aiohttp_middleware()])`` (aiohttp
        3.12+, asyncio). Statuses, Retry-After, idempotency, the breaker (by default one
        per authority, as on the httpx clients; ``breaker=`` a name, a
        ``pybreaker.CircuitBreaker`` or None replaces it), rate limit, bulkhead, events and
        the deadline apply as on ``brace.AsyncRetryTransport``; each attempt is cut at the
        call's deadline and at ``attempt_timeout``. Every response carries
        ``response.brace`` (``{"attempts", "elapsed_s", "exhausted"}``); every attempt
        sends ``Brace-Deadline-Ms`` and ``Brace-Attempt`` (``propagate=``: other names, or
        None for neither). Needs aiohttp (``pip install 'brace[aiohttp]'``).
        """
        from brace import _aiohttp

        return _aiohttp.aiohttp_middleware(self, **middleware_kwargs)

    def aiohttp_session(self, **session_kwargs: Any) -> aiohttp.ClientSession:
        """An ``aiohttp.ClientSession`` with ``aiohttp_middleware()`` as its innermost middleware.

        ``session_kwargs`` go to ``aiohttp.ClientSession`` (``breaker=`` to the middleware).
        Make it inside a running event loop, as aiohttp asks.
        """
        from brace import _aiohttp

        return _aiohttp.aiohttp_session(self, **session_kwargs)

    def explain(self) -> dict[str, Any]:
        """What this policy retries and its schedule, as ``python -m brace explain`` prints it.

        A plain dict (JSON-serialisable): retried and never-retried outcomes, one row per
        attempt with the wait range computed from this policy's own wait object, the
        worst-case elapsed time, where the deadline cuts the schedule, and the breaker.
        """
        return _explain.explain(self)

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
        return cast("Retried[P, R]", _call.decorate(self, fn))


# Results that never carry an HTTP status: the fast path skips looking for one.
_PLAIN_RESULTS = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict, set})


def _verdict(policy: Policy, retry_state: RetryCallState) -> Outcome:
    # The verdict brace's call path reached on this attempt, else judged now (tenacity's own
    # loops: retrying(), tenacity_kwargs()).
    outcome = retry_state.outcome
    assert outcome is not None
    error = outcome.exception()
    verdict: Outcome | None = getattr(retry_state, "verdict", None)
    if verdict is not None and verdict.error is error and (
            error is not None or verdict.value is outcome.result()):
        return verdict
    return classify(policy, error, None if error is not None else outcome.result(),
                    getattr(retry_state, "after_mark", None), retry_state)


class _OnCallable(tenacity.retry_base):
    """An ``on=`` callable: True/False retry or not; a number or timedelta is the wait.

    A callable that returns seconds (``on=lambda e: 0.5``) retries that error after that
    wait (``_OnWait`` reads it from the call state; the deadline still applies, as for a
    Retry-After). Anything else is a TypeError naming ``on``.
    """

    def __init__(self, predicate: Callable[[BaseException], Any]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return whether to retry the attempt's exception; remember a wait it asked for."""
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        assert exc is not None
        said = self.predicate(exc)
        if isinstance(said, bool):
            return said
        seconds = _validate.on_wait(said, self.predicate)
        retry_state.brace_on_wait = (retry_state.attempt_number, seconds)  # type: ignore[attr-defined]
        return True

    def __repr__(self) -> str:
        return f"on({self.predicate!r})"


class _OnWait(tenacity.wait.wait_base):
    """The policy's wait, except after an error an ``on=`` callable gave a wait for."""

    def __init__(self, inner: tenacity.wait.wait_base) -> None:
        self.inner = inner

    def __call__(self, retry_state: RetryCallState) -> float:
        """The wait ``on=`` asked for on this attempt, else the policy's own."""
        said = getattr(retry_state, "brace_on_wait", None)
        if said is not None and said[0] == retry_state.attempt_number:
            return float(said[1])
        return float(self.inner(retry_state))

    def __repr__(self) -> str:
        return f"{self.inner!r} (or the wait on= returns)"


class _Reported(tenacity.retry_base):
    """The policy's retry decision; reports the call's end when the decision ends it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return whether to retry; report a call that ends after a retry."""
        verdict = _verdict(self.policy, retry_state)
        kind = verdict.kind
        if kind is Kind.RETRYABLE:
            return True
        if kind is Kind.CANCELLED:
            return False  # cancellation, an interrupt or exit: no give-up, it just propagates
        attempt = retry_state.attempt_number
        if kind is Kind.EXHAUSTED:
            reason = "inner_exhausted"  # an inner policy gave up: never retried again here
            gave_up()  # and this call gives up with it: brace.web marks the response too
        elif kind is Kind.REFUSED and isinstance(verdict.error, pybreaker.CircuitBreakerError):
            if attempt == 1:
                return False  # a rejection at attempt 1 is reported by breaker.rejected alone
            reason = "breaker_open"
        elif verdict.why == "not_idempotent":
            # A failure that would be retried, but resending the request is not safe.
            _events.retry_skipped(retry_state.get_fn_name, self.policy.preset, attempt,
                                  retry_state.outcome, "not_idempotent")
            return False
        elif attempt > 1:
            reason = "not_retryable"
        else:
            return False  # a first attempt that ends the call is no retry story
        self.policy._ended(retry_state, reason)
        return False

    def __repr__(self) -> str:
        policy = self.policy
        shown = repr(policy._failure)
        return f"{shown} & brace.predicates.idempotent" if policy.idempotent_only else shown


class _Stop(tenacity.stop.stop_base):
    """The stop brace's policies run: attempts, deadline, an open breaker, an empty budget.

    In that order: the budget comes last and spends a retry only when nothing else stops
    the call. Which one fired is kept (``reasons``) for the give-up event.
    """

    def __init__(self, attempts: int, deadline: float, breaker: Any, budget: Any) -> None:
        self.attempts = attempts
        self.deadline = stops.deadline(deadline)
        self.breaker = breaker
        self.budget = budget
        self.reasons: weakref.WeakKeyDictionary[RetryCallState, str] = (
            weakref.WeakKeyDictionary())

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True (and remember why) when the call must give up now."""
        cap = _config.state.attempts  # brace.testing.no_waits(attempts=N)
        if retry_state.attempt_number >= (self.attempts if cap is None
                                          else min(cap, self.attempts)):
            reason = "attempts"
        elif self._past_deadline(retry_state):
            reason = "deadline"
        elif self.breaker is not None and gate_for(self.breaker).is_open():
            # This attempt's failure tripped (or met) an open breaker: stop here with the
            # real error instead of sleeping towards a certain rejection.
            reason = "breaker_open"
        elif self.budget is not None and not self._spend(retry_state):
            reason = "budget_exhausted"  # retries are over their share: do not add load
        else:
            return False
        self.reasons[retry_state] = reason
        return True

    def _spend(self, retry_state: RetryCallState) -> bool:
        # One retry from the budget; a shared budget never waits on Redis longer than
        # brace's call has left (tenacity's own loops: as long as redis_timeout).
        call = getattr(retry_state, "call", None)
        return _budget.lookup(self.budget).try_spend(
            remaining=math.inf if call is None else call.remaining())

    def _past_deadline(self, retry_state: RetryCallState) -> bool:
        # brace.stops.deadline's rule; the policy's wait already is a server's Retry-After
        # in full, so there is no capped wait to compare the server's delay with again.
        # brace's call path hands over its call, whose Deadline decides; tenacity's own
        # loops (retrying(), tenacity_kwargs()) have the state's clock readings.
        call = getattr(retry_state, "call", None)
        if call is not None:  # Deadline.past, read without making a Deadline
            return bool(retry_state.upcoming_sleep >= call.remaining())
        left = remaining()  # a brace.deadline scope around tenacity's own loop
        if left is not None and retry_state.upcoming_sleep >= left:
            return True
        elapsed = retry_state.seconds_since_start or 0.0
        if waits.waits_disabled():
            elapsed += retry_state.idle_for
        return past(elapsed, retry_state.upcoming_sleep, self.deadline.max_delay)

    def __repr__(self) -> str:
        return (f"brace.stops.limits(attempts={self.attempts}, "
                f"deadline={self.deadline.max_delay!r})")
