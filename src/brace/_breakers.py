"""Named pybreaker circuit breakers, and the gate every attempt passes through.

pybreaker's ``call`` holds the breaker's lock while the function runs (serialising every
call). ``Gate`` keeps pybreaker as the state machine but runs the attempt outside that lock:
it admits or rejects, the attempt runs, and the outcome is recorded through ``breaker.call``
(counters, listeners, ``exclude`` and storage stay pybreaker's). Decorators and transports
both call the gate.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, NamedTuple

import pybreaker

from brace import _budget, _config, _events, _validate
from brace._deadline import clock
from brace._outcome import BraceError, Kind, Outcome

__all__ = [
    "DEFAULTS",
    "BreakerInfo",
    "CircuitOpenError",
    "FailureRatio",
    "Gate",
    "breaker",
    "breakers",
    "forget",
    "gate_for",
    "reset",
]

#: What a breaker named before it was configured gets (and what ``explain`` shows for one).
DEFAULTS = MappingProxyType({"fail_max": 5, "reset_timeout": 30.0, "success_threshold": 1})
_CLOSED, _OPEN, _HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN


# A Redis-shared breaker's local copy is timed on the clock its storage uses.
_monotonic = time.monotonic


def _utcnow() -> datetime:
    # pybreaker stores opened_at as an aware UTC datetime; simulations replace this clock.
    return datetime.now(timezone.utc)


class CircuitOpenError(BraceError, pybreaker.CircuitBreakerError):
    """A circuit breaker rejected the call without running it.

    A ``brace.BraceError`` and a ``pybreaker.CircuitBreakerError``; out of brace's httpx
    transports and clients also an ``httpx.TransportError``.

    Attributes:
        breaker: The breaker's name.
        remaining_s: Seconds until the breaker admits a trial call (0 when a trial is
            already running in half-open state).
    """

    __module__ = "brace"

    def __init__(self, breaker: str, remaining_s: float) -> None:
        self.breaker = breaker
        self.remaining_s = max(0.0, remaining_s)
        detail = (f"retry in {self.remaining_s:.2f} s" if self.remaining_s
                  else "a trial call is in progress")
        super().__init__(f"circuit breaker {breaker!r} is open: {detail}")


class BreakerInfo(NamedTuple):
    """A named breaker's configuration and current state, as ``brace.breakers()`` lists it."""

    name: str
    state: str
    failures: int
    fail_max: int
    reset_timeout: float
    storage: str
    forced: bool = False  # held open by an operator (``force_open()``) until ``close()``


BreakerInfo.__module__ = "brace"  # a NamedTuple's body may hold fields only


