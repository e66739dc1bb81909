"""Bulkheads and rate limits: they refuse, they do not queue forever.

A bulkhead caps how many attempts run at once against one dependency; a full one waits at
most ``queue_timeout`` (never past the call's deadline), then raises ``BulkheadFullError``. A
rate limit is a token bucket (GCRA) per dependency; an attempt waits for its token only
while the deadline allows, else ``RateLimitedError``. Neither is retried by the policy that
raised it, and a breaker counts neither as a success nor as a failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from brace import _config, _events, _validate
from brace._deadline import clock
from brace._outcome import BraceError

__all__ = ["BulkheadFullError", "RateLimitedError", "Refused", "bulkhead", "find_bulkhead",
           "find_rate_limit", "forget", "rate_limit", "reset"]


# A gate refused the attempt without running it (the dependency gave no verdict).
Refused = BraceError


class BulkheadFullError(BraceError):
    """A bulkhead was full and stayed full for as long as the call could wait."""

    __module__ = "brace"


class RateLimitedError(BraceError):
    """A rate limit had no token for this attempt within the call's deadline."""

    __module__ = "brace"


class _Waiter:
    """One attempt queued for a slot: ``wake`` is called (from any thread) to hand it one."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.granted = False
        self.wake = wake


class Bulkhead:
    """At most ``max_concurrent`` attempts at once; get one with ``brace.bulkhead``.

    A freed slot goes to the attempt that has waited longest, whatever it runs on: one FIFO
    of waiters serves threads and the event loops of every async library, and each is woken
    by its own primitive (an Event, an asyncio future, a trio event).
    """

    __module__ = "brace"

    def __init__(self, name: str, max_concurrent: int, queue_timeout: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.queue_timeout = queue_timeout  # seconds
        self._in_use = 0
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Attempts queued for a slot right now."""
        return len(self._queue)

    def try_acquire(self) -> bool:
        """Take a free slot without waiting: False when every slot is taken."""
        with self._lock:
            if self._in_use < self.max_concurrent:
                self._in_use += 1
                return True
            return False

    def _enter(self, wake: Callable[[], object]) -> _Waiter | None:
        # A slot freed meanwhile is taken at once; otherwise the attempt queues.
        with self._lock:
            if self._in_use < self.max_concurrent:
                self._in_use += 1
                return None
            waiter = _Waiter(wake)
            self._queue.append(waiter)
            return waiter

    def _leave(self, waiter: _Waiter) -> bool:
        """The waiter stops waiting: True when it was handed a slot meanwhile (it owns it)."""
        with self._lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):
                self._queue.remove(waiter)
            return False

    def _abandon(self, waiter: _Waiter) -> None:
        # Cancelled while queued: a slot handed over meanwhile goes to the next waiter.
        if self._leave(waiter):
            self.release()

    def acquire(self, name: str, remaining: float) -> None:
        """Take a slot (threads), waiting at most ``min(queue_timeout, remaining)``.

        ``remaining`` is what is left of the call's deadline, in seconds.
        """
        if self.try_acquire():  # the common case: a free slot
            return
        started, limit = clock(), min(self.queue_timeout, max(0.0, remaining))
        if limit > 0:
            ready = threading.Event()
            waiter = self._enter(ready.set)
            if waiter is None:
                return
            try:
                ready.wait(limit)
            except BaseException:
                self._abandon(waiter)
                raise
            if self._leave(waiter):
                return
        self._refuse(name, clock() - started)

    async def aacquire(self, name: str, remaining: float) -> None:
        """Take a slot (any async library), waiting at most ``min(queue_timeout, remaining)``."""
        if self.try_acquire():
            return
        started, limit = clock(), min(self.queue_timeout, max(0.0, remaining))
        if limit > 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # trio (or anyio on trio)
                loop = None
            wait: Callable[[], Awaitable[object]]
            if loop is None:
                import trio

                token, ready = trio.lowlevel.current_trio_token(), trio.Event()
                waiter = self._enter(functools.partial(_wake_trio, token, ready))

                async def wait() -> None:
                    with trio.move_on_after(limit):
                        await ready.wait()
            else:
                future = loop.create_future()
                waiter = self._enter(functools.partial(_wake_asyncio, loop, future,
                                                       threading.get_ident()))
                wait = functools.partial(asyncio.wait, (future,), timeout=limit)
            if waiter is None:
                return
            try:
                await wait()
            except BaseException:
                self._abandon(waiter)
                raise
            if self._leave(waiter):
                return
        self._refuse(name, clock() - started)

    def release(self) -> None:
        """Give the slot back: to the longest waiting attempt, else to the pool."""
        while True:
            with self._lock:
                if not self._queue:
                    self._in_use -= 1
                    return
                waiter = self._queue.popleft()
                waiter.granted = True
            try:
                waiter.wake()
                return
            except RuntimeError:
                # Its event loop (or trio run) ended: nobody will use the slot, pass it on.
                continue

    def _refuse(self, name: str, waited: float) -> None:
        _events.bulkhead_rejected(self.name, name, self.max_concurrent, waited)
        raise BulkheadFullError(f"bulkhead {self.name!r} is full ({self.max_concurrent} "
                                f"attempts running)")


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# A release on the waiter's own thread (or trio run) wakes it directly; from elsewhere it
# goes through the loop's thread-safe door, which costs a wake-up of its selector.
def _wake_asyncio(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None],
                  thread: int) -> None:
    if threading.get_ident() == thread:
        _set(future)
    else:
        loop.call_soon_threadsafe(_set, future)


