"""An aiohttp client middleware that sends every request through a policy (asyncio only).

aiohttp 3.12 added client middlewares (``ClientSession(middlewares=[...])``): a coroutine
``mw(request, handler)`` that may call ``handler(request)`` more than once, which is how
aiohttp's own cookbook retries. brace's middleware takes the call path every brace client
takes (``brace._call.Path``): each request is one call with its own deadline, every attempt
passes the breaker, rate limit and bulkhead, and statuses, Retry-After and idempotency
decide as on the httpx transports (``_transport.py``). Imported lazily, so ``import brace``
does not import aiohttp, an optional dependency (``pip install 'brace[aiohttp]'``).

Two things differ from httpx, because of where a middleware sits in aiohttp:

- aiohttp fixes a request's timeouts (``timeout=`` of the session or the request) before
  middlewares run and applies them to the whole request, every attempt included; a
  middleware cannot give one attempt its own. So brace bounds each attempt itself: the
  call's deadline cuts an attempt in flight (the asyncio watchdog every async brace call
  has), and ``attempt_timeout`` cuts one attempt. aiohttp's own ``timeout=`` (300 s total
  by default) still bounds the whole request; keep it above the policy's deadline.
- The response body is not read inside the attempt (the httpx transports read bodies up to
  1 MiB there): reading it would empty ``response.content``, the stream users iterate. An
  error while the caller reads the body is the caller's, as with a streamed httpx response.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

try:
    import aiohttp
except ImportError as missing:  # pragma: no cover - the test suite installs aiohttp
    raise ImportError("Policy.aiohttp_middleware() and aiohttp_session() need aiohttp: "
                      "pip install 'brace[aiohttp]'") from missing

from brace import _call, _transport, web
from brace._deadline import watchdog
from brace._outcome import BraceError, is_exhausted, is_idempotent_request, mark_exhausted

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["aiohttp_middleware", "aiohttp_session"]

# Errors raised before a request left the client: resending them is safe for any method,
# so they carry no request (the idempotency rule reads the request from an error).
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# What the middleware refuses of a policy, as the httpx transports refuse theirs. chaos= is
# said, not ignored (rule 21), until chaos knows what an aiohttp attempt returns.
_REFUSED = (("hedge_after", "which races copies of a request: aiohttp sends one ClientRequest "
             "object at a time, so its middleware cannot; use the httpx client "
             "(policy.async_client())"),
            _transport.no_fallback("the aiohttp middleware", "aiohttp's errors"),
            _transport.no_chaos("the aiohttp middleware"))
# A body sent again as it is (bytes, str, json= and form data are BytesPayloads).
_REPLAYABLE = (bytes, aiohttp.BytesPayload)


class _Answer:
    """An attempt's response as brace's outcome rules read it, around aiohttp's.

    ``ClientResponse`` says ``status``, where the readers of a retried response (Retry-After,
    events, the exhaustion marks) look for ``status_code`` and ``headers``; the view also
    holds the ``ClientRequest`` (its method and ``Idempotency-Key``, for the idempotency
    rule). The call path judges the view; the caller gets ``response`` itself.
    """

    __slots__ = ("__brace_exhausted__", "headers", "request", "response", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, request: aiohttp.ClientRequest) -> None:
        self.response = response
        self.status_code = response.status
        self.headers = response.headers
        self.request = request


# Events name a retried result by its type ("result ClientResponse status 503"), as they
# name httpx's Response: the view is aiohttp's response to whoever reads them.
_Answer.__name__ = "ClientResponse"


async def _discard(answer: _Answer) -> None:
    # A retried response: a small body is read so its connection goes back to the pool; a
    # larger or unsized one is dropped with its connection.
    response = answer.response
    try:
        length = response.content_length
        if length is not None and length <= _transport._DRAIN_LIMIT:
            await response.read()
    except aiohttp.ClientError:
        pass  # a broken body only costs its connection
    finally:
        response.release()


def _carrying(error: Exception, request: aiohttp.ClientRequest) -> Exception:
    """``error`` as the call path must judge it: carrying the request it failed to send.

    aiohttp's errors carry no request, and the idempotency rule reads it from the error to
    never resend a POST: each one raised after the request may have left gets it as
    ``request``. A builtin error (aiohttp turns those into ``ClientOSError`` one level up,
    above the middleware) cannot carry one: for a request that must not be resent it is
    raised as aiohttp's error around it, with the request.
    """
    if isinstance(error, _NOT_SENT):
        return error
    if type(error).__module__ == "builtins":
        if is_idempotent_request(request):
            return error
        error = (aiohttp.ServerTimeoutError(*error.args) if isinstance(error, TimeoutError)
                 else aiohttp.ClientOSError(*error.args))
    if getattr(error, "request", None) is None:
        # A slotted error cannot carry it: judged as one without a request.
        with contextlib.suppress(AttributeError):
            error.request = request  # type: ignore[attr-defined]
    return error


def _deadline_error(error: TimeoutError) -> aiohttp.ServerTimeoutError:
    # The call's deadline cut the request off: said as aiohttp says a timeout, an
    # asyncio.TimeoutError that is also an aiohttp.ClientError; given up on.
    timeout = aiohttp.ServerTimeoutError(str(error))
    mark_exhausted(timeout)
    return timeout


class _Middleware:
    """The aiohttp client middleware of one policy (see ``aiohttp_middleware``)."""

    __slots__ = ("_paths", "breaker", "policy", "propagate")

    def __init__(self, policy: Policy, breaker: Any,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        self.policy = policy
        self.breaker = breaker
        self.propagate = propagate
        self._paths = _transport.ClientPaths(policy, self._attempt, breaker, _discard, True)

    def __repr__(self) -> str:
        return f"<brace aiohttp middleware: {self.policy.preset!r} policy>"

    async def __call__(self, request: aiohttp.ClientRequest,
                       handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        """Send ``request`` through ``handler``, retrying it as the policy says."""
        # A file, a multipart body or an async iterator is read as it is sent: sent once.
        once = not isinstance(request.body, _REPLAYABLE)
        url = request.url
        key = (request.method, url.scheme, url.host, url.port, once)
        path = self._paths.get(key)
        if path is None:
            path = self._paths.add(key, _transport.describe(
                request.method, url.scheme, url.host or "", url.port), once)
        call = path.begin()
        try:
            try:
                answer: _Answer = await path.arun(call, (request, handler), {})
            except TimeoutError as error:
                if type(error) is not TimeoutError:
                    raise  # aiohttp's own (ServerTimeoutError ...): as it was
                raise _deadline_error(error) from error
            except BraceError as refusal:
                raise _transport.as_client_error(refusal, aiohttp.ClientError) from None
        except Exception as error:
            if once:
                _transport._skipped(self.policy, path.label, error, None)
            raise
        if once:
            _transport._skipped(self.policy, path.label, None, answer)
        response = answer.response
        # Given up on: retries ran out (the call went past its first attempt) or a brace
        # service below said so (a 5xx); a healthy call needs neither look.
        exhausted = (call.state is not None or answer.status_code >= 500) and is_exhausted(
            answer)
        if exhausted:
            mark_exhausted(response)  # what the caller holds: an enclosing policy reads it
        response.brace = _transport.report(call, exhausted)  # type: ignore[attr-defined]
        return response

    async def _attempt(self, call: _call.Call, request: aiohttp.ClientRequest,
                       handler: aiohttp.ClientHandlerType) -> _Answer:
        # One attempt, cut at attempt_timeout (the call's deadline cuts it in the call path).
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            _transport.propagate_deadline(request.headers, call, self.propagate)
        try:
            if self.policy.attempt_timeout is None:
                response = await handler(request)
            else:
                response = await self._timed(request, handler)
        except Exception as error:
            carried = _carrying(error, request)
            if carried is error:
                raise
            raise carried from error
        return _Answer(response, request)

    async def _timed(self, request: aiohttp.ClientRequest,
                     handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        # The attempt under attempt_timeout: the loop's watchdog for attempts of that length
        # (one timer per loop and length, as the call path's own) cancels it when due.
        seconds = self.policy.attempt_timeout
        assert seconds is not None  # _attempt calls the handler itself without one
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None  # aiohttp runs requests in tasks
        dog = watchdog(loop, seconds, f"attempt timed out after {seconds:g} s")
        watch = dog.watch(task, loop)
        try:
            return await handler(request)
        except asyncio.CancelledError as cancelled:
            cut = dog.timeout_error(watch, task, cancelled)
            if cut is None:
                raise  # the caller's cancellation, or the call's deadline: not ours
            raise aiohttp.ServerTimeoutError(str(cut)) from None
        finally:
            dog.release(watch)


def aiohttp_middleware(policy: Policy, *, breaker: Any = _transport.PER_AUTHORITY,
                       propagate: tuple[str, str] | None = web.PROPAGATE) -> Any:
    """An aiohttp client middleware sending every request through ``policy``.

    ``aiohttp.ClientSession(middlewares=[brace.http.aiohttp_middleware()])``, or per request
    ``session.get(url, middlewares=[policy.aiohttp_middleware()])``. See
    ``Policy.aiohttp_middleware`` for what it does.

    Raises:
        TypeError: ``policy`` is not a Policy or has ``hedge_after=``, ``fallback=`` or
            ``chaos=``;
            ``breaker`` is not a name, a pybreaker breaker or None.
        TypeError, ValueError: ``propagate`` is not None or a pair of header names.
    """
    checked = _transport.check_client_policy(policy, _REFUSED)
    propagate = web.propagate_setting(propagate)
    _transport.check_breaker(breaker)
    return _Middleware(checked, breaker, propagate)


def aiohttp_session(policy: Policy, *, breaker: Any = _transport.PER_AUTHORITY,
                    propagate: tuple[str, str] | None = web.PROPAGATE,
                    **session_kwargs: Any) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` whose every request goes through ``policy``.

    ``session_kwargs`` go to ``aiohttp.ClientSession``; brace's middleware comes after any
    ``middlewares=`` given (innermost: the others see one request and its final response,
    brace sees every attempt).

    Raises:
        TypeError: as ``aiohttp_middleware``, or what ``ClientSession`` raises.
    """
    middleware = aiohttp_middleware(policy, breaker=breaker, propagate=propagate)
    given = tuple(session_kwargs.pop("middlewares", None) or ())
    return aiohttp.ClientSession(middlewares=(*given, middleware), **session_kwargs)
