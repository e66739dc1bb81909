"""The call path of a decorated function (and of each request on brace's transports).

A ``Path`` is built once per decorated function (or per transport and policy); a ``Call``
is made at the start of every call and handed to every layer: its ``Deadline`` (the one
clock of ``_deadline.py``), the exhausted-mark number it began at, the attempts started
(hedges included) and, once the first attempt failed, tenacity's call state.

Per attempt the layers run in DESIGN rule 5's order: circuit breaker -> rate limit ->
bulkhead -> attempt timeout -> the function; ``_outcome.classify`` then says once what the
attempt's result or error is, and the breaker, the retry decision, events and hedging all
read that verdict.

A healthy call runs the function once, with no tenacity objects at all. Only a failure (or
a result the policy retries) enters tenacity's decision, seeded with that first outcome as
attempt 1: the policy's own retry, wait, stop and before-sleep objects then decide, so
statistics, attempt numbers and events are tenacity's, as if it had run from the start.
Sync and async calls share every decision (``Path.next_sleep``); they differ only where
they wait. The fallback, when set, wraps it all.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import pybreaker
import tenacity

from brace import _breakers, _budget, _config, _events, _limits, _validate, waits
from brace._breakers import CircuitOpenError, Gate, gate_for
from brace._deadline import (
    _SCOPE,
    RUNNING,
    Deadline,
    Watch,
    Watchdog,
    clock,
    gave_up,
    watchdog,
    within,
)
from brace._deadline import OPEN as SCOPES
from brace._hedge import Hedger
from brace._limits import ADAPTIVE
from brace._outcome import (
    LAST_MARK,
    Done,
    Kind,
    Outcome,
    is_exit,
    judged,
    mark_exhausted,
    quick_verdict,
    sdk_retries,
)

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["Call", "Path", "decorate"]

_state = _config.state
# A Redis-shared breaker's local copy is timed on the clock its storage uses.
_monotonic = time.monotonic
# asyncio's own; under another async library get_running_loop raises RuntimeError.
_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


def _asyncio_task() -> tuple[asyncio.AbstractEventLoop | None, asyncio.Task[Any] | None]:
    """The running asyncio loop and task, or Nones under another async library (trio)."""
    try:
        loop = _running_loop()
    except RuntimeError:  # no asyncio loop running
        return None, None
    return loop, _current_task(loop)


class Call:
    """One call: its deadline and what its attempts have done so far.

    Attributes:
        seconds: The call's deadline, in seconds from ``started``.
        started: When the call began, on ``_deadline.clock``.
        mark: The exhausted-mark number when the call began (retry at one layer).
        attempts: Attempts started, hedged copies included.
        state: tenacity's call state, once the first attempt did not simply succeed.
        watch: On asyncio, the deadline watchdog and its watch of the calling task.
        scope: Off asyncio (trio), the anyio cancel scope that ends the call at its deadline.
    """

    __slots__ = ("_deadline", "attempts", "mark", "scope", "seconds", "started", "state",
                 "watch")

    def __init__(self, seconds: float, started: float | None = None,
                 mark: int | None = None) -> None:
        if started is None:
            started = clock()
        # Inside a brace.deadline scope: the tighter of the two, read once, now.
        self.seconds = within(seconds, started) if SCOPES[0] else seconds
        self.started = started
        self.mark = LAST_MARK[0] if mark is None else mark
        self.attempts = 0
        self.state: _CallState | None = None
        self.watch: tuple[Any, list[Any]] | None = None
        self.scope: Any = None
        self._deadline: Deadline | None = None

    @property
    def deadline(self) -> Deadline:
        """When the call must end: the one ``Deadline`` every layer reads.

        Made on first use (from the call's start), so a healthy call that waits for
        nothing builds none.
        """
        deadline = self._deadline
        if deadline is None:
            deadline = self._deadline = Deadline(self.seconds, self.started)
        return deadline

    def remaining(self) -> float:
        """Seconds left before the deadline (``deadline.remaining()``, without making one)."""
        deadline = self._deadline
        if deadline is None:
            return self.seconds - (clock() - self.started)
        return deadline.remaining()

    def deadline_passed(self) -> bool:
        """Whether the asyncio watchdog already cut this call off at its deadline."""
        return self.watch is not None and self.watch[1][2] != RUNNING

    def deadline_cut(self, error: BaseException) -> tuple[TimeoutError | None, bool]:
        """Whether this call's deadline caused the cancellation ``error`` of an attempt.

        Returns the TimeoutError it stands for (None: not the deadline's), and whether the
        cancellation was withdrawn, so the attempt may end with that TimeoutError as its
        outcome: only in the asyncio task the watchdog cancelled, once. A hedged copy
        cancelled because the deadline passed, and trio's cancel scope, must see their
        cancellation through (the race, the scope); their attempts still count the cut.
        """
        if not is_exit(error):
            return None, False
        if self.watch is not None:
            dog, watch = self.watch
            task = watch[1]
            if task is not None and _current_task() is task:
                if isinstance(error, asyncio.CancelledError):
                    return dog.timeout_error(watch, task, error), True
                return None, False
            if watch[2] != RUNNING:  # a copy, cancelled as the call ran out of time
                return TimeoutError(self.deadline_message()), False
            return None, False
        if self.scope is not None and self.scope.cancel_called:
            return TimeoutError(self.deadline_message()), False
        return None, False

    def slept(self, seconds: float) -> None:
        """A backoff of ``seconds`` was skipped inside ``no_waits()``: it still counts."""
        self.deadline.skipped += seconds

    def deadline_message(self) -> str:
        """What a TimeoutError at this call's deadline says."""
        return f"deadline of {max(0.0, self.seconds):g} s reached"

    def expired(self) -> TimeoutError | None:
        """The TimeoutError of a call that began with no time left, else None.

        A ``brace.deadline`` scope ran out before the call began: its function is not called.
        """
        if self.seconds > 0:
            return None
        error = TimeoutError("the brace.deadline scope ran out before the call began")
        mark_exhausted(error)  # given up on: an enclosing policy does not retry it
        return error


class _Named:
    """Names a retry loop in events: tenacity names a call by its function's qualified name."""

    __module__ = None  # type: ignore[assignment]  # so the name is the label alone

    def __init__(self, label: str) -> None:
        self.__qualname__ = label


class _CallState(tenacity.RetryCallState):
    """tenacity's call state, carrying brace's verdict on its latest outcome.

    ``after_mark`` is the exhausted-mark number the call began at; ``verdict`` the
    ``Outcome`` of the attempt in ``outcome``, which the policy's retry decision reads
    instead of judging the attempt again.
    """

    after_mark = 0
    verdict: Outcome | None = None
    call: Call | None = None

    def get_fn_name(self) -> str:
        """The call's label (tenacity would rebuild it from the function on every event)."""
        return cast(str, self.fn.__qualname__)  # type: ignore[union-attr]


def _settle(state: _CallState, outcome: Outcome) -> None:
    # RetryCallState.set_exception / set_result, with a Done outcome and brace's verdict.
    state.outcome = Done(state.attempt_number, outcome.error, outcome.value)
    state.outcome_timestamp = clock()
    state.verdict = outcome


def _trimmed(error: BaseException) -> BaseException:
    """``error`` with brace's own frames cut from the head of its traceback.

    The caller re-raises it from the call's own frame, so a user reads their function's
    frames under at most that one (and the fallback's) brace frame.
    """
    tb: TracebackType | None = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("brace."):
        tb = tb.tb_next
    return error.with_traceback(tb)


class Path:
    """How one function, or one transport's requests, is called under a policy.

    Built once; ``__call__`` (sync) or ``acall`` (async) runs one call. ``name`` names the
    callable in breaker events, ``label`` (transports) the retry loop; ``discard`` frees a
    retried or losing value (a response's connection); ``with_call`` passes the ``Call``
    to the function as its first argument (the transports read its deadline);
    ``attempt_timeouts=False`` leaves ``attempt_timeout`` to the function (the transports
    make it httpx's timeout); ``hedge=False`` never races copies (a request not safe to
    resend).
    """

    def __init__(self, policy: Policy, fn: Callable[..., Any], *, name: str,
                 breaker: str | pybreaker.CircuitBreaker | None, label: str | None = None,
                 discard: Callable[[Any], Any] | None = None, with_call: bool = False,
                 attempt_timeouts: bool = True, hedge: bool = True,
                 asynchronous: bool = False, once: bool = False) -> None:
        self.policy = policy
        self.fn = fn
        self.name = name
        self.label = label or name
        self.discard = discard
        self.with_call = with_call
        self.check = policy._result_check
        self.breaker = breaker
        # Named breakers are looked up per attempt (reset_breakers() forgets them); a
        # breaker object's gate is kept here on first use.
        self.gates: dict[Any, Gate] = (_breakers.registry if isinstance(breaker, str)
                                       else {})
        self.throttle = policy.throttle
        self.rate_limit = policy.rate_limit
        self.bulkhead = policy.bulkhead
        self.attempt_timeout = policy.attempt_timeout if attempt_timeouts else None
        # One attempt, never retried (a request whose streamed body cannot be sent again),
        # still through every layer and under the deadline.
        self.once = once
        # The llm preset watches for an SDK retrying under it (once per path).
        self.watch_sdk = policy.preset == "llm"
        self.hedger = (Hedger(policy, name, discard)
                       if asynchronous and hedge and not once and policy.hedge_after else None)
        self.budget = policy.budget
        self.deadline = policy.deadline
        # Whether attempts pass gates (a throttle, a rate limit, a bulkhead) before the
        # function; any of them may learn from the attempts' outcomes (``learn``).
        self.limited = (self.throttle is not None or self.rate_limit is not None
                        or self.bulkhead is not None)
        # Whether every attempt goes straight to the function (no breaker, no limits).
        self.direct = not self.limited and breaker is None
        # Whether an async attempt may take the healthy path: no hedging, no attempt
        # timeout (both wrap the function).
        self.quick = self.hedger is None and self.attempt_timeout is None
        #: tenacity's statistics of the latest call (one dict, updated in place).
        self.stats: dict[str, Any] = {}
        # Whether a fallback covers what the call gives up on.
        self.fallback = policy.fallback is not _config.NO_FALLBACK
        # The event loop last served (weakly: a closed loop must be freed) and its watchdog.
        self._dog: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None
        self._attempt_dog: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None

    # -- the shared decisions -----------------------------------------------------------------

    def begin(self) -> Call:
        """Start a call: its deadline begins now; the retry budget counts it."""
        call = Call(self.deadline)
        if self.budget is not None:
            self._count_call(call.started + call.seconds, call.started)
        return call

    def _covered(self, exc: BaseException) -> str | None:
        # Why the fallback covers ``exc`` (the breaker is open, or retries ran out on a
        # failure of the dependency); None for a bug or a refusal the policy would not
        # retry, which the caller raises again.
        policy = self.policy
        if isinstance(exc, CircuitOpenError):
            return "breaker_open"
        if not policy._counts(exc):
            return None
        if policy.breaker is not None and gate_for(policy.breaker).is_open():
            return "breaker_open"
        return "retries_exhausted"

    def _degraded(self, exc: BaseException, reason: str) -> Any:
        # The fallback's value for ``exc``, reported as ``degraded``.
        policy = self.policy
        _events.degraded(self.name, policy.preset, reason, exc)
        return policy.fallback(exc) if callable(policy.fallback) else policy.fallback

    def _count_call(self, until: float, now: float) -> None:
        # One call for the retry budget, made at ``now`` and due by ``until``: one dict
        # look-up (reset_budgets() forgets budgets).
        budget = self.budget
        (_budget.registry.get(budget) or _budget.lookup(budget))._count(until, now)  # type: ignore[arg-type]

    def healthy(self) -> Gate | bool:
        """Whether the breaker lets an attempt go straight on: the healthy path.

        True without a breaker, the gate when its breaker is closed with nothing to count,
        False when the attempt must pass it (open, half-open, or a failure-ratio window to
        count in). A plain success there has nothing to record. Rate limits and bulkheads
        are ``take_now``'s.
        """
        breaker = self.breaker
        if breaker is None:
            return True
        try:  # a subscript: a method call's cost less than dict.get on every request
            gate = self.gates[breaker]
        except KeyError:  # a name forgotten, or a breaker object's first call: found or made
            gate = gate_for(breaker)
            if not isinstance(breaker, str):
                self.gates[breaker] = gate  # an object's gate is its own for life
        return gate if gate.fast or gate.fresh_until > _monotonic() else False

    def take_now(self) -> _limits.Bulkhead | bool:
        """A rate-limit token and a bulkhead slot, if both are free now (the healthy path).

        Returns the bulkhead whose slot to release after the function (True: no bulkhead),
        or False, having taken nothing, when the attempt would wait (or its throttle is
        refusing some attempts): ``attempt`` then passes them as far as the call's
        deadline allows.
        """
        if self.throttle is not None and not _limits.find_throttle(self.throttle).quiet():
            return False
        rate = None
        if self.rate_limit is not None:
            rate = _limits.find_rate_limit(self.rate_limit)
            if not rate.take_now():
                return False
        if self.bulkhead is None:
            return True
        slots = _limits.find_bulkhead(self.bulkhead)
        if slots.try_acquire():
            return slots
        if rate is not None:
            rate.give_back()  # the slot would be waited for: so is the token, in ``attempt``
        return False

    def learn(self, outcome: Outcome | None, started: float) -> None:
        """Tell the gates that learn from outcomes how an attempt that ran went.

        ``outcome`` None is a plain success; ``started`` when the attempt began (on
        ``clock``). A throttle counts whether the dependency accepted it, an adaptive
        rate limit whether it was a throttling answer, an adaptive bulkhead learns from its
        latency and failure. A cancelled or refused attempt
        gave no verdict: nothing is learned.
        """
        failed = False
        if outcome is not None:
            if outcome.kind is Kind.CANCELLED or outcome.kind is Kind.REFUSED:
                return
            failed = outcome.failure
        if self.throttle is not None:
            _limits.find_throttle(self.throttle).record(not failed)
        if self.rate_limit is not None:
            rate = _limits.find_rate_limit(self.rate_limit)
            if rate.adaptive:
                rate.learn(outcome is not None and outcome.throttled)
        if self.bulkhead is not None:
            slots = _limits.find_bulkhead(self.bulkhead)
            if slots.adaptive:
                slots.sample(clock() - started, failed)

    def learn_success(self, slot: _limits.Bulkhead | bool, started: float) -> None:
        """``learn`` for a plain success on the healthy path, which holds its ``slot``."""
        if self.throttle is not None:
            _limits.find_throttle(self.throttle).record(True)
        if self.rate_limit is not None:
            rate = _limits.find_rate_limit(self.rate_limit)
            if rate.adaptive:
                rate.learn(False)
        if slot is not True and slot.adaptive:  # type: ignore[union-attr]
            slot.sample(clock() - started, False)  # type: ignore[union-attr]

    def plain_success(self, call: Call, gate: Gate | None, slot: _limits.Bulkhead | bool,
                      started: float) -> None:
        """A first attempt on the healthy path that simply succeeded: nothing to judge.

        Only a failure-ratio breaker counts the call (``gate.on_success``), the gates that
        learn do (``learn_success``), and the statistics say one attempt.
        """
        if gate is not None:
            tally = gate.tally
            if tally is not None:
                if call.started < tally[1]:
                    tally[0] += 1  # within the window's current bucket: as its ``call`` does
                else:
                    gate.on_success(call.started + call.seconds, call.started)  # type: ignore[misc]
        if ADAPTIVE[0] and self.limited:
            self.learn_success(slot, started)
        stats = self.stats  # as ``succeeded`` says
        stats["start_time"], stats["attempt_number"] = call.started, 1
        stats["idle_for"] = stats["delay_since_first_attempt"] = 0

    def gate(self) -> Gate | None:
        """The breaker's gate for this attempt, or None without a breaker."""
        breaker = self.breaker
        if breaker is None:
            return None
        return self.gates.get(breaker) or gate_for(breaker)

    def done_at_once(self, call: Call, outcome: Outcome) -> bool:
        """True for a first attempt that ends the call without tenacity (the healthy path)."""
        if outcome.kind is not Kind.SUCCESS or call.state is not None:
            return False
        self.succeeded(call)
        return True

    def succeeded(self, call: Call) -> None:
        """Statistics of a call whose first attempt succeeded."""
        stats = self.stats
        stats["start_time"] = call.started
        stats["attempt_number"] = call.attempts or 1
        stats["idle_for"] = stats["delay_since_first_attempt"] = 0

    def next_sleep(self, call: Call, outcome: Outcome, args: Any = (),
                   kwargs: Any = None) -> float | None:
        """The retry decision on ``outcome``: seconds to sleep before retrying, or None.

        The policy's tenacity objects decide (retry -> wait -> stop -> before_sleep),
        called directly (tenacity's action list costs more than they do); pinned by
        ``test_fast_path_is_invisible_next_to_plain_tenacity``.
        """
        policy, stats = self.policy, self.stats
        if self.watch_sdk:
            self._layered(outcome)
        state = call.state
        if state is None:
            state = call.state = self._seed(call)
        elif call.attempts > state.attempt_number:
            state.attempt_number = call.attempts
        state.args, state.kwargs = args, kwargs or {}
        stats["attempt_number"] = state.attempt_number
        if state.verdict is outcome:  # judged on this state: it holds the attempt already
            state.outcome_timestamp = clock()
        else:
            _settle(state, outcome)
        if not policy._predicate(state):
            return None
        upcoming = state.upcoming_sleep = policy.wait(state)
        stats["delay_since_first_attempt"] = state.seconds_since_start
        if policy._stop(state):
            policy._give_up_report(state)
            return None
        state.idle_for += upcoming
        stats["idle_for"] += upcoming
        stats["attempt_number"] += 1
        policy._before_sleep(state)
        state.prepare_for_next_attempt()
        return upcoming

    def _layered(self, outcome: Outcome) -> None:
        # An SDK that resent the request before brace saw it fail: say so, once.
        retried = sdk_retries(outcome.error if outcome.error is not None else outcome.value)
        if retried is not None:
            self.watch_sdk = False
            _events.retry_layered(self.label, self.policy.preset, retried,
                                  "max_retries=0 on the SDK client (brace retries)")

    def _seed(self, call: Call) -> _CallState:
        # tenacity's call state for a call whose first attempt ran without it (its
        # arguments are set by next_sleep). Named as brace names it (a callable object's
        # class, not its repr with an address).
        state = _CallState(self.policy._retryer, cast(Any, _Named(self.label)), (), {})
        state.after_mark = call.mark
        state.call = call  # the stop reads the call's deadline
        state.start_time = call.started  # attempt 1 ran before tenacity's clock
        state.attempt_number = max(1, call.attempts)
        stats = self.stats
        stats.clear()
        stats.update(start_time=call.started, attempt_number=state.attempt_number,
                     idle_for=0, delay_since_first_attempt=0)
        return state

    def finish(self, call: Call) -> None:
        """The call ended: statistics count every attempt started, hedges included."""
        stats = self.stats
        if call.state is None:  # no retry machinery ran (brace.set_active(False))
            stats["start_time"] = call.started
            stats["idle_for"] = stats["delay_since_first_attempt"] = 0
        stats["attempt_number"] = max(1, call.attempts)

    # -- sync ---------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one sync call."""
        return self.run(args, kwargs, self.begin())

    def entry(self) -> Callable[..., Any]:
        """The sync function a decorator returns: the healthy path inline, the rest in ``run``.

        A healthy call counts itself for the budget, finds its breaker closed with nothing
        to count (or has none) and its token and slot free at once (``take_now``), reads
        the clock and the exhausted mark, calls the function, and is done: its ``Call`` is
        made only when the first attempt did not simply succeed. A value the policy's
        result check does not flag is a plain success (``classify``'s first rule): nothing
        to judge, nothing for the breaker to record.
        """
        fn, check, stats, run, healthy = self.fn, self.check, self.stats, self.run, self.healthy
        budget, seconds, fallback = self.budget, self.deadline, self.fallback
        covered, degraded = self._covered, self._degraded
        direct, limited, take_now = self.direct, self.limited, self.take_now
        last_mark, scopes, scope, count_call = LAST_MARK, SCOPES, _SCOPE, self._count_call
        adaptive, learned = ADAPTIVE, self.learn_success

        def entry(*args: Any, **kwargs: Any) -> Any:
            try:
                if scopes[0] and scope.get() is not None:  # inside brace.deadline(...)
                    call = Call(seconds)
                    if budget is not None:
                        count_call(call.started + call.seconds, call.started)
                    return run(args, kwargs, call)
                started = clock()
                if budget is not None:
                    # One dict look-up (reset_budgets() forgets budgets).
                    (_budget.registry.get(budget) or _budget.lookup(budget))._count(  # type: ignore[arg-type]
                        started + seconds, started)
                gate: Gate | bool
                slot: _limits.Bulkhead | bool
                if direct:
                    gate = slot = True
                else:
                    gate = healthy()
                    slot = take_now() if gate and limited else True
                    if not gate or not slot:
                        return run(args, kwargs, Call(seconds, started))
                mark = last_mark[0]
                error: BaseException | None = None
                try:
                    value = fn(*args, **kwargs)
                except BaseException as exc:
                    error, value = exc, None
                else:
                    if check is None or not check(value):
                        if gate is not True:  # a failure-ratio breaker counts the call
                            counted = cast(Gate, gate).on_success
                            if counted is not None:
                                counted(started + seconds, started)
                        if adaptive[0] and limited:
                            learned(slot, started)
                        stats["start_time"], stats["attempt_number"] = started, 1
                        stats["idle_for"] = stats["delay_since_first_attempt"] = 0
                        return value
                finally:
                    if isinstance(slot, _limits.Bulkhead):
                        slot.release()
                # Outside the except block: later attempts' errors never chain to this one.
                return run(args, kwargs, Call(seconds, started, mark), gate, error, value)
            except Exception as exc:
                reason = covered(exc) if fallback else None
                if reason is None:
                    raise  # no fallback, or one that does not cover a bug: as it was
                return degraded(exc, reason)

        return entry

    def async_entry(self) -> Callable[..., Any]:
        """The async function a decorator returns: on asyncio the healthy path inline.

        As ``entry``: a healthy call is watched by the loop's deadline watchdog, calls the
        function (under its attempt timeout, if any) and is done, with no ``Call`` made;
        anything else (trio, hedging, a breaker to pass, a token or slot to wait for, a
        first attempt that did not simply succeed) goes on in ``arun``. The fallback wraps
        it all.
        """
        fn, check, stats, healthy, take_now = (self.fn, self.check, self.stats, self.healthy,
                                               self.take_now)
        budget, seconds, fallback = self.budget, self.deadline, self.fallback
        # Hedged calls race from the first attempt; an attempt timeout bounds it here too.
        quick = self.hedger is None and not self.with_call
        direct, limited = self.direct, self.limited
        timed = None if self.attempt_timeout is None else self._timed
        arun, watchdog_of, covered, degraded = (self.arun, self._watchdog, self._covered,
                                                self._degraded)
        last_mark, running_loop, current_task = LAST_MARK, _running_loop, _current_task
        scopes, scope, adaptive, learned = SCOPES, _SCOPE, ADAPTIVE, self.learn_success
        path = self

        async def entry(*args: Any, **kwargs: Any) -> Any:
            try:
                started = clock()
                if budget is not None:
                    # Due by the call's deadline; inside brace.deadline(...) the tighter one.
                    (_budget.registry.get(budget) or _budget.lookup(budget))._count(  # type: ignore[arg-type]
                        started + (within(seconds, started) if scopes[0] else seconds), started)
                try:  # _asyncio_task(), inline: a call less per call
                    loop = running_loop()
                    task = current_task(loop)
                except RuntimeError:  # no asyncio loop (trio): arun's cancel scope
                    task = None
                # Inside brace.deadline(...) the call's deadline is its own: arun watches it.
                gate = quick and task is not None and not (scopes[0] and scope.get()) and (
                    True if direct else healthy())
                slot = take_now() if gate and limited else True
                if not gate or not slot:
                    return await arun(Call(seconds, started), args, kwargs)
                mark = last_mark[0]
                # The watchdog of the loop last served (``_watchdog`` makes another's).
                cached = path._dog
                dog = cached[1] if cached is not None and cached[0]() is loop else \
                    watchdog_of(loop)  # a task runs: a loop too
                watch = dog.watch(task, loop, started)
                error: BaseException | None = None
                try:
                    try:
                        value = await (fn(*args, **kwargs) if timed is None
                                       else timed(None, args, kwargs))
                    finally:
                        if slot is not True:
                            slot.release()
                except BaseException as exc:
                    error, value = exc, None
                else:
                    try:
                        plain = check is None or not check(value)
                    except BaseException:
                        dog.release(watch)  # a result check's own bug: raised as it is
                        raise
                    if plain:
                        dog.release(watch)
                        if gate is not True and gate.on_success is not None:
                            # A failure-ratio breaker counts the call.
                            gate.on_success(started + seconds, started)
                        if adaptive[0] and limited:
                            learned(slot, started)
                        stats["start_time"], stats["attempt_number"] = started, 1
                        stats["idle_for"] = stats["delay_since_first_attempt"] = 0
                        return value
                # Outside the except block: later attempts' errors never chain to this one.
                call = Call(seconds, started, mark)
                call.watch = (dog, watch)
                return await arun(call, args, kwargs, gate, error, value)
            except Exception as exc:
                reason = covered(exc) if fallback else None
                if reason is None:
                    raise
                return degraded(exc, reason)

        return entry

    def run(self, args: Any, kwargs: Any, call: Call, gate: Gate | bool | None = None,
            error: BaseException | None = None, value: Any = None) -> Any:
        """Run ``call`` of the sync function; raise its last error when it gives up.

        ``gate`` set: the first attempt already ran on the healthy path (through that gate,
        or none when True) and ended in ``error`` or ``value``. Otherwise (the transports)
        the first attempt takes the healthy path here when it can.
        """
        if gate is None:
            expired = call.expired()
            if expired is not None:
                raise expired
            healthy = self.healthy()
            slot = self.take_now() if healthy and self.limited else True
            if healthy and slot:
                done, error, value = self._first_healthy(call, args, kwargs, healthy, slot)
                if done:
                    return value
                gate = healthy
            else:  # the first attempt passes the gates, waiting as it must
                outcome = self.attempt(call, args, kwargs)
                if self.done_at_once(call, outcome):
                    return outcome.value
        if gate is not None:
            call.attempts = 1
            outcome = self.settle(call, None if gate is True else gate,  # type: ignore[arg-type]
                                  False, call.started, error, value)
            if outcome.kind is Kind.CANCELLED:
                raise outcome.error  # type: ignore[misc]
        while _state.active and not self.once:
            wait = self.next_sleep(call, outcome, args, kwargs)
            if wait is None:
                break
            if self.discard is not None and outcome.error is None:
                self.discard(outcome.value)  # a retried response frees its connection
            if _state.no_waits:
                call.slept(wait)
            waits.sleep(wait)
            outcome = self.attempt(call, args, kwargs)
        self.finish(call)
        last = outcome.error
        if last is not None:
            if SCOPES[0] and outcome.kind is Kind.REFUSED:
                gave_up()  # a breaker, budget or limit refused the dependency: brace.web says so
            raise _trimmed(last)
        return outcome.value

    def _first_healthy(self, call: Call, args: Any, kwargs: Any, gate: Gate | bool,
                       slot: _limits.Bulkhead | bool) -> tuple[bool, BaseException | None, Any]:
        # The first attempt on the healthy path (``healthy`` and ``take_now`` let it go
        # straight on, holding ``slot``), as ``entry`` runs it: True and the value for a
        # plain success, which only a failure-ratio window and the learning gates count;
        # else False and the error or value for ``settle`` to judge.
        call.attempts = 1
        fn = self.fn
        try:
            value = fn(call, *args, **kwargs) if self.with_call else fn(*args, **kwargs)
        except BaseException as exc:
            return False, exc, None
        else:
            check = self.check
            if check is not None and check(value):
                return False, None, value
            self.plain_success(call, None if gate is True else gate, slot,  # type: ignore[arg-type]
                               call.started)
            return True, None, value
        finally:
            if slot is not True:
                cast(_limits.Bulkhead, slot).release()

    def attempt(self, call: Call, args: Any, kwargs: Any) -> Outcome:
        """One sync attempt through breaker -> rate limit -> bulkhead -> the function."""
        call.attempts += 1
        gate = None if self.breaker is None else self.gate()
        trial = ran = False
        started = 0.0
        try:
            if gate is not None and not gate.healthy():
                trial = gate.enter(self.name, remaining=call.remaining())
            slot = self._gates(call) if self.limited else None
            try:
                if ADAPTIVE[0] or (gate is not None and gate.times_calls):
                    started = clock()
                ran = True
                if self.with_call:
                    value = self.fn(call, *args, **kwargs)
                else:
                    value = self.fn(*args, **kwargs)
            finally:
                if slot is not None:
                    slot.release()
        except BaseException as error:
            outcome = self.settle(call, gate, trial, started, error, None, ran)
            if outcome.kind is Kind.CANCELLED:
                raise
            return outcome
        return self.settle(call, gate, trial, started, None, value)

    def settle(self, call: Call, gate: Gate | None, trial: bool, started: float,
               error: BaseException | None, value: Any, ran: bool = True) -> Outcome:
        """Judge an attempt once (``_outcome.classify``) and tell its breaker.

        ``ran``: the attempt reached the function. A verdict that needs the policy's
        predicate is reached on the call's own tenacity state (made here on the first
        failure), which then holds this attempt: the retry decision reads it without
        building another.
        """
        policy = self.policy
        outcome = quick_verdict(policy, error, value)
        if outcome is None:
            state = call.state
            if state is None:
                state = call.state = self._seed(call)
            elif call.attempts > state.attempt_number:
                state.attempt_number = call.attempts
            state.outcome = Done(state.attempt_number, error, value)
            outcome = state.verdict = judged(policy, error, value, call.mark, state)
        if gate is not None:
            gate.finish(self.name, trial, outcome if ran else None, started,
                        call.started + call.seconds)
        if ADAPTIVE[0] and ran and self.limited:
            self.learn(outcome, started)
        return outcome

    def _gates(self, call: Call) -> _limits.Bulkhead | None:
        # The throttle's verdict, a rate-limit token, then a bulkhead slot, each waited
        # for only while the call's deadline allows. A token whose attempt never runs (its
        # wait interrupted, the bulkhead full) is given back.
        if self.throttle is not None:
            _limits.find_throttle(self.throttle).admit(self.name)
        rate = None
        if self.rate_limit is not None:
            rate = _limits.find_rate_limit(self.rate_limit)
            wait = rate.reserve(self.name, call.remaining())
            if wait:
                if _state.no_waits:
                    call.slept(wait)  # skipped, yet it counts against the deadline
                try:
                    waits.sleep(wait)
                except BaseException:
                    rate.give_back()
                    raise
        if self.bulkhead is None:
            return None
        slots = _limits.find_bulkhead(self.bulkhead)
        try:
            slots.acquire(self.name, call.remaining())
        except BaseException:
            if rate is not None:
                rate.give_back()
            raise
        return slots

    # -- async --------------------------------------------------------------------------------

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Run one async call."""
        return await self.arun(self.begin(), args, kwargs)

    def _watchdog(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The deadline watchdog of ``loop`` for this path's calls, now kept as ``_dog``.

        ``_dog`` holds it for the loop last served; its readers (``async_entry``,
        ``_watched``) call this only when it holds another loop's, or none yet.
        """
        dog = watchdog(loop, self.deadline, f"deadline of {self.deadline:g} s reached")
        self._dog = (weakref.ref(loop), dog)
        return dog

    def _watched(self, call: Call) -> tuple[Watchdog, Watch, asyncio.Task[Any]] | None:
        """Watch the task running ``call`` for its deadline; None off asyncio (trio).

        The loop's watchdog for this path's deadline (``_dog``, else ``_watchdog``), or one
        of its own for a ``brace.deadline`` scope's deadline.
        """
        try:
            loop = _running_loop()
            task = _current_task(loop)
        except RuntimeError:  # no asyncio loop running
            return None
        if task is None:
            return None
        if call.seconds == self.deadline:
            cached = self._dog
            dog = cached[1] if cached is not None and cached[0]() is loop else \
                self._watchdog(loop)
        else:  # a brace.deadline scope's: a watchdog (and a timer) of its own
            dog = Watchdog(loop, call.seconds, call.deadline_message())
        watch = dog.watch(task, loop, call.started)
        call.watch = (dog, watch)
        return dog, watch, task

    async def arun(self, call: Call, args: Any, kwargs: Any, gate: Gate | bool | None = None,
                   error: BaseException | None = None, value: Any = None) -> Any:
        """Run ``call`` of the async function, never past its deadline.

        On asyncio a per-loop watchdog cancels the task at the deadline; elsewhere (trio)
        an anyio cancel scope does. Either becomes a TimeoutError: the attempt's own
        outcome when it cut an attempt off, the call's end when it cut a sleep. On asyncio
        a healthy first attempt goes straight to the function, as in ``async_entry``.

        ``gate`` set: the first attempt already ran on ``async_entry``'s healthy path
        (through that gate, or none when True), watched as ``call.watch`` says, and ended
        in ``error`` or ``value``.
        """
        if gate is None:
            expired = call.expired()
            if expired is not None:
                raise expired
            watched = self._watched(call)
            if watched is None:  # not asyncio (trio): an anyio cancel scope
                outcome = await self._scoped(call, args, kwargs)
                if outcome.error is not None:
                    raise _trimmed(outcome.error)
                return outcome.value
            dog, watch, task = watched
        else:
            dog, watch = call.watch  # type: ignore[misc]
            task = watch[1]
        try:
            if gate is not None:
                call.attempts = 1
                gate = None if gate is True else gate
                first = (self.failed(call, gate, False, call.started, error, True)  # type: ignore[arg-type]
                         if error is not None else
                         self.settle(call, gate, False, call.started, None, value))  # type: ignore[arg-type]
                outcome = await self._loop(call, args, kwargs, first)
            else:
                # The first attempt: straight to the function when the breaker, the token and
                # the slot let it (the transports' healthy path), here rather than in a
                # coroutine of its own.
                # A gate kept ``fast`` is read here (``healthy``'s first test): in a
                # coroutine a call fewer is about 1,000 instructions fewer a request.
                kept = None if self.direct else self.gates.get(self.breaker)
                healthy = self.quick and (kept if kept is not None and kept.fast
                                          else self.direct or self.healthy())
                slot = self.take_now() if healthy and self.limited else True
                if not healthy or not slot:
                    # Through the gates, or raced by copies: the first attempt here too, and
                    # the loop only for a call that goes on.
                    outcome = await self._next_attempt(call, args, kwargs)
                    if not self.done_at_once(call, outcome):
                        outcome = await self._loop(call, args, kwargs, outcome)
                else:
                    call.attempts = 1
                    gate = None if healthy is True else healthy
                    started = clock() if ADAPTIVE[0] else 0.0
                    fn = self.fn
                    try:
                        try:
                            value = await (fn(call, *args, **kwargs) if self.with_call
                                           else fn(*args, **kwargs))
                        finally:
                            if slot is not True:
                                slot.release()
                    except BaseException as exc:
                        first = self.failed(call, gate, False, started, exc, True)
                    else:
                        check = self.check
                        if check is None or not check(value):
                            self.plain_success(call, gate, slot, started)
                            return value  # (the finally below releases the watch)
                        first = self.settle(call, gate, False, started, None, value)
                    outcome = await self._loop(call, args, kwargs, first)
        except asyncio.CancelledError as cancelled:
            cut = dog.timeout_error(watch, task, cancelled)  # cut off while waiting
            if cut is None:
                raise  # the caller's own cancellation: at once, untouched
            mark_exhausted(cut)  # the deadline ended the call
            raise cut from None
        finally:
            dog.release(watch)
            if dog.seconds != self.deadline:
                dog.disarm()  # a scope's own watchdog leaves no timer behind
        error = outcome.error
        if error is not None:
            if SCOPES[0] and outcome.kind is Kind.REFUSED:
                gave_up()  # a breaker, budget or limit refused the dependency: brace.web says so
            raise _trimmed(error)
        return outcome.value

    async def _scoped(self, call: Call, args: Any, kwargs: Any) -> Outcome:
        # Not asyncio (trio): an anyio cancel scope cuts the call off at its deadline; a
        # cancellation that is not the scope's own (the caller's) passes through untouched.
        import anyio

        with anyio.move_on_after(call.deadline.remaining()) as scope:
            call.scope = scope
            return await self._loop(call, args, kwargs)
        error = TimeoutError(call.deadline_message())
        mark_exhausted(error)  # the deadline ended the call
        raise error

    async def _loop(self, call: Call, args: Any, kwargs: Any,
                    first: Outcome | None = None) -> Outcome:
        # The attempts of an async call, from the first (or after ``first``, one made on
        # the healthy path) to the last: hedged when the policy says so.
        if first is not None:
            outcome = first
        else:
            outcome = await self._next_attempt(call, args, kwargs)
            if self.done_at_once(call, outcome):
                return outcome
        while _state.active and not self.once:
            wait = self.next_sleep(call, outcome, args, kwargs)
            if wait is None:
                break
            if self.discard is not None and outcome.error is None:
                await self.discard(outcome.value)
            if _state.no_waits:
                call.slept(wait)
            await waits.async_sleep(wait)
            outcome = await self._next_attempt(call, args, kwargs)
        self.finish(call)
        return outcome

    def _next_attempt(self, call: Call, args: Any, kwargs: Any) -> Coroutine[Any, Any, Outcome]:
        # The next attempt to await: raced by copies when the policy hedges.
        hedger = self.hedger
        if hedger is not None and _state.active:
            return hedger.race(call, self.aattempt, args, kwargs)
        return self.aattempt(call, args, kwargs)

    async def aattempt(self, call: Call, args: Any, kwargs: Any) -> Outcome:
        """One async attempt: breaker -> rate limit -> bulkhead -> attempt timeout -> call.

        The attempt timeout bounds the function alone, never the waits for a token or a
        slot. A cut by the call's deadline is the attempt's TimeoutError (the breaker
        counts it: the dependency did not answer in time); the caller's cancellation
        propagates, counted by nothing.
        """
        call.attempts += 1
        gate = None if self.breaker is None else self.gate()
        trial = ran = False
        started = 0.0
        try:
            if call.deadline_passed():
                raise TimeoutError(call.deadline_message())
            if gate is not None and not gate.healthy():
                trial = gate.enter(self.name, remaining=call.remaining())
            slot = await self._agates(call) if self.limited else None
            try:
                if ADAPTIVE[0] or (gate is not None and gate.times_calls):
                    started = clock()
                ran = True
                if self.attempt_timeout is not None:
                    value = await self._timed(call, args, kwargs)
                elif self.with_call:
                    value = await self.fn(call, *args, **kwargs)
                else:
                    value = await self.fn(*args, **kwargs)
            finally:
                if slot is not None:
                    slot.release()
        except BaseException as error:
            return self.failed(call, gate, trial, started, error, ran)
        return self.settle(call, gate, trial, started, None, value)

    def failed(self, call: Call, gate: Gate | None, trial: bool, started: float,
               error: BaseException, ran: bool) -> Outcome:
        """Judge an async attempt that raised ``error``; re-raise what must go on.

        A cut by the call's deadline is the attempt's TimeoutError; a cancellation goes
        on to whoever asked for it (the caller, a hedge race, trio's scope) once the gate
        has seen it.
        """
        converted, withdrawn = call.deadline_cut(error) if ran else (None, False)
        outcome = self.settle(call, gate, trial, started,
                              error if converted is None else converted, None, ran)
        if converted is not None and not withdrawn:
            raise error  # a hedged copy's or trio's scope's: the cancellation goes on
        if outcome.kind is Kind.CANCELLED:
            raise error
        return outcome

    async def _timed(self, call: Call | None, args: Any, kwargs: Any) -> Any:
        # The function, bounded by attempt_timeout when set: an asyncio watchdog, or an
        # anyio cancel scope off asyncio. A cut is a transient TimeoutError.
        fn = self.fn
        timeout = self.attempt_timeout
        assert timeout is not None  # aattempt calls the function itself without one
        if self.with_call:
            args = (call, *args)
        loop, task = _asyncio_task()
        if loop is None or task is None:
            import anyio

            with anyio.move_on_after(timeout):
                return await fn(*args, **kwargs)
            raise TimeoutError(f"attempt timed out after {timeout:g} s")
        # The loop last served and its watchdog for attempts of this length, as for the
        # deadline: no look-up and no message built per attempt.
        cached = self._attempt_dog
        if cached is None or cached[0]() is not loop:
            cached = self._attempt_dog = (weakref.ref(loop), watchdog(
                loop, timeout, f"attempt timed out after {timeout:g} s"))
        dog = cached[1]
        watch = dog.watch(task, loop)
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError as cancelled:
            error = dog.timeout_error(watch, task, cancelled)
            if error is not None:
                raise error from None
            raise
        finally:
            dog.release(watch)

    async def _agates(self, call: Call) -> _limits.Bulkhead | None:
        # As _gates, waiting in the running async library.
        if self.throttle is not None:
            _limits.find_throttle(self.throttle).admit(self.name)
        rate = None
        if self.rate_limit is not None:
            rate = _limits.find_rate_limit(self.rate_limit)
            wait = rate.reserve(self.name, call.remaining())
            if wait:
                if _state.no_waits:
                    call.slept(wait)  # skipped, yet it counts against the deadline
                try:
                    await waits.async_sleep(wait)
                except BaseException:
                    rate.give_back()  # cancelled while waiting: the token was never used
                    raise
        if self.bulkhead is None:
            return None
        slots = _limits.find_bulkhead(self.bulkhead)
        try:
            await slots.aacquire(self.name, call.remaining())
        except BaseException:
            if rate is not None:
                rate.give_back()  # refused or cancelled in the queue: no attempt ran
            raise
        return slots


def decorate(policy: Policy, fn: Callable[..., Any]) -> Any:
    """``fn`` under ``policy``, outer to inner: fallback -> retry -> per-attempt layers -> call.

    Raises:
        TypeError: ``fn`` is not a function, or ``attempt_timeout`` is set on a sync one.
    """
    if isinstance(fn, tenacity.retry_base) or not callable(fn):
        raise TypeError(f"a policy decorates a function, got {fn!r}")
    name = _validate.callable_name(fn)
    asynchronous = _validate.is_async(fn)
    _validate.decoratable(fn, name, asynchronous, policy.attempt_timeout, policy.hedge_after)
    # Chaos (brace.testing.chaos) runs inside every attempt, so the layers meet what it
    # injects as they would a real fault; the wrapper is named after ``fn`` all the same.
    attempt = fn if policy.chaos is None else policy.chaos.wrap(fn)
    path = Path(policy, attempt, name=name, breaker=policy.breaker, asynchronous=asynchronous)
    # The wrapper runs the call itself: a give-up's traceback shows at most two brace
    # frames (the wrapper's and run's) above the function's own.
    wrapper: Any = path.async_entry() if asynchronous else path.entry()
    functools.update_wrapper(wrapper, fn)
    # One statistics dict, shared with the retry layer (tenacity issue 519).
    wrapper.statistics = path.stats
    return wrapper