def _wake_trio(token: Any, ready: Any) -> None:
    import trio

    try:
        here = trio.lowlevel.current_trio_token() is token
    except RuntimeError:  # not in a trio run
        here = False
    if here:
        ready.set()
    else:
        token.run_sync_soon(ready.set)


def _now() -> float:
    # A token bucket's clock: inside no_waits() the skipped sleeps count as time passed, so
    # tokens come back as they would in a real run.
    return clock() + _config.state.skipped


class RateLimit:
    """A token bucket (GCRA): ``per_s`` tokens a second, ``burst`` at once."""

    __module__ = "brace"

    def __init__(self, name: str, per_s: float, burst: int, shared: Any = None,
                 processes: int = 1) -> None:
        self.name = name
        self.per_s = per_s
        self.burst = burst
        self.processes = processes
        self._shared = shared  # a brace._redis.SharedRateLimit: the fleet's bucket
        #: The longest wait for one Redis operation (seconds); None for a local limit.
        self.redis_timeout: float | None = None if shared is None else shared.timeout
        # Locally (no Redis, or Redis unreachable): this process's share of the rate.
        self._interval = processes / per_s
        self._tat = 0.0  # theoretical arrival time of the next token (monotonic)
        self._from_local = True  # whether the latest token came from the local bucket
        self._lock = threading.Lock()

    def reserve(self, name: str, remaining: float) -> float:
        """Reserve a token; return how long to wait for it, or raise RateLimitedError.

        ``remaining`` is the seconds the call has left: the longest it may wait, for the
        token and for Redis. A limit shared through Redis asks Redis only with at least its
        ``redis_timeout`` left; with less it decides from this process's lease of tokens
        (none leased: refused, while a lease is taken for the next calls in the
        background) or, while Redis is unreachable, from this process's share.
        """
        verdict = None if self._shared is None else self._shared.reserve(remaining)
        if verdict is not None:
            granted, wait = verdict
            if not granted:
                self._refuse(name, wait)
            self._from_local = False
            return wait  # type: ignore[no-any-return]
        if self._shared is not None:  # Redis unreachable: this process's share, remembered
            wait = self._reserve_here(name, remaining)
            self._shared.admitted_locally()
            return wait
        return self._reserve_here(name, remaining)

    def _reserve_here(self, name: str, remaining: float) -> float:
        with self._lock:
            now = _now()
            tat = max(self._tat, now)
            wait = max(0.0, tat - now - (self.burst - 1) * self._interval)
            if wait >= remaining:
                self._refuse(name, wait)
            self._tat = tat + self._interval
            self._from_local = True
            return wait

    def take_now(self) -> bool:
        """Take a token from the local bucket if one is free now: False when it would wait.

        The healthy path's test: nothing is reserved when it says False. A fleet's bucket
        (Redis) answers from this process's lease of tokens, without a round trip.
        """
        if self._shared is not None:
            taken = self._shared.take_now()
            self._from_local = not taken
            return taken  # type: ignore[no-any-return]
        with self._lock:
            now = _now()
            tat = max(self._tat, now)
            if tat - now > (self.burst - 1) * self._interval:
                return False
            self._tat = tat + self._interval
            self._from_local = True
            return True

    def give_back(self) -> None:
        """Return the token of an attempt that was cancelled while it waited for it.

        Locally the bucket's next token comes one interval sooner; a token of the fleet's
        bucket goes back to this process's lease.
        """
        if not self._from_local:
            self._shared.give_back()
            return
        with self._lock:
            self._tat = max(_now(), self._tat - self._interval)

    def _refuse(self, name: str, wait: float) -> None:
        _events.rate_limit_rejected(self.name, name, wait)
        raise RateLimitedError(f"rate limit {self.name!r}: the next token is {wait:.3f} s "
                               "away, past the call's deadline")


