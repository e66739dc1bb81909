"""Inbound deadlines and the one-layer marker for web applications: ASGI and WSGI middleware.

A request that arrives with a deadline runs inside ``brace.deadline(...)``: every brace
policy the handler calls ends by then. The deadline is read from, in order of preference
none (the tightest wins):

* ``Brace-Deadline-Ms``: integer milliseconds left, as brace's clients send it;
* ``x-envoy-expected-rq-timeout-ms``: integer milliseconds, as Envoy sends it;
* ``grpc-timeout``: up to 8 digits and a unit (``H`` hours, ``M`` minutes, ``S`` seconds,
  ``m`` milliseconds, ``u`` microseconds, ``n`` nanoseconds), as gRPC sends it.

A missing header means no deadline; a malformed one is ignored and reported once per
header name (event ``deadline.malformed``), never answered with an error. When the handler
answers 500 or more after a brace policy inside it gave up on a dependency (retries ran
out, a deadline cut, a breaker, budget or limit refused), the response carries
``Brace-Exhausted: 1``: brace clients upstream never retry it, so a chain of services adds
attempts instead of multiplying them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from brace import _deadline, _events, _validate

__all__ = ["ATTEMPT_HEADER", "DEADLINE_HEADER", "EXHAUSTED_HEADER", "PROPAGATE", "ASGIMiddleware",
           "WSGIMiddleware", "inbound_deadline", "outbound", "propagate_setting"]

#: The response header that tells brace clients upstream not to retry (value ``1``).
EXHAUSTED_HEADER = "Brace-Exhausted"
#: What brace's clients send with every attempt (their ``propagate=`` default): the
#: milliseconds left of the call's deadline, and the attempt's number (from 1).
DEADLINE_HEADER = "Brace-Deadline-Ms"
ATTEMPT_HEADER = "Brace-Attempt"
PROPAGATE = (DEADLINE_HEADER, ATTEMPT_HEADER)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # an HTTP header name (RFC 9110)
_DEADLINE_HEADERS = ("brace-deadline-ms", "x-envoy-expected-rq-timeout-ms", "grpc-timeout")
_MILLIS = re.compile(r"[0-9]{1,12}\Z")
_GRPC = re.compile(r"([0-9]{1,8})([HMSmun])\Z")  # the gRPC spec's TimeoutValue TimeoutUnit
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_reported: set[str] = set()  # header names already reported malformed (once each)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _parse(name: str, value: str) -> float | None:
    # Seconds one header asks for, or None when it is malformed.
    value = value.strip(" \t")
    if name == "grpc-timeout":
        match = _GRPC.match(value)
        return None if match is None else int(match[1]) * _GRPC_UNITS[match[2]]
    return int(value) / 1000 if _MILLIS.match(value) else None


def inbound_deadline(headers: Iterable[tuple[str, str]]) -> float | None:
    """Seconds the request's deadline headers leave (the tightest), or None without one.

    ``headers`` are (name, value) pairs, names in any case. Malformed values are ignored
    (reported once per header name); a deadline longer than brace's maximum duration is
    capped at it.
    """
    found: float | None = None
    for raw_name, value in headers:
        name = raw_name.lower()
        if name not in _DEADLINE_HEADERS:
            continue
        seconds = _parse(name, value)
        if seconds is None:
            if name not in _reported:
                _reported.add(name)
                _events.deadline_malformed(name, value)
            continue
        if found is None or seconds < found:
            found = seconds
    return None if found is None else min(found, _validate.MAX_SECONDS)


def propagate_setting(value: object) -> tuple[str, str] | None:
    """Check a client's ``propagate=``: a pair of header names, or None to send neither.

    Raises:
        TypeError, ValueError: anything else, naming ``propagate``.
    """
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError("propagate must be None or a pair of header names (deadline, attempt), "
                        f"got {_validate.shown(value)}")
    for name in value:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"propagate must name two HTTP headers, got {_validate.shown(name)}")
    return value


def outbound(remaining: float, attempt: int, names: tuple[str, str]
             ) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two headers an attempt sends: ``remaining`` seconds (as whole ms, >= 0), ``attempt``."""
    left = int(remaining * 1000) if remaining > 0 else 0
    if left > _MAX_MS:
        left = _MAX_MS
    return (names[0], str(left)), (names[1], _ATTEMPT_VALUES[attempt] if 0 <= attempt < 16
                                   else str(attempt))


# What Brace-Deadline-Ms says at most (12 digits), and the values of Brace-Attempt made once:
# every request sends one, and most calls end within a few attempts.
_MAX_MS = 10**12 - 1
_ATTEMPT_VALUES = tuple(str(number) for number in range(16))


class ASGIMiddleware:
    """ASGI middleware: each HTTP request runs inside its inbound deadline, if it has one.

    ``app = brace.web.ASGIMiddleware(app)``. Other scope types (websocket, lifespan) pass
    through untouched. A response of 500 or more sent after a brace policy in the handler
    gave up carries ``Brace-Exhausted: 1``.
    """

    __module__ = "brace.web"

    def __init__(self, app: ASGIApp) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application (a callable), got {app!r}")
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request under its deadline; mark a failing response given up on."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        seconds = inbound_deadline((name.decode("latin-1"), value.decode("latin-1"))
                                   for name, value in headers)
        request = _deadline.open_scope(seconds)

        async def marking(message: Message) -> None:
            if message.get("type") == "http.response.start" and \
                    message.get("status", 0) >= 500 and request.exhausted:
                message = dict(message)
                message["headers"] = [*message.get("headers", ()),
                                      (EXHAUSTED_HEADER.lower().encode(), b"1")]
            await send(message)

        async with request:
            await self.app(scope, receive, marking)


class WSGIMiddleware:
    """WSGI middleware: each request runs inside its inbound deadline, if it has one.

    ``app = brace.web.WSGIMiddleware(app)``. The body the application returns is produced
    inside the same scope, chunk by chunk. A status of 500 or more given after a brace
    policy in the handler gave up carries ``Brace-Exhausted: 1``.
    """

    __module__ = "brace.web"

    def __init__(self, app: WSGIApp) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI application (a callable), got {app!r}")
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        """Run the request under its deadline; mark a failing response given up on."""
        headers = ((key[5:].replace("_", "-"), value) for key, value in environ.items()
                   if key.startswith("HTTP_") and isinstance(value, str))
        request = _deadline.open_scope(inbound_deadline(headers))

        def marking(status: str, response_headers: list[tuple[str, str]],
                    exc_info: Any = None) -> Any:
            code = status.split(" ", 1)[0]
            if code.isdigit() and int(code) >= 500 and request.exhausted:
                response_headers = [*response_headers, (EXHAUSTED_HEADER, "1")]
            if exc_info is None:
                return start_response(status, response_headers)
            return start_response(status, response_headers, exc_info)

        with request:
            body = self.app(environ, marking)
        return _ScopedBody(body, request)


class _ScopedBody:
    """A WSGI body produced inside the request's scope, each chunk in turn.

    The server iterates it after the application returned: the scope is entered again
    around each chunk (a generator's frame does not keep a context of its own).
    """

    def __init__(self, body: Iterable[bytes], request: _deadline.DeadlineScope) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with _deadline.reenter(self._request):
            if self._chunks is None:
                self._chunks = iter(self._body)
            return next(self._chunks)

    def close(self) -> None:
        """Close the application's body, as the WSGI server would have (PEP 3333)."""
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
