"""Everything that talks to Redis: the shared breaker storage.

The redis client is imported only when a breaker is given ``redis=`` or ``redis_url=``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pybreaker

from brace import _events
from brace._redact import redact

__all__ = ["REDIS_TIMEOUT_S", "RedisStorage", "SharedBudget", "SharedRateLimit", "SharedWindow",
           "client_from_url", "force", "shared_breakers"]

#: Seconds Redis may take per operation before the breaker falls back (see the docs).
REDIS_TIMEOUT_S = 0.25


_TRIAL_S = 10.0  # a half-open trial's lease expires after this, should its owner die

# One hash per breaker; a transition and its opening time are written together.
_SET_STATE = """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'opened_at', ARGV[2]) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""
# Release a trial lease only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Link:
    """Redis as one breaker, budget or limit sees it: unreachable or not.

    A failed call costs one timeout per ``cooldown_s`` (no Redis meanwhile); the loss and
    the return are reported once each (under ``label``).
    """

    def __init__(self, label: str | None, cooldown_s: float, lost_means: str) -> None:
        self.label = label  # None: another object reports this Redis's outages
        self.cooldown_s = cooldown_s
        self._lost_means = lost_means
        self._retry_at = 0.0
        self.lost = False

    def run(self, operation: Callable[[], Any]) -> Any:
        """``operation()`` against Redis, or None when it is unreachable (or cooling down)."""
        from redis.exceptions import RedisError

        if time.monotonic() < self._retry_at:
            return None
        try:
            result = operation()
        except RedisError as exc:
            self._retry_at = time.monotonic() + self.cooldown_s
            if not self.lost and self.label is not None:
                _events.breaker_storage_error(self.label, f"Redis is unreachable: "
                                              f"{self._lost_means} until it answers", exc)
            self.lost = True
            return None
        if self.lost and self.label is not None:
            _events.breaker_storage_recovered(self.label)
        self.lost = False
        return result


