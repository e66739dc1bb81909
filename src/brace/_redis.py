"""Everything that talks to Redis: clients, breaker storage, shared counters, Lua scripts.

The redis client is imported only when an object is given ``redis=`` or ``redis_url=``.

Three promises hold whatever client the user passes (DESIGN rule 27):

- **Bounded waits.** brace talks to Redis through a client of its own, derived from the
  user's connection settings (host, credentials, TLS, database ...) with the object's
  ``redis_timeout`` (default ``REDIS_TIMEOUT_S``) per operation and no client-side
  retries: a frozen Redis costs a call at most one timeout, never redis-py's 5 s defaults
  times its retries.
- **Never past the call's deadline.** A gate operation given the seconds its call has left
  (``remaining=``) starts a round trip only when at least the object's ``redis_timeout``
  is left; with less it decides from its local copy (``within`` for the breaker, whose
  Redis reads pybreaker makes).
- **One cool-down per server.** Every object on one Redis server (breakers, budgets, rate
  limits) shares one ``Server``, whatever their ``redis_timeout``: after a failed operation
  none of them asks that server again for a cool-down window, so an outage costs each
  process at most one timeout per window, however many objects a call goes through.
- **One connection pool per URL** (and per user client) **and timeout**: every object
  built with the same ``redis_url`` and ``redis_timeout`` shares one client. A socket's
  timeout belongs to its connection, so each other ``redis_timeout`` on a server adds one
  pool (one connection per thread that uses it).

Every key of one object shares the hash tag of its name, ``brace:{NAME}:KIND``; the kinds
(``state``, ``trial``, ``window``, ``budget``, ``rate``) are suffix-free, so no name can reach
another object's keys, and every script's keys live in one Redis Cluster slot.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pybreaker

from brace import _events
from brace._redact import redact_url_error
from brace._validate import REDIS_TIMEOUT_S

__all__ = ["COOLDOWN_S", "REDIS_TIMEOUT_S", "TRIAL_LEASE_S", "RedisStorage", "Server",
           "SharedBudget", "SharedRateLimit", "SharedWindow", "breaker_exists", "client_for",
           "client_from_url", "force", "key", "shared_breakers", "within"]

# REDIS_TIMEOUT_S (from _validate): the seconds brace waits for Redis per operation when an
# object's redis_timeout is not given, whatever client the user passed.
#: After a failed operation, seconds no object asks that Redis server again (at most; a
#: breaker with a shorter ``sync_interval`` shortens its server's window to that).
COOLDOWN_S = 1.0
#: A half-open trial's lease: renewed every third of this while the trial runs, so it
#: expires only when its owner died (or lost Redis) this long ago.
TRIAL_LEASE_S = 10.0

_CLOSED, _OPEN, _HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN


def key(name: str, kind: str) -> str:
    """The Redis key of ``kind`` for the object ``name``: ``brace:{name}:kind``.

    The hash tag keeps one object's keys in one Cluster slot. Kinds are suffix-free, so
    ``brace:{a}:trial`` can only be the trial lease of ``a``, whatever other names exist.
    """
    return f"brace:{{{name}}}:{kind}"


# -- clients and servers ----------------------------------------------------------------------


class Server:
    """One Redis server as this process sees it: reachable, or cooling down after a failure."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.cooldown_s = COOLDOWN_S
        self.retry_at = 0.0  # monotonic: no operation before this
        self.error: BaseException | None = None

    def failed(self, error: BaseException) -> None:
        """An operation failed: nobody asks this server again for ``cooldown_s``."""
        self.error = error
        self.retry_at = time.monotonic() + self.cooldown_s

    def shorten(self, seconds: float) -> None:
        """Let sharing resume within ``seconds`` of Redis answering again."""
        self.cooldown_s = min(self.cooldown_s, seconds)


_lock = threading.Lock()
# One bounded client per (URL, redis_timeout): a socket timeout is its connection's.
_by_url: dict[tuple[str, float], tuple[Any, Server]] = {}
# The user's client (or its pool) by (id, redis_timeout), kept alive, with brace's client
# derived from it.
_by_client: dict[tuple[int, float], tuple[Any, Any, Server]] = {}
_servers: dict[str, Server] = {}


def _redis_module() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("sharing through Redis needs the redis client: "
                          "pip install 'brace[redis]'") from exc
    return redis


def _no_retries() -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _is_async(client: Any) -> bool:
    return (type(client).__module__.startswith("redis.asyncio")
            or inspect.iscoroutinefunction(getattr(client, "execute_command", None)))


def refuse_async(client: Any) -> None:
    """A TypeError for a ``redis.asyncio`` client: brace's gates talk to Redis synchronously."""
    if _is_async(client):
        raise TypeError(
            f"redis= must be a synchronous client (redis.Redis or redis.cluster.RedisCluster), "
            f"got {type(client).__module__}.{type(client).__qualname__}: brace's gates decide "
            "on the call path without awaiting Redis (a healthy call makes no round trip at "
            "all). Pass redis=redis.Redis(...) with the same settings, or redis_url='redis://"
            "...'; brace bounds each Redis wait by its redis_timeout (0.25 s unless "
            "given) either way.")


# Connection settings that belong to a pool (or that brace replaces), not to a connection.
_POOL_OWNED = frozenset({
    "socket_timeout", "socket_connect_timeout", "retry", "retry_on_error", "retry_on_timeout",
    "himport_registry", "maint_notifications_pool_handler", "maint_notifications_config",
    "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout",
    "connection_pool", "health_check_interval"})


