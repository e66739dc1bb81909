"""httpx transports that send every request through a policy, and what brace's clients share.

A transport is httpx's own extension point: wrapping ``HTTPTransport`` keeps connection
pooling, proxies, TLS and HTTP/2 httpx's, and retries happen below redirects, auth and
cookies, once per request. Each request takes the same call path as a decorated function
(fast path, then tenacity; the breaker gate per attempt). Imported lazily, so
``import brace`` does not import httpx.

requests' adapter (``_requests.py``) and aiohttp's middleware (``_aiohttp.py``) share this
module's checks of a policy, request labels, per-authority breakers, call paths
(``ClientPaths``), deadline headers, the ``brace`` report on responses, and the conversion of
brace's refusals into the client library's errors (``as_client_error``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

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
_TIMEOUT_SET = frozenset(_TIMEOUT_KEYS)


def _deadline_error(request: httpx.Request, error: TimeoutError) -> httpx.TimeoutException:
    # The deadline cut a request off in flight: say it the way httpx says timeouts.
    timeout = httpx.TimeoutException(str(error), request=request)
    predicates.mark_exhausted(timeout)
    return timeout


def _skipped(policy: Policy, label: str, error: BaseException | None, response: Any) -> None:
    # A streamed body cannot be replayed: say so when the outcome would have been retried
    # (``response``: any client's).
    if policy._counts(error, response):
        outcome = tenacity.Future.construct(1, error if error is not None else response,
                                            error is not None)
        _events.retry_skipped(label, policy.preset, 1, outcome, "streamed_body")


def _ended(path: _call.Path, once: bool, call: _call.Call, error: BaseException | None,
           response: httpx.Response | None) -> httpx.Response:
    # A request's end: a streamed body's outcome that would have been retried says why it
    # was not; a response says how it was obtained (``report``). Exhausted: marked by a
    # policy that gave up on it during this call (none can have, unless a mark was made
    # since the call began), or a 5xx marked so by a service downstream.
    if once:
        _skipped(path.policy, path.label, error, response)
    if response is not None:
        exhausted = (response.status_code >= 500 or LAST_MARK[0] > call.mark) and \
            predicates.is_exhausted(response, after_mark=call.mark)
        response.extensions["brace"] = report(call, exhausted)
    return response  # type: ignore[return-value]  # None only when ``error`` is raised


def _replayable(request: httpx.Request) -> bool:
    # A streamed upload (generator, file iterator) can be sent once only.
    return isinstance(request.stream, httpx.ByteStream)


def _bound_timeouts(request: httpx.Request, policy: Policy, original: Any,
                    call: _call.Call) -> None:
    """Give this attempt at most attempt_timeout and what is left of the deadline."""
    left = call.remaining()
    if left < 0.001:
        left = 0.001
    cap = policy.attempt_timeout
    limit = cap if cap is not None and cap <= left else left  # min(cap, left)
    if type(original) is dict and request.extensions.get("timeout") is original:
        # httpx's own four timeouts, still on the request and each within the limit: nothing
        # to bound (the common case: a client's timeouts are shorter than a deadline).
        given = cast("dict[str, Any]", original)
        try:
            if max(given.values()) <= limit and given.keys() == _TIMEOUT_SET:
                return
        except (TypeError, ValueError):  # a None (no timeout), not numbers, or none at all:
            pass  # converted below, as any other value
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
    if not _bufferable(response):
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


def _as_httpx_error(refusal: BraceError, request: httpx.Request) -> Exception:
    """``refusal`` as an ``httpx.TransportError`` too (``as_client_error``), of ``request``."""
    return as_client_error(refusal, httpx.TransportError, request=request)


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


# -- what brace's clients share: these transports, requests' adapter, aiohttp's middleware --

# Each setting a client may refuse, and its value when not set.
_NOT_SET: dict[str, Any] = {"hedge_after": None, "fallback": _config.NO_FALLBACK, "chaos": None}
#: ``hedge_after=`` refused by a sync client: only the async httpx transport races copies.
SYNC_HEDGE = ("hedge_after", "which races copies of a request: only the async transport can "
              "(policy.async_client(), brace.AsyncRetryTransport)")


def no_fallback(client: str, errors: str, caller: str = "sends the request") -> tuple[str, str]:
    """``fallback=`` refused by ``client``, which returns responses or raises ``errors``."""
    return ("fallback", f"which {client} cannot apply (it returns responses or raises "
                        f"{errors}): decorate the function that {caller} with that policy, or "
                        "drop it with policy.replace(fallback=brace.NO_FALLBACK)")


def no_chaos(client: str) -> tuple[str, str]:
    """``chaos=`` refused by ``client``, which does not inject it."""
    return ("chaos", f"which {client} does not inject: decorate the function that sends the "
                     "request with that policy")


def check_client_policy(policy: object, refused: Iterable[tuple[str, str]] = (),
                        name: str = "policy=") -> Policy:
    """``policy`` as a client takes it: ``brace.http`` for None, else a Policy.

    Raises:
        TypeError: ``policy`` is not a Policy, or sets one of ``refused``: pairs of a
            setting the client cannot honour (``"hedge_after"``, ``"fallback"``,
            ``"chaos"``) and why, checked in their order; the message is
            ``f"{name} has a {setting}=, {why}"``.
    """
    if policy is None:
        return _config.presets["http"]  # type: ignore[no-any-return]
    if isinstance(policy, type) or not hasattr(policy, "tenacity_kwargs"):
        raise TypeError(f"{name} must be a brace.Policy (such as brace.http), got {policy!r}")
    for setting, why in refused:
        if getattr(policy, setting) is not _NOT_SET[setting]:
            raise TypeError(f"{name} has a {setting}=, {why}")
    return policy  # type: ignore[return-value]


def check_breaker(breaker: Any) -> None:
    """Refuse a ``breaker=`` that is not PER_AUTHORITY, a name, a breaker object or None."""
    if breaker is not PER_AUTHORITY and breaker is not None:
        _validate.named(breaker, "breaker", (pybreaker.CircuitBreaker,),
                        "a breaker name (non-empty str), a pybreaker.CircuitBreaker or "
                        "None (no breaker)")


# A label names the port only when it is not the scheme's default.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def describe(method: str, scheme: str, host: str, port: int | None) -> str:
    """What events, metric labels and per-authority breakers call a request.

    ``METHOD scheme://host[:port]``: bounded, so never a path, a query or userinfo, and the
    same whichever client sends it (one authority, one breaker).
    """
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{method} {scheme}://{host}"
    return f"{method} {scheme}://{host}:{port}"


# Per brace refusal class and client error class, their twin (built once).
_TWINS: dict[tuple[type[BraceError], type[Exception]], type[Any]] = {}


def as_client_error(refusal: BraceError, base: type[Exception], **attributes: Any) -> Exception:
    """``refusal`` as an instance of its class that is also a ``base``, the client's error.

    Out of a brace client a refusal (open breaker, full bulkhead, rate limit) must be caught
    by the client library's own ``except`` (``httpx.HTTPError``, ``requests.RequestException``,
    ``aiohttp.ClientError``) like any failure to get a response, and stay the brace
    exception (``except brace.CircuitOpenError``). The copy keeps the message, the
    attributes (``breaker``, ``remaining_s``, the exhaustion mark) and the traceback, and
    gets ``attributes`` (the request it refused). ``__init__`` is not run again: the
    refusal's own arguments are not its ``args``. A refusal that is a ``base`` already (a
    brace client inside another converted it) is returned as it is.
    """
    if isinstance(refusal, base):
        return refusal
    cls = type(refusal)
    twin = _TWINS.get((cls, base))
    if twin is None:
        twin = _TWINS.setdefault((cls, base), type(cls.__name__, (cls, base), {
            "__module__": "brace", "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}))
    error: Exception = base.__new__(twin)  # the base's layout (requests': an OSError's)
    error.args = refusal.args
    error.__dict__.update(refusal.__dict__)
    for name, value in attributes.items():
        setattr(error, name, value)
    # The traceback from below the client's frame, which re-raising adds again.
    caught = refusal.__traceback__
    return error.with_traceback(caught.tb_next if caught is not None else None)


def propagate_deadline(headers: Any, call: _call.Call, names: tuple[str, str]) -> None:
    """Set the attempt's Brace-Deadline-Ms and Brace-Attempt (or ``names``) in ``headers``.

    brace.web downstream then runs the request under what is left of this call's deadline.
    """
    (left_name, left), (attempt_name, attempt) = web.outbound(call.remaining(), call.attempts,
                                                              names)
    headers[left_name] = left
    headers[attempt_name] = attempt


def report(call: _call.Call, exhausted: bool) -> dict[str, Any]:
    """How a response was obtained: ``{"attempts": int, "elapsed_s": float, "exhausted": bool}``.

    Every brace client's response carries it (``response.extensions["brace"]`` on httpx,
    ``response.brace`` on requests and aiohttp).
    """
    return {"attempts": call.attempts or 1,
            "elapsed_s": _events.seconds(clock() - call.started),  # Deadline.elapsed()
            "exhausted": exhausted}


#: The per-authority breakers brace's clients open by default: Polly's standard HTTP
#: handler's settings (failure ratio 10 % of at least 100 calls in 30 s, break 5 s).
AUTHORITY_BREAKER: dict[str, Any] = {"failure_ratio": 0.1, "min_calls": 100, "window": 30.0,
                     "reset_timeout": 5.0, "fail_max": 1_000_000}
#: Per-authority breakers kept at most, process-wide; beyond, the least recently used
#: closed ones are forgotten (a client that talks to ever-new hosts stays bounded).
MAX_AUTHORITY_BREAKERS = 1000
_authorities: dict[str, int] = {}  # breaker name -> the registry changes it was last used at
_authorities_lock = threading.Lock()
#: ``breaker=`` not given: the policy's breaker, else one per authority.
PER_AUTHORITY: Any = type("PerAuthority", (), {"__repr__": lambda self: "PER_AUTHORITY"})()


def _authority_breaker(label: str) -> str:
    """The per-authority breaker of ``label`` ("GET https://host:port"), made on first use."""
    name = label.partition(" ")[2]  # scheme://host[:port]: no path, no userinfo
    _keep(name)
    return name


def _keep(name: str) -> None:
    """Mark the breaker ``name`` used now, making it when new, evicted or forgotten."""
    # Recency counts in the registry's changes: a request to a known authority while no
    # breaker is made or forgotten writes nothing (its client remembers the count).
    _authorities[name] = _breakers.changes[0]  # atomic under the GIL: no lock when it exists
    if _breakers.registry.get(name) is None:
        with _authorities_lock:
            _breakers.breaker(name, **AUTHORITY_BREAKER)
            _authorities[name] = _breakers.changes[0]
            if len(_authorities) > MAX_AUTHORITY_BREAKERS:
                _evict()


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


# Call paths a client keeps (one per authority and kind of request) before starting over.
_MAX_PATHS = 256


class _Entry:
    # One kind of request's call path and, with per-authority breakers, the authority's
    # breaker: its name and the count of the registry's changes it was last marked used at.
    __slots__ = ("authority", "generation", "path")

    def __init__(self, path: _call.Path, authority: str | None) -> None:
        self.path = path
        self.authority = authority
        self.generation = -1


class ClientPaths:
    """The call paths of one client's requests under one policy, built on first use.

    One per kind of request: a key the client makes of a request's method, authority, body
    kind and whether it may hedge, cheaper than the label ``describe`` makes. Bounded: keys
    grow with the hosts a client talks to. The breaker is the client's ``breaker=``, else
    the policy's, else one per authority (``AUTHORITY_BREAKER``), which a request to a
    known authority finds without the process-wide bookkeeping: its entry remembers the
    breaker's gate and when it was last marked used.
    """

    __slots__ = ("_entries", "asynchronous", "breaker", "discard", "fn", "per_authority",
                 "policy")

    def __init__(self, policy: Policy, attempt: Callable[..., Any], breaker: Any,
                 discard: Callable[[Any], Any], asynchronous: bool) -> None:
        self.policy = policy
        # brace.testing.chaos, when set, strikes inside each attempt (the httpx clients').
        self.fn = attempt if policy.chaos is None else policy.chaos.wrap(attempt)
        if breaker is PER_AUTHORITY:
            breaker = policy.breaker
            self.per_authority = breaker is None
        else:
            self.per_authority = False
        self.breaker = breaker
        self.discard = discard
        self.asynchronous = asynchronous
        self._entries: dict[Any, _Entry] = {}

    def get(self, key: Any) -> _call.Path | None:
        """The call path of requests of ``key``, or None: none yet (``add`` it)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        authority = entry.authority
        if authority is not None and entry.generation != _breakers.changes[0]:
            # Breakers were made since this one was marked used (it may be the least recently
            # used), or forgotten (evicted, brace.forget, reset_breakers(): maybe this one).
            # The count read first: a change while it is kept is seen by the next request.
            entry.generation = _breakers.changes[0]
            _keep(authority)
        return entry.path

    def add(self, key: Any, label: str, once: bool, hedge: bool = False) -> _call.Path:
        """Build the call path of requests of ``key``, called ``label``, and keep it."""
        entries = self._entries
        if len(entries) >= _MAX_PATHS:
            entries.clear()
        breaker = self.breaker
        authority = None
        if self.per_authority:
            breaker = authority = label.partition(" ")[2]  # scheme://host[:port]
        # attempt_timeouts=False: each client bounds an attempt itself (httpx's timeouts,
        # requests' timeout=, the aiohttp middleware's own watchdog), so an attempt cut off
        # raises the client's error, carrying its request (a POST cut off is never resent).
        path = _call.Path(
            self.policy, self.fn, name=label, label=label, breaker=breaker,
            discard=self.discard, with_call=True, attempt_timeouts=False, hedge=hedge,
            asynchronous=self.asynchronous, once=once)
        entry = entries[key] = _Entry(path, authority)
        if authority is not None:
            entry.generation = _breakers.changes[0]
            _keep(authority)
        return path


