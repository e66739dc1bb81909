"""Parameter checks shared by waits, stops and policies.

Every check names the parameter as the user spelled it and the allowed range, so a bad
value fails where the policy is built, never at call time.
"""

from __future__ import annotations

import math


def attempts(value: object, name: str = "attempts") -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    # bool is an int subclass; `attempts=True` is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def seconds(value: object, name: str, *, allow_zero: bool = True) -> float:
    """Return ``value`` as a float if it is a finite number of seconds in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    bound = ">= 0" if allow_zero else "> 0"
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} must be a finite number of seconds {bound}, "
                         f"got {value!r}") from None
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    if result < 0 or (result == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return result


def wait_range(initial: object, maximum: object, max_name: str) -> tuple[float, float]:
    """Check an ``initial -> max`` backoff range; ``max_name`` is how the caller spells max."""
    low = seconds(initial, "initial")
    high = seconds(maximum, max_name)
    if high < low:
        raise ValueError(f"{max_name} must be >= initial ({low!r}), got {maximum!r}")
    return low, high