def _bounded_kwargs(kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    kept = {k: v for k, v in kwargs.items() if k not in _POOL_OWNED}
    kept.update(socket_timeout=timeout, socket_connect_timeout=timeout, retry=_no_retries())
    return kept


def _derive(client: Any, timeout: float) -> tuple[Any, str]:
    """Brace's bounded client talking to the server ``client`` talks to, and its address.

    Built from the connection settings of the user's pool (so credentials, TLS, database,
    RESP version and ``decode_responses`` are the user's), with ``timeout`` (seconds) per
    operation and no retries; a Sentinel pool keeps its Sentinel manager; a RedisCluster
    keeps its nodes. Anything else (a test double) is used as it is.
    """
    redis = _redis_module()
    # redis-py's cluster and sentinel modules are untyped: reached through Any.
    cluster: Any = importlib.import_module("redis.cluster")
    sentinel: Any = importlib.import_module("redis.sentinel")
    if isinstance(client, cluster.RedisCluster):
        nodes = [cluster.ClusterNode(node.host, node.port) for node in client.get_nodes()]
        kwargs = _bounded_kwargs(dict(client.nodes_manager.connection_kwargs), timeout)
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        derived = cluster.RedisCluster(startup_nodes=nodes,
                               dynamic_startup_nodes=False, **kwargs)
        return derived, "cluster:" + ",".join(sorted(f"{n.host}:{n.port}" for n in nodes))
    pool = getattr(client, "connection_pool", None)
    if pool is None or not isinstance(getattr(pool, "connection_kwargs", None), dict):
        return client, f"object:{id(client)}"
    kwargs = _bounded_kwargs(dict(pool.connection_kwargs), timeout)
    derived_pool: Any
    if isinstance(pool, sentinel.SentinelConnectionPool):
        kwargs.pop("connection_class", None)
        derived_pool = sentinel.SentinelConnectionPool(pool.service_name, pool.sentinel_manager,
                                              is_master=pool.is_master,
                                              check_connection=pool.check_connection,
                                              connection_class=pool.connection_class, **kwargs)
        address = f"sentinel:{pool.service_name}"
    else:
        derived_pool = type(pool)(connection_class=pool.connection_class, **kwargs) \
            if isinstance(pool, redis.ConnectionPool) else None
        if derived_pool is None:
            return client, f"object:{id(client)}"
        address = (f"unix:{kwargs['path']}" if "path" in kwargs
                   else f"tcp:{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")
    return redis.Redis(connection_pool=derived_pool), address


def _server(address: str) -> Server:
    server = _servers.get(address)
    if server is None:
        server = _servers[address] = Server(address)
    return server


def client_for(redis: Any = None, redis_url: str | None = None,
               timeout: float = REDIS_TIMEOUT_S) -> tuple[Any, Server]:
    """The bounded client for ``redis=`` (a user's client) or ``redis_url=``, and its server.

    ``timeout`` (seconds, checked by the caller) bounds each operation. One client (one
    connection pool) per URL, and per user client, and per timeout, per process; one
    ``Server`` (one cool-down) per server whatever the timeouts.

    Raises:
        TypeError: both or neither given, a ``redis.asyncio`` client, a URL that is no str.
        ValueError: a malformed URL.
    """
    if redis is not None and redis_url is not None:
        raise TypeError("pass redis= or redis_url=, not both")
    if redis_url is not None:
        return _from_url(redis_url, timeout)
    if redis is None:
        raise TypeError("redis= must be a redis.Redis client, got None")
    refuse_async(redis)
    with _lock:
        found = _by_client.get((id(redis), timeout))
        if found is None or found[0] is not redis:
            derived, address = _derive(redis, timeout)
            found = _by_client[id(redis), timeout] = (redis, derived, _server(address))
        return found[1], found[2]


def _from_url(url: str, timeout: float = REDIS_TIMEOUT_S) -> tuple[Any, Server]:
    if not isinstance(url, str) or not url:
        raise TypeError(f"redis_url must be a redis:// URL (a non-empty str), got {url!r}")
    with _lock:
        found = _by_url.get((url, timeout))
        if found is not None:
            return found
    redis = _redis_module()
    cluster = url.startswith("redis+cluster://") or url.startswith("rediss+cluster://")
    plain = url.replace("+cluster://", "://", 1) if cluster else url
    try:
        if cluster:
            from redis.cluster import RedisCluster

            # Reaching the cluster's nodes (to learn its slots) happens here, bounded too.
            client: Any = RedisCluster.from_url(
                plain, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=_no_retries())
            address = "cluster:" + plain.partition("://")[2].rpartition("@")[2]
        else:
            pool = redis.ConnectionPool.from_url(
                plain, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=_no_retries())
            client = redis.Redis(connection_pool=pool)
            kwargs = pool.connection_kwargs
            address = (f"unix:{kwargs['path']}" if "path" in kwargs
                       else f"tcp:{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")
    except ValueError as exc:
        raise ValueError(redact_url_error(f"redis_url is not a Redis URL ({exc}): got {url!r}",
                                          url)) from None
    with _lock:
        found = _by_url.setdefault((url, timeout), (client, _server(address)))
    if found[0] is not client:
        with contextlib.suppress(Exception):
            client.close()
    return found


def cluster_url(url: str, cluster: bool) -> str:
    """``url`` as a ``redis+cluster://`` URL when ``cluster`` (the CLI's ``--cluster``)."""
    if cluster and isinstance(url, str) and "+cluster://" not in url:
        return url.replace("://", "+cluster://", 1)
    return url


def client_from_url(url: str) -> Any:
    """The bounded client for ``url`` (shared by every object built with that URL)."""
    return _from_url(url)[0]


def reset() -> None:
    """Forget every server's cool-down and the user clients seen (``reset_breakers()``).

    The clients built for URLs stay: objects built later with a URL share them.
    """
    with _lock:
        for server in _servers.values():
            server.cooldown_s, server.retry_at, server.error = COOLDOWN_S, 0.0, None
        _by_client.clear()


# The monotonic time by which the gate operation under way must be done (its call's
# deadline; ``within``): a round trip that may not end by then is not started.
_due: contextvars.ContextVar[float] = contextvars.ContextVar("brace_redis_due",
                                                             default=math.inf)


@contextlib.contextmanager
def within(remaining: float) -> Iterator[None]:
    """Ask Redis only while an object's ``redis_timeout`` fits in ``remaining`` seconds.

    Inside, an operation starts only with at least its object's ``redis_timeout`` left of
    ``remaining`` seconds (from now); otherwise it answers None at once. For the operations
    pybreaker makes on a breaker's storage (reads of its state), which cannot be handed
    ``remaining=``. Per thread and per task (a context variable).
    """
    token = _due.set(min(_due.get(), time.monotonic() + remaining))
    try:
        yield
    finally:
        _due.reset(token)


class Link:
    """Redis as one breaker, budget or limit sees it, through its server's cool-down.

    A failed operation starts the server's cool-down (no object asks it meanwhile); the loss
    and the return are reported once each per object (under ``label``). ``timeout`` is the
    object's ``redis_timeout``: the longest one operation may take.
    """

    def __init__(self, label: str | None, server: Server, lost_means: str,
                 timeout: float = REDIS_TIMEOUT_S) -> None:
        self.label = label  # None: another object reports this Redis's outages
        self.server = server
        self.timeout = timeout
        self._lost_means = lost_means
        self.lost = False

    def cooling(self) -> bool:
        """Whether the server is in its cool-down (nobody asks it now)."""
        retry_at = self.server.retry_at
        return bool(retry_at) and time.monotonic() < retry_at

    def in_time(self) -> bool:
        """Whether an operation may start: ``within`` leaves at least ``timeout`` for it."""
        return _due.get() - time.monotonic() >= self.timeout

    def run(self, operation: Callable[[], Any]) -> Any:
        """``operation()`` against Redis, or None when it is unreachable (or cooling down).

        Also None, with nothing asked and nothing reported, when the call has less than
        ``timeout`` left (``within``).
        """
        from redis.exceptions import RedisError

        server = self.server
        if server.retry_at and time.monotonic() < server.retry_at:
            self._lose(server.error)
            return None
        if not self.in_time():
            return None
        try:
            result = operation()
        except RedisError as exc:
            server.failed(exc)
            self._lose(exc)
            return None
        if self.lost:
            self.lost = False
            if self.label is not None:
                _events.breaker_storage_recovered(self.label)
        return result

    def report(self, error: BaseException) -> None:
        """An operation failed with something other than a Redis error: count it as one."""
        self.server.failed(error)
        self._lose(error)

    def _lose(self, error: BaseException | None) -> None:
        if not self.lost and self.label is not None:
            _events.breaker_storage_error(self.label, f"Redis is unreachable: "
                                          f"{self._lost_means} until it answers", error)
        self.lost = True


class _Behind:
    """One daemon thread per process for Redis operations no caller waits for.

    Jobs are queued without blocking (starting a thread would wait for the scheduler on
    the call path); the thread starts when an object that uses it is built, and again in a
    forked child. Each job catches its own errors.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._pid = 0  # the process the thread runs in
        self._lock = threading.Lock()

    def start(self) -> None:
        """Make sure the thread runs in this process."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    threading.Thread(target=self._run, name="brace-redis-behind",
                                     daemon=True).start()
                    self._pid = os.getpid()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the thread, soon."""
        self.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            # A job reports its own errors; the thread outlives any it missed.
            with contextlib.suppress(Exception):
                job()


_behind = _Behind()


def _text(value: bytes | str) -> str:
    # A client made with decode_responses=True answers str, the default bytes.
    return value.decode() if isinstance(value, bytes) else value


# -- breakers ---------------------------------------------------------------------------------

# A transition written outside a trial (a trip, an operator's close). Closing clears a
# forced state and the counts. KEYS: state. ARGV: state, opened_at ('' to keep).
_SET_STATE = """
if ARGV[1] == 'closed' then
  redis.call('HDEL', KEYS[1], 'forced')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'successes', 0)