class RedisStorage(pybreaker.CircuitBreakerStorage):
    """A pybreaker storage shared through Redis, read from a local copy kept fresh.

    The local copy is at most ``sync_interval`` old. A healthy call reads it: no Redis round
    trip (one refresh per ``sync_interval`` per process). Failures, transitions and opening
    times are written at once (one round trip each; a transition atomically, in Lua). While
    Redis is unreachable the breaker goes on as a local, in-process breaker (or, with
    ``fallback_state="open"``, fails fast), paying at most one Redis timeout per
    ``sync_interval``; it reports the loss once and the return once, and shares again from
    the next refresh. A half-open breaker admits one trial across the fleet through a lease
    (``acquire_trial``).
    """

    local_reads = True  # the gate may treat a quiet success as nothing to record

    def __init__(self, name: str, client: Any, fallback_state: str, sync_interval: float,
                 settings: dict[str, Any]) -> None:
        super().__init__("redis")
        self.breaker = name
        self._client = client
        self._key = f"brace:breaker:{name}"
        self._trial_key = f"{self._key}:trial"
        self._fallback_state = fallback_state
        self.sync_interval = sync_interval
        self._lock = threading.Lock()
        self._set_state = client.register_script(_SET_STATE)
        self._release = client.register_script(_RELEASE)
        # The local copy.
        self._local_state = pybreaker.STATE_CLOSED
        self._counter = 0
        self._successes = 0
        self._opened_at: float | None = None
        self._fresh_until = 0.0  # monotonic time the copy must be refreshed after
        self._link = Link(name, sync_interval, "the breaker counts locally")
        self._token = f"{uuid.uuid4()}"
        #: Called after each refresh of the local copy (the gate re-checks its healthy path).
        self.on_refresh: Callable[[], None] | None = None
        self._sync()
        # What operators see (python -m brace breakers): the breaker's settings.
        self._redis(lambda: client.hset(self._key, mapping=settings))

    @property
    def fresh_until(self) -> float:
        """``time.monotonic()`` until which the local copy is trusted."""
        return self._fresh_until

    @property
    def lost(self) -> bool:
        """Whether Redis is unreachable (the breaker is local until it answers again)."""
        return self._link.lost

    def _redis(self, operation: Callable[[], Any]) -> Any:
        return self._link.run(operation)

    def _sync(self) -> None:
        """Refresh the local copy when it is older than ``sync_interval``."""
        now = time.monotonic()
        if now < self._fresh_until:
            return
        self._refresh(now)
        if self.on_refresh is not None:
            self.on_refresh()

    def _refresh(self, now: float) -> None:
        with self._lock:
            if now < self._fresh_until:
                return
            was_lost = self.lost
            shared = self._redis(lambda: self._client.hgetall(self._key))
            self._fresh_until = time.monotonic() + self.sync_interval
            if shared is None:
                return
            if was_lost and self._local_state == pybreaker.STATE_OPEN and not shared:
                self._write_state()  # what this process learned while alone
                return
            fields = {_text(key): _text(value) for key, value in shared.items()}
            # An empty (restarted) Redis reads as closed.
            self._local_state = fields.get("state") or pybreaker.STATE_CLOSED
            self._counter = int(fields.get("failures") or 0)
            self._successes = int(fields.get("successes") or 0)
            opened = fields.get("opened_at")
            self._opened_at = float(opened) if opened else None

    def _write_state(self) -> None:
        opened = "" if self._opened_at is None else repr(self._opened_at)
        self._redis(lambda: self._set_state(keys=[self._key], args=[self._local_state, opened]))

    # -- pybreaker's storage interface ---------------------------------------------------------

    @property
    def state(self) -> str:
        """The breaker's state, from the local copy (refreshed every ``sync_interval``)."""
        self._sync()
        if self.lost and self._fallback_state == pybreaker.STATE_OPEN:
            return pybreaker.STATE_OPEN
        return self._local_state

    @state.setter
    def state(self, state: str) -> None:
        self._local_state = state
        self._write_state()

    def increment_counter(self) -> None:
        """Count a failure, fleet-wide."""
        self._counter += 1
        shared = self._redis(lambda: self._client.hincrby(self._key, "failures", 1))
        if shared is not None:
            self._counter = int(shared)

    def reset_counter(self) -> None:
        """Forget the consecutive failures (a Redis write only when there were some)."""
        if self._counter:
            self._counter = 0
            self._redis(lambda: self._client.hset(self._key, "failures", 0))

    def increment_success_counter(self) -> None:
        """Count a successful half-open trial, fleet-wide."""
        self._successes += 1
        shared = self._redis(lambda: self._client.hincrby(self._key, "successes", 1))
        if shared is not None:
            self._successes = int(shared)

    def reset_success_counter(self) -> None:
        """Forget the successful trials."""
        if self._successes:
            self._successes = 0
            self._redis(lambda: self._client.hset(self._key, "successes", 0))

    @property
    def counter(self) -> int:
        """Consecutive failures, from the local copy."""
        return self._counter

    @property
    def success_counter(self) -> int:
        """Successful half-open trials, from the local copy."""
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        """When the breaker opened (to the microsecond, fleet-wide)."""
        self._sync()
        if self._opened_at is None:
            return None
        return datetime.fromtimestamp(self._opened_at, timezone.utc)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._opened_at = when.timestamp()
        # Written with the transition that follows (pybreaker sets the time, then the state);
        # written now too, so a breaker already open restarts its clock fleet-wide.
        self._redis(lambda: self._client.hset(self._key, "opened_at", repr(self._opened_at)))

    # -- one trial across the fleet --------------------------------------------------------------

    def acquire_trial(self) -> bool:
        """Take the fleet's half-open trial lease; False when another process holds it.

        Without Redis, each process runs its own trial (the breaker is local then).
        """
        taken = self._redis(lambda: self._client.set(self._trial_key, self._token, nx=True,
                                                     px=int(_TRIAL_S * 1000)))
        if self.lost:
            return True
        return bool(taken)  # redis-py answers None when another process holds the lease

    def release_trial(self) -> None:
        """Give the trial lease back (the trial ended, or was cancelled)."""
        self._redis(lambda: self._release(keys=[self._trial_key], args=[self._token]))

    def forget(self) -> None:
        """Delete the shared state (``reset_breakers()`` in tests)."""
        self._redis(lambda: self._client.delete(self._key, self._trial_key))
        self._local_state, self._counter, self._successes, self._opened_at = (
            pybreaker.STATE_CLOSED, 0, 0, None)


