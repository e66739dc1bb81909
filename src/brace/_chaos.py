"""Chaos for users' tests: faults, outcomes and latency injected inside attempts.

``brace.testing.chaos(...)`` builds a ``Chaos`` setting; ``policy.replace(chaos=...)`` (or a
preset's ``chaos=``) puts it on a policy, and the call path wraps the function with
``Chaos.wrap`` before it builds the call: every attempt first rolls the setting's dice and,
when they say so, waits, raises the fault or returns the outcome instead of calling. Being
inside the attempt, what is injected meets the breaker, budget, retry decision, hedging and
events exactly as a real fault would (DESIGN rule 33).

Everything injected is marked (``is_injected``), so events and users' tests can tell it from
a real failure. Neither httpx nor pytest is imported here: ``brace.testing`` loads this
module, and the httpx chaos transports (``_chaos_transport``) build on it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import functools
import random
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from brace import _validate, waits

__all__ = ["Chaos", "Dice", "chaos", "fault_spec", "fresh_error", "is_injected", "mark_injected"]

# The attribute that marks an injected error or value (one name, read by is_injected).
_MARK = "__brace_injected__"


def mark_injected(value: object) -> None:
    """Mark ``value`` (an error or a value) as injected by chaos.

    A value without attributes (None, a number, a string) cannot carry the mark.
    """
    with contextlib.suppress(AttributeError, TypeError):
        setattr(value, _MARK, True)


def is_injected(value: object) -> bool:
    """Whether ``value`` was injected by brace's chaos (``chaos()``, ``ChaosTransport``).

    ``value`` is an error or a returned value; an error carrying an injected response
    (``response.raise_for_status()`` on an injected 503) counts too. A value that cannot
    carry attributes (None, a number, a string) is never recognised.
    """
    for holder in (value, getattr(value, "response", None)):
        if holder is not None and getattr(holder, _MARK, False) is True:
            return True
    return False


# --- settings -----------------------------------------------------------------------------


def _rate(value: object) -> float:
    return _validate.number(value, "rate", low=0.0, high=1.0)


def _enabled(value: object) -> bool | Callable[[], object]:
    if isinstance(value, bool) or callable(value):
        return value
    raise TypeError(f"enabled must be a bool or a callable taking no arguments (a feature "
                    f"flag read before each attempt), got {_validate.shown(value)}")


def _latency(value: object) -> float | Callable[[], object] | None:
    if value is None:
        return None
    if callable(value) and not isinstance(value, datetime.timedelta):
        return value  # checked on every draw: what it returns may change
    return _validate.seconds(value, "latency")


def _seed(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"seed must be an int (or None: a different sequence every run), got "
                    f"{_validate.shown(value)}")


def fault_spec(value: object, name: str) -> BaseException | type[BaseException]:
    """An injectable error: an Exception instance, or an Exception class; else raise.

    Cancellation, interrupts and exits (``KeyboardInterrupt`` ...) are refused: a policy
    never retries them, so injecting one tests nothing brace does.
    """
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    if isinstance(value, Exception):
        return value
    if (isinstance(value, type) and issubclass(value, BaseException)) or isinstance(
            value, BaseException):
        raise TypeError(f"{name} must be an Exception (instance or class), not "
                        f"{_validate.shown(value)}: cancellation, interrupts and exits "
                        "always propagate, no policy retries them")
    raise TypeError(f"{name} must be an exception instance or class (such as "
                    f"ConnectionError() or TimeoutError), got {_validate.shown(value)}")


class Dice:
    """When chaos strikes: a rate, an ``enabled`` switch, a latency and a seeded sequence.

    One ``random.Random`` per setting, drawn under a lock, so a seed gives one sequence
    however many threads share the setting; a draw is made only while enabled, and only
    when the rate is strictly between 0 and 1.
    """

    __slots__ = ("_lock", "_random", "enabled", "latency", "rate")

    def __init__(self, rate: float, enabled: bool | Callable[[], object],
                 latency: float | Callable[[], object] | None, seed: int | None) -> None:
        self.rate = rate
        self.enabled = enabled
        self.latency = latency
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def fires(self) -> bool:
        """Roll for one attempt: True when chaos strikes it."""
        enabled = self.enabled
        if enabled is not True and (enabled is False or not enabled()):
            return False
        rate = self.rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        with self._lock:
            return self._random.random() < rate

    def choice(self, options: Sequence[Any]) -> Any:
        """One of ``options``, from this setting's sequence."""
        if len(options) == 1:
            return options[0]
        with self._lock:
            return options[self._random.randrange(len(options))]

    def delay(self) -> float | None:
        """Seconds to wait in a struck attempt (None: no latency)."""
        latency = self.latency
        if latency is None or isinstance(latency, float):
            return latency
        said = latency()
        try:
            return _validate.seconds(said, "latency")
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"the latency callable {_validate.shown(latency)} returned "
                            f"{_validate.shown(said)}: {exc}") from None

    def wait(self) -> None:
        """Sleep the latency (sync) through ``brace.waits.sleep``: ``no_waits()`` skips it."""
        seconds = self.delay()
        if seconds:
            waits.sleep(seconds)

    async def async_wait(self) -> None:
        """Sleep the latency in the running async library (asyncio, or trio through anyio).

        Through ``brace.waits.async_sleep``: inside ``no_waits()`` it only yields.
        """
        seconds = self.delay()
        if seconds:
            await waits.async_sleep(seconds)


