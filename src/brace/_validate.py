"""Parameter checks shared by waits, stops, policies, breakers and budgets.

Every check names the parameter as the user spelled it, its unit and the allowed range, so
a bad value fails where the policy is built, never at call time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any


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


def on_spec(on: object) -> tuple[Any, ...]:
    """``on=`` as a tuple of exception types and predicates, else raise naming ``on=``."""
    items: Sequence[object]
    if isinstance(on, (list, tuple)):
        items = on
    elif isinstance(on, (set, frozenset)):
        raise TypeError("on= must be an exception type, a predicate, or a list/tuple of them "
                        "(a set has no stable order)")
    else:
        items = (on,)
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise TypeError(f"on= accepts exception types, got the class {item.__name__!r}, "
                                "which is not a subclass of BaseException")
            if not issubclass(item, Exception):
                raise TypeError(f"on= cannot retry {item.__name__}: cancellation, interrupts "
                                "and exits always propagate at once; list Exception "
                                "subclasses only")
        elif isinstance(item, BaseException) or not callable(item):
            raise TypeError(f"on= accepts exception types or predicates, got {item!r}")
    return tuple(items)


def status(code: object, name: str = "status codes", low: int = 100) -> int:
    """``code`` if it is an int HTTP status in ``low``-599, else raise naming ``name``."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"{name} must be ints in {low}-599, got {code!r}")
    if not low <= code <= 599:
        raise ValueError(f"{name} must be in {low}-599, got {code!r}")
    return code


def statuses(codes: object, name: str = "statuses") -> tuple[int, ...]:
    """``codes`` as a sorted tuple of error statuses (ints in 400-599), else raise naming it.

    Raises:
        TypeError: ``codes`` is not a collection of ints (a single int included).
        ValueError: a code is outside 400-599 (a success or redirect is never retried).
    """
    if isinstance(codes, (str, bytes)) or not isinstance(codes, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list or tuple of HTTP statuses (ints in 400-599), "
                        f"got {codes!r}; for one status write {name}=[{codes!r}]")
    return tuple(sorted({status(code, name, 400) for code in codes}))


def decoratable(fn: object, name: str, asynchronous: bool,
                attempt_timeout: float | None) -> None:
    """Raise TypeError when a policy cannot do what decorating ``fn`` would promise."""
    if inspect.isclass(fn):
        raise TypeError(f"a policy decorates a function, not the class {name}: decorate the "
                        "methods that call the dependency")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        # An error while iterating would escape the policy, and a generator that already
        # yielded items cannot be rerun without repeating them.
        raise TypeError(f"a policy cannot retry the generator function {name}: decorate a "
                        "function that returns the data (for example as a list), or retry "
                        "the call that opens the stream")
    if attempt_timeout is not None and not asynchronous:
        raise TypeError(
            f"attempt_timeout= cannot interrupt the sync function {name}: set its client's "
            "own timeout (for example httpx.Client(timeout=...) or a driver's "
            "connect_timeout), or use brace's httpx client, which applies attempt_timeout "
            "per request")
