"""Named pybreaker circuit breakers, Redis storage, and gating outside pybreaker's lock.

``pybreaker.CircuitBreaker.call`` holds the breaker's lock while the guarded function runs,
which serialises every call through one breaker. brace keeps pybreaker as the state machine
and storage but runs the function outside that lock: :class:`Gate` admits or rejects a call
(moving an expired open breaker to half-open, admitting one trial at a time), the function
runs, and the outcome is recorded through ``breaker.call`` so counters, listeners, ``exclude``
and storage stay pybreaker's.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import pybreaker

from brace import _events, _validate

__all__ = [
    "BreakerInfo",
    "CircuitOpenError",
    "Gate",
    "breaker",
    "breakers",
    "gate_for",
    "reset",
]

_UTC = timezone.utc
#: Seconds Redis may take per operation before the breaker falls back (see README).
REDIS_TIMEOUT_S = 0.25
#: After a Redis error, storage calls fail at once for this long instead of each waiting
#: for its own timeout: a frozen Redis must not cost every call several timeouts.
REDIS_COOLDOWN_S = 1.0


def _utcnow() -> datetime:
    # pybreaker stores opened_at as an aware UTC datetime; tests replace this clock.
    return datetime.now(_UTC)


class CircuitOpenError(pybreaker.CircuitBreakerError):
    """A circuit breaker rejected the call without running it.

    Attributes:
        breaker: The breaker's name.
        remaining_s: Seconds until the breaker admits a trial call (0 when a trial is
            already running in half-open state).
    """

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


class _Listener(pybreaker.CircuitBreakerListener):
    """Turns pybreaker's state changes into ``breaker.state_changed`` events."""

    def state_change(self, cb: pybreaker.CircuitBreaker,
                     old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        old = old_state.name if old_state else None
        if old != new_state.name:  # close() on a closed breaker is no transition
            _events.breaker_state_changed(cb.name or "<unnamed>", old, new_state.name)


class _StorageErrorLog:
    """Stands in for CircuitRedisStorage's logger: its ``exception()`` becomes an event."""

    def __init__(self, breaker: str) -> None:
        self.breaker = breaker

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        _events.breaker_storage_error(self.breaker, message, sys.exc_info()[1])


class _CoolingRedis:
    """A Redis client stand-in that, after an error, fails fast for REDIS_COOLDOWN_S.

    pybreaker makes several Redis calls per guarded call; each would otherwise wait out
    its socket timeout against a Redis that accepts connections but never answers.
    """

    def __init__(self, client: Any) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        self._client = client
        self._errors: tuple[type[BaseException], ...] = (RedisError,)
        self._unavailable = RedisConnectionError
        self._retry_at = 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            if time.monotonic() < self._retry_at:
                raise self._unavailable("Redis unavailable (cooling down after an error)")
            try:
                return method(*args, **kwargs)
            except self._errors:
                self._retry_at = time.monotonic() + REDIS_COOLDOWN_S
                raise

        return call


class _RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, reporting errors as ``breaker.storage_error`` events."""

    def __init__(self, name: str, client: Any, fallback_state: str) -> None:
        # pybreaker logs Redis errors through `self.logger.exception`; route them to events.
        self.logger = _StorageErrorLog(name)  # type: ignore[assignment]
        super().__init__(pybreaker.STATE_CLOSED, _CoolingRedis(client),  # type: ignore[arg-type]
                         namespace=f"brace:{name}", fallback_circuit_state=fallback_state)

    def _initialize_redis_state(self, state: str) -> None:
        # pybreaker lets a Redis error here escape the constructor; a breaker must not crash
        # start-up because Redis is down (the state getter re-initialises the keys later).
        try:
            super()._initialize_redis_state(state)
        except Exception:
            self.logger.exception("RedisError: could not initialise breaker state")


def _redis_client(url: str) -> Any:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("redis_url= needs the redis client: pip install 'brace[redis]'") from exc
    # Bounded, and no client-side retries: a dead Redis must cost a call milliseconds.
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                socket_connect_timeout=REDIS_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0))


class CountedResult(Exception):
    """A returned result the policy retries (say a 503 response), as a breaker failure."""

    def __init__(self, description: str) -> None:
        super().__init__(description)


_NO_SUCCESS_HOOK = pybreaker.CircuitBreakerListener.success


def _reraise(exc: BaseException) -> None:
    raise exc


def _noop() -> None:
    return None


class Gate:
    """Admits calls to one pybreaker breaker and records their outcomes through it."""

    def __init__(self, cb: pybreaker.CircuitBreaker) -> None:
        self.breaker = cb
        self.name = cb.name or f"<breaker {id(cb):x}>"
        self._lock = threading.Lock()
        self._trial = False  # a half-open trial call is in flight in this process
        self._storage = cb._state_storage
        self._in_memory = type(self._storage) is pybreaker.CircuitMemoryStorage
        self._listeners_seen = -1  # how many listeners `_quiet_listeners` was computed for
        self._quiet_listeners = False

    def remaining_open(self) -> float:
        """Seconds until an open breaker may admit a trial call."""
        opened_at = self.breaker._state_storage.opened_at
        if opened_at is None:
            return 0.0
        reopen = opened_at + timedelta(seconds=self.breaker.reset_timeout)
        return (reopen - _utcnow()).total_seconds()

    def enter(self, callable_name: str) -> bool:
        """Admit a call, or raise CircuitOpenError. Return True for the half-open trial."""
        if (self.breaker._state.name == pybreaker.STATE_CLOSED
                and self._storage.state == pybreaker.STATE_CLOSED):
            return False  # closed here and in storage: nothing to sync, no lock needed
        with self._lock:
            # `.state` syncs pybreaker's cached state with its storage (another process
            # may have tripped a Redis-backed breaker) and notifies listeners of changes.
            state = self.breaker.state.name
            if state == pybreaker.STATE_CLOSED:
                return False
            if state == pybreaker.STATE_OPEN:
                storage = self.breaker._state_storage
                if storage.opened_at is None:
                    # Open without an opening time: Redis is unreachable and its fallback
                    # state is "open", or the keys were reset. Start the clock; fail fast.
                    storage.opened_at = _utcnow()
                    self._reject(callable_name, self.breaker.reset_timeout)
                remaining = self.remaining_open()
                if remaining > 0:
                    self._reject(callable_name, remaining)
                self.breaker.half_open()
            if self._trial:
                self._reject(callable_name, 0.0)
            self._trial = True
            return True

    def _reject(self, callable_name: str, remaining: float) -> None:
        _events.breaker_rejected(self.name, callable_name, remaining)
        raise CircuitOpenError(self.name, remaining)

    def record(self, trial: bool, failure: BaseException | None) -> None:
        """Record one outcome: ``failure`` counts against the breaker, None is a success."""
        cb = self.breaker
        if failure is None and not trial and self.quiet_success():
            return
        try:
            state = cb.current_state
            # A call admitted while closed that ends after the breaker opened is stale:
            # only the trial decides what happens to an open or half-open breaker.
            if state != (pybreaker.STATE_HALF_OPEN if trial else pybreaker.STATE_CLOSED):
                return
            if failure is None:
                cb.call(_noop)
            else:
                cb.call(_reraise, failure)
        except pybreaker.CircuitBreakerError:
            pass  # another caller reopened it meanwhile, or pybreaker's own trip error
        except BaseException as exc:
            if exc is not failure:
                raise
        finally:
            if trial:
                self.release()

    def quiet_success(self) -> bool:
        """Return True when pybreaker would record a success as nothing at all.

        Closed, in memory, no failures counted, and no listener that wants successes:
        ``_handle_success`` would only reset a counter that is already zero, so the
        healthy path skips pybreaker's lock and calls.
        """
        if not self._in_memory:
            return False
        storage = self._storage
        if storage.counter or storage.state != pybreaker.STATE_CLOSED:
            return False
        listeners = self.breaker._listeners
        if len(listeners) != self._listeners_seen:
            self._quiet_listeners = all(type(listener).success is _NO_SUCCESS_HOOK
                                        for listener in listeners)
            self._listeners_seen = len(listeners)
        return self._quiet_listeners

    def release(self) -> None:
        """End a trial without recording (cancelled or interrupted): admit a new trial."""
        with self._lock:
            self._trial = False


_registry: dict[str, Gate] = {}
_settings: dict[str, dict[str, Any]] = {}
_by_object: weakref.WeakKeyDictionary[pybreaker.CircuitBreaker, Gate] = (
    weakref.WeakKeyDictionary())
_registry_lock = threading.Lock()
_UNSET: Any = object()


def breaker(
    name: str,
    *,
    fail_max: int = _UNSET,
    reset_timeout: float = _UNSET,
    success_threshold: int = _UNSET,
    exclude: Iterable[type[BaseException] | Callable[[BaseException], bool]] = _UNSET,
    redis: Any = _UNSET,
    redis_url: str = _UNSET,
    fallback_state: str = _UNSET,
) -> pybreaker.CircuitBreaker:
    """Return the process-wide ``pybreaker.CircuitBreaker`` called ``name``, creating it once.

    Args:
        name: The breaker's name: the same name is the same breaker everywhere.
        fail_max: Consecutive counted failures that open it (int >= 1, default 5).
        reset_timeout: Seconds it stays open before one trial call (> 0, default 30).
        success_threshold: Successful trials needed to close it again (int >= 1, default 1).
        exclude: Exception types or predicates that never count (pybreaker ``exclude``).
        redis: A ``redis.Redis`` client: state is shared by every process using the name.
        redis_url: Same as ``redis=`` with a client brace builds with 0.25 s timeouts.
        fallback_state: State assumed while Redis is unreachable (``"closed"`` default: calls
            proceed; ``"open"``: calls fail fast).

    Raises:
        ValueError: a setting is out of range, or the breaker exists with other settings.
        TypeError: ``name`` is not a non-empty str, or both ``redis`` and ``redis_url``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"breaker name must be a non-empty str, got {name!r}")
    given = {key: value for key, value in {
        "fail_max": fail_max, "reset_timeout": reset_timeout,
        "success_threshold": success_threshold, "exclude": exclude, "redis": redis,
        "redis_url": redis_url, "fallback_state": fallback_state}.items() if value is not _UNSET}
    with _registry_lock:
        existing = _registry.get(name)
        if existing is not None:
            old = _settings[name]
            conflicts = sorted(k for k, v in given.items() if old.get(k, _UNSET) != v)
            if conflicts:
                shown = ", ".join(f"{k}={old.get(k, '<default>')!r}" for k in conflicts)
                raise ValueError(f"breaker {name!r} already exists with {shown}; configure a "
                                 "breaker once, before its first use")
            return existing.breaker
        cb = _create(name, given)
        _registry[name] = Gate(cb)
        _settings[name] = given
        return cb