def _httpx() -> Any:
    # httpx, if the program imported it: an httpx object can only exist once it is.
    return sys.modules.get("httpx")


def _request_in(args: tuple[Any, ...]) -> Any:
    # The httpx.Request an attempt was called with (brace's transports pass it), or None.
    httpx = _httpx()
    if httpx is None:
        return None
    return next((arg for arg in args if isinstance(arg, httpx.Request)), None)


def fresh_error(error: BaseException) -> BaseException:
    """A fresh copy of ``error`` to raise, with its own traceback and marks.

    ``error`` itself, without its old traceback, when it cannot be copied (an
    ``__init__`` that its own ``args`` do not satisfy).
    """
    try:
        copied = copy.copy(error)
    except Exception:
        return error.with_traceback(None)
    return copied if type(copied) is type(error) else error.with_traceback(None)


_NOTHING: Any = type("NoOutcome", (), {"__repr__": lambda self: "NO_OUTCOME"})()


@dataclasses.dataclass(frozen=True, eq=False)
class Chaos:
    """A chaos setting: what to inject into a policy's attempts, how often, and when.

    Built by ``brace.testing.chaos(...)`` (see there for the parameters) and applied with
    ``policy.replace(chaos=...)`` or a preset's ``chaos=``. Immutable; compared and hashed
    by identity, since each setting has its own random sequence: a policy that carries it
    stays hashable whatever the outcome is.
    """

    __module__ = "brace.testing"
    # Recognised by brace._validate.chaos (the policy's check), which cannot import this.
    _brace_chaos = True

    fault: BaseException | type[BaseException] | None = None
    outcome: Any = None
    latency: float | datetime.timedelta | Callable[[], float | datetime.timedelta] | None = None
    rate: float = 1.0
    enabled: bool | Callable[[], object] = True
    seed: int | None = None

    def __post_init__(self) -> None:
        rate = _rate(self.rate)
        enabled = _enabled(self.enabled)
        latency = _latency(self.latency)
        seed = _seed(self.seed)
        if self.fault is not None and self.outcome is not None:
            raise ValueError("chaos() injects a fault or an outcome, not both: pass fault= "
                             "or outcome= (latency= combines with either)")
        if self.fault is None and self.outcome is None and latency is None:
            raise ValueError("chaos() would inject nothing: pass fault=, outcome= or latency=")
        fault = None if self.fault is None else fault_spec(self.fault, "fault")
        if isinstance(fault, type):
            try:
                fault()
            except Exception:
                raise TypeError(f"fault={fault.__name__} cannot be made without arguments: "
                                f"pass an instance, such as {fault.__name__}('...')") from None
        outcome = self.outcome
        httpx = _httpx()
        if httpx is not None and isinstance(outcome, httpx.Response):
            try:
                outcome.content  # noqa: B018  (raises for a body not yet read)
            except httpx.ResponseNotRead:
                raise TypeError("outcome= must be an httpx.Response whose body is in memory "
                                "(httpx.Response(503, content=b'...')), not a stream"
                                ) from None
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "latency", latency)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "_dice", Dice(rate, enabled, latency, seed))

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with this chaos before each call: what a policy does to every attempt.

        Policies call it themselves; it is public for code that wants chaos without a
        policy. An async ``fn`` gets an async wrapper (latency sleeps in the running
        library); the wrapper keeps ``fn``'s name and docstring.
        """
        dice: Dice = self._dice  # type: ignore[attr-defined]
        inject = self._inject

        if _validate.is_async(fn):
            async def async_injected(*args: Any, **kwargs: Any) -> Any:
                if dice.fires():
                    await dice.async_wait()
                    injected = inject(args)
                    if injected is not _NOTHING:
                        return injected
                return await fn(*args, **kwargs)

            return functools.wraps(fn)(async_injected)

        def injected(*args: Any, **kwargs: Any) -> Any:
            if dice.fires():
                dice.wait()
                value = inject(args)
                if value is not _NOTHING:
                    return value
            return fn(*args, **kwargs)

        return functools.wraps(fn)(injected)

    def _inject(self, args: tuple[Any, ...]) -> Any:
        # Raise the fault, or return the outcome (marked); _NOTHING when only latency is
        # injected and the function is called after it.
        if self.fault is not None:
            raise self._error(args)
        outcome = self.outcome
        if outcome is None:
            return _NOTHING
        httpx = _httpx()
        if httpx is not None and isinstance(outcome, httpx.Response):
            outcome = _fresh_response(httpx, outcome, _request_in(args))
        mark_injected(outcome)
        return outcome

    def _error(self, args: tuple[Any, ...]) -> BaseException:
        fault = self.fault
        # An instance is raised many times: each injection raises a fresh copy.
        error = fault() if isinstance(fault, type) else fresh_error(fault)  # type: ignore[arg-type]
        httpx = _httpx()
        if httpx is not None and isinstance(error, httpx.RequestError):
            _attach(error, _request_in(args))
        mark_injected(error)
        return error

    def __repr__(self) -> str:
        shown = [f"{name}={_validate.shown(getattr(self, name))}"
                 for name in ("fault", "outcome", "latency") if getattr(self, name) is not None]
        shown.append(f"rate={self.rate:g}")
        if self.enabled is not True:
            shown.append(f"enabled={_validate.shown(self.enabled)}")
        if self.seed is not None:
            shown.append(f"seed={self.seed}")
        return f"brace.testing.chaos({', '.join(shown)})"


def _attach(outcome: Any, request: Any) -> None:
    # httpx's Client attaches the request above the transport; brace's idempotency rule
    # reads it inside, so an injected answer carries the attempt's request as a real one.
    if request is None:
        return
    try:
        outcome.request  # noqa: B018  (raises when unset)
    except RuntimeError:
        outcome.request = request


def _fresh_response(httpx: Any, template: Any, request: Any) -> Any:
    # A new response per injection: a transport closes, marks and annotates the responses
    # it gets, which must not leak into the next injection. The body is already decoded,
    # so Content-Encoding is dropped (httpx would decode it again).
    headers = [(key, value) for key, value in template.headers.multi_items()
               if key.lower() not in ("content-encoding", "content-length")]
    try:
        request = request if request is not None else template.request
    except RuntimeError:
        request = None
    return httpx.Response(template.status_code, headers=headers, content=template.content,
                          request=request, extensions=dict(template.extensions))


def chaos(fault: BaseException | type[BaseException] | None = None, outcome: Any = None,
          latency: float | datetime.timedelta | Callable[[], float | datetime.timedelta]
          | None = None, rate: float = 1.0, enabled: bool | Callable[[], object] = True,
          seed: int | None = None) -> Chaos:
    """A chaos setting for a policy: injects a fault, an outcome or latency into attempts.

    ``policy.replace(chaos=brace.testing.chaos(fault=ConnectionError(), rate=0.2, seed=1))``
    (or ``brace.http(chaos=...)``): before each attempt, with probability ``rate``, the
    attempt waits ``latency``, then raises ``fault`` or returns ``outcome`` instead of
    calling the function (with latency alone, it calls the function after the wait). It
    all happens inside the attempt, so the policy retries, its breaker and budget count,
    hedges race and events report what is injected exactly as they would a real fault;
    events mark it ``injected=True`` and ``brace.testing.is_injected`` recognises it.

    Latency sleeps through brace's own sleeps: inside ``brace.testing.no_waits()`` it is
    skipped, so a suite stays instant (counted as time passed for rate limits, as a
    skipped backoff is, but not against the call's deadline: the attempt took no time);
    outside, a sync attempt really waits and an async one sleeps in the running library
    (asyncio, or trio through anyio), where ``attempt_timeout``, the deadline and hedges
    see it.

    Args:
        fault: An exception instance (each injection raises a fresh copy) or an Exception
            class (made without arguments per injection). Not with ``outcome``.
        outcome: A value returned instead of calling, such as ``httpx.Response(503)`` (a
            fresh copy per injection, carrying the attempt's request on brace's
            transports). None: no outcome (None itself cannot be injected).
        latency: Seconds (or a ``datetime.timedelta``) to wait in each struck attempt, or a
            callable returning them, called per injection (a random latency).
        rate: The probability that an attempt is struck, in [0, 1].
        enabled: A bool, or a callable read before each attempt (a feature flag): while
            it is false nothing is injected and no random number is drawn. It runs inside
            the attempt: an error it raises fails the attempt as the function's would.
        seed: Seeds this setting's own ``random.Random``: one sequence per setting, shared
            by every function and thread it is applied to (draws are serialised). None:
            a different sequence every run.

    Raises:
        ValueError: ``rate`` outside [0, 1], negative latency, both ``fault`` and
            ``outcome``, or nothing to inject.
        TypeError: ``fault`` is not an Exception (instance or class that can be made
            without arguments), ``enabled`` is neither a bool nor a callable, ``seed`` is
            not an int, ``latency`` is not a duration or callable.
    """
    return Chaos(fault=fault, outcome=outcome, latency=latency, rate=rate, enabled=enabled,
                 seed=seed)