class _Listener(pybreaker.CircuitBreakerListener):
    """Turns state changes into ``breaker.state_changed`` events; keeps the gate current."""

    def __init__(self, gate: Gate | None = None) -> None:
        self.gate = gate

    def state_change(self, cb: pybreaker.CircuitBreaker,
                     old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        old = old_state.name if old_state else None
        if old != new_state.name:  # close() on a closed breaker is no transition
            tripped_by = (self.gate.recording if self.gate is not None
                          and new_state.name == _OPEN else None)
            _events.breaker_state_changed(cb.name or "<unnamed>", old, new_state.name,
                                          tripped_by)
            if new_state.name == _CLOSED and self.gate is not None and self.gate._ratio:
                self.gate._ratio.reset()  # a closed breaker starts a fresh window
        if new_state.name == _CLOSED or self.gate is None:
            self._refresh()
        else:  # pybreaker's open() notifies before it writes the storage refresh() reads
            self.gate.fast, self.gate.fresh_until = False, 0.0

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self._refresh()

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self._refresh()

    def _refresh(self) -> None:
        if self.gate is not None:
            self.gate.refresh()


class _Breaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker, telling brace's gate when its listeners change.

    Also what operators isolate a dependency with: ``force_open()`` holds it open (no
    trial, whatever ``reset_timeout`` says) until ``close()``; shared through Redis, every
    process obeys within its ``sync_interval``.
    """

    listener: _Listener

    def force_open(self) -> None:
        """Hold the breaker open, fleet-wide when shared, until ``close()``.

        Raises the Redis client's error when a shared breaker's Redis does not answer
        (nothing is forced then: an operator must know).
        """
        gate = self.listener.gate
        assert gate is not None
        gate.force_open()

    def close(self) -> None:
        """Close the breaker (pybreaker's), ending a forced open state too."""
        gate = self.listener.gate
        if gate is not None:
            gate.forced = False
        super().close()

    def add_listener(self, listener: pybreaker.CircuitBreakerListener) -> None:
        """Register a listener (pybreaker's), then re-check the healthy path."""
        super().add_listener(listener)
        self.listener._refresh()

    def remove_listener(self, listener: pybreaker.CircuitBreakerListener) -> None:
        """Unregister a listener (pybreaker's), then re-check the healthy path."""
        super().remove_listener(listener)
        self.listener._refresh()


class CountedResult(Exception):
    """A returned result the policy retries (say a 503 response), as a breaker failure."""


class SlowCall(Exception):
    """A call slower than the breaker's ``slow_call``: it counts as a failure."""

    def __init__(self, took: float, limit: float) -> None:
        super().__init__(f"took {took:.3f} s, slow_call is {limit:g} s")


_NO_SUCCESS_HOOK = pybreaker.CircuitBreakerListener.success


def _storage_of(cb: pybreaker.CircuitBreaker) -> pybreaker.CircuitBreakerStorage:
    # The one read of a pybreaker internal: a breaker built by the user (breaker=cb) exposes
    # no public accessor for its storage, which holds opened_at (pybreaker issue 24 asks
    # for the open time). brace's own breakers never come here: brace made their storage.
    # Pinned by tests/test_layout.py::test_pybreaker_storage_of_a_breaker_built_elsewhere.
    return cb._state_storage


def _reraise(exc: BaseException) -> None:
    raise exc


def _noop() -> None:
    pass


class FailureRatio:
    """Open at ``ratio`` failures among at least ``min_calls`` calls in the window.

    The window is a retry budget's ``_budget.Window`` counting failures; shared through
    Redis, the fleet's counts decide.
    """

    def __init__(self, ratio: float, min_calls: int, window: _budget.Window,
                 shared: Any) -> None:
        self.ratio, self.min_calls, self.window, self.shared = ratio, min_calls, window, shared

    def tally(self, failure: BaseException | None, until: float = math.inf) -> bool:
        """Count one settled call (due by ``until``); True when the failures reach the ratio."""
        window = self.window
        if failure is None:
            window.call(until)
            return False
        with window.lock:
            totals = None
            if self.shared is not None:  # the fleet's window, in one round trip
                totals = self.shared.failure(window.take_pending())
            if totals is None:
                window.flush()
                now = clock()
                bucket = window.bucket(now)
                bucket[1] += 1
                bucket[2] += 1
                totals = window.totals(now)
        calls, failures = totals
        return bool(calls >= self.min_calls and failures >= self.ratio * calls)

    def reset(self) -> None:
        """Forget the window (locally and, when shared, in Redis)."""
        self.window.reset()
        if self.shared is not None:
            self.shared.reset()


class Gate:
    """Admits attempts to one pybreaker breaker and records their outcomes through it."""

    def __init__(self, cb: pybreaker.CircuitBreaker, storage: pybreaker.CircuitBreakerStorage,
                 ratio: FailureRatio | None = None,
                 slow_call: float | None = None) -> None:
        self.breaker = cb
        self._ratio = ratio  # also open on a failure ratio over a sliding window
        self._slow = slow_call  # a call slower than this (seconds) counts as a failure
        self.storage = storage
        self.name = cb.name or f"<breaker {id(cb):x}>"
        self._lock = threading.Lock()
        self._trial = False  # a half-open trial call is in flight in this process
        self.forced = False  # held open here (a shared breaker's storage knows its own)
        # A success that changes nothing need not be recorded when the storage is read
        # locally (in memory, or brace's Redis storage and its local copy).
        self._in_memory = (type(storage) is pybreaker.CircuitMemoryStorage
                           or getattr(storage, "local_reads", False) is True)
        self._fleet = getattr(storage, "acquire_trial", None)  # one trial across processes
        # A shared storage's bound on its Redis reads by the call's deadline (brace._redis).
        self._within = getattr(storage, "within", None)
        # Whether a call may skip the gate: closed, nothing counted, nobody listening for
        # successes. Kept up to date by brace's listener on brace's own breakers; a breaker
        # built elsewhere may change unseen, so its calls always take the checked path.
        self._watched = isinstance(cb, _Breaker)
        self._memory = type(storage) is pybreaker.CircuitMemoryStorage
        self.recording: tuple[str, BaseException] | None = None  # the failure being recorded
        self.fast = False
        # A Redis-shared breaker is healthy as of its local copy, until the copy is due for
        # a refresh: the healthy path checks the clock against this instead of the flag.
        self.fresh_until = 0.0
        # What a plain success on the healthy path still records: a failure-ratio breaker
        # counts the call in its window (one increment), given when the call must end (a
        # shared window's batch goes to Redis only in time) and when it began; None for
        # every other breaker.
        self.on_success: Callable[[float, float], object] | None = (
            None if ratio is None else ratio.window.call)
        # Its window's tally, which a caller holding the time may add a call to itself.
        self.tally: list[float] | None = None if ratio is None else ratio.window.tally
        if hasattr(storage, "on_refresh"):
            storage.on_refresh = self.refresh
        self.refresh()

    def refresh(self) -> None:
        """Re-check whether calls may take the healthy path."""
        # A slow-call breaker times every call: it has no healthy path. A ratio breaker's
        # healthy path counts the call (``on_success``) and nothing else.
        quiet = self._watched and self._slow is None and self.quiet()
        if self._memory:
            self.fast = quiet
        else:
            self.fresh_until = getattr(self.storage, "fresh_until", 0.0) if quiet else 0.0

    def remaining_open(self) -> float:
        """Seconds until an open breaker may admit a trial call."""
        opened_at = self.storage.opened_at
        if opened_at is None:
            return 0.0
        reopen = opened_at + timedelta(seconds=self.breaker.reset_timeout)
        return (reopen - _utcnow()).total_seconds()

    def is_forced(self) -> bool:
        """Whether an operator holds the breaker open (``force_open()``, CLI ``open``)."""
        return self.forced or getattr(self.storage, "forced", False) is True

    def force_open(self) -> None:
        """Hold the breaker open until ``close()`` (shared: fleet-wide, atomically)."""
        force = getattr(self.storage, "force", None)
        with self._lock:
            if force is not None:
                force(_OPEN)  # raises when Redis does not answer: nothing is forced
                self.breaker.state  # noqa: B018 - syncs pybreaker (and its listeners)
            else:
                self.forced = True
                if self.breaker.current_state != _OPEN:
                    self.breaker.open()
                else:
                    self.storage.opened_at = _utcnow()
        self.refresh()

    def enter(self, callable_name: str, *, remaining: float = math.inf) -> bool:
        """Admit an attempt, or raise CircuitOpenError. Return True for the half-open trial.

        ``remaining`` is the seconds the call has left. A breaker shared through Redis asks
        Redis only with at least its ``redis_timeout`` left; with less it decides from its
        local copy, however old (it is refreshed by the next call with time to spare), and
        refuses a trial that is due (``CircuitOpenError``, 0 s): the fleet's one trial is
        taken in Redis. Nor does it wait longer than ``remaining`` for another thread's
        round trip.
        """
        within = self._within
        if within is None or remaining == math.inf:
            return self._enter(callable_name, remaining)
        with within(remaining):
            return self._enter(callable_name, remaining)

    def _enter(self, callable_name: str, left: float) -> bool:
        if self.storage.state == _CLOSED:
            return False  # closed in storage: nothing to wait for, no lock needed
        with self._locked(callable_name, left):
            # `.state` syncs pybreaker's cached state with its (shared) storage, and
            # notifies listeners of a change made elsewhere.
            state = self.breaker.state.name
            if state == _CLOSED:
                return False
            if self.is_forced():
                self._reject(callable_name, self.breaker.reset_timeout)
            if state == _OPEN:
                storage = self.storage
                if storage.opened_at is None:
                    # Open without an opening time: Redis is unreachable and its fallback
                    # state is "open", or the keys were reset. Start the clock; fail fast.
                    storage.opened_at = _utcnow()
                    self._reject(callable_name, self.breaker.reset_timeout)
                remaining = self.remaining_open()
                if remaining > 0:
                    self._reject(callable_name, remaining)
                if self._fleet is None:
                    self.breaker.half_open()
            if self._trial:
                self._reject(callable_name, 0.0)  # a trial runs here
            if self._fleet is not None:
                # The fleet's one trial: reopening's end and the lease in one Lua step.
                if not self._fleet(_utcnow().timestamp(), self.breaker.reset_timeout):
                    self._refused_by_fleet(callable_name)
                    return False  # the fleet had closed it meanwhile: a normal call
                self.breaker.half_open()  # local only: Redis has it with the lease
            self._trial = True
            return True

    @contextlib.contextmanager
    def _locked(self, callable_name: str, left: float) -> Iterator[None]:
        # The gate's lock, waited for only while the call has time (``left`` s): its holder
        # may be in a Redis round trip (the fleet's trial).
        wait = -1 if left >= threading.TIMEOUT_MAX else max(0.0, left)
        if not self._lock.acquire(timeout=wait):
            self._reject(callable_name, 0.0)
        try:
            yield
        finally:
            self._lock.release()

    def _refused_by_fleet(self, callable_name: str) -> None:
        # The storage's copy now holds the fleet's answer: closed (admit), forced, open
        # until some time, or half-open with a trial elsewhere (reject).
        state = self.breaker.state.name
        if state == _CLOSED:
            return
        if self.is_forced():
            self._reject(callable_name, self.breaker.reset_timeout)
        remaining = self.remaining_open() if state == _OPEN else 0.0
        self._reject(callable_name, max(0.0, remaining))

    def _reject(self, callable_name: str, remaining: float) -> None:
        _events.breaker_rejected(self.name, callable_name, remaining)
        raise CircuitOpenError(self.name, remaining)

    def healthy(self) -> bool:
        """Whether an attempt may skip ``enter``: closed with nothing counted, as of now.

        In memory a flag kept current by brace's listener; shared through Redis, the local
        copy's freshness (at most ``sync_interval`` old).
        """
        return self.fast or self.fresh_until > _monotonic()

    @property
    def times_calls(self) -> bool:
        """Whether attempts are timed (a ``slow_call`` breaker counts slow ones as failures)."""
        return self._slow is not None

    def finish(self, name: str, trial: bool, outcome: Outcome | None, started: float,
               until: float = math.inf) -> None:
        """Record one attempt of the callable ``name``, as its ``Outcome`` says.

        ``outcome`` is None when the attempt never reached the function (a rate limit or
        bulkhead refused it). A cancellation, an interrupt or a refusal gives no verdict on
        the dependency: nothing is counted, but a trial ends so another one may start.

        ``until`` is when the call must end (on ``_deadline.clock``). A breaker shared
        through Redis writes there only while its ``redis_timeout`` fits before then;
        otherwise the outcome is counted in the local copy alone, and a trial's lease,
        no longer renewed, lapses on its own (``_redis.TRIAL_LEASE_S``) for the next trial.
        """
        within = self._within
        if within is None or until == math.inf:
            self._finish(name, trial, outcome, started, until)
        else:
            with within(until - clock()):
                self._finish(name, trial, outcome, started, until)

    def _finish(self, name: str, trial: bool, outcome: Outcome | None, started: float,
                until: float) -> None:
        if outcome is None or outcome.kind is Kind.CANCELLED or outcome.kind is Kind.REFUSED:
            if trial:
                self.release()
            return
        failure: BaseException | None = None
        if outcome.failure:
            failure = (outcome.error if outcome.error is not None
                       else CountedResult(_events.describe_result(outcome.value)))
        elif self._slow is not None and clock() - started >= self._slow:
            failure = SlowCall(clock() - started, self._slow)
        elif not trial and (self.fast or self.quiet()):
            # A quiet, healthy call has nothing to record (a ratio window still counts it);
            # ``fast`` is that same check, kept current by the listener.
            if self._ratio is not None:
                self._ratio.window.call(until, started)
            return
        self.record(trial, failure, name)  # not counted: like pybreaker's exclude, a success
        if self._ratio is not None and self._ratio.tally(failure, until):
            self.recording = (name, failure)  # type: ignore[assignment]
            try:
                if self.breaker.current_state == _CLOSED:
                    self.breaker.open()  # too many failures among the recent calls
            finally:
                self.recording = None
                self.refresh()

    def record(self, trial: bool, failure: BaseException | None, name: str = "") -> None:
        """Record one outcome: a ``failure`` (of ``name``) counts, None is a success."""
        cb = self.breaker
        if failure is None and not trial and self.quiet():
            return
        try:
            state = cb.current_state
            # A call admitted while closed that ends after the breaker opened is stale:
            # only the trial decides what happens to an open or half-open breaker.
            if state != (_HALF_OPEN if trial else _CLOSED):
                return
            if failure is None:
                cb.call(_noop)
            else:
                # Read by the listener should this failure open the breaker.
                self.recording = (name, failure)
                cb.call(_reraise, failure)
        except pybreaker.CircuitBreakerError:
            pass  # another caller reopened it meanwhile, or pybreaker's own trip error
        except BaseException as exc:
            if exc is not failure:
                raise
        finally:
            self.recording = None
            if trial:
                self.release()
            self.refresh()

    def quiet(self) -> bool:
        """True when pybreaker would record a success as nothing: the path may skip it.

        Closed, read locally, no failure counted, no listener that wants successes.
        """
        storage = self.storage
        return (self._in_memory and not storage.counter and storage.state == _CLOSED
                and all(type(listener).success is _NO_SUCCESS_HOOK
                        or isinstance(listener, _Listener)
                        for listener in self.breaker.listeners))

    def is_open(self) -> bool:
        """Whether the breaker is open now (an attempt would be rejected or be the trial)."""
        return self.storage.state == _OPEN

    def release(self) -> None:
        """End a trial (recorded, cancelled or interrupted): admit a new trial."""
        with self._lock:
            if self._trial and self._fleet is not None:
                self.storage.release_trial()  # type: ignore[attr-defined]
            self._trial = False

    def info(self) -> BreakerInfo:
        """The breaker's settings and state."""
        cb = self.breaker
        return BreakerInfo(self.name, cb.current_state, cb.fail_counter, cb.fail_max,
                           cb.reset_timeout, self.storage.name, self.is_forced())


#: Every named breaker's gate (the call path reads it directly: one dict look-up).
registry: dict[str, Gate] = {}
_settings: dict[str, dict[str, Any]] = {}
_by_object: weakref.WeakKeyDictionary[pybreaker.CircuitBreaker, Gate] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
#: Bumped (under the lock) whenever a breaker is made or forgotten: a gate kept from the
#: registry is still its gate while this has not changed.
changes = [0]
_UNSET: Any = object()


def breaker(
    name: str,
    *,
    fail_max: int = _UNSET,
    reset_timeout: _validate.Duration = _UNSET,
    success_threshold: int = _UNSET,
    exclude: Iterable[type[BaseException] | Callable[[BaseException], bool]] = _UNSET,
    redis: Any = _UNSET,
    redis_url: str = _UNSET,
    fallback_state: str = _UNSET,
    sync_interval: _validate.Duration = _UNSET,
    failure_ratio: float = _UNSET,
    min_calls: int = _UNSET,
    window: _validate.Duration = _UNSET,
    slow_call: _validate.Duration = _UNSET,
    redis_timeout: _validate.Duration = _UNSET,
) -> pybreaker.CircuitBreaker:
    """Return the process-wide ``pybreaker.CircuitBreaker`` called ``name``, creating it once.

    Args:
        name: The breaker's name: the same name is the same breaker everywhere.
        fail_max: Consecutive counted failures that open it (int in 1-10**9, default 5).
        reset_timeout: How long it stays open before one trial call: seconds or a
            ``datetime.timedelta`` (0.001-1e7 s, default 30).
        success_threshold: Successful trials needed to close it again (int in 1-10**9,
            default 1).
        exclude: Exception types or predicates that never count (pybreaker ``exclude``).
        redis: A ``redis.Redis`` client: state is shared by every process using the name.
        redis_url: Same as ``redis=`` with a client brace builds (one connection pool per
            URL and ``redis_timeout`` per process).
        fallback_state: While Redis is unreachable: ``"closed"`` (default) goes on as a
            local, in-process breaker; ``"open"`` fails fast.
        sync_interval: With Redis: the local copy of the shared state is at most this old
            (seconds or a ``timedelta``, 0.01-60 s, default 1): a healthy call makes no
            Redis round trip.
        failure_ratio: Also open when failures reach this share (0-1] of the calls of the
            last ``window`` (default 30 s), once ``min_calls`` (default 20) were made;
            counted fleet-wide when shared through Redis.
        min_calls: The fewest calls in the window a ratio is judged on (int in 1-10**9,
            default 20).
        window: The failure-ratio window (seconds or a ``timedelta``, 0.01-1e7 s).
        slow_call: A call slower than this (seconds or a ``timedelta``, > 0) counts as a
            failure.
        redis_timeout: With Redis: the longest brace waits for one Redis operation,
            whatever client is passed (seconds or a ``timedelta``, 0.001-60 s, default
            0.25). A call with less time left than this decides from the local copy.

    Raises:
        ValueError: a setting is out of range, or the breaker exists with other settings.
        TypeError: ``name`` is not a non-empty str, or both ``redis`` and ``redis_url``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"breaker name must be a non-empty str, got {_validate.shown(name)}")
    given = {key: value for key, value in {
        "fail_max": fail_max, "reset_timeout": reset_timeout,
        "success_threshold": success_threshold, "exclude": exclude, "redis": redis,
        "redis_url": redis_url, "fallback_state": fallback_state,
        "sync_interval": sync_interval, "failure_ratio": failure_ratio,
        "min_calls": min_calls, "window": window,
        "slow_call": slow_call, "redis_timeout": redis_timeout}.items() if value is not _UNSET}
    with _registry_lock:
        existing = registry.get(name)
        if existing is not None:
            old = _settings[name]
            conflicts = sorted(k for k, v in given.items()
                               if _validate.plain(old.get(k, _UNSET)) != _validate.plain(v))
            if conflicts:
                shown = ", ".join(f"{k}={old.get(k, '<default>')!r}" for k in conflicts)
                raise ValueError(f"breaker {name!r} already exists with {shown}; configure a "
                                 "breaker once, before its first use")
            return existing.breaker
        gate = registry[name] = _create(name, given)
        _settings[name] = given
        changes[0] += 1
        return gate.breaker


def _create(name: str, given: dict[str, Any]) -> Gate:
    settings = _validate.breaker_settings(given, DEFAULTS)
    storage: pybreaker.CircuitBreakerStorage = pybreaker.CircuitMemoryStorage(_CLOSED)
    shared_window, ratio = None, None
    if "redis_url" in given or "redis" in given:
        from brace import _redis  # the redis client only when a breaker is shared

        storage, shared_window = _redis.shared_storage(name, given, settings)
    if settings["failure_ratio"] is not None:
        counts = (_budget.Window(settings["window"]) if shared_window is None
                  else _budget.Window(settings["window"], shared_window.add_calls,
                                      timeout=shared_window.timeout))
        ratio = FailureRatio(settings["failure_ratio"], settings["min_calls"], counts,
                                     shared_window)
    listener = _Listener()
    # The call that trips the breaker raises its own error: users see the real cause.
    cb = _Breaker(fail_max=settings["fail_max"], reset_timeout=settings["reset_timeout"],
                  success_threshold=settings["success_threshold"], exclude=settings["exclude"],
                  listeners=[listener], state_storage=storage, name=name,
                  throw_new_error_on_trip=False)
    cb.listener = listener
    listener.gate = Gate(cb, storage, ratio, settings["slow_call"])
    return listener.gate


def gate_for(spec: str | pybreaker.CircuitBreaker) -> Gate:
    """The gate of a named breaker (created with defaults on first use) or of a breaker object."""
    gate = registry.get(spec) if type(spec) is str else None
    if gate is not None:
        return gate
    if isinstance(spec, str):
        spec = breaker(spec)  # its gate below: the name may be forgotten meanwhile
    if isinstance(spec, _Breaker) and spec.listener.gate is not None:
        # One of brace's breakers (by name, kept, or forgotten by brace.forget): its gate.
        return spec.listener.gate
    with _registry_lock:
        gate = _by_object.get(spec)
        if gate is None:
            gate = _by_object[spec] = Gate(spec, _storage_of(spec))
            spec.add_listener(_Listener(gate))
        return gate


def find(name: str) -> Gate | None:
    """The gate of the breaker called ``name`` if it exists (looking does not create it)."""
    return registry.get(name)


def forget(name: str) -> bool:
    """Forget the breaker called ``name`` (its state goes with it); False if there was none.

    The next ``brace.breaker(name, ...)`` creates it afresh. A shared breaker's state in
    Redis stays for the other processes.
    """
    with _registry_lock:
        gate = registry.pop(name, None)
        _settings.pop(name, None)
        changes[0] += 1
    if gate is None:
        return False
    gate.release()
    return True


_config.forgetters.append(forget)


def breakers() -> dict[str, BreakerInfo]:
    """Every named breaker of this process with its current state, by name."""
    with _registry_lock:
        gates = list(registry.values())
    return {gate.name: gate.info() for gate in gates}


def reset() -> None:
    """Close every named breaker (shared storage included) and forget them all."""
    with _registry_lock:
        gates = list(registry.values())
        registry.clear()
        _settings.clear()
        changes[0] += 1
    for gate in gates:
        gate.release()
        gate.breaker.close()
    shared = sys.modules.get("brace._redis")  # loaded only if something was shared
    if shared is not None:
        shared.reset()
    transports = sys.modules.get("brace._transport")  # its per-authority breakers' registry
    if transports is not None:
        with transports._authorities_lock:
            transports._authorities.clear()
