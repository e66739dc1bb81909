"""Parameter checks shared by waits, stops, policies, breakers and budgets.

Every check names the parameter as the user spelled it, its unit and the allowed range, so
a bad value fails where the policy is built, never at call time.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeAlias

#: What every duration setting accepts: a number of seconds, or a ``datetime.timedelta``.
Duration: TypeAlias = "float | timedelta"


#: The most attempts a policy may make (``attempts``, ``hedges``): explain() and the CLI
#: show them one by one, and no dependency is worth more.
MAX_ATTEMPTS = 1000
#: The largest count any other setting takes (``fail_max``, ``min_calls``, ``burst``,
#: ``processes``, ``max_concurrent``, ...): nothing computed from it overflows.
MAX_COUNT = 10**9
#: The highest rate a setting takes (``per_s``, ``min_per_s``), per second: more than any
#: dependency serves, and a rate times the longest window stays a finite float.
MAX_PER_S = 1e9
#: The longest repr of a rejected value an error message shows, in characters.
SHOWN_CHARS = 100


def shown(value: object) -> str:
    """``repr(value)`` for an error message, bounded in length and never failing.

    An int of more than 100 digits is shown by its size: Python refuses to print one of
    more than 4,300 (``sys.set_int_max_str_digits``), and its digits help nobody.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 332:
        # 332 bits: the first size that may take more than 100 decimal digits.
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'a negative' if value < 0 else 'an'} int of about {digits} digits"
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails still gets its message
        return f"<{type(value).__name__} object>"
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


def attempts(value: object, name: str = "attempts", high: int | None = None) -> int:
    """Return ``value`` if it is an int in 1..``high``, else raise naming ``name``.

    ``high`` defaults to ``MAX_ATTEMPTS`` for ``attempts`` and ``hedges``, else
    ``MAX_COUNT``.
    """
    if high is None:
        high = MAX_ATTEMPTS if name in ("attempts", "hedges") else MAX_COUNT
    # bool is an int subclass; `attempts=True` is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in 1-{high}, got {shown(value)}")
    if value < 1:
        raise ValueError(f"{name} must be an int in 1-{high}, got {shown(value)}")
    if value > high:  # not repr'd: a huge int's digits are no help (and may not convert)
        raise ValueError(f"{name} must be an int in 1-{high}, got one above {high}")
    return value


