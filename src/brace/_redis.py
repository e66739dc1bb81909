"""Everything that talks to Redis: the shared breaker storage and a client that cools down.

The redis client is imported only when a breaker is given ``redis=`` or ``redis_url=``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pybreaker

from brace import _events
from brace._redact import redact

__all__ = ["REDIS_COOLDOWN_S", "REDIS_TIMEOUT_S", "RedisStorage", "client_from_url"]

#: Seconds Redis may take per operation before the breaker falls back (see the docs).
REDIS_TIMEOUT_S = 0.25
#: After a Redis error, storage calls fail at once for this long instead of each waiting
#: for its own timeout: a frozen Redis must not cost every call several timeouts.
REDIS_COOLDOWN_S = 1.0


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


class RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, reporting errors as ``breaker.storage_error`` events."""

    def __init__(self, name: str, client: Any, fallback_state: str) -> None:
        # pybreaker logs Redis errors through `self.logger.exception`; route them to events.
        self.logger = _StorageErrorLog(name)  # type: ignore[assignment]
        super().__init__(pybreaker.STATE_CLOSED, _CoolingRedis(client),  # type: ignore[arg-type]
                         namespace=f"brace:{name}", fallback_circuit_state=fallback_state)

    def _initialize_redis_state(self, state: str) -> None:
        # The one override of a pybreaker internal: its constructor lets a Redis error escape
        # (a breaker must not crash start-up because Redis is down; the state getter
        # re-initialises the keys later). Pinned by
        # test_breaker_created_while_redis_down_recovers_when_redis_starts.
        try:
            super()._initialize_redis_state(state)
        except Exception:
            self.logger.exception("RedisError: could not initialise breaker state")


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
