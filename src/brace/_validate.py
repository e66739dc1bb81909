"""Parameter checks shared by waits, stops, policies, breakers and budgets.

Every check names the parameter as the user spelled it, its unit and the allowed range, so
a bad value fails where the policy is built, never at call time.
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


def number(value: object, name: str, *, low: float = 0.0, high: float | None = None,
           low_open: bool = False, unit: str = "") -> float:
    """Return ``value`` as a float if it is a finite number in range, else raise naming it.

    The range is ``[low, high]`` (``(low, high]`` with ``low_open``); ``unit`` is how the
    message names what the number counts (``" of seconds"``).
    """
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high is not None:
        bound = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    what = f"{name} must be a finite number{unit} {bound}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{what}, got {value!r}") from None
    if (not math.isfinite(result) or result < low or (low_open and result == low)
            or (high is not None and result > high)):
        raise ValueError(f"{what}, got {value!r}")
    return result


#: The longest wait, deadline or timeout brace accepts (about 115 days): beyond it, the
#: clocks, ``time.sleep`` and ``datetime`` arithmetic that a policy relies on overflow.
MAX_SECONDS = 1e7


def seconds(value: object, name: str, *, allow_zero: bool = True,
            high: float = MAX_SECONDS) -> float:
    """Return ``value`` as a float if it is a finite number of seconds in (0 or [0, high]."""
    return number(value, name, low_open=not allow_zero, high=high, unit=" of seconds")


def wait_range(initial: object, maximum: object, max_name: str) -> tuple[float, float]:
    """Check an ``initial -> max`` backoff range; ``max_name`` is how the caller spells max."""
    low = seconds(initial, "initial")
    high = seconds(maximum, max_name)
    if high < low:
        raise ValueError(f"{max_name} must be >= initial ({low!r}), got {maximum!r}")
    return low, high