def _create(name: str, given: dict[str, Any]) -> pybreaker.CircuitBreaker:
    fail_max = _validate.attempts(given.get("fail_max", 5), "fail_max")
    reset_timeout = _validate.seconds(given.get("reset_timeout", 30.0), "reset_timeout",
                                      allow_zero=False)
    threshold = _validate.attempts(given.get("success_threshold", 1), "success_threshold")
    exclude = list(given.get("exclude", ()))
    for item in exclude:
        if not callable(item) or (isinstance(item, type)
                                  and not issubclass(item, BaseException)):
            raise TypeError(f"exclude= accepts exception types or predicates, got {item!r}")
    fallback_state = given.get("fallback_state", pybreaker.STATE_CLOSED)
    if fallback_state not in (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN):
        raise ValueError(f"fallback_state must be 'closed' or 'open', got {fallback_state!r}")
    if "redis" in given and "redis_url" in given:
        raise TypeError("pass redis= or redis_url=, not both")
    storage: pybreaker.CircuitBreakerStorage | None = None
    if "redis_url" in given:
        storage = _RedisStorage(name, _redis_client(given["redis_url"]), fallback_state)
    elif "redis" in given:
        storage = _RedisStorage(name, given["redis"], fallback_state)
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_timeout, success_threshold=threshold,
        exclude=exclude, listeners=[_Listener()], state_storage=storage, name=name,
        # The call that trips the breaker raises its own error: users see the real cause.
        throw_new_error_on_trip=False,
    )


def gate_for(spec: str | pybreaker.CircuitBreaker) -> Gate:
    """The gate of a named breaker (created with defaults on first use) or of a breaker object."""
    gate = _registry.get(spec) if type(spec) is str else None
    if gate is not None:
        return gate
    if isinstance(spec, str):
        breaker(spec)
        return _registry[spec]
    with _registry_lock:
        for gate in _registry.values():
            if gate.breaker is spec:
                return gate
        gate = _by_object.get(spec)
        if gate is None:
            gate = _by_object[spec] = Gate(spec)
            spec.add_listener(_Listener())
        return gate


def breakers() -> dict[str, BreakerInfo]:
    """Every named breaker of this process with its current state, by name."""
    with _registry_lock:
        gates = list(_registry.values())
    return {
        gate.name: BreakerInfo(gate.name, gate.breaker.current_state, gate.breaker.fail_counter,
                               gate.breaker.fail_max, gate.breaker.reset_timeout,
                               gate.breaker._state_storage.name)
        for gate in gates
    }


def reset() -> None:
    """Close every named breaker (shared storage included) and forget them all."""
    with _registry_lock:
        gates = list(_registry.values())
        _registry.clear()
        _settings.clear()
    for gate in gates:
        gate.release()
        gate.breaker.close()
