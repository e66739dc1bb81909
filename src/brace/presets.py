"""The presets: vetted starting points, each a ``Preset`` (a Policy you can call).

``brace.http`` and ``brace.presets.http`` are the same object. Call it with overrides for a
Policy (``brace.http(deadline=10)``), or on a function to decorate it with the defaults
(``@brace.http`` or ``@brace.http()``). Defaults and the reasons for them live in
``TABLE``; changes to it are noted in CHANGELOG.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import pybreaker
import tenacity

from brace import _budget, _config, predicates
from brace._policy import OnSpec, P, Policy, Retried
from brace._validate import Duration

if TYPE_CHECKING:
    from brace._chaos import Chaos

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

    @property
    def promise(self) -> str:
        """What this preset rides out with its defaults, in plain words (>= 99 %)."""
        return TABLE[self.preset]["promise"]  # type: ignore[no-any-return]

    @property
    def rides_out_s(self) -> float:
        """The outage, in seconds, that the defaults ride out with >= 99 % probability."""
        return float(TABLE[self.preset]["rides_out_s"])

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
        throttle: str | None = ...,
        rate_limit: str | None = ...,
        bulkhead: str | None = ...,
        hedge_after: Duration | None = ...,
        hedges: int | None = ...,
        fallback: Any = ...,
        chaos: Chaos | None = ...,
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

# Each preset's numbers are calibrated against the fault it exists for (DESIGN rule 26):
# ``rides_out_s`` is the outage that a call started during it survives with >= 99 %
# probability under full jitter (brace._explain.reach_probability computes it exactly from
# the wait distribution; tests/test_presets.py pins it; benchmarks/faults.py confirms it
# against real servers and docs/rides-out.md publishes the table). The outage plus one
# max_wait stays within the deadline, so the deadline never cuts a call that the schedule
# would have carried over the outage. Changes are listed in CHANGELOG.md.
TABLE: dict[str, dict[str, Any]] = {
    "network": dict(attempts=10, initial=0.2, max_wait=5.0, deadline=20.0,
                    retry=predicates.transient,
                    summary="any network call: connection errors and timeouts",
                    rides_out_s=5.0,
                    promise="rides out refused or reset connections (a service restarting, "
                            "a load balancer swapping a backend) for up to 5 s"),
    "http": dict(attempts=11, initial=0.2, max_wait=10.0, deadline=30.0,
                 retry=predicates.transient, statuses=HTTP_RETRY_STATUSES,
                 summary="HTTP APIs: transient errors, 408/429/5xx, honours Retry-After; "
                         "only requests that are safe to resend",
                 rides_out_s=10.0,
                 promise="rides out a 502/503/504 blip (a deploy, a proxy without "
                         "upstreams) of up to 10 s, and any Retry-After that fits the "
                         "30 s deadline"),
    "database": dict(attempts=12, initial=0.1, max_wait=3.0, deadline=10.0,
                     retry=predicates.dbapi_transient,
                     summary="whole transactions: lost connections, serialization failures, "
                             "deadlocks, lock timeouts",
                     rides_out_s=5.0,
                     promise="rides out a PostgreSQL restart or failover of up to 5 s "
                             "(sessions terminated, connections refused, the server "
                             "starting up), and re-runs transactions that lost a "
                             "serialization conflict or a deadlock"),
    "llm": dict(attempts=13, initial=1.0, max_wait=30.0, deadline=300.0,
                retry=predicates.transient, statuses=(*HTTP_RETRY_STATUSES, 529),
                # A completion POST may be resent: it has no effect beyond its cost, and a
                # 429/529 means it was not processed.
                idempotent_only=False,
                summary="LLM provider APIs: slow, rate-limited (429), overloaded (529)",
                rides_out_s=60.0,
                promise="rides out a 429/529 storm of up to 60 s (longer when the provider "
                        "sends Retry-After: every one that fits the 300 s deadline)"),
    "interactive": dict(attempts=6, initial=0.1, max_wait=0.25, deadline=1.0,
                        retry=predicates.transient,
                        summary="a user is waiting: quick retries, then fail",
                        rides_out_s=0.2,
                        promise="rides out a blip of up to 0.2 s, and answers or gives up "
                                "within 1 s"),
    "background": dict(attempts=16, initial=1.0, max_wait=120.0, deadline=600.0,
                       retry=predicates.transient,
                       summary="jobs and workers: patient, spread-out retries",
                       rides_out_s=300.0,
                       promise="rides out an outage of up to 5 min"),
}
"""Defaults of every preset; ``summary`` is what ``python -m brace presets`` prints,
``promise`` and ``rides_out_s`` what it rides out (``python -m brace explain NAME``)."""
_DESCRIPTIONS = ("summary", "promise", "rides_out_s")


def _make(name: str) -> Preset:
    config = {key: value for key, value in TABLE[name].items() if key not in _DESCRIPTIONS}
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
