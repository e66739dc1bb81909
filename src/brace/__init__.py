"""brace: vetted resilience presets over tenacity, pybreaker, httpx and structlog.

::

    import brace

    @brace.http()
    def get_user(uid): ...

Every preset holds a configured tenacity retryer; see README.md for the tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brace import metrics, predicates, presets, stops, waits, web
from brace._breakers import BreakerInfo, CircuitOpenError, breaker, breakers
from brace._budget import Budget, budget
from brace._config import NO_FALLBACK, forget, is_active, set_active
from brace._deadline import DeadlineScope, deadline, remaining
from brace._events import observe, unobserve
from brace._limits import (
    Bulkhead,
    BulkheadFullError,
    RateLimit,
    RateLimitedError,
    Throttle,
    ThrottledError,
    bulkhead,
    rate_limit,
    throttle,
)
from brace._outcome import BraceError
from brace._policy import Policy, Retried
from brace.presets import Preset, background, database, http, interactive, llm, network

__all__ = [
    "NO_FALLBACK",
    "AsyncRetryTransport",
    "BraceError",
    "BreakerInfo",
    "Budget",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitOpenError",
    "DeadlineScope",
    "Policy",
    "Preset",
    "RateLimit",
    "RateLimitedError",
    "Retried",
    "RetryAdapter",
    "RetryTransport",
    "Throttle",
    "ThrottledError",
    "background",
    "breaker",
    "breakers",
    "budget",
    "bulkhead",
    "database",
    "deadline",
    "forget",
    "http",
    "interactive",
    "is_active",
    "llm",
    "metrics",
    "network",
    "observe",
    "predicates",
    "presets",
    "rate_limit",
    "remaining",
    "set_active",
    "stops",
    "throttle",
    "unobserve",
    "waits",
    "web",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from brace._requests import RetryAdapter
    from brace._transport import AsyncRetryTransport, RetryTransport


def __getattr__(name: str) -> Any:
    # The transports import httpx: load them on first use, keeping `import brace` light.
    if name in ("RetryTransport", "AsyncRetryTransport"):
        from brace import _transport

        return getattr(_transport, name)
    if name == "RetryAdapter":  # imports requests, an optional dependency: on first use
        from brace import _requests

        return _requests.RetryAdapter
    raise AttributeError(f"module 'brace' has no attribute {name!r}")