else
  redis.call('HSET', KEYS[1], 'state', ARGV[1])
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'opened_at', ARGV[2]) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""

# The half-open trial, taken atomically with the transition to half-open: exactly one per
# period across the fleet. KEYS: state, lease. ARGV: token, lease ms, now, reset_timeout.
# Returns {verdict, state, opened_at, forced}; verdict 1 means the trial is ours.
_TRIAL = """
local f = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'forced')
local state, opened, forced = f[1] or 'closed', f[2] or '', f[3] or ''
if forced ~= 'open' and state ~= 'closed' then
  local due = state == 'half-open' or
    (tonumber(opened) or 0) + tonumber(ARGV[4]) <= tonumber(ARGV[3])
  if due and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('HSET', KEYS[1], 'state', 'half-open', 'successes', 0)
    redis.call('HINCRBY', KEYS[1], 'version', 1)
    return {1, 'half-open', opened, forced}
  end
end
return {0, state, opened, forced}
"""

# A trial's outcome, written and its lease released in one step (only by the lease's
# holder: a trial whose lease was lost decides nothing). KEYS: state, lease. ARGV: token,
# 'open' | 'success', opened_at, success_threshold. Returns the successes, or -1.
_OUTCOME = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'forced') == 'open' then return -1 end
if ARGV[2] == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[3], 'successes', 0)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  return 0
end
local successes = redis.call('HINCRBY', KEYS[1], 'successes', 1)
if successes >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'successes', 0)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
return successes
"""

# Keep (or give back) a lease only while it is still ours. ARGV: token, lease ms ('' frees).
_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# An operator holds the breaker open until closed (or restores it). KEYS: state, lease.
# ARGV: 'open' | 'closed', now.
_FORCE = """
if ARGV[1] == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'forced', 'open', 'opened_at', ARGV[2],
             'failures', 0, 'successes', 0)
