"""httpx transports that inject status answers, transport errors and latency, for tests.

``brace.testing.ChaosTransport`` and ``AsyncChaosTransport`` wrap any httpx transport (a
real ``HTTPTransport``, a ``MockTransport``, brace's ``RetryTransport`` or its inner
transport), so a user's integration test can make any httpx client meet the faults it must
ride out, without a fault server. Imported on first use by ``brace.testing``, so that
importing it does not import httpx.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx

from brace import _chaos, _validate

__all__ = ["AsyncChaosTransport", "ChaosTransport"]

# What an injected transport error says when it was given as a class.
_MESSAGE = "injected by brace.testing.ChaosTransport"
# Checks that an error class can be made for a request (at construction, not mid-test).
_PROBE = httpx.Request("GET", "http://chaos.invalid/")


def _errors(errors: object) -> tuple[Any, ...]:
    if isinstance(errors, (str, bytes)) or not isinstance(errors, (list, tuple)):
        raise TypeError(f"errors must be a list or tuple of exceptions (instances or "
                        f"classes, such as httpx.ConnectError), got {_validate.shown(errors)}")
    checked = tuple(_chaos.fault_spec(error, "errors") for error in errors)
    for error in checked:
        if isinstance(error, type):
            try:
                _made(error, _PROBE)
            except Exception:
                raise TypeError(f"errors: {error.__name__} cannot be made from a message "
                                f"(and request=): pass an instance") from None
    return checked


def _made(error: type[BaseException], request: httpx.Request) -> BaseException:
    # httpx's request errors take the request; anything else a message.
    if issubclass(error, httpx.RequestError):
        return error(_MESSAGE, request=request)
    return error(_MESSAGE)


class _Chaos:
    """What both transports share: the settings, the dice and the injected answer."""

    def __init__(self, transport: Any, *, rate: float, statuses: Sequence[int],
                 errors: Sequence[BaseException | type[BaseException]],
                 latency: float | timedelta | Callable[[], float | timedelta] | None,
                 enabled: bool | Callable[[], object], seed: int | None) -> None:
        chaos_rate = _chaos._rate(rate)
        codes = _validate.statuses(statuses)
        faults = _errors(errors)
        delay = _chaos._latency(latency)
        if not codes and not faults and delay is None:
            raise ValueError("ChaosTransport would inject nothing: pass statuses=, errors= "
                             "or latency=")
        self.transport = transport
        self.rate = chaos_rate
        self.statuses = codes
        self.errors = faults
        self.latency = delay
        self.seed = _chaos._seed(seed)
        self._dice = _chaos.Dice(chaos_rate, _chaos._enabled(enabled), delay, self.seed)
        self._answers: tuple[Any, ...] = (*codes, *faults)

    def _answer(self, request: httpx.Request) -> httpx.Response | None:
        # A struck request's answer: a status response, or raise a transport error;
        # None when only latency is injected and the request goes on to the transport.
        if not self._answers:
            return None
        answer = self._dice.choice(self._answers)
        if isinstance(answer, int):
            response = httpx.Response(answer, request=request)
            _chaos.mark_injected(response)
            return response
        if isinstance(answer, type):
            error = _made(answer, request)
        else:
            error = _chaos.fresh_error(answer)  # a fresh instance per injection
            if isinstance(error, httpx.RequestError):
                error.request = request
        _chaos.mark_injected(error)
        raise error

    def __repr__(self) -> str:
        shown = [f"{name}={getattr(self, name)!r}" for name in ("statuses", "errors", "latency")
                 if getattr(self, name)]
        shown.append(f"rate={self.rate:g}")
        if self.seed is not None:
            shown.append(f"seed={self.seed}")
        return f"brace.testing.{type(self).__name__}({self.transport!r}, {', '.join(shown)})"


class ChaosTransport(_Chaos, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that injects status answers, errors and latency.

    ``httpx.Client(transport=ChaosTransport(httpx.HTTPTransport(), statuses=[503],
    rate=0.1, seed=1))``: with probability ``rate`` a request is struck; it waits
    ``latency`` (if set), then is answered by one of ``statuses`` (an
    ``httpx.Response(status)`` carrying the request) or raises one of ``errors`` (picked
    at random, seeded); with latency alone it then goes on to the transport. Every other
    request goes to ``transport`` untouched. Injected answers and errors are marked
    (``brace.testing.is_injected``). To inject latency and failures independently, nest
    two: ``ChaosTransport(ChaosTransport(t, latency=0.2, rate=0.5), statuses=[503])``.

    Latency sleeps through ``brace.waits.sleep``: ``brace.testing.no_waits()`` skips it.
    Under ``brace.RetryTransport(transport=ChaosTransport(...))`` every attempt meets the
    chaos, as with a flaky server; around it, each request as the application sent it.

    Args:
        transport: The transport to wrap (None: a new ``httpx.HTTPTransport()``).
        rate: The probability that a request is struck, in [0, 1] (default 1: all).
        statuses: HTTP statuses to answer with (ints in 400-599).
        errors: Exceptions to raise: instances (a copy per injection, given the request
            when it is an ``httpx.RequestError``) or classes (``httpx.ConnectError``, made
            with a message and the request).
        latency: Seconds (or a ``timedelta``) a struck request waits, or a callable
            returning them, called per injection.
        enabled: A bool, or a callable read per request (a feature flag).
        seed: Seeds the transport's own ``random.Random`` (None: a new sequence each run).

    Raises:
        ValueError, TypeError: at construction, naming the bad parameter and its range.
    """

    __module__ = "brace.testing"

    def __init__(self, transport: httpx.BaseTransport | None = None, *, rate: float = 1.0,
                 statuses: Sequence[int] = (),
                 errors: Sequence[BaseException | type[BaseException]] = (),
                 latency: float | timedelta | Callable[[], float | timedelta] | None = None,
                 enabled: bool | Callable[[], object] = True, seed: int | None = None) -> None:
        if transport is None:
            transport = httpx.HTTPTransport()
        elif not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport (for an async client: "
                            f"brace.testing.AsyncChaosTransport), got {transport!r}")
        super().__init__(transport, rate=rate, statuses=statuses, errors=errors,
                         latency=latency, enabled=enabled, seed=seed)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` with chaos, or send it through the wrapped transport."""
        dice = self._dice
        if dice.fires():
            dice.wait()
            response = self._answer(request)
            if response is not None:
                return response
        return self.transport.handle_request(request)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()


class AsyncChaosTransport(_Chaos, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncBaseTransport`` twin of ``ChaosTransport``, for ``httpx.AsyncClient``.

    Latency sleeps in the running async library (asyncio, or trio through anyio), through
    ``brace.waits.async_sleep``: inside ``no_waits()`` it only yields. ``transport`` None:
    a new ``httpx.AsyncHTTPTransport()``. The other arguments are ``ChaosTransport``'s.
    """

    __module__ = "brace.testing"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *,
                 rate: float = 1.0, statuses: Sequence[int] = (),
                 errors: Sequence[BaseException | type[BaseException]] = (),
                 latency: float | timedelta | Callable[[], float | timedelta] | None = None,
                 enabled: bool | Callable[[], object] = True, seed: int | None = None) -> None:
        if transport is None:
            transport = httpx.AsyncHTTPTransport()
        elif not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(f"transport must be an httpx.AsyncBaseTransport (for a sync "
                            f"client: brace.testing.ChaosTransport), got {transport!r}")
        super().__init__(transport, rate=rate, statuses=statuses, errors=errors,
                         latency=latency, enabled=enabled, seed=seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` with chaos, or send it through the wrapped transport."""
        dice = self._dice
        if dice.fires():
            await dice.async_wait()
            response = self._answer(request)
            if response is not None:
                return response
        return await self.transport.handle_async_request(request)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()