_FORCE = """
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'failures', 0, 'successes', 0)
if ARGV[1] == 'open' then redis.call('HSET', KEYS[1], 'opened_at', ARGV[2]) end
redis.call('DEL', KEYS[1] .. ':trial')
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""


def shared_breakers(client: Any) -> list[dict[str, Any]]:
    """Every breaker shared in this Redis, with its state as the fleet sees it.

    Each: ``name``, ``state``, ``failures``, ``fail_max``, ``ratio`` (the failures' share
    of the calls in a failure-ratio breaker's window), ``reset_timeout``, ``next_trial_s``
    (seconds until an open breaker admits a trial, else None).
    """
    rows = []
    for key in sorted(client.scan_iter(match="brace:breaker:*", count=500)):
        name = _text(key)[len("brace:breaker:"):]
        if name.endswith(":trial"):
            continue
        fields = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
        state = fields.get("state") or pybreaker.STATE_CLOSED
        reset = float(fields["reset_timeout"]) if "reset_timeout" in fields else None
        opened = float(fields["opened_at"]) if fields.get("opened_at") else None
        next_trial = None
        if state == pybreaker.STATE_OPEN and reset is not None and opened is not None:
            next_trial = round(max(0.0, opened + reset - time.time()), 3)
        rows.append({"name": name, "state": state, "failures": int(fields.get("failures") or 0),
                     "fail_max": int(fields["fail_max"]) if "fail_max" in fields else None,
                     "ratio": _window_ratio(client, name, fields.get("window")),
                     "reset_timeout": reset, "next_trial_s": next_trial})
    return rows


def _window_ratio(client: Any, name: str, window: str | None) -> float | None:
    # The failures' share of the calls in a failure-ratio breaker's current window.
    if window is None:
        return None
    fields = {_text(k): int(v) for k, v in client.hgetall(f"brace:window:{name}").items()}
    now = int(time.time() / (float(window) / 10))
    live = [slot for slot in range(10) if fields.get(f"b:{slot}", -1) > now - 10]
    calls = sum(fields.get(f"c:{slot}", 0) for slot in live)
    failures = sum(fields.get(f"f:{slot}", 0) for slot in live)
    return round(failures / calls, 3) if calls else None


def force(client: Any, name: str, state: str) -> None:
    """Force the shared breaker ``name`` open (isolate a dependency) or closed (restore it).

    Every process sharing it obeys when its local copy refreshes (within its
    ``sync_interval``).
    """
    if state not in (pybreaker.STATE_OPEN, pybreaker.STATE_CLOSED):
        raise ValueError(f"state must be 'open' or 'closed', got {state!r}")
    client.register_script(_FORCE)(keys=[f"brace:breaker:{name}"],
                                   args=[state, repr(time.time())])


# A retry budget's window as a ring of 10 buckets in one hash (b:SLOT holds the bucket's
# number, c:SLOT its calls, r:SLOT its retries), timed by Redis's own clock so that hosts
# with skewed clocks share one window. ARGV: width, calls to add, ratio, floor, spend?.
_BUDGET = """
local t = redis.call('TIME')
local n = math.floor((tonumber(t[1]) + tonumber(t[2]) / 1000000) / tonumber(ARGV[1]))
local slot = n % 10
if tonumber(redis.call('HGET', KEYS[1], 'b:' .. slot) or -1) ~= n then
  redis.call('HSET', KEYS[1], 'b:' .. slot, n, 'c:' .. slot, 0, 'r:' .. slot, 0)
end
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'c:' .. slot, ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 20000))
if ARGV[5] ~= '1' then return 1 end
local calls, retries = 0, 0
for s = 0, 9 do
  if tonumber(redis.call('HGET', KEYS[1], 'b:' .. s) or -1) > n - 10 then
    calls = calls + tonumber(redis.call('HGET', KEYS[1], 'c:' .. s) or 0)
    retries = retries + tonumber(redis.call('HGET', KEYS[1], 'r:' .. s) or 0)
  end
