"""Retry budgets, and the sliding windows of counts they and failure-ratio breakers judge.

A retry budget allows retries only while they stay under a share of calls.

One budget per name, process-wide (``brace.budget(name, ...)``), shared by every policy,
thread and event loop that names it. Policies count calls on their call path and spend
retries in their stop (see ``brace._policy``); in your own tenacity code a budget is
also a retry predicate.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import tenacity

from brace import _config, _events, _validate
from brace._deadline import clock

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["DEFAULTS", "Budget", "Window", "budget", "find", "forget", "lookup", "reset"]

#: What a budget named before it was configured gets (and what ``explain`` shows for one).
DEFAULTS = MappingProxyType({"ratio": 0.2, "min_per_s": 10.0, "window": 10.0})
_BUCKETS = 10
# A failure-ratio window shared through Redis counts calls in batches of up to this many,
# each timed by its first call; the batch goes to Redis in one round trip.
_BATCH = 32
# Shared through Redis, a batch is one round trip: 256 calls make it 0.004 round trips per
# call (<= 3x the in-memory budget's cost). A process's pending calls go with each retry it
# spends, so only other processes' last batches are missing from the fleet's count (the
# budget is then a little stricter, never looser).
_SHARED_BATCH = 256


class Window:
    """Calls, and one kind of event among them, over a sliding window of 10 buckets.

    Retry budgets count retries in one, failure-ratio breakers failures. Counting a call
    takes no lock (a count lost to a race between threads loosens the window by one call):
    it adds to ``tally``, ``[calls, until]``, the calls not yet in a bucket. In a window of
    this process those are calls of one bucket, counted while the clock is before
    ``until``, the bucket's end (a caller that holds the time may add to the tally itself
    then); the first call after it puts them in their bucket. A window shared through
    Redis (``shared_calls``) counts them in batches of up to ``batch`` calls (256 for a
    budget, 32 for a breaker), each timed by its first call, and takes a full batch there
    in one round trip of up to ``timeout`` seconds (its ``redis_timeout``). The other
    methods are called with ``lock`` held.
    """

    def __init__(self, window: float,
                 shared_calls: Callable[[int], bool | None] | None = None,
                 batch: int = _BATCH, timeout: float = 0.0) -> None:
        self.window = window  # seconds
        self._batch = batch
        self._timeout = timeout
        self._per_s = _BUCKETS / window  # bucket numbers per second
        # Per bucket: [bucket number, calls, events]; a bucket is reused when it comes round.
        self._buckets = [[-1, 0, 0] for _ in range(_BUCKETS)]
        #: [calls not yet in a bucket, the clock reading until which a call joins them]:
        #: never for a shared window, whose batches ``call`` counts.
        self.tally: list[float] = [0, -math.inf]
        self._since = 0.0  # when the first of them was made
        self._shared_calls = shared_calls
        self.lock = threading.Lock()

    def call(self, until: float = math.inf, now: float | None = None) -> None:
        """Count one call made at ``now`` (read now if None), which must end by ``until``.

        Both are readings of ``_deadline.clock``. A full batch of a shared window goes to
        Redis only when the round trip fits before ``until`` and no other thread is taking
        one there (the call waits for neither); otherwise it stays pending, for the next
        call with time to spare.
        """
        tally = self.tally
        if now is None:
            now = clock()
        if now < tally[1]:
            tally[0] += 1  # within the bucket of the calls pending: no lock
            return
        if self._shared_calls is None:
            with self.lock:
                if now >= tally[1]:  # not moved on by another thread meanwhile
                    self.flush()
                    self._since = now
                    tally[1] = (int(now * self._per_s) + 1) / self._per_s
                tally[0] += 1
            return
        if not tally[0]:
            self._since = now
        tally[0] += 1
        if tally[0] >= self._batch and until - now >= self._timeout and \
                self.lock.acquire(blocking=False):
            try:
                self.flush()
            finally:
                self.lock.release()

    def take_pending(self) -> int:
        """The calls not yet counted, now taken out (for a shared backend to add)."""
        tally = self.tally
        pending, tally[0] = tally[0], 0
        return int(pending)

    def flush(self) -> None:
        """Put the pending calls in Redis, or in the bucket of their first call."""
        pending = self.take_pending()
        if pending and (self._shared_calls is None or self._shared_calls(pending) is None):
            self.bucket(self._since)[1] += pending

    def bucket(self, now: float) -> list[int]:
        """The bucket of ``now`` (a reading of ``clock()``), emptied when it comes round."""
        number = int(now * self._per_s)
        bucket = self._buckets[number % _BUCKETS]
        if bucket[0] != number:
            bucket[0], bucket[1], bucket[2] = number, 0, 0
        return bucket

    def totals(self, now: float) -> tuple[int, int]:
        """Calls and events within the window ending at ``now``."""
        oldest = int(now * self._per_s) - _BUCKETS + 1
        calls = events = 0
        for number, bucket_calls, bucket_events in self._buckets:
            if number >= oldest:
                calls += bucket_calls
                events += bucket_events
        return calls, events

    def reset(self) -> None:
        """Forget everything counted."""
        with self.lock:
            self.tally[0], self.tally[1] = 0, -math.inf
            for bucket in self._buckets:
                bucket[0], bucket[1], bucket[2] = -1, 0, 0


class Budget(tenacity.retry_base):
    """A retry budget; get one with ``brace.budget``.

    Over a sliding ``window`` (seconds), retries may not exceed ``ratio`` x calls plus a
    floor of ``min_per_s`` x ``window`` (so a quiet service can still retry). Under an outage every
    call fails, the budget runs dry, and clients stop multiplying the load on the failing
    dependency; when it recovers, calls refill it.

    As a tenacity predicate, AND it last (``brace.predicates.transient & budget``): it is
    consulted only when a retry is wanted, and spends one retry when it allows it. Brace
    policies count every call; in your own tenacity code, pass ``before=budget.before`` (or
    call ``record_call`` once per logical call).
    """

    __module__ = "brace"

    def __init__(self, name: str, *, ratio: float, min_per_s: float,
                 window: _validate.Duration, shared: Any = None) -> None:
        self.name = name
        self.ratio = _validate.number(ratio, "ratio", high=1.0)
        self.min_per_s = _validate.number(min_per_s, "min_per_s", high=_validate.MAX_PER_S,
                                          unit=" of retries per second")
        # At least 10 ms: the window is counted in ten buckets, each at least 1 ms wide.
        self.window = _validate.seconds(window, "window", low=0.01)
        self._shared = shared  # a brace._redis.SharedBudget: the fleet's counts
        #: The longest wait for one Redis operation (seconds); None for a local budget.
        self.redis_timeout: float | None = None if shared is None else shared.timeout
        self._window = (Window(self.window) if shared is None
                        else Window(self.window, shared.add_calls, _SHARED_BATCH,
                                    shared.timeout))
        # The call path counts on the window directly, with the call's deadline (``until``
        # on ``_deadline.clock``), which bounds a shared batch's round trip.
        self._count = self._window.call

    def record_call(self) -> None:
        """Count one logical call (brace policies do this for every call).

        Takes no lock: a count lost to a race between threads only loosens the budget by
        one call; spending (``try_spend``) is exact. Shared through Redis, every 256th call
        takes the batch there (one round trip of at most ``redis_timeout``).
        """
        self._window.call()

    def before(self, retry_state: RetryCallState) -> None:
        """A tenacity ``before=`` hook that counts each call at its first attempt."""
        if retry_state.attempt_number == 1:
            self.record_call()

    def try_spend(self, *, remaining: float = math.inf) -> bool:
        """Spend one retry if the budget allows it; return whether it did.

        ``remaining`` is the seconds the call has left. A budget shared through Redis asks
        Redis only with at least its ``redis_timeout`` left; with less it decides on this
        process's own counts, as while Redis is unreachable (its floor, its retries), and
        waits for another thread's round trip only that long (then no retry: no time).
        """
        window, shared = self._window, self._shared
        hurried = shared is not None and remaining < shared.timeout
        if not window.lock.acquire(timeout=max(0.0, remaining) if hurried else -1):
            return False  # the call's time ran out while another thread asked Redis
        try:
            if shared is not None and not hurried:
                # The fleet's budget: the pending calls and the spending in one round trip.
                pending = window.take_pending()
                verdict = shared.spend(pending, self.ratio, self.min_per_s * self.window)
                if verdict is not None:
                    return bool(verdict)
                window.bucket(clock())[1] += pending  # Redis unreachable: count here
            if not hurried:  # a shared window's flush is a round trip: pending calls wait
                window.flush()
            now = clock()
            calls, retries = window.totals(now)
            if retries >= self.ratio * calls + self.min_per_s * self.window:
                return False
            window.bucket(now)[2] += 1
            return True
        finally:
            window.lock.release()

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Allow (and spend) one retry, or refuse with a ``retry.budget_exhausted`` event."""
        if self.try_spend():
            return True
        _events.retry_budget_exhausted(retry_state.get_fn_name(), None, self.name,
                                       retry_state.attempt_number)
        return False

    def reset(self) -> None:
        """Forget every counted call and retry."""
        self._window.reset()

    def __repr__(self) -> str:
        return (f"brace.budget({self.name!r}, ratio={self.ratio!r}, "
                f"min_per_s={self.min_per_s!r}, window={self.window!r})")

    def __reduce__(self) -> Any:
        # Copied or unpickled: the budget of that name in this process (settings are
        # keyword-only, hence the partial).
        return (functools.partial(budget, self.name, ratio=self.ratio,
                                  min_per_s=self.min_per_s, window=self.window), ())


