"""httpx transports that send every request through a policy.

A transport is httpx's own extension point: wrapping ``HTTPTransport`` keeps connection
pooling, proxies, TLS and HTTP/2 httpx's, and retries happen below redirects, auth and
cookies, once per request. Each request takes the same call path as a decorated function
(fast path, then tenacity; the breaker gate per attempt). Imported lazily, so
``import brace`` does not import httpx.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pybreaker
import tenacity

from brace import _breakers, _call, _config, _events, _validate, predicates, web
from brace._deadline import clock
from brace._outcome import LAST_MARK, BraceError, sdk_retries

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["AsyncRetryTransport", "RetryTransport", "async_client", "client"]

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


def _check_policy(policy: object, name: str = "policy=", asynchronous: bool = True) -> Policy:
    if policy is None:
        return _config.presets["http"]  # type: ignore[no-any-return]
    if isinstance(policy, type) or not hasattr(policy, "tenacity_kwargs"):
        raise TypeError(f"{name} must be a brace.Policy (such as brace.http), got {policy!r}")
    if not asynchronous and policy.hedge_after is not None:  # type: ignore[attr-defined]
        raise TypeError(f"{name} has a hedge_after=, which races copies of a request: only "
                        "the async transport can (policy.async_client(), "
                        "brace.AsyncRetryTransport)")
    if policy.fallback is not _config.NO_FALLBACK:  # type: ignore[attr-defined]
        raise TypeError(f"{name} has a fallback=, which a transport cannot apply (it returns "
                        "responses or raises httpx errors): decorate the function that calls "
                        "the client with that policy, or drop it with "
                        "policy.replace(fallback=brace.NO_FALLBACK)")
    return policy  # type: ignore[return-value]


def _report(response: httpx.Response, call: _call.Call) -> None:
    # What every response of a brace transport says about how it was obtained. Exhausted:
    # marked by a policy that gave up on it during this call (none can have, unless a mark
    # was made since the call began), or a 5xx marked so by a service downstream.
    exhausted = (response.status_code >= 500 or LAST_MARK[0] > call.mark) and \
        predicates.is_exhausted(response, after_mark=call.mark)
    response.extensions["brace"] = {
        "attempts": call.attempts or 1,
        "elapsed_s": _events.seconds(clock() - call.started),  # Deadline.elapsed(), none made
        "exhausted": exhausted,
    }


def _deadline_error(request: httpx.Request, error: TimeoutError) -> httpx.TimeoutException:
    # The deadline cut a request off in flight: say it the way httpx says timeouts.
    timeout = httpx.TimeoutException(str(error), request=request)
    predicates.mark_exhausted(timeout)
    return timeout


def _describe(request: httpx.Request) -> str:
    # What events (and metric labels) call this request: bounded, so method, scheme, host
    # and port only, never a path or query (nor userinfo).
    url = request.url
    port = url.port
    if port is None:
        return f"{request.method} {url.scheme}://{url.host}"
    return f"{request.method} {url.scheme}://{url.host}:{port}"


def _skipped(policy: Policy, label: str, error: BaseException | None,
             response: httpx.Response | None) -> None:
    # A streamed body cannot be replayed: say so when the outcome would have been retried.
    if policy._counts(error, response):
        outcome = tenacity.Future.construct(1, error if error is not None else response,
                                            error is not None)
        _events.retry_skipped(label, policy.preset, 1, outcome, "streamed_body")


def _ended(policy: Policy, label: str, once: bool, call: _call.Call,
           error: BaseException | None, response: httpx.Response | None) -> httpx.Response:
    # A request's end: a streamed body's outcome that would have been retried says why it
    # was not; a response says how it was obtained.
    if once:
        _skipped(policy, label, error, response)
    if response is not None:
        _report(response, call)
    return response  # type: ignore[return-value]  # None only when ``error`` is raised


def _replayable(request: httpx.Request) -> bool:
    # A streamed upload (generator, file iterator) can be sent once only.
    return isinstance(request.stream, httpx.ByteStream)


def _propagate(request: httpx.Request, call: _call.Call, names: tuple[str, str]) -> None:
    # The attempt's Brace-Deadline-Ms and Brace-Attempt (or the names given): brace.web
    # downstream runs the request under what is left of this call's deadline.
    headers = request.headers
    for name, value in web.outbound(call.remaining(), call.attempts, names):
        headers[name] = value


def _bound_timeouts(request: httpx.Request, policy: Policy, original: Any,
                    call: _call.Call) -> None:
    """Give this attempt at most attempt_timeout and what is left of the deadline."""
    left = call.remaining()
    if left < 0.001:
        left = 0.001
    cap = policy.attempt_timeout
    limit = cap if cap is not None and cap <= left else left  # min(cap, left)
    if type(original) is dict and len(original) == 4:
        # httpx's own four timeouts, still on the request and each within the limit: nothing
        # to bound (the common case: a client's timeouts are shorter than a deadline).
        given: dict[str, Any] = original
        connect, read, write, pool = (given.get("connect"), given.get("read"),
                                      given.get("write"), given.get("pool"))
        if (connect is not None and read is not None and write is not None
                and pool is not None and request.extensions.get("timeout") is given):
            try:
                if max(connect, read, write, pool) <= limit:
                    return
            except TypeError:  # not numbers: converted below, as any other value
                pass
    base = original if isinstance(original, dict) else {}
    timeout = {key: limit if (value := base.get(key)) is None else min(float(value), limit)
               for key in _TIMEOUT_KEYS}
    # A new dict: the caller's extensions (perhaps shared by requests) stay as they were.
    request.extensions = {**request.extensions, "timeout": timeout}


# A retried response's body is read (so its connection returns to the pool) when it is at
# most this big; a larger or unsized body is dropped with its connection.
_DRAIN_LIMIT = 64 * 1024


def _drainable(response: httpx.Response) -> bool:
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= _DRAIN_LIMIT


def _discard(response: httpx.Response) -> None:
    try:
        if _drainable(response):
            response.read()
    except httpx.HTTPError:
        pass  # a broken body only costs its connection
    finally:
        response.close()


async def _adiscard(response: httpx.Response) -> None:
    try:
        if _drainable(response):
            await response.aread()
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()


# A response body of at most this many bytes (by Content-Length) is read inside the attempt,
# so a connection reset mid-body is retried like any other transient error; larger or
# unsized bodies stream to the caller, and an error while streaming them is the caller's.
BUFFER_LIMIT = 1024 * 1024


def _bufferable(response: httpx.Response) -> bool:
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT


def _rebuilt(response: httpx.Response, raw: bytes) -> httpx.Response:
    # The raw (still content-encoded) bytes in a fresh stream: the caller decodes, streams
    # and reads them exactly as if they came from the network.
    return httpx.Response(response.status_code, headers=response.headers,
                          stream=httpx.ByteStream(raw), extensions=response.extensions)


def _buffer(response: httpx.Response, call: _call.Call,
            request: httpx.Request) -> httpx.Response:
    # A response built in memory (httpx.MockTransport, respx) is read already. Each read is
    # bounded by httpx's read timeout (cut to what was left of the deadline when the attempt
    # began); the call's deadline bounds the whole body: a trickle that keeps every read
    # within its timeout is cut off there (the async transport's watchdog does the same).
    if response.is_stream_consumed or not _bufferable(response):
        return response
    chunks = []
    try:
        for chunk in response.iter_raw():
            chunks.append(chunk)
            if call.remaining() <= 0:
                raise httpx.ReadTimeout(f"{call.deadline_message()} while reading the "
                                        "response body", request=request)
    finally:
        response.close()
    return _rebuilt(response, b"".join(chunks))


async def _abuffer(response: httpx.Response) -> httpx.Response:
    if response.is_stream_consumed or not _bufferable(response):
        return response
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return _rebuilt(response, raw)


# Per brace refusal class, its twin that is also an httpx.TransportError (built once).
_AS_HTTPX: dict[type[BraceError], type[Any]] = {}


def _as_httpx_error(refusal: BraceError, request: httpx.Request) -> Exception:
    """``refusal`` as an instance of its class that is also an ``httpx.TransportError``.

    Out of brace's transports a refusal (open breaker, full bulkhead, rate limit) must be
    caught by ``except httpx.HTTPError`` like any failure to get a response, and stay the
    brace exception (``except brace.CircuitOpenError``). The copy keeps the message, the
    attributes (``breaker``, ``remaining_s``, the exhaustion mark) and the traceback; its
    ``request`` is ``request``. ``__init__`` is not run again: the refusal's own arguments
    are not its ``args``.
    """
    if isinstance(refusal, httpx.TransportError):
        return refusal  # a brace transport inside another one converted it already
    cls = type(refusal)
    twin = _AS_HTTPX.get(cls)
    if twin is None:
        twin = _AS_HTTPX.setdefault(cls, type(cls.__name__, (cls, httpx.TransportError), {
            "__module__": "brace", "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}))
    error = BaseException.__new__(twin)
    error.args = refusal.args
    error.__dict__.update(refusal.__dict__)
    error.request = request
    # The traceback from below the transport's frame, which re-raising adds again.
    caught = refusal.__traceback__
    return error.with_traceback(  # type: ignore[no-any-return]
        caught.tb_next if caught is not None else None)


def _attach(request: httpx.Request, outcome: httpx.Response | BaseException) -> None:
    # httpx's Client attaches the request to responses and errors above the transport; the
    # idempotency rule needs it here already, to know the method.
    if isinstance(outcome, httpx.Response):
        if _unattached(outcome):
            outcome.request = request
    elif isinstance(outcome, httpx.RequestError):
        try:
            outcome.request  # noqa: B018  (raises when unset)
        except RuntimeError:
            outcome.request = request


_UNKNOWN = object()


def _unattached(response: httpx.Response) -> bool:
    """Whether ``response`` has no request yet (httpx's transports never attach one).

    The one read of an httpx internal here: ``Response.request`` raises RuntimeError when
    unset and httpx has no public test for it (the optional request of httpx PR 1238), and
    raising on every response costs more than the rest of the attach. So the slot that
    property guards is read; an httpx that keeps it elsewhere is asked through the
    property. Pinned by test_response_request_slot.
    """
    attached = getattr(response, "_request", _UNKNOWN)
    if attached is not _UNKNOWN:
        return attached is None
    try:
        response.request  # noqa: B018  (raises when unset)
    except RuntimeError:
        return True
    return False


# Call paths a transport keeps (one per policy, host label and breaker) before starting over.
_MAX_PATHS = 256

#: The per-authority breakers brace's clients open by default: Polly's standard HTTP
#: handler's settings (failure ratio 10 % of at least 100 calls in 30 s, break 5 s).
AUTHORITY_BREAKER: dict[str, Any] = {"failure_ratio": 0.1, "min_calls": 100, "window": 30.0,
                     "reset_timeout": 5.0, "fail_max": 1_000_000}
#: Per-authority breakers kept at most, process-wide; beyond, the least recently used
#: closed ones are forgotten (a client that talks to ever-new hosts stays bounded).
MAX_AUTHORITY_BREAKERS = 1000
_authorities: dict[str, int] = {}  # breaker name -> when last used (a tick)
_ticks = itertools.count()
_authorities_lock = threading.Lock()
#: ``breaker=`` not given: the policy's breaker, else one per authority.
PER_AUTHORITY: Any = type("PerAuthority", (), {"__repr__": lambda self: "PER_AUTHORITY"})()


def _authority_breaker(label: str) -> str:
    """The per-authority breaker of ``label`` ("GET https://host:port"), made on first use."""
    name = label.partition(" ")[2]  # scheme://host[:port]: no path, no userinfo
    _authorities[name] = next(_ticks)  # atomic under the GIL: no lock on the healthy path
    if name not in _breakers.registry:  # new, evicted, or forgotten by reset_breakers()
        with _authorities_lock:
            _breakers.breaker(name, **AUTHORITY_BREAKER)
            if len(_authorities) > MAX_AUTHORITY_BREAKERS:
                _evict()
    return name


def _evict() -> None:
    # The least recently used tenth, closed ones only (an open breaker still protects).
    by_age = sorted(_authorities.items(), key=lambda item: item[1])
    excess = len(by_age) - MAX_AUTHORITY_BREAKERS + MAX_AUTHORITY_BREAKERS // 10
    for name, _ in by_age:
        if excess <= 0:
            break
        gate = _breakers.find(name)
        if gate is not None and gate.breaker.current_state != "closed":
            continue
        _authorities.pop(name, None)
        _breakers.forget(name)
        excess -= 1


def authority_breakers() -> int:
    """How many per-authority breakers this process keeps (for tests and diagnostics)."""
    return len(_authorities)


class _Base:
    asynchronous = True
    _attempt: Callable[..., Any]

    def __init__(self, policy: Policy | None, breaker: Any,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        self.policy = _check_policy(policy, asynchronous=self.asynchronous)
        # The headers every attempt sends downstream (brace.web reads them).
        self.propagate = web.propagate_setting(propagate)
        if breaker is not PER_AUTHORITY and breaker is not None:
            _validate.named(breaker, "breaker", (pybreaker.CircuitBreaker,),
                            "a breaker name (non-empty str), a pybreaker.CircuitBreaker or "
                            "None (no breaker)")
        self.breaker = breaker
        self._paths: dict[tuple[Any, ...], _call.Path] = {}
        self._own_paths: dict[tuple[Any, ...], _call.Path] = {}
        # The llm preset's clients watch for an SDK resending through them (once).
        self._watch_sdk = self.policy.preset == "llm"

    def _layered(self, request: httpx.Request, policy: Policy, label: str) -> None:
        # The SDK above resends what brace gave up on: attempts multiply. Said once.
        retried = sdk_retries(request)
        if retried is not None:
            self._watch_sdk = False
            _events.retry_layered(label, policy.preset, retried,
                                  "max_retries=0 on the SDK client (brace retries)")

    def _policy_for(self, request: httpx.Request) -> Policy:
        # extensions={"brace": policy} replaces the transport's policy for one request.
        chosen = request.extensions.get("brace")
        if chosen is None:
            return self.policy
        return _check_policy(chosen, 'extensions["brace"]', self.asynchronous)

    def _path(self, policy: Policy, label: str, breaker: Any, hedge: bool,
              once: bool = False) -> _call.Path:
        # One call path per policy, breaker and label, built on first use. Bounded: per-host
        # breakers and labels grow with the hosts a client talks to. The transport's own
        # policy is known by identity (hashing a Policy hashes every one of its settings);
        # a request's own (extensions={"brace": ...}) by value.
        if policy is self.policy:
            paths: dict[tuple[Any, ...], _call.Path] = self._own_paths
            key: tuple[Any, ...] = (label, breaker, hedge, once)
        else:
            paths, key = self._paths, (policy, label, breaker, hedge, once)
        path = paths.get(key)
        if path is None:
            if len(paths) >= _MAX_PATHS:
                paths.clear()
            path = paths[key] = _call.Path(
                # brace.testing.chaos, when set, strikes inside each attempt.
                policy, self._attempt if policy.chaos is None else policy.chaos.wrap(
                    self._attempt), name=label, label=label, breaker=breaker,
                discard=_adiscard if self.asynchronous else _discard, with_call=True,
                attempt_timeouts=False, hedge=hedge, asynchronous=self.asynchronous,
                once=once)
        return path

    def _breaker_for(self, label: str, policy: Policy) -> Any:
        # breaker= on the client wins; else the policy's; else one per authority.
        if self.breaker is not PER_AUTHORITY:
            return self.breaker
        if policy.breaker is not None:
            return policy.breaker
        return _authority_breaker(label)


class RetryTransport(_Base, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that retries each request under a policy.

    ``httpx.Client(transport=brace.RetryTransport(policy=brace.http(deadline=10)))`` retries
    every request of the client: statuses and Retry-After as the policy says, idempotent
    methods only (POST/PATCH with an ``Idempotency-Key`` header or when nothing was sent),
    each attempt's timeouts bounded by ``attempt_timeout`` and the deadline, every attempt
    through the policy's breaker. A retried response is closed before the next attempt;
    when retries run out on a status, the last response is returned. Requests with a
    streamed (non-replayable) body get one attempt. A refusal (``brace.CircuitOpenError``,
    ``BulkheadFullError``, ``RateLimitedError``: any ``brace.BraceError``) is raised as
    an instance of its class that is also an ``httpx.TransportError``, so
    ``except httpx.HTTPError`` catches it too.

    ``extensions={"brace": policy}`` on a request replaces the transport's policy for it
    (``brace.http(attempts=1)``: no retries). Every response carries
    ``response.extensions["brace"]``: ``{"attempts": int, "elapsed_s": float,
    "exhausted": bool}`` (whether retries ran out, in which case no enclosing brace
    policy retries it again).

    Every authority (``scheme://host:port``) gets its own breaker by default, as Polly's
    standard HTTP handler does (``AUTHORITY_BREAKER``: a failure ratio of 10 % of at least
    100 calls in 30 s opens it for 5 s), named after it (``"https://api.example.com:443"``)
    and kept in a bounded registry (``MAX_AUTHORITY_BREAKERS``, least recently used closed
    ones forgotten). The policy's own ``breaker=``, or ``breaker=`` here, replaces them.

    Args:
        policy: The policy (default ``brace.http``).
        transport: The transport to wrap (default a new ``httpx.HTTPTransport()``).
        breaker: The breaker of every request: a name, a ``pybreaker.CircuitBreaker``, or
            None for none at all. Default: the policy's, else one per authority.
    """

    __module__ = "brace"
    asynchronous = False

    def __init__(self, policy: Policy | None = None, transport: httpx.BaseTransport | None = None,
                 *, breaker: Any = PER_AUTHORITY,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        super().__init__(policy, breaker, propagate)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def _send(self, request: httpx.Request, call: _call.Call) -> httpx.Response:
        try:
            response = _buffer(self.transport.handle_request(request), call, request)
        except BaseException as exc:
            _attach(request, exc)
            raise
        _attach(request, response)
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying it as the policy says."""
        policy = self._policy_for(request)
        label = _describe(request)
        if self._watch_sdk:
            self._layered(request, policy, label)
        original = request.extensions.get("timeout")
        # A streamed body can be sent once only: one attempt, through every gate and under
        # the deadline, never resent. A retried response is closed by the call path,
        # freeing its connection.
        once = not _replayable(request)
        path = self._path(policy, label, self._breaker_for(label, policy), True, once)
        call = path.begin()
        try:
            response: httpx.Response = path.run((request, original, policy), {}, call)
        except BraceError as refusal:  # also an httpx error, so except httpx.HTTPError sees it
            raise _as_httpx_error(refusal, request) from None
        except Exception as error:
            _ended(policy, label, once, call, error, None)
            raise
        return _ended(policy, label, once, call, None, response)

    def _attempt(self, call: _call.Call, request: httpx.Request, original: Any,
                 policy: Policy) -> httpx.Response:
        # One attempt: its timeouts bounded by attempt_timeout and what is left of the call.
        _bound_timeouts(request, policy, original, call)
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            _propagate(request, call, self.propagate)
        return self._send(request, call)

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()


class AsyncRetryTransport(_Base, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncBaseTransport`` twin of ``RetryTransport``, which may also hedge.

    With the policy's ``hedge_after``, a request that is safe to resend (an idempotent
    method, or an ``Idempotency-Key`` header) and has not answered after that many seconds
    is raced by a copy; the first response the policy would not retry wins and the other
    copies are cancelled. A POST or PATCH without a key is never hedged.
    """

    __module__ = "brace"

    def __init__(self, policy: Policy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 *, breaker: Any = PER_AUTHORITY,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        super().__init__(policy, breaker, propagate)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.transport.handle_async_request(request)
            if not response.is_stream_consumed:  # (read already: no coroutine to await)
                response = await _abuffer(response)
        except BaseException as exc:
            _attach(request, exc)
            raise
        _attach(request, response)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying it as the policy says."""
        policy = self._policy_for(request)
        label = _describe(request)
        if self._watch_sdk:
            self._layered(request, policy, label)
        original = request.extensions.get("timeout")
        # The deadline also cuts an attempt off in flight (httpx's timeouts are per read, and
        # a request waiting for a pooled connection or a slow server can outlive them);
        # attempt_timeout stays httpx's own timeout, so the caller sees httpx's errors.
        # Retried responses, and those of hedges that lost, are closed by the call path. A
        # streamed body is sent once, through every gate and under the deadline.
        once = not _replayable(request)
        hedge = policy.hedge_after is not None and predicates.is_idempotent_request(request)
        path = self._path(policy, label, self._breaker_for(label, policy), hedge, once)
        call = path.begin()
        try:
            try:
                response: httpx.Response = await path.arun(call, (request, original, policy),
                                                           {})
            except TimeoutError as error:
                raise _deadline_error(request, error) from error
            except BraceError as refusal:
                raise _as_httpx_error(refusal, request) from None
        except Exception as error:
            _ended(policy, label, once, call, error, None)
            raise
        return _ended(policy, label, once, call, None, response)

    async def _attempt(self, call: _call.Call, request: httpx.Request, original: Any,
                       policy: Policy) -> httpx.Response:
        _bound_timeouts(request, policy, original, call)
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            _propagate(request, call, self.propagate)
        return await self._send(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()


def _built_transports(probe: httpx.Client | httpx.AsyncClient) -> tuple[Any, dict[str, Any]]:
    # The one read of httpx internals. httpx bypasses a custom `transport=` for proxied URLs
    # (it builds proxy transports into its mounts) and ignores environment proxies once a
    # transport is given, and it has no public accessor for what it built (httpx issue 977
    # proposed one). So a probe client builds every transport from the user's settings, and
    # the real client gets them back, wrapped, through the public transport= and mounts=.
    # Pinned by test_client_keeps_environment_proxies and tests/test_layout.py.
    if not hasattr(probe, "_transport") or not hasattr(probe, "_mounts"):
        raise RuntimeError("this httpx version keeps its transports elsewhere; use "
                           "httpx.Client(transport=brace.RetryTransport(...)) instead")
    mounts = {pattern.pattern: mounted for pattern, mounted in probe._mounts.items()}
    return probe._transport, mounts


# Settings the probe turned into transports: the real client gets the transports instead.
_TRANSPORT_SETTINGS = ("transport", "mounts", "proxy", "verify", "cert", "http1", "http2",
                       "limits")


def _wrapped_settings(probe: Any, wrap: Callable[[Any], Any],
                      httpx_kwargs: dict[str, Any]) -> dict[str, Any]:
    base, mounts = _built_transports(probe)
    settings = {key: value for key, value in httpx_kwargs.items()
                if key not in _TRANSPORT_SETTINGS}
    settings["transport"] = wrap(base)
    settings["mounts"] = {pattern: None if mounted is None else wrap(mounted)
                          for pattern, mounted in mounts.items()}
    return settings


def client(policy: Policy, *, breaker: Any = PER_AUTHORITY,
           propagate: tuple[str, str] | None = web.PROPAGATE,
           **httpx_kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every transport is wrapped in ``RetryTransport``."""
    propagate = web.propagate_setting(propagate)  # refused before any client is built
    probe = httpx.Client(**httpx_kwargs)
    return httpx.Client(**_wrapped_settings(probe, lambda transport: RetryTransport(
        policy, transport, breaker=breaker, propagate=propagate), httpx_kwargs))


def async_client(policy: Policy, *, breaker: Any = PER_AUTHORITY,
                 propagate: tuple[str, str] | None = web.PROPAGATE,
                 **httpx_kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every transport is wrapped in ``AsyncRetryTransport``."""
    propagate = web.propagate_setting(propagate)
    probe = httpx.AsyncClient(**httpx_kwargs)
    return httpx.AsyncClient(**_wrapped_settings(probe, lambda transport: AsyncRetryTransport(
        policy, transport, breaker=breaker, propagate=propagate), httpx_kwargs))