end
if retries >= tonumber(ARGV[3]) * calls + tonumber(ARGV[4]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'r:' .. slot, 1)
return 1
"""


class SharedBudget:
    """A retry budget's counts shared through Redis.

    Calls are added in batches, each retry spent atomically (one round trip, in Lua). While
    Redis is unreachable ``add_calls`` and ``spend`` answer None and the budget counts
    locally; the loss and the return are reported once each, and Redis is asked again after
    ``cooldown_s``.
    """

    def __init__(self, name: str, client: Any, window: float) -> None:
        self._key = f"brace:budget:{name}"
        self._width = window / 10
        self._script = client.register_script(_BUDGET)
        self._link = Link(f"budget:{name}", 1.0, "the budget counts locally")

    def _run(self, calls: int, ratio: float, floor: float, spend: bool) -> bool | None:
        verdict = self._link.run(lambda: self._script(keys=[self._key], args=[
            repr(self._width), calls, repr(ratio), repr(floor), "1" if spend else "0"]))
        return None if verdict is None else bool(verdict)

    def add_calls(self, calls: int) -> bool | None:
        """Add ``calls`` to the fleet's count; None when Redis is unreachable."""
        return self._run(calls, 0.0, 0.0, spend=False)

    def spend(self, calls: int, ratio: float, floor: float) -> bool | None:
        """Add ``calls``, then spend one retry if the fleet's budget allows; None: no Redis."""
        return self._run(calls, ratio, floor, spend=True)


# A failure-ratio breaker's window: the same ring, with failures (f:SLOT). ARGV: width,
# calls to add, failures to add. Returns the window's calls and failures.
_WINDOW = """
local t = redis.call('TIME')
local n = math.floor((tonumber(t[1]) + tonumber(t[2]) / 1000000) / tonumber(ARGV[1]))
local slot = n % 10
if tonumber(redis.call('HGET', KEYS[1], 'b:' .. slot) or -1) ~= n then
  redis.call('HSET', KEYS[1], 'b:' .. slot, n, 'c:' .. slot, 0, 'f:' .. slot, 0)
end
redis.call('HINCRBY', KEYS[1], 'c:' .. slot, ARGV[2])
redis.call('HINCRBY', KEYS[1], 'f:' .. slot, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 20000))
local calls, failures = 0, 0
for s = 0, 9 do
  if tonumber(redis.call('HGET', KEYS[1], 'b:' .. s) or -1) > n - 10 then
    calls = calls + tonumber(redis.call('HGET', KEYS[1], 'c:' .. s) or 0)
    failures = failures + tonumber(redis.call('HGET', KEYS[1], 'f:' .. s) or 0)
  end
end
return {calls, failures}
"""