# -- the httpx transports ------------------------------------------------------------------

#: What each httpx transport refuses of a policy (the async one hedges).
_SYNC_REFUSED = (SYNC_HEDGE, no_fallback("a transport", "httpx errors", "calls the client"))
_ASYNC_REFUSED = _SYNC_REFUSED[1:]


class _Base:
    asynchronous = True
    _refused: tuple[tuple[str, str], ...] = _ASYNC_REFUSED
    _attempt: Callable[..., Any]

    def __init__(self, policy: Policy | None, breaker: Any,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        self.policy = check_client_policy(policy, self._refused)
        # The headers every attempt sends downstream (brace.web reads them).
        self.propagate = web.propagate_setting(propagate)
        check_breaker(breaker)
        self.breaker = breaker
        self._paths = self._paths_of(self.policy)
        # Per-request policies' paths (extensions={"brace": policy}), known by value.
        self._other_paths: dict[Policy, ClientPaths] = {}
        # The llm preset's clients watch for an SDK resending through them (once).
        self._watch_sdk = self.policy.preset == "llm"

    def _paths_of(self, policy: Policy) -> ClientPaths:
        return ClientPaths(policy, self._attempt, self.breaker,
                           _adiscard if self.asynchronous else _discard, self.asynchronous)

    def _layered(self, request: httpx.Request, policy: Policy, label: str) -> None:
        # The SDK above resends what brace gave up on: attempts multiply. Said once.
        retried = sdk_retries(request)
        if retried is not None:
            self._watch_sdk = False
            _events.retry_layered(label, policy.preset, retried,
                                  "max_retries=0 on the SDK client (brace retries)")

    def _path(self, request: httpx.Request, once: bool) -> _call.Path:
        # The request's call path. extensions={"brace": policy} replaces the transport's
        # policy for one request; the transport's own is known by identity (hashing a Policy
        # hashes all its settings).
        chosen = request.extensions.get("brace")
        paths = self._paths if chosen is None else self._chosen(chosen)
        # Hedged: a request that is safe to resend, when the policy hedges (async only).
        hedge = (self.asynchronous and paths.policy.hedge_after is not None
                 and predicates.is_idempotent_request(request))
        url = request.url
        key = (request.method, url.scheme, url.host, url.port, once, hedge)
        path = paths.get(key)
        if path is None:
            path = paths.add(key, describe(*key[:4]), once, hedge)
        if self._watch_sdk:
            self._layered(request, path.policy, path.label)
        return path

    def _chosen(self, chosen: object) -> ClientPaths:
        policy = check_client_policy(chosen, self._refused, 'extensions["brace"]')
        paths = self._other_paths.get(policy)
        if paths is None:
            if len(self._other_paths) >= _MAX_PATHS:
                self._other_paths.clear()
            paths = self._other_paths[policy] = self._paths_of(policy)
        return paths


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
    _refused = _SYNC_REFUSED

    def __init__(self, policy: Policy | None = None, transport: httpx.BaseTransport | None = None,
                 *, breaker: Any = PER_AUTHORITY,
                 propagate: tuple[str, str] | None = web.PROPAGATE) -> None:
        super().__init__(policy, breaker, propagate)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def _send(self, request: httpx.Request, call: _call.Call) -> httpx.Response:
        try:
            response = self.transport.handle_request(request)
            if not response.is_stream_consumed:  # (read already: nothing to buffer)
                response = _buffer(response, call, request)
        except BaseException as exc:
            _attach(request, exc)
            raise
        _attach(request, response)
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying it as the policy says."""
        # A streamed body can be sent once only: one attempt, through every gate and under
        # the deadline, never resent. A retried response is closed by the call path,
        # freeing its connection.
        once = not _replayable(request)
        path = self._path(request, once)
        call = path.begin()
        try:
            response: httpx.Response = path.run(
                (request, request.extensions.get("timeout"), path.policy), {}, call)
        except BraceError as refusal:  # also an httpx error, so except httpx.HTTPError sees it
            raise _as_httpx_error(refusal, request) from None
        except Exception as error:
            _ended(path, once, call, error, None)
            raise
        return _ended(path, once, call, None, response)

    def _attempt(self, call: _call.Call, request: httpx.Request, original: Any,
                 policy: Policy) -> httpx.Response:
        # One attempt: its timeouts bounded by attempt_timeout and what is left of the call.
        _bound_timeouts(request, policy, original, call)
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            propagate_deadline(request.headers, call, self.propagate)
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
        # The deadline also cuts an attempt off in flight (httpx's timeouts are per read, and
        # a request waiting for a pooled connection or a slow server can outlive them);
        # attempt_timeout stays httpx's own timeout, so the caller sees httpx's errors.
        # Retried responses, and those of hedges that lost, are closed by the call path. A
        # streamed body is sent once, through every gate and under the deadline.
        once = not _replayable(request)
        path = self._path(request, once)
        call = path.begin()
        try:
            try:
                response: httpx.Response = await path.arun(
                    call, (request, request.extensions.get("timeout"), path.policy), {})
            except TimeoutError as error:
                raise _deadline_error(request, error) from error
            except BraceError as refusal:
                raise _as_httpx_error(refusal, request) from None
        except Exception as error:
            _ended(path, once, call, error, None)
            raise
        return _ended(path, once, call, None, response)

    async def _attempt(self, call: _call.Call, request: httpx.Request, original: Any,
                       policy: Policy) -> httpx.Response:
        _bound_timeouts(request, policy, original, call)
        if self.propagate is not None:  # what is left of the deadline, and which attempt
            propagate_deadline(request.headers, call, self.propagate)
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