#: Every budget by name (the call path reads it directly: one dict look-up).
registry: dict[str, Budget] = {}
_registry_lock = threading.Lock()


def budget(name: str, *, ratio: float | None = None, min_per_s: float | None = None,
           window: _validate.Duration | None = None, redis: Any = None,
           redis_url: str | None = None,
           redis_timeout: _validate.Duration | None = None) -> Budget:
    """Return the retry budget called ``name``, creating it with these settings once.

    ``budget(name)`` with no settings returns the existing one (or creates it with
    ``DEFAULTS``: ratio 0.2, min_per_s 10, window 10 s); other settings for an existing
    name are a ValueError. Policies name it with ``budget=NAME``. Settings are
    keyword-only.

    Args:
        name: The budget's name: the same name is the same budget everywhere.
        ratio: Share of calls that may be retries, in [0, 1].
        min_per_s: Retries per second always allowed, whatever the traffic (0-1e9).
        window: The sliding window: seconds or a ``datetime.timedelta`` (0.01-1e7 s).
        redis: A ``redis.Redis`` (or ``RedisCluster``) client: one budget for every process
            using the name, its floor (``min_per_s`` x ``window``) the fleet's. Calls are
            counted in batches; each retry is spent atomically in Redis. brace talks to
            that server with its own timeouts (``redis_timeout``), whatever the client's.
            While Redis is unreachable the budget counts locally. A ``redis.asyncio``
            client is a TypeError: pass a synchronous one.
        redis_url: Same as ``redis=``, with a client brace builds (one connection pool per
            URL and ``redis_timeout`` per process).
        redis_timeout: With Redis: the longest brace waits for one Redis operation
            (seconds or a ``timedelta``, 0.001-60 s, default 0.25). A retry with less time
            left than this is decided on this process's own counts.

    Raises:
        TypeError, ValueError: ``name`` is not a non-empty str, a setting is out of range,
            or conflicts with the existing budget of that name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"budget name must be a non-empty str, got {_validate.shown(name)}")
    given = {key: value for key, value in (("ratio", ratio), ("min_per_s", min_per_s),
                                           ("window", window), ("redis", redis),
                                           ("redis_url", redis_url),
                                           ("redis_timeout", redis_timeout))
             if value is not None}
    with _registry_lock:
        existing = registry.get(name)
        if existing is not None:
            # The settings only: the Redis client a caller passes again is not compared.
            conflicts = sorted(k for k, v in given.items()
                               if (k in DEFAULTS or k == "redis_timeout")
                               and getattr(existing, k) != _validate.plain(v))
            if conflicts:
                shown = ", ".join(f"{k}={getattr(existing, k)!r}" for k in conflicts)
                raise ValueError(f"budget {name!r} already exists with {shown}")
            return existing
        settings: dict[str, Any] = {**DEFAULTS, **given}
        client = settings.pop("redis", None)
        url = settings.pop("redis_url", None)
        timeout = _validate.redis_timeout(settings.pop("redis_timeout", None),
                                          client is not None or url is not None)
        shared = None
        if client is not None or url is not None:
            if client is not None and url is not None:
                raise TypeError("pass redis= or redis_url=, not both")
            from brace import _redis  # the redis client only when a budget is shared

            checked = Budget(name, **settings)  # validate before talking to Redis
            bounded, server = _redis.client_for(client, url, timeout)
            shared = _redis.SharedBudget(name, bounded, server, checked.window, timeout)
        created = registry[name] = Budget(name, **settings, shared=shared)
        return created


def lookup(spec: str | Budget) -> Budget:
    """The budget ``spec`` names (created with defaults on first use), or ``spec`` itself.

    Looked up per call, like breakers: ``reset_budgets()`` forgets them.
    """
    if isinstance(spec, Budget):
        return spec
    return registry.get(spec) or budget(spec)


def find(name: str) -> Budget | None:
    """The budget called ``name`` if it exists (looking does not create it)."""
    return registry.get(name)


def forget(name: str) -> bool:
    """Forget the budget called ``name`` and what it counted; False if there was none.

    The next ``brace.budget(name, ...)`` creates it afresh; calls in flight finish with
    the old one. A budget shared through Redis keeps the fleet's counts there.
    """
    with _registry_lock:
        return registry.pop(name, None) is not None


_config.forgetters.append(forget)


def reset() -> None:
    """Forget every budget and what it counted."""
    with _registry_lock:
        budgets = list(registry.values())
        registry.clear()
    for item in budgets:
        item.reset()
