"""The presets: vetted starting points, each a ``Preset`` (a Policy you can call).

``brace.http`` and ``brace.presets.http`` are the same object. Call it with overrides for a
Policy (``brace.http(deadline=10)``), or on a function to decorate it with the defaults
(``@brace.http`` or ``@brace.http()``). Defaults and the reasons for them live in
``TABLE``; changes to it are noted in CHANGELOG.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

import pybreaker
import tenacity

from brace import _budget, _config, predicates
from brace._policy import OnSpec, P, Policy, Retried
from brace._validate import Duration

__all__ = [
    "HTTP_RETRY_STATUSES",
    "TABLE",
    "Preset",
    "background",
    "database",
    "get",
    "http",
    "interactive",
    "llm",
    "names",
    "network",
]

R = TypeVar("R")


class Preset(Policy):
    """A named default Policy that is also a factory for derived policies.

    ``preset(fn)`` decorates ``fn`` with the defaults; ``preset(**overrides)`` (including
    ``preset()``) returns a new ``Policy``. A preset is itself a Policy, so
    ``brace.http.retrying()`` and ``brace.http.tenacity_kwargs()`` work too.
    """

    __module__ = "brace"

    @property
    def summary(self) -> str:
        """One line on what this preset is for."""
        return TABLE[self.preset]["summary"]  # type: ignore[no-any-return]

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Retried[P, R]: ...
    @overload
    def __call__(
        self,
        /,
        *,
        preset: str = ...,
        attempts: int = ...,
        initial: Duration = ...,
        max_wait: Duration = ...,
        deadline: Duration = ...,
        on: OnSpec | Sequence[OnSpec] = ...,
        retry: tenacity.retry_base = ...,
        statuses: Sequence[int] = ...,
        idempotent_only: bool = ...,
        attempt_timeout: Duration | None = ...,
        breaker: str | pybreaker.CircuitBreaker | None = ...,
        budget: str | _budget.Budget | None = ...,
        rate_limit: str | None = ...,
        bulkhead: str | None = ...,
        hedge_after: Duration | None = ...,
        hedges: int | None = ...,
        fallback: Any = ...,
    ) -> Policy: ...
    def __call__(self, fn: Callable[..., Any] | None = None, /, **overrides: Any) -> Any:
        """Decorate ``fn`` with the defaults, or return a Policy with ``overrides``."""
        if fn is None:
            return self.replace(**overrides)
        if overrides:
            raise TypeError("pass overrides without a function: @brace.PRESET(attempts=3)")
        return super().__call__(fn)

    def __repr__(self) -> str:
        return f"<brace preset {self.preset!r}: {self.summary}>"


HTTP_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
"""Statuses that mean "try again later": timeout, rate limit, server and gateway errors."""

TABLE: dict[str, dict[str, Any]] = {
    "network": dict(attempts=4, initial=0.1, max_wait=5.0, deadline=20.0,
                    retry=predicates.transient,
                    summary="any network call: connection errors and timeouts"),
    "http": dict(attempts=4, initial=0.2, max_wait=10.0, deadline=30.0,
                 retry=predicates.transient, statuses=HTTP_RETRY_STATUSES,
                 summary="HTTP APIs: transient errors, 408/429/5xx, honours Retry-After; "
                         "only requests that are safe to resend"),
    "database": dict(attempts=5, initial=0.05, max_wait=2.0, deadline=10.0,
                     retry=predicates.dbapi_transient,
                     summary="whole transactions: lost connections, serialization failures, "
                             "deadlocks, lock timeouts"),
    "llm": dict(attempts=5, initial=1.0, max_wait=30.0, deadline=300.0,
                retry=predicates.transient, statuses=(*HTTP_RETRY_STATUSES, 529),
                # A completion POST may be resent: it has no effect beyond its cost, and a
                # 429/529 means it was not processed.
                idempotent_only=False,
                summary="LLM provider APIs: slow, rate-limited (429), overloaded (529)"),
    "interactive": dict(attempts=2, initial=0.05, max_wait=0.25, deadline=1.0,
                        retry=predicates.transient,
                        summary="a user is waiting: one quick retry, then fail"),
    "background": dict(attempts=10, initial=1.0, max_wait=60.0, deadline=600.0,
                       retry=predicates.transient,
                       summary="jobs and workers: patient, spread-out retries"),
}
"""Defaults of every preset; ``summary`` is what ``python -m brace presets`` prints."""


def _make(name: str) -> Preset:
    config = {key: value for key, value in TABLE[name].items() if key != "summary"}
    return Preset(preset=name, **config)


network = _make("network")
http = _make("http")
database = _make("database")
llm = _make("llm")
interactive = _make("interactive")
background = _make("background")

_PRESETS: dict[str, Preset] = {p.preset: p for p in
                               (network, http, database, llm, interactive, background)}
# The transports' default policy, named where they can read it without importing presets.
_config.presets.update(_PRESETS)


def get(name: str) -> Preset:
    """Return the preset called ``name`` (``get("http") is brace.http``).

    Raises:
        ValueError: no preset has that name; the message lists the known ones.
    """
    try:
        return _PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Names of every preset, in table order."""
    return tuple(_PRESETS)
