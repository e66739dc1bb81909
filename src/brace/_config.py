"""Process-wide switches, behind a lock: the on/off switch and ``no_waits()``.

The call path reads ``state`` on every call, so reads are plain attribute reads; writes
take the lock so that nested ``no_waits()`` blocks in several threads keep an exact count.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = [
    "NO_FALLBACK",
    "enter_no_waits",
    "exit_no_waits",
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