else
  redis.call('HDEL', KEYS[1], 'forced')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'successes', 0)
end
redis.call('DEL', KEYS[2])
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""


class RedisStorage(pybreaker.CircuitBreakerStorage):
    """A pybreaker storage shared through Redis, read from a local copy kept fresh.

    The local copy is at most ``sync_interval`` old. A healthy call reads it: no Redis round
    trip (one refresh per ``sync_interval`` per process). Failures, transitions and opening
    times are written at once; a success resets the fleet's consecutive failures at once
    when this process knows them to be non-zero (its own failure's answer or its latest
    refresh said so), and writes nothing otherwise. Half-open admits exactly one trial
    across the fleet: the transition and the lease are one Lua step (``acquire_trial``), the
    lease is renewed while the trial runs, and the trial's outcome is written and the lease
    released in one step. While Redis is unreachable the breaker goes on as a local,
    in-process breaker (or, with ``fallback_state="open"``, fails fast), paying at most one
    Redis timeout (``redis_timeout``) per cool-down of its server; it reports the loss once
    and the return once, and shares again from the next refresh. Inside ``within`` with
    less than ``redis_timeout`` left, the local copy answers as it is, however old, and
    nothing is written or taken in Redis (the gate refuses a trial then).
    """

    local_reads = True  # the gate may treat a quiet success as nothing to record
    #: The gate's way to bound the Redis reads pybreaker makes by its call's deadline.
    within = staticmethod(within)

    def __init__(self, name: str, client: Any, server: Server, fallback_state: str,
                 sync_interval: float, settings: dict[str, Any],
                 timeout: float = REDIS_TIMEOUT_S) -> None:
        super().__init__("redis")
        self.breaker = name
        self._client = client
        self._keys = [key(name, "state"), key(name, "trial")]
        self._fallback_state = fallback_state
        self.sync_interval = sync_interval
        self._lock = threading.Lock()
        self._scripts = {source: client.register_script(source)
                         for source in (_SET_STATE, _TRIAL, _OUTCOME, _LEASE, _FORCE)}
        # The local copy.
        self._local_state = _CLOSED
        self._counter = 0
        self._successes = 0
        self._opened_at: float | None = None
        self.forced = False
        self._fresh_until = 0.0  # monotonic time the copy must be refreshed after
        server.shorten(sync_interval)
        self._link = Link(name, server, "the breaker counts locally", timeout)
        self._token = f"{uuid.uuid4()}"
        # The trial this process holds the fleet's lease of, and its renewal.
        self._holding = False
        self._settled = False  # the trial's outcome is written: pybreaker's echo is local
        self._renewal: threading.Timer | None = None
        #: Called after each refresh of the local copy (the gate re-checks its healthy path).
        self.on_refresh: Callable[[], None] | None = None
        self._sync()
        # What operators see (python -m brace breakers): the breaker's settings.
        self._redis(lambda: client.hset(self._keys[0], mapping=settings))

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

    def _script(self, source: str, args: list[Any]) -> Any:
        script = self._scripts[source]
        return self._redis(lambda: script(keys=self._keys, args=args))

    def _sync(self) -> None:
        """Refresh the local copy when it is older than ``sync_interval`` (and time allows)."""
        now = time.monotonic()
        if now < self._fresh_until or not self._link.in_time():
            return  # fresh; or no time for a round trip: the copy stays due for a refresh
        self._refresh(now)
        if self.on_refresh is not None:
            self.on_refresh()

    def expire(self) -> None:
        """Make the next read refresh the local copy."""
        self._fresh_until = 0.0

    def _refresh(self, now: float) -> None:
        with self._lock:
            if now < self._fresh_until:
                return
            was_lost = self.lost
            shared = self._redis(lambda: self._client.hgetall(self._keys[0]))
            self._fresh_until = time.monotonic() + self.sync_interval
            if shared is None:
                return
            if was_lost and self._local_state == _OPEN and "state" not in {
                    _text(k) for k in shared}:
                self._write_state()  # what this process learned while alone
                return
            self._adopt({_text(k): _text(v) for k, v in shared.items()})

    def _adopt(self, fields: dict[str, str]) -> None:
        # An empty (restarted) Redis reads as closed.
        self._local_state = fields.get("state") or _CLOSED
        self._counter = int(fields.get("failures") or 0)
        self._successes = int(fields.get("successes") or 0)
        opened = fields.get("opened_at")
        self._opened_at = float(opened) if opened else None
        self.forced = fields.get("forced") == _OPEN

    def _write_state(self) -> None:
        opened = "" if self._opened_at is None else repr(self._opened_at)
        self._script(_SET_STATE, [self._local_state, opened])

    # -- pybreaker's storage interface ---------------------------------------------------------

    @property
    def state(self) -> str:
        """The breaker's state, from the local copy (refreshed every ``sync_interval``)."""
        self._sync()
        if self.forced:
            return _OPEN
        if self.lost and self._fallback_state == _OPEN:
            return _OPEN
        return self._local_state

    @state.setter
    def state(self, state: str) -> None:
        self._local_state = state
        if self._holding and state == _OPEN and not self.lost:
            self._settle("open")  # the trial failed: reopen and release, in one step
        elif self._holding or self._settled or state == _HALF_OPEN:
            # Half-open is written only with the trial's lease (acquire_trial); a trial's
            # outcome is written by _settle, pybreaker's echo of it stays local.
            return
        else:
            if state == _CLOSED:
                self.forced = False
            self._write_state()

    def increment_counter(self) -> None:
        """Count a failure, fleet-wide (a trial's failure is written with its outcome)."""
        self._counter += 1
        if self._holding or self._settled:
            return
        shared = self._redis(lambda: self._client.hincrby(self._keys[0], "failures", 1))
        if shared is not None:
            self._counter = int(shared)

    def reset_counter(self) -> None:
        """Forget the consecutive failures: at once, fleet-wide, when there were some."""
        if self._counter:
            self._counter = 0
            if not (self._holding or self._settled):
                self._redis(lambda: self._client.hset(self._keys[0], "failures", 0))

    def increment_success_counter(self) -> None:
        """Count a successful half-open trial, fleet-wide (closing at the threshold)."""
        self._successes += 1
        if self._holding and not self.lost:
            self._settle("success")

    def reset_success_counter(self) -> None:
        """Forget the successful trials."""
        if self._successes:
            self._successes = 0
            if not (self._holding or self._settled):
                self._redis(lambda: self._client.hset(self._keys[0], "successes", 0))

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
        if self._holding or self._settled:
            return  # written with the trial's outcome
        # Written with the transition that follows (pybreaker sets the time, then the state);
        # written now too, so a breaker already open restarts its clock fleet-wide.
        self._redis(lambda: self._client.hset(self._keys[0], "opened_at", repr(self._opened_at)))

    # -- one trial across the fleet --------------------------------------------------------------

    def acquire_trial(self, now: float, reset_timeout: float) -> bool:
        """Take the fleet's half-open trial (state and lease, atomically); False if not ours.

        ``now`` is the wall-clock time (seconds) the opening time is compared with. When
        refused, the local copy is updated with what the fleet says (open until when,
        a trial elsewhere, closed, forced). Without Redis each process runs its own trial
        (the breaker is local then).
        """
        answer = self._script(_TRIAL, [self._token, int(TRIAL_LEASE_S * 1000), repr(now),
                                       repr(reset_timeout)])
        if answer is None:
            return self.lost
        verdict, state, opened, forced = (_text(v) if isinstance(v, bytes) else v
                                          for v in answer)
        self._local_state = str(state)
        self._opened_at = float(opened) if opened else None
        self.forced = forced == _OPEN
        if int(verdict) != 1:
            return False
        self._holding, self._settled = True, False
        self._renew_later()
        return True

    def _renew_later(self) -> None:
        timer = threading.Timer(TRIAL_LEASE_S / 3, self._renew)
        timer.daemon = True
        self._renewal = timer
        timer.start()

    def _renew(self) -> None:
        # The trial still runs: keep its lease (a lease lost meanwhile stays lost).
        if not self._holding:
            return
        kept = self._redis(lambda: self._scripts[_LEASE](
            keys=self._keys[1:], args=[self._token, int(TRIAL_LEASE_S * 1000)]))
        if kept and self._holding:
            self._renew_later()

    def _settle(self, outcome: str) -> None:
        self._stop_renewing()
        self._holding, self._settled = False, True
        opened = "" if self._opened_at is None else repr(self._opened_at)
        answer = self._script(_OUTCOME, [self._token, outcome, opened,
                                         self._success_threshold])
        if answer is not None and int(answer) >= 0 and outcome == "success":
            self._successes = int(answer)
        self.expire()

    _success_threshold = 1  # set by the breaker (pybreaker reads it, the outcome script too)

    def _stop_renewing(self) -> None:
        timer, self._renewal = self._renewal, None
        if timer is not None:
            timer.cancel()

    def release_trial(self) -> None:
        """The trial ended: give the lease back if its outcome did not (a cancelled trial)."""
        holding, self._holding, self._settled = self._holding, False, False
        self._stop_renewing()
        if holding:
            self._redis(lambda: self._scripts[_LEASE](keys=self._keys[1:],
                                                      args=[self._token, ""]))
            self.expire()

    # -- operators ------------------------------------------------------------------------------

    def force(self, state: str) -> None:
        """Hold the breaker open fleet-wide until closed (``state="open"``), or restore it.

        Raises the client's error when Redis does not answer: nothing was forced then.
        """
        now = time.time()
        self._scripts[_FORCE](keys=self._keys, args=[state, repr(now)])
        with self._lock:
            self.forced = state == _OPEN
            self._local_state = state
            self._counter = self._successes = 0
            self._opened_at = now if state == _OPEN else self._opened_at
            self._fresh_until = time.monotonic() + self.sync_interval

    def forget(self) -> None:
        """Delete the shared state (``reset_breakers()`` in tests)."""
        self.release_trial()
        self._redis(lambda: self._client.delete(*self._keys, key(self.breaker, "window")))
        self._local_state, self._counter, self._successes, self._opened_at = (
            _CLOSED, 0, 0, None)
        self.forced = False


