"""Process-wide switches, behind a lock: the on/off switch and ``no_waits()``; ``forget``.

The call path reads ``state`` on every call, so reads are plain attribute reads; writes
take the lock so that nested ``no_waits()`` blocks in several threads keep an exact count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from brace import _validate

__all__ = [
    "NO_FALLBACK",
    "enter_no_waits",
    "exit_no_waits",
    "forget",
    "forgetters",
    "is_active",
    "presets",
    "set_active",
    "state",
    "waits_disabled",
]

_SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                  "0": False, "false": False, "no": False, "off": False}


def _from_environment() -> bool:
    raw = os.environ.get("BRACE_ACTIVE", "1").strip().lower()
    if raw not in _SWITCH_VALUES:
        raise ValueError(f"BRACE_ACTIVE must be one of 1, 0, true, false, yes, no, on, off; "
                         f"got {raw!r}")
    return _SWITCH_VALUES[raw]


class _State:
    __slots__ = ("active", "attempts", "no_waits", "skipped")

    def __init__(self) -> None:
        self.active = _from_environment()  # brace.set_active / BRACE_ACTIVE
        self.no_waits = 0  # depth of nested no_waits() blocks, in every thread and loop
        # The attempts cap of the innermost no_waits(attempts=N) block, or None.
        self.attempts: int | None = None
        # Seconds of sleep no_waits() skipped so far, process-wide: the time a real run
        # would have let pass, which token buckets count (a token comes back meanwhile).
        self.skipped = 0.0


#: The switches as the call path reads them.
state = _State()
_lock = threading.Lock()

#: The presets by name, filled in by ``brace.presets`` when it is imported: lower layers
#: (the transports' default policy) read them here without importing it.
presets: dict[str, Any] = {}

#: Each registry of named objects (breakers, budgets, bulkheads and rate limits) adds its
#: ``forget(name) -> bool`` here when it is imported, as ``presets`` above: ``forget``
#: reaches them all without this lowest layer importing them.
forgetters: list[Callable[[str], bool]] = []

#: The ``fallback`` default: no fallback, errors propagate. (None is a valid fallback value.)
NO_FALLBACK: Any = type("NoFallback", (), {"__repr__": lambda self: "NO_FALLBACK"})()


def set_active(active: bool) -> None:
    """Turn every policy on (True) or into a single plain attempt (False).

    Off, decorated functions, ``retrying()`` blocks and brace's httpx transports make exactly
    one attempt and never sleep; breakers, timeouts and fallbacks stay in force. For
    emergencies and for tests that want to see the first error. ``BRACE_ACTIVE=0`` in the
    environment sets it off at import.

    Raises:
        TypeError: ``active`` is not a bool.
    """
    if not isinstance(active, bool):
        raise TypeError(f"set_active() takes a bool, got {active!r}")
    with _lock:
        state.active = active


def is_active() -> bool:
    """Return whether policies retry (see ``set_active``)."""
    return state.active


def enter_no_waits(attempts: int | None = None) -> int | None:
    """Start a ``no_waits()`` block (they nest); return the attempts cap it replaces."""
    with _lock:
        state.no_waits += 1
        previous = state.attempts
        if attempts is not None:
            state.attempts = attempts
        return previous


def exit_no_waits(previous: int | None = None) -> None:
    """End a ``no_waits()`` block, putting back the attempts cap it replaced."""
    with _lock:
        state.no_waits -= 1
        state.attempts = previous


def waits_disabled() -> bool:
    """Return True while ``brace.testing.no_waits`` is active."""
    return state.no_waits > 0


def forget(name: str) -> bool:
    """Release the circuit breaker, retry budget, bulkhead and rate limit called ``name``.

    brace keeps each object made by name for the life of the process (the same name is the
    same object everywhere), so a process that makes names without end (one per tenant,
    per customer, per host) forgets each when it is done with it; brace's own per-host
    breakers are bounded by themselves. The next ``brace.breaker(name, ...)`` (or budget,
    bulkhead, rate limit, or a policy naming it) creates the object afresh, with new
    settings or the defaults: what the old one counted, and an open breaker's state, go
    with it. Calls in flight finish with the old objects; one you kept
    (``cb = brace.breaker(name)``) still works, but the name no longer refers to it.
    State shared through Redis stays there for the other processes.

    Returns:
        Whether anything of that name was forgotten.

    Raises:
        TypeError: ``name`` is not a non-empty str.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"forget() takes a name (non-empty str), got {_validate.shown(name)}")
    # Every registry, each under its own lock (no short cut: one name may be all four).
    return any([release(name) for release in forgetters])