_bulkheads: dict[str, Bulkhead] = {}
_rate_limits: dict[str, RateLimit] = {}
_lock = threading.Lock()


def _existing(found: Any, name: str, kind: str, given: dict[str, Any]) -> Any:
    conflicts = sorted(k for k, v in given.items() if getattr(found, k) != _validate.plain(v))
    if conflicts:
        shown = ", ".join(f"{k}={getattr(found, k)!r}" for k in conflicts)
        raise ValueError(f"{kind} {name!r} already exists with {shown}")
    return found


def bulkhead(name: str, *, max_concurrent: int | None = None,
             queue_timeout: _validate.Duration | None = None) -> Bulkhead:
    """Return the bulkhead called ``name``, creating it with these settings once.

    Settings are keyword-only.

    Args:
        name: The bulkhead's name; policies use it with ``bulkhead=NAME``.
        max_concurrent: Attempts that may run at once (int in 1-10**9, default 10).
        queue_timeout: How long a full bulkhead makes an attempt wait for a slot: seconds
            or a ``datetime.timedelta`` (0-1e7 s, default 0: refuse at once); never past
            the call's deadline.

    Returns:
        The ``Bulkhead``: ``in_use`` and ``waiting`` say how many attempts hold a slot and
        how many queue for one. A freed slot goes to the attempt that has waited longest.

    Raises:
        TypeError, ValueError: a setting is out of range, or conflicts with the existing one.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"bulkhead name must be a non-empty str, got {_validate.shown(name)}")
    given = {k: v for k, v in (("max_concurrent", max_concurrent),
                               ("queue_timeout", queue_timeout)) if v is not None}
    with _lock:
        if name in _bulkheads:
            return _existing(_bulkheads[name], name, "bulkhead", given)  # type: ignore[no-any-return]
        created = _bulkheads[name] = Bulkhead(
            name, _validate.attempts(given.get("max_concurrent", 10), "max_concurrent"),
            _validate.seconds(given.get("queue_timeout", 0.0), "queue_timeout"))
        return created


def rate_limit(name: str, *, per_s: float | None = None, burst: int | None = None,
               redis: Any = None, redis_url: str | None = None,
               processes: int | None = None,
               redis_timeout: _validate.Duration | None = None) -> RateLimit:
    """Return the rate limit called ``name``, creating it with these settings once.

    Settings are keyword-only.

    Args:
        name: The rate limit's name; policies use it with ``rate_limit=NAME``.
        per_s: Attempts allowed per second (1e-6-1e9, default 10).
        burst: Attempts allowed at once before the rate applies (int in 1-10**9,
            default 1).
        redis: A ``redis.Redis`` (or ``RedisCluster``) client: one limit for every process
            using the name, on Redis's clock. Each process leases several tokens per round
            trip (sized from its recent demand), so a healthy call makes no round trip and a
            refusal none while the fleet's latest answer stands; under contention processes
            take turns, so none starves. brace talks to that server with its own timeouts
            (``redis_timeout``). A ``redis.asyncio`` client is a TypeError: pass a
            synchronous one.
        redis_url: Same as ``redis=``, with a client brace builds (one connection pool per
            URL and ``redis_timeout`` per process).
        processes: How many processes share the limit: while Redis is unreachable (or
            without Redis) each applies ``per_s / processes``, and with Redis one lease of
            tokens is at most a process's share (int in 1-10**9, default 1).
        redis_timeout: With Redis: the longest brace waits for one Redis operation
            (seconds or a ``timedelta``, 0.001-60 s, default 0.25). An attempt with less
            time left than this takes a leased token or is refused, without Redis.

    Raises:
        TypeError, ValueError: a setting is out of range, or conflicts with the existing one.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"rate limit name must be a non-empty str, got {_validate.shown(name)}")
    given = {k: v for k, v in (("per_s", per_s), ("burst", burst), ("processes", processes),
                               ("redis_timeout", redis_timeout)) if v is not None}
    with _lock:
        if name in _rate_limits:
            return _existing(_rate_limits[name], name, "rate limit", given)  # type: ignore[no-any-return]
        rate = _validate.number(given.get("per_s", 10.0), "per_s", low=1e-6,
                                high=_validate.MAX_PER_S,
                                unit=" of attempts per second")
        size = _validate.attempts(given.get("burst", 1), "burst")
        processes = _validate.attempts(given.get("processes", 1), "processes")
        timeout = _validate.redis_timeout(redis_timeout, redis is not None or redis_url is not None)
        shared = None
        if redis is not None or redis_url is not None:
            if redis is not None and redis_url is not None:
                raise TypeError("pass redis= or redis_url=, not both")
            from brace import _redis  # the redis client only when a limit is shared

            client, server = _redis.client_for(redis, redis_url, timeout)
            shared = _redis.SharedRateLimit(name, client, server, rate, size, processes, timeout)
        created = _rate_limits[name] = RateLimit(name, rate, size, shared, processes)
        return created