def breaker_exists(client: Any, name: str) -> bool:
    """Whether a process created the shared breaker ``name`` in this Redis."""
    return bool(client.exists(key(name, "state")))


def force(client: Any, name: str, state: str, *, create: bool = False) -> None:
    """Force the shared breaker ``name`` open (isolate a dependency) or closed (restore it).

    Forced open, it stays open (no trial) until forced closed; every process sharing it
    obeys when its local copy refreshes (within its ``sync_interval``). Atomic, one slot.

    Raises:
        ValueError: ``state`` is not ``"open"`` or ``"closed"``.
        LookupError: no process created ``name`` in this Redis (and not ``create``).
    """
    if state not in (_OPEN, _CLOSED):
        raise ValueError(f"state must be 'open' or 'closed', got {state!r}")
    if not create and not breaker_exists(client, name):
        raise LookupError(f"no breaker named {name!r} in this Redis: pass --create to force "
                          "a breaker no process has created yet")
    client.register_script(_FORCE)(keys=[key(name, "state"), key(name, "trial")],
                                   args=[state, repr(time.time())])


def _scan(client: Any, match: str) -> list[Any]:
    cluster: Any = importlib.import_module("redis.cluster")
    if isinstance(client, cluster.RedisCluster):
        return sorted({k for node in client.get_primaries()
                       for k in client.scan_iter(match=match, count=500, target_nodes=node)})
    return sorted(set(client.scan_iter(match=match, count=500)))


