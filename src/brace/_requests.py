"""``brace.RetryAdapter``: requests' transport adapter, sending every request through a policy.

A transport adapter is requests' own extension point (``session.mount(prefix, adapter)``):
subclassing ``HTTPAdapter`` keeps urllib3's connection pools, proxies and TLS, and retries
happen below redirects, auth and cookies, once per request, as brace's httpx transports do
(``_transport.py``). Each request takes the same call path (``brace._call.Path``): the
breaker, rate limit and bulkhead gate every attempt; statuses, Retry-After, idempotency and
the deadline decide as for a decorated function. urllib3's own retries are switched off
(``max_retries=0``): one retry layer. Imported lazily, so ``import brace`` does not import
requests, an optional dependency (``pip install 'brace[requests]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

try:
    import requests
    from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, HTTPAdapter
except ImportError as missing:  # pragma: no cover - the test suite installs requests
    raise ImportError("brace.RetryAdapter and Policy.session() need requests: "
                      "pip install 'brace[requests]'") from missing
import urllib3

from brace import _call, _transport, web
from brace._outcome import BraceError, is_exhausted

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["RetryAdapter", "session"]

#: What each read of a buffered response body asks for (requests' own chunk size).
_CHUNK = 10 * 1024
# The keyword arguments RetryAdapter takes, for the message about one it does not.
_SETTINGS = "policy=, breaker=, propagate=, pool_connections=, pool_maxsize=, pool_block="
# What the adapter refuses of a policy, in this order. chaos= is said, not ignored (rule 21),
# until chaos knows what a requests attempt returns.
_REFUSED = (_transport.no_fallback("the requests adapter", "requests' errors"),
            _transport.no_chaos("the requests adapter"), _transport.SYNC_HEDGE)


def _replayable(request: requests.PreparedRequest) -> bool:
    # Bytes and str bodies (data=, json=, files= are encoded to bytes) can be sent again; a
    # generator or a file object is read as it is sent, so once only.
    return request.body is None or isinstance(request.body, (bytes, str))


def _bound(value: Any, limit: float) -> float:
    # One of requests' timeouts (None: wait forever) cut to ``limit``.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < limit:
        return float(value)
    return limit


def bounded_timeout(timeout: Any, policy: Policy, call: _call.Call) -> tuple[float, float]:
    """``(connect, read)`` for one attempt: the caller's, cut to what the call has left.

    Also cut to the policy's ``attempt_timeout``. ``timeout`` is anything requests takes: None,
    a number, a ``(connect, read)`` tuple or a ``urllib3.Timeout``.

    Raises:
        ValueError: a tuple that is not ``(connect, read)``, as requests says itself.
    """
    left = max(0.001, call.remaining())
    limit = left if policy.attempt_timeout is None else min(policy.attempt_timeout, left)
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(f"Invalid timeout {timeout}. Pass a (connect, read) timeout "
                             "tuple, or a single float to set both timeouts to the same "
                             "value.") from None
    elif isinstance(timeout, urllib3.Timeout):
        connect, read = timeout.connect_timeout, timeout.read_timeout
    else:
        connect = read = timeout
    return _bound(connect, limit), _bound(read, limit)


def _drainable(response: requests.Response, limit: int) -> bool:
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= limit


def _discard(response: requests.Response) -> None:
    # A retried response: a small body is read so its connection goes back to the pool; a
    # larger or unsized one is dropped with its connection.
    try:
        if _drainable(response, _transport._DRAIN_LIMIT):
            response.content  # noqa: B018  (reads and keeps the body)
    except requests.RequestException:
        pass  # a broken body only costs its connection
    finally:
        response.close()


def _pieces(raw: Any) -> Iterator[bytes]:
    """A body's decoded bytes as they arrive: each piece one read of the socket.

    urllib3's ``read1`` returns what one read brings, where ``read(amt)`` (requests'
    ``iter_content``) waits for ``amt`` bytes: between pieces the caller can look at the
    deadline. urllib3's errors become requests' as ``iter_content`` turns them.
    """
    try:
        while True:
            piece = raw.read1(_CHUNK, decode_content=True)
            if not piece:
                return
            yield piece
    except urllib3.exceptions.ProtocolError as error:
        raise requests.exceptions.ChunkedEncodingError(error) from error
    except urllib3.exceptions.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from error
    except urllib3.exceptions.ReadTimeoutError as error:
        raise requests.ConnectionError(error) from error
    except urllib3.exceptions.SSLError as error:
        raise requests.exceptions.SSLError(error) from error


def _buffer(response: requests.Response, call: _call.Call) -> None:
    """Read a body of at most ``BUFFER_LIMIT`` bytes inside the attempt.

    A connection reset mid-body is then the attempt's error (and retried like any other
    transient error), and the call's deadline bounds the whole body: each read is bounded
    by the read timeout, and a trickle that keeps every read within it is cut off at the
    deadline, as the sync httpx transport does. Requests that ``stream=True`` read the body
    themselves.

    The one write of requests' internals: ``Response.content`` has no setter, and requests
    keeps a body it read in ``_content`` (``_content_consumed`` then says the stream is
    spent), so ``content``, ``text``, ``json()`` and ``iter_content`` all serve the bytes
    read here. Pinned by tests/test_requests.py::test_a_buffered_body_reads_as_requests_reads_it.
    """
    if not _drainable(response, _transport.BUFFER_LIMIT):
        return
    raw = response.raw
    # urllib3 1.x has no read1: requests' own reads, the deadline checked between them.
    pieces = _pieces(raw) if hasattr(raw, "read1") else response.iter_content(_CHUNK)
    chunks = []
    try:
        for piece in pieces:
            chunks.append(piece)
            if call.remaining() <= 0:
                raise requests.ReadTimeout(f"{call.deadline_message()} while reading the "
                                           "response body", request=response.request,
                                           response=response)
    except BaseException:
        response.close()
        raise
    response._content = b"".join(chunks)
    response._content_consumed = True


def _carry_request(error: BaseException, request: requests.PreparedRequest) -> None:
    # Errors raised while reading a body (ChunkedEncodingError ...) carry no request: the
    # idempotency rule reads it from the error, to never resend a POST.
    if isinstance(error, requests.RequestException) and error.request is None:
        error.request = request


class RetryAdapter(HTTPAdapter):
    """A ``requests`` transport adapter that retries each request under a policy.

    ``session.mount("https://", brace.RetryAdapter(policy=brace.http(deadline=10)))``, or
    ``brace.http.session()`` for a ``requests.Session`` with it on ``http://`` and
    ``https://``. It behaves as ``brace.RetryTransport`` does for httpx:

    - statuses and Retry-After as the policy says; idempotent methods only (a POST or PATCH
      is resent only with an ``Idempotency-Key`` header); a request with a streamed body (a
      generator, a file object) is sent once;
    - every attempt's ``timeout=`` is the caller's, cut to ``attempt_timeout`` and to what is
      left of the call's deadline (each request is one call, with its own deadline), and a
      body of at most ``BUFFER_LIMIT`` bytes is read inside the attempt under that
      deadline (not with ``stream=True``);
    - every attempt goes through the breaker, rate limit and bulkhead; by default every
      authority (``scheme://host[:port]``) has its own failure-ratio breaker, the same one
      the httpx transports use for it;
    - a retried response is closed (its connection reused when its body is small); when
      retries run out on a status, the last response is returned;
    - a >= 500 response with ``Brace-Exhausted: 1`` (a brace service that gave up below) is
      never retried;
    - a refusal (``brace.CircuitOpenError`` and every ``brace.BraceError``) is raised as an
      instance of its class that is also a ``requests.RequestException``;
    - urllib3's own retries are off (``max_retries=0``): brace is the one retry layer.

    Every response carries ``response.brace``: ``{"attempts": int, "elapsed_s": float,
    "exhausted": bool}`` (``response.extensions["brace"]`` on httpx; requests' Response
    has no extension dict, so brace sets this one attribute). ``elapsed_s`` covers every
    attempt and wait, where requests' ``response.elapsed`` times the last attempt.

    Args:
        policy: The policy (default ``brace.http``). No ``hedge_after=`` (only the async
            httpx transport hedges), no ``fallback=`` and no ``chaos=``.
        breaker: The breaker of every request: a name, a ``pybreaker.CircuitBreaker``, or
            None for none at all. Default: the policy's, else one per authority.
        propagate: The headers each attempt sends (``brace.web``): the milliseconds left of
            the call's deadline and the attempt's number, under these two names (default
            ``("Brace-Deadline-Ms", "Brace-Attempt")``); None sends neither.
        pool_connections: ``HTTPAdapter``'s: connection pools to cache.
        pool_maxsize: ``HTTPAdapter``'s: connections kept per pool.
        pool_block: ``HTTPAdapter``'s: whether to wait for a free connection.

    Raises:
        TypeError: ``policy`` is not a Policy or has a setting the adapter cannot apply,
            ``breaker`` is not a breaker, or an unknown keyword (``max_retries`` among them:
            urllib3's retries under brace's would multiply them).
    """

    __module__ = "brace"

    def __init__(self, policy: Policy | None = None, *, breaker: Any = _transport.PER_AUTHORITY,
                 propagate: tuple[str, str] | None = web.PROPAGATE,
                 pool_connections: int = DEFAULT_POOLSIZE, pool_maxsize: int = DEFAULT_POOLSIZE,
                 pool_block: bool = DEFAULT_POOLBLOCK, **unknown: Any) -> None:
        if "max_retries" in unknown:
            raise TypeError("RetryAdapter takes no max_retries=: brace is the one retry layer "
                            "(urllib3's retries under it would multiply attempts); set "
                            "attempts on the policy, e.g. brace.http(attempts=3)")
        if unknown:
            raise TypeError(f"RetryAdapter got an unknown keyword argument "
                            f"{', '.join(map(repr, unknown))}: it takes {_SETTINGS}")
        checked = _transport.check_client_policy(policy, _REFUSED)
        _transport.check_breaker(breaker)
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize,
                         max_retries=0, pool_block=pool_block)
        self.policy = checked
        self.breaker = breaker
        self.propagate = web.propagate_setting(propagate)
        self._paths = _transport.ClientPaths(checked, self._attempt, breaker, _discard, False)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        """Send ``request``, retrying it as the policy says (``HTTPAdapter.send``'s arguments)."""
        # A streamed body can be sent once only: one attempt, through every gate and under
        # the deadline, never resent.
        once = not _replayable(request)
        parts = urlsplit(request.url or "")  # cached by urllib for a URL seen before
        # The authority as written, without userinfo (no credentials kept in a key).
        key = (request.method, parts.scheme, parts.netloc.rpartition("@")[2], once)
        path = self._paths.get(key)
        if path is None:
            path = self._paths.add(key, _transport.describe(
                str(request.method), parts.scheme, parts.hostname or "", parts.port), once)
        call = path.begin()
        try:
            response: requests.Response = path.run(
                (request, stream, timeout, verify, cert, proxies), {}, call)
        except BraceError as refusal:  # also a RequestException: except requests... sees it
            raise _transport.as_client_error(refusal, requests.RequestException,
                                             request=request, response=None) from None
        except Exception as error:
            if once:
                _transport._skipped(self.policy, path.label, error, None)
            raise
        if once:
            _transport._skipped(self.policy, path.label, None, response)
        # What the response says about how it was obtained (extensions["brace"] on httpx).
        # Given up on: retries ran out (the call went past its first attempt) or a brace
        # service below said so (a 5xx); a healthy call needs neither look.
        exhausted = (call.state is not None or response.status_code >= 500) and is_exhausted(
            response)
        response.brace = _transport.report(call, exhausted)  # type: ignore[attr-defined]
        return response

    def _attempt(self, call: _call.Call, request: requests.PreparedRequest, stream: bool,
                 timeout: Any, verify: Any, cert: Any, proxies: Any) -> requests.Response:
        # One attempt: requests' timeout bounded by attempt_timeout and what the call has left.
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            _transport.propagate_deadline(request.headers, call, self.propagate)
        try:
            response = HTTPAdapter.send(self, request, stream, bounded_timeout(
                timeout, self.policy, call), verify, cert, proxies)
            if not stream:
                _buffer(response, call)
        except Exception as error:
            _carry_request(error, request)
            raise
        return response


def session(policy: Policy, *, breaker: Any = _transport.PER_AUTHORITY,
            **adapter_kwargs: Any) -> requests.Session:
    """A ``requests.Session`` with ``RetryAdapter(policy, ...)`` on ``http://`` and ``https://``.

    Raises:
        TypeError: as ``RetryAdapter`` does, before any session is made.
    """
    adapter = RetryAdapter(policy, breaker=breaker, **adapter_kwargs)
    built = requests.Session()
    built.mount("http://", adapter)
    built.mount("https://", adapter)
    return built