def find_bulkhead_if(name: str) -> Bulkhead | None:
    """The bulkhead ``name`` if it exists (looking does not create it)."""
    return _bulkheads.get(name)


def find_rate_limit_if(name: str) -> RateLimit | None:
    """The rate limit ``name`` if it exists (looking does not create it)."""
    return _rate_limits.get(name)


def find_bulkhead(name: str) -> Bulkhead:
    """The bulkhead ``name`` (created with defaults on first use)."""
    return _bulkheads.get(name) or bulkhead(name)


def find_rate_limit(name: str) -> RateLimit:
    """The rate limit ``name`` (created with defaults on first use)."""
    return _rate_limits.get(name) or rate_limit(name)


def forget(name: str) -> bool:
    """Forget the bulkhead and the rate limit called ``name``; False if there was neither.

    The next ``brace.bulkhead(name, ...)`` / ``brace.rate_limit(name, ...)`` creates them
    afresh. Attempts holding a slot or a token of the old ones finish with them (so for a
    moment the old bulkhead's attempts and the new one's may both run).
    """
    with _lock:
        bulkhead_found = _bulkheads.pop(name, None) is not None
        return _rate_limits.pop(name, None) is not None or bulkhead_found


_config.forgetters.append(forget)


def reset() -> None:
    """Forget every bulkhead and rate limit (tests)."""
    with _lock:
        _bulkheads.clear()
        _rate_limits.clear()