def shared_breakers(client: Any) -> list[dict[str, Any]]:
    """Every breaker shared in this Redis (every node of a Cluster), as the fleet sees it.

    Each: ``name``, ``state``, ``forced`` (held open by an operator), ``failures``,
    ``fail_max``, ``ratio`` (the failures' share of the calls in a failure-ratio breaker's
    window), ``reset_timeout``, ``opened_at`` (ISO 8601, UTC, or None) and ``next_trial_s``
    (seconds until an open breaker admits a trial; None when closed or forced).
    """
    rows = []
    for found in _scan(client, "brace:{*}:state"):
        name = _text(found)[len("brace:{"):-len("}:state")]
        fields = {_text(k): _text(v) for k, v in client.hgetall(found).items()}
        state = fields.get("state") or _CLOSED
        forced = fields.get("forced") == _OPEN
        reset = float(fields["reset_timeout"]) if "reset_timeout" in fields else None
        opened = float(fields["opened_at"]) if fields.get("opened_at") else None
        next_trial = None
        if state == _OPEN and not forced and reset is not None and opened is not None:
            next_trial = round(max(0.0, opened + reset - time.time()), 3)
        rows.append({
            "name": name, "state": _OPEN if forced else state, "forced": forced,
            "failures": int(fields.get("failures") or 0),
            "fail_max": int(fields["fail_max"]) if "fail_max" in fields else None,
            "ratio": _window_ratio(client, name, fields.get("window")),
            "reset_timeout": reset,
            "opened_at": (None if opened is None or state == _CLOSED else
                          datetime.fromtimestamp(opened, timezone.utc).isoformat()),
            "next_trial_s": next_trial})
    return rows


def _window_ratio(client: Any, name: str, window: str | None) -> float | None:
    # The failures' share of the calls in a failure-ratio breaker's current window.
    if window is None:
        return None
    fields = {_text(k): int(v) for k, v in client.hgetall(key(name, "window")).items()}
    now = int(time.time() / (float(window) / 10))
    live = [slot for slot in range(10) if fields.get(f"b:{slot}", -1) > now - 10]
    calls = sum(fields.get(f"c:{slot}", 0) for slot in live)
    failures = sum(fields.get(f"f:{slot}", 0) for slot in live)
    return round(failures / calls, 3) if calls else None


def shared_storage(name: str, given: dict[str, Any],
                   settings: dict[str, Any]) -> tuple[RedisStorage, SharedWindow]:
    """The storage (and failure-ratio window) of the breaker ``name`` shared through Redis."""
    timeout = settings["redis_timeout"]
    if "redis_url" in given:  # given as None too: say which setting it was
        client, server = _from_url(given["redis_url"], timeout)
    else:
        client, server = client_for(given.get("redis"), None, timeout)
    described = {"fail_max": settings["fail_max"], "reset_timeout": settings["reset_timeout"],
                 "success_threshold": settings["success_threshold"]}
    if settings["failure_ratio"] is not None:
        described.update(failure_ratio=settings["failure_ratio"], window=settings["window"])
    storage = RedisStorage(name, client, server, settings["fallback_state"],
                           settings["sync_interval"], described, timeout)
    storage._success_threshold = settings["success_threshold"]
    return storage, SharedWindow(name, client, server, settings["window"], timeout)