class SharedWindow:
    """A failure-ratio breaker's window shared through Redis.

    Calls are added in batches; each failure is added, and the fleet's totals read, in one
    round trip. None while Redis is unreachable (the window then counts locally).
    """

    def __init__(self, name: str, client: Any, window: float) -> None:
        self._key = f"brace:window:{name}"
        self._width = window / 10
        self._client = client
        self._script = client.register_script(_WINDOW)
        self._link = Link(None, 1.0, "")  # the breaker's storage reports this Redis

    def _run(self, calls: int, failures: int) -> tuple[int, int] | None:
        totals = self._link.run(lambda: self._script(keys=[self._key], args=[
            repr(self._width), calls, failures]))
        return None if totals is None else (int(totals[0]), int(totals[1]))

    def add_calls(self, calls: int) -> bool | None:
        """Add a batch of calls; None when Redis is unreachable."""
        return None if self._run(calls, 0) is None else True

    def failure(self, calls: int) -> tuple[int, int] | None:
        """Add ``calls`` and one failing call; the window's calls and failures, fleet-wide."""
        return self._run(calls + 1, 1)

    def reset(self) -> None:
        """Forget the window (the breaker closed)."""
        from redis.exceptions import RedisError

        with contextlib.suppress(RedisError):
            self._client.delete(self._key)


# GCRA on Redis's clock: one round trip per token. ARGV: interval, burst, the most the
# caller may wait. Returns {1, wait} (reserved) or {0, wait} (refused).
_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = math.max(0, tat - now - (burst - 1) * interval)
if wait >= tonumber(ARGV[3]) then return {0, tostring(wait)} end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX',
           math.ceil((tat + interval - now) * 1000) + 1000)
return {1, tostring(wait)}
"""


class SharedRateLimit:
    """A rate limit's bucket shared through Redis: one atomic round trip per token.

    ``reserve`` answers None while Redis is unreachable (the rate limit then applies a local
    share); the loss and the return are reported once each.
    """

    def __init__(self, name: str, client: Any, per_s: float, burst: int) -> None:
        self._key = f"brace:rate:{name}"
        self._args = [repr(1.0 / per_s), burst]
        self._script = client.register_script(_TOKEN)
        self._link = Link(f"rate_limit:{name}", 1.0,
                          "the rate limit applies this process's share")

    def reserve(self, remaining: float) -> tuple[bool, float] | None:
        """``(granted, wait)`` from the fleet's bucket, or None without Redis.

        ``remaining`` (seconds left of the deadline) is the longest the caller may wait.
        """
        answer = self._link.run(lambda: self._script(keys=[self._key],
                                                     args=[*self._args, repr(remaining)]))
        return None if answer is None else (bool(answer[0]), float(_text(answer[1])))


def shared_storage(name: str, given: dict[str, Any],
                   settings: dict[str, Any]) -> tuple[RedisStorage, SharedWindow]:
    """The storage (and failure-ratio window) of the breaker ``name`` shared through Redis."""
    client = client_from_url(given["redis_url"]) if "redis_url" in given else given["redis"]
    if client is None:
        raise TypeError("redis= must be a redis.Redis client, got None")
    described = {"fail_max": settings["fail_max"], "reset_timeout": settings["reset_timeout"]}
    if settings["failure_ratio"] is not None:
        described.update(failure_ratio=settings["failure_ratio"], window=settings["window"])
    storage = RedisStorage(name, client, settings["fallback_state"],
                           settings["sync_interval"], described)
    return storage, SharedWindow(name, client, settings["window"])


def _text(value: bytes | str) -> str:
    # A client made with decode_responses=True answers str, the default bytes.
    return value.decode() if isinstance(value, bytes) else value


def client_from_url(url: str) -> Any:
    """A redis client for ``url`` with bounded timeouts and no client-side retries."""
    if not isinstance(url, str) or not url:
        raise TypeError(f"redis_url must be a redis:// URL (a non-empty str), got {url!r}")
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("redis_url= needs the redis client: pip install 'brace[redis]'") from exc
    try:
        # Bounded, and no client-side retries: a dead Redis must cost a call milliseconds.
        return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                    socket_connect_timeout=REDIS_TIMEOUT_S,
                                    retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise ValueError(f"redis_url is not a Redis URL ({exc}): got {redact(url)!r}") from None