def flag(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool, else raise naming ``name`` (1 is not True here)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {shown(value)}")
    return value


def number(value: object, name: str, *, low: float = 0.0, high: float | None = None,
           low_open: bool = False, unit: str = "", duration: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number in range, else raise naming it.

    The range is ``[low, high]`` (``(low, high]`` with ``low_open``); ``unit`` is how the
    message names what the number counts (``" of seconds"``). With ``duration``, a
    ``datetime.timedelta`` is accepted too, as its ``total_seconds()``.
    """
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high is not None:
        bound = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    what = f"{name} must be a finite number{unit} {bound}"
    given = value
    if duration and isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        also = " (or a datetime.timedelta)" if duration else ""
        raise TypeError(f"{what}{also}, got {shown(given)}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{what}, got {shown(given)}") from None
    if (not math.isfinite(result) or result < low or (low_open and result == low)
            or (high is not None and result > high)):
        raise ValueError(f"{what}, got {shown(given)}")
    return result


#: The longest wait, deadline or timeout brace accepts (about 115 days): beyond it, the
#: clocks, ``time.sleep`` and ``datetime`` arithmetic that a policy relies on overflow.
MAX_SECONDS = 1e7


def seconds(value: object, name: str, *, allow_zero: bool = True, low: float = 0.0,
            high: float = MAX_SECONDS) -> float:
    """Return the duration ``value`` as a float of seconds, else raise naming ``name``.

    The one rule for every duration setting: a number of seconds (int or float) or a
    ``datetime.timedelta`` (its ``total_seconds()``), finite, in ``[low, high]``
    (``(low, high]`` without ``allow_zero``).
    """
    return number(value, name, low=low, low_open=not allow_zero, high=high,
                  unit=" of seconds", duration=True)


#: brace's bound on one Redis wait when an object's ``redis_timeout`` is not given (seconds).
REDIS_TIMEOUT_S = 0.25
#: ``redis_timeout``'s range: at least 1 ms (a socket timeout of 0 would not block at all),
#: at most 60 s.
REDIS_TIMEOUT_RANGE = (0.001, 60.0)


def redis_timeout(value: object, shared: bool) -> float:
    """``redis_timeout`` in seconds (``REDIS_TIMEOUT_S`` when None), else raise naming it.

    Raises:
        TypeError: given without ``redis=`` / ``redis_url=`` (``shared`` False): it would
            bound nothing.
        ValueError, TypeError: not a duration in ``REDIS_TIMEOUT_RANGE``.
    """
    if value is None:
        return REDIS_TIMEOUT_S
    if not shared:
        raise TypeError("redis_timeout= bounds brace's waits on Redis: pass redis= or "
                        "redis_url= too")
    low, high = REDIS_TIMEOUT_RANGE
    return seconds(value, "redis_timeout", low=low, high=high)


def plain(value: object) -> object:
    """``value`` with a ``datetime.timedelta`` as its seconds (to compare settings)."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def wait_range(initial: object, maximum: object, max_name: str) -> tuple[float, float]:
    """Check an ``initial -> max`` backoff range; ``max_name`` is how the caller spells max."""
    low = seconds(initial, "initial")
    high = seconds(maximum, max_name)
    if high < low:
        raise ValueError(f"{max_name} must be >= initial ({low!r}), got {shown(maximum)}")
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
            raise TypeError(f"on= accepts exception types or predicates, got {shown(item)}")
    return tuple(items)


def on_wait(said: object, predicate: object) -> float:
    """The wait an ``on=`` callable returned for an error, in seconds, else raise naming it.

    A bool means retry or not (the caller handles it); a number or ``timedelta`` of at least
    0 s (at most ``MAX_SECONDS``) is the wait; anything else is a TypeError.
    """
    if isinstance(said, (int, float, timedelta)) and not isinstance(said, bool):
        try:
            return seconds(said, "the wait on= returned")
        except ValueError as exc:
            raise ValueError(f"on= callable {shown(predicate)}: {exc}") from None
    raise TypeError(f"on= callable {shown(predicate)} returned {shown(said)}: return "
                    "True/False (retry or not) or the seconds to wait before retrying (a "
                    "float or a datetime.timedelta)")


def status(code: object, name: str = "status codes", low: int = 100) -> int:
    """``code`` if it is an int HTTP status in ``low``-599, else raise naming ``name``."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"{name} must be ints in {low}-599, got {shown(code)}")
    if not low <= code <= 599:
        raise ValueError(f"{name} must be in {low}-599, got {shown(code)}")
    return code


def statuses(codes: object, name: str = "statuses") -> tuple[int, ...]:
    """``codes`` as a sorted tuple of error statuses (ints in 400-599), else raise naming it.

    Raises:
        TypeError: ``codes`` is not a collection of ints (a single int included).
        ValueError: a code is outside 400-599 (a success or redirect is never retried).
    """
    if isinstance(codes, (str, bytes)) or not isinstance(codes, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list or tuple of HTTP statuses (ints in 400-599), "
                        f"got {shown(codes)}; for one status write {name}=[{shown(codes)}]")
    return tuple(sorted({status(code, name, 400) for code in codes}))


def decoratable(fn: object, name: str, asynchronous: bool,
                attempt_timeout: float | None, hedge_after: float | None = None) -> None:
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
    if hedge_after is not None and not asynchronous:
        raise TypeError(f"hedge_after= races copies of an async call; {name} is sync: "
                        "decorate an async function, or use brace's async httpx client")


def breaker_settings(given: dict[str, Any], defaults: Any) -> dict[str, Any]:
    """``brace.breaker``'s settings, checked and completed, or raise naming the bad one."""
    settings = {**defaults, **given}
    exclude = given.get("exclude", ())
    if isinstance(exclude, type) or not isinstance(exclude, Iterable):
        raise TypeError(f"exclude= must be a list of exception types or predicates, "
                        f"got {shown(exclude)}")
    for item in exclude:
        if not callable(item) or (isinstance(item, type)
                                  and not issubclass(item, BaseException)):
            raise TypeError(f"exclude= accepts exception types or predicates, got {shown(item)}")
    fallback_state = given.get("fallback_state", "closed")
    if fallback_state not in ("closed", "open"):
        raise ValueError(f"fallback_state must be 'closed' or 'open', got "
                         f"{shown(fallback_state)}")
    shared = "redis" in given or "redis_url" in given
    if "redis" in given and "redis_url" in given:
        raise TypeError("pass redis= or redis_url=, not both")
    if "sync_interval" in given and not shared:
        raise TypeError("sync_interval= applies to a breaker shared through Redis: pass "
                        "redis= or redis_url= too")
    ratio = given.get("failure_ratio")
    if ratio is None and ("min_calls" in given or "window" in given):
        raise TypeError("min_calls= and window= belong to a failure-ratio breaker: pass "
                        "failure_ratio= too")
    slow = given.get("slow_call")
    return {
        "fail_max": attempts(settings["fail_max"], "fail_max"),
        # At least 1 ms: a breaker open for less protects nothing.
        "reset_timeout": seconds(settings["reset_timeout"], "reset_timeout", low=0.001),
        "success_threshold": attempts(settings["success_threshold"], "success_threshold"),
        "exclude": list(exclude), "fallback_state": fallback_state,
        "sync_interval": seconds(given.get("sync_interval", 1.0), "sync_interval", low=0.01,
                                 high=60.0),
        "failure_ratio": None if ratio is None else number(ratio, "failure_ratio",
                                                           low_open=True, high=1.0),
        "min_calls": attempts(given.get("min_calls", 20), "min_calls"),
        "window": seconds(given.get("window", 30.0), "window", low=0.01),
        "slow_call": None if slow is None else seconds(slow, "slow_call", allow_zero=False),
        "redis_timeout": redis_timeout(given.get("redis_timeout"), shared),
    }


def callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn``, as tenacity names it in ``RetryCallState.get_fn_name``."""
    qualname: str | None = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module: str | None
    if qualname is None:  # a callable object: name its class
        qualname, module = type(fn).__qualname__, type(fn).__module__
    else:
        module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials, callable objects)."""
    if inspect.isclass(fn):
        return False
    target = fn.func if isinstance(fn, functools.partial) else getattr(fn, "__call__", fn)  # noqa: B004
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)


def named(value: object, param: str, kinds: tuple[type, ...], what: str) -> None:
    """Raise TypeError unless ``value`` is None, a non-empty str or one of ``kinds``."""
    if value is not None and not ((isinstance(value, str) and value)
                                  or isinstance(value, kinds)):
        raise TypeError(f"{param}= must be {what}, got {shown(value)}")


def hedging(hedge_after: object, hedges: object, tries: int,
            deadline: float) -> tuple[float | None, int | None]:
    """``hedge_after`` and ``hedges`` checked against the policy's attempts and deadline."""
    if hedge_after is None:
        if hedges is not None:
            raise TypeError("hedges= counts the extra attempts hedge_after= starts: pass "
                            "hedge_after= too")
        return None, None
    after = seconds(hedge_after, "hedge_after", allow_zero=False)
    if after >= deadline:
        raise ValueError(f"hedge_after must be < deadline ({deadline!r}): a hedge would never "
                         f"start, got {shown(hedge_after)}")
    if tries < 2:
        raise ValueError("hedge_after= needs attempts >= 2: every hedge is an attempt")
    count = attempts(1 if hedges is None else hedges, "hedges")
    if count > tries - 1:
        raise ValueError(f"hedges must be an int in [1, {tries - 1}] (attempts - 1: every "
                         f"hedge is an attempt), got {shown(hedges)}")
    return after, hedges  # type: ignore[return-value]


def chaos(value: object) -> None:
    """Raise TypeError unless ``value`` is None or a ``brace.testing.chaos(...)`` setting."""
    # By its class's mark: this lowest layer imports nothing above it (brace._chaos).
    if value is not None and getattr(type(value), "_brace_chaos", None) is not True:
        raise TypeError(f"chaos= must be a setting made by brace.testing.chaos(...) (or None), "
                        f"got {shown(value)}")