# -- retry budgets and failure-ratio windows ------------------------------------------------------

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
    its server's cool-down. ``timeout`` is the budget's ``redis_timeout``: a spend with less
    time left than that is decided locally by the budget (``Budget.try_spend``).
    """

    def __init__(self, name: str, client: Any, server: Server, window: float,
                 timeout: float = REDIS_TIMEOUT_S) -> None:
        self._key = key(name, "budget")
        self._width = window / 10
        self._script = client.register_script(_BUDGET)
        self.timeout = timeout
        self._link = Link(f"budget:{name}", server, "the budget counts locally", timeout)

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

    def __init__(self, name: str, client: Any, server: Server, window: float,
                 timeout: float = REDIS_TIMEOUT_S) -> None:
        self._key = key(name, "window")
        self._width = window / 10
        self._client = client
        self._script = client.register_script(_WINDOW)
        self.timeout = timeout  # the breaker's redis_timeout
        # The breaker's storage reports this Redis.
        self._link = Link(None, server, "", timeout)

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
        self._link.run(lambda: self._client.delete(self._key))


# -- rate limits ---------------------------------------------------------------------------------

# A lease of up to N tokens of the fleet's GCRA bucket, on Redis's clock. Token i of the
# lease is due at max(now, tat + (i - burst + 1) x interval): the first `ready` are due now,
# the rest one interval apart. While the bucket is full, the tokens due within `horizon`
# are leased (or the first one, when the caller may wait longer for it). While it is
# contended (not full), only the tokens due now, or else the next one, when it is due
# within the horizon or the caller waits for it: even a caller who cannot wait takes the
# process's turn, so processes are served in the order they ask, each holding one turn
# ahead at most, and none starves. `debt` tokens admitted locally while Redis was away are
# charged first. ARGV: interval, burst, N, the most the caller may wait, horizon, debt.
# Returns {granted, ready, seconds to the first token not ready, seconds to wait}.
_RATE_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local horizon = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + tonumber(ARGV[6]) * interval
local full = tat <= now
local first = tat - (burst - 1) * interval
local wait = math.max(0, first - now)
local granted = 0
if wait < math.max(tonumber(ARGV[4]), horizon) then
  local limit = now + math.max(wait, horizon)
  granted = math.min(tonumber(ARGV[3]), math.floor((limit - first) / interval) + 1)
end
local ready = math.max(0, math.min(granted, math.floor((now - first) / interval) + 1))
if not full and granted > ready then
  -- Contended: the tokens due now, else the next one; the rest are other processes' turns.
  granted = math.max(ready, math.min(granted, 1))
end
local later = first + ready * interval - now
tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return {granted, ready, tostring(later), tostring(wait)}
"""

#: How far ahead (seconds of this process's recent demand) one lease reaches.
LEASE_HORIZON_S = 0.25
#: A leased token is used within this many seconds of when it became due, or dropped:
#: the fleet then stays within ``per_s`` x (t + this) + ``burst`` over any t seconds.
LEASE_LAG_S = 0.05
_MAX_LEASE = 1000
# The longest wait the lease script is told about (Lua reads no "inf").
_MAX_WAIT_S = 1e9


class SharedRateLimit:
    """A rate limit's bucket shared through Redis, taken in leases of several tokens.

    Each process leases the tokens its recent demand needs for the next
    ``LEASE_HORIZON_S`` (at least one, at most its share, 1 / ``processes``, of ``per_s`` x
    that plus ``burst``) in one round trip; calls take them locally (a healthy call makes
    no round trip). While the fleet's bucket is contended a lease holds the tokens due now,
    or else the next one due within the horizon, even for a caller who cannot wait for it:
    processes take turns in the order they ask, none holding more than one turn ahead, so
    none starves. When the fleet's answer is "no token for N s", calls that cannot wait
    that long are refused locally until then.

    One lease is on its way at a time, and never under the lock: a caller with time to
    spare waits for it (at most as long as it may wait), and a caller with less than
    ``timeout`` (the ``redis_timeout``) left never waits for Redis: it takes a leased token
    or is refused (while Redis is unreachable, ``reserve`` answers None: this process's
    share), and a lease for the next callers is taken in the background. Tokens admitted
    locally while Redis was unreachable are charged to the fleet's bucket when it answers
    again, so admission ramps back within the limit.
    """

    def __init__(self, name: str, client: Any, server: Server, per_s: float, burst: int,
                 processes: int = 1, timeout: float = REDIS_TIMEOUT_S) -> None:
        self._key = key(name, "rate")
        self._interval = 1.0 / per_s
        self._burst = burst
        # One process's lease is at most its share of what the fleet may take within the
        # horizon: under contention no process holds the others' tokens.
        self._max = max(1, min(_MAX_LEASE, math.ceil(
            (per_s * LEASE_HORIZON_S + burst) / processes)))
        self._script = client.register_script(_RATE_LEASE)
        self.timeout = timeout
        self._link = Link(f"rate_limit:{name}", server,
                          "the rate limit applies this process's share", timeout)
        self._lock = threading.Lock()  # the healthy path's: a plain lock, cheapest
        self._landed = threading.Condition(self._lock)  # notified when a lease lands
        self._leasing = False  # a lease is on its way
        self._ready = 0  # leased tokens due now ...
        self._ready_until = 0.0  # ... usable until then (monotonic)
        self._later = 0  # leased tokens due later, one interval apart ...
        self._next_at = 0.0  # ... the first of them at this monotonic time
        self._empty_until = 0.0  # the fleet has no token for anyone before then
        self._demand = 0  # calls asking in the current stretch of LEASE_HORIZON_S
        self._demand_since = 0.0
        self._recent = 0  # calls asking in the previous stretch
        self._here: list[float] = []  # tokens admitted locally while Redis was away
        _behind.start()  # for the leases of callers with no time for Redis

    def _next(self, now: float) -> float | None:
        # Seconds until the next leased token (0.0: due now); None when the lease is empty.
        if self._ready:
            if now <= self._ready_until:
                return 0.0
            self._ready = 0
        if self._later:
            stale = now - LEASE_LAG_S - self._next_at
            if stale > 0:  # tokens nobody used in time are dropped, never saved up
                dropped = min(self._later, math.ceil(stale / self._interval))
                self._later -= dropped
                self._next_at += dropped * self._interval
            if self._later:
                return max(0.0, self._next_at - now)
        return None

    def _use(self) -> None:
        if self._ready:
            self._ready -= 1
        else:
            self._later -= 1
            self._next_at += self._interval

    def _count_demand(self, now: float) -> None:
        if now - self._demand_since >= LEASE_HORIZON_S:
            self._recent = self._demand if now - self._demand_since < 2 * LEASE_HORIZON_S else 0
            self._demand, self._demand_since = 0, now
        self._demand += 1

    def set_rate(self, per_s: float) -> None:
        """Ask the fleet's bucket at ``per_s`` from the next lease on.

        An adaptive limit's learned rate; tokens already leased keep their spacing.
        """
        self._interval = 1.0 / per_s

    def take_now(self) -> bool:
        """Take a leased token due now, without Redis; False when none is."""
        with self._lock:
            now = time.monotonic()
            self._count_demand(now)
            if self._next(now) != 0.0:
                return False
            self._use()
            return True

    def give_back(self) -> None:
        """Return a leased token that was not used (its attempt never ran)."""
        with self._lock:
            self._ready += 1
            self._ready_until = max(self._ready_until, time.monotonic() + LEASE_LAG_S)

    def reserve(self, remaining: float) -> tuple[bool, float] | None:
        """``(granted, wait)``: a token, after ``wait`` s; or None without Redis.

        ``remaining`` (seconds left of the call's deadline) bounds the wait for the token
        and for Redis. Refused without a round trip while the lease, or the fleet's latest
        answer, says no token can come in time. With less than ``timeout`` left, decided
        from the lease alone: a leased token, else refused (None while Redis is
        unreachable), and a lease is taken in the background for the next callers.
        """
        until = time.monotonic() + remaining
        with self._lock:
            while True:
                now = time.monotonic()
                left = until - now
                wait = self._next(now)
                if wait is not None:
                    if wait >= left:
                        return False, wait
                    self._use()
                    return True, wait
                if self._empty_until - now >= left:
                    return False, self._empty_until - now  # the fleet said so: no round trip
                if left < self.timeout:  # no time for a round trip: the lease decides
                    self._lease_soon()
                    if self._link.lost or self._link.cooling():
                        return None  # Redis unreachable: this process's share
                    return False, max(0.0, self._empty_until - now)
                if not self._leasing:
                    break
                self._landed.wait(min(left, self.timeout))  # for the lease on its way
            wanted, debt = self._lease_args()
            self._leasing = True
            self._lock.release()  # the round trip runs unlocked: nobody waits on it blindly
            try:
                answer = self._ask(wanted, debt, left)
            finally:
                self._lock.acquire()
                self._leasing = False
                self._landed.notify_all()
            if answer is None:
                return None
            self._apply(answer, debt)
            now = time.monotonic()
            wait = self._next(now)
            if wait is None:
                return False, max(0.0, self._empty_until - now)
            if wait >= until - now:
                return False, wait
            self._use()
            return True, wait

    def _lease_args(self) -> tuple[int, int]:
        # Under the lock: the tokens to ask for (demand per stretch, with headroom, at most
        # the process's share) and the tokens admitted locally to charge.
        wanted = max(1, min(self._max, math.ceil(max(self._recent, self._demand) * 1.2)))
        return wanted, self._debt(time.monotonic())

    def _ask(self, wanted: int, debt: int, may_wait: float) -> Any:
        return self._link.run(lambda: self._script(keys=[self._key], args=[
            repr(self._interval), self._burst, wanted, repr(min(max(may_wait, 0.0), _MAX_WAIT_S)),
            repr(LEASE_HORIZON_S), debt]))

    def _apply(self, answer: Any, debt: int) -> None:
        # Under the lock, the lease having been empty: its tokens, as Redis answered.
        del self._here[:debt]  # charged
        granted, ready = int(answer[0]), int(answer[1])
        later, wait = float(_text(answer[2])), float(_text(answer[3]))
        received = time.monotonic()
        if ready:  # with any token given back meanwhile
            kept = self._ready if received <= self._ready_until else 0
            self._ready, self._ready_until = kept + ready, received + LEASE_LAG_S
        self._later, self._next_at = granted - ready, received + later
        if not granted:
            self._empty_until = received + wait

    def _lease_soon(self) -> None:
        # Under the lock: a lease for the callers to come, on brace's background thread,
        # unless one is on its way or the server cools down (Redis would not be asked).
        if self._leasing or self._link.cooling():
            return
        wanted, debt = self._lease_args()
        self._leasing = True
        try:
            _behind.submit(functools.partial(self._lease_behind, wanted, debt))
        except RuntimeError:  # no thread to be had (the interpreter is shutting down)
            self._leasing = False

    def _lease_behind(self, wanted: int, debt: int) -> None:
        answer: Any = None
        try:
            answer = self._ask(wanted, debt, 0.0)  # tokens for later callers: none waits
            with self._lock:
                if answer is not None:
                    self._apply(answer, debt)
        except Exception as exc:  # no caller to raise it to: reported as a lost Redis
            self._link.report(exc)
        finally:
            with self._lock:
                self._leasing = False
                self._landed.notify_all()

    def _debt(self, now: float) -> int:
        # Tokens admitted locally in the last second (older ones no longer count).
        self._here = [at for at in self._here if now - at < 1.0]
        return len(self._here)

    def admitted_locally(self) -> None:
        """A token came from this process's share while Redis was unreachable."""
        with self._lock:
            if len(self._here) < _MAX_LEASE:
                self._here.append(time.monotonic())
