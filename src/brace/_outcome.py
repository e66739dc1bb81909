"""What an attempt's result or error IS, decided once per attempt and read by every layer.

An attempt ends in one of these kinds (``Kind``):

- ``SUCCESS``: a value the policy does not retry;
- ``RETRYABLE``: a failure of the dependency the policy retries (``throttled`` when the
  dependency said "slow down": 429, 503 with Retry-After, 529, and the client libraries'
  throttling errors in ``brace._clients``: grpc ``RESOURCE_EXHAUSTED``, botocore's
  throttling codes ...);
- ``NOT_RETRIED``: a failure the policy recognises but may not resend (``why``:
  ``not_idempotent``), or an error that is no failure of the dependency at all (a bug, a
  404, a client library's authentication or permission error, which no ``on=`` retries:
  ``why`` is ``not_retryable``);
- ``REFUSED``: a gate (breaker, budget, bulkhead, rate limit) refused to run it: a
  ``BraceError``;
- ``CANCELLED``: cancellation of any async library (asyncio, trio, anyio), a thread's
  ``concurrent.futures.CancelledError``, an interrupt or an exit;
- ``EXHAUSTED``: an inner brace policy already gave up on it (retry at one layer only).

The breaker counts ``RETRYABLE`` and the failures among ``NOT_RETRIED`` (a 503 to a POST is
a failure of the dependency even though the POST is not resent), never ``CANCELLED`` or
``REFUSED``; the retry decision retries ``RETRYABLE`` only; hedging stops at the first
outcome that is neither retryable nor refused; events report the kind's reason.

This module also holds what marks a value as given up on (the exhaustion marks), and
``BraceError``, the base of every refusal brace raises.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from typing import Any, Final

import pybreaker
import tenacity

from brace import _clients
from brace._deadline import clock, gave_up

__all__ = [
    "IDEMPOTENT_METHODS",
    "LAST_MARK",
    "SDK_RETRY_HEADER",
    "BraceError",
    "Done",
    "Kind",
    "Outcome",
    "classify",
    "httpx_error",
    "is_exhausted",
    "is_exit",
    "is_idempotent_request",
    "is_safe_to_resend",
    "is_throttling",
    "judged",
    "mark_exhausted",
    "quick_verdict",
    "request_of",
    "response_of",
    "sdk_retries",
    "status_of",
]


class BraceError(Exception):
    """Base of every refusal brace raises: a gate refused to run an attempt.

    A ``CircuitOpenError`` (breaker), ``BulkheadFullError`` (bulkhead) or
    ``RateLimitedError`` (rate limit) says the dependency was not called at all, so it
    gives no verdict on it: breakers do not count it and no policy retries it. Out of
    brace's httpx transports and clients each is also an ``httpx.TransportError``.
    """

    __module__ = "brace"


# --- cancellation, interrupts, exits --------------------------------------------------------
# Every async library's cancellation is a BaseException that is not an Exception
# (asyncio.CancelledError, trio.Cancelled, and anyio's, which is the backend's own), as are
# KeyboardInterrupt, SystemExit, GeneratorExit and a BaseExceptionGroup holding one. A thread
# waiting on a cancelled future gets concurrent.futures.CancelledError, an Exception.
_THREAD_CANCELLED = concurrent.futures.CancelledError


def is_exit(exc: BaseException | None) -> bool:
    """True for a cancellation (any library, threads included), an interrupt or an exit.

    Such an outcome is never retried, never counted by a breaker, a budget or a window, and
    propagates at once whatever a predicate says (tenacity issue 529).
    """
    return exc is not None and (not isinstance(exc, Exception)
                                or isinstance(exc, _THREAD_CANCELLED))


# --- the kinds -------------------------------------------------------------------------------


class Kind:
    """What an attempt's outcome is (see the module's docstring).

    Plain string constants, compared with ``is``: every attempt reads its kind several
    times, and an ``enum.Enum`` member costs several times a class attribute to look up.
    """

    SUCCESS: Final = "success"
    RETRYABLE: Final = "retryable"
    NOT_RETRIED: Final = "not_retried"
    REFUSED: Final = "refused"
    CANCELLED: Final = "cancelled"
    EXHAUSTED: Final = "exhausted"


class Outcome:
    """One attempt's outcome, classified once: its kind and what every layer reads of it.

    Attributes:
        kind: One of ``Kind``'s constants.
        error: The exception the attempt raised, else None.
        value: The value it returned (None when it raised).
        failure: Whether it is a failure of the dependency (breakers count it).
        why: For ``NOT_RETRIED``: ``not_idempotent`` or ``not_retryable``; for
            ``EXHAUSTED``: ``inner_exhausted``; for a ``RETRYABLE`` answer that says "slow
            down" (``is_throttling``: 429, 529, 503 with Retry-After, a client library's
            throttling error): ``throttled``.
    """

    __slots__ = ("error", "failure", "kind", "value", "why")

    def __init__(self, kind: str, error: BaseException | None, value: Any, *,
                 failure: bool = False, why: str | None = None) -> None:
        self.kind = kind
        self.error = error
        self.value = value
        self.failure = failure
        self.why = why

    @property
    def retry(self) -> bool:
        """Whether the policy retries it."""
        return self.kind is Kind.RETRYABLE

    @property
    def throttled(self) -> bool:
        """Whether the dependency said "slow down" (``is_throttling``)."""
        return self.why == "throttled"

    def __repr__(self) -> str:
        why = f" ({self.why})" if self.why else ""
        what = f"error={self.error!r}" if self.error is not None else f"value={self.value!r}"
        return f"<outcome {self.kind}{why}: {what}>"


# --- exhaustion marks: retry at one layer -------------------------------------------------------
# An error or response that leaves a brace policy after its retries ran out carries a mark:
# a number from one process-wide sequence, and when it was set. An enclosing policy never
# retries a value marked since its own call began, so nested policies add attempts, never
# multiply them. (Since its call began, not ever: an exception instance raised again by a
# later call, as mocks do, was not given up on in that call.)

_EXHAUSTED = "__brace_exhausted__"
_sequence = itertools.count(1)
#: The number of the latest mark; a call path reads it when a call begins, and a call that
#: began after it knows at once that nothing it sees is marked.
LAST_MARK = [0]
_UNWRAP_DEPTH = 4


def is_exhausted(value: object, since: float = float("-inf"), *,
                 after_mark: int | None = None) -> bool:
    """True when a brace policy gave up on ``value`` (retries ran out) since a call began.

    ``since`` is a ``time.monotonic()`` reading such as tenacity's ``retry_state.start_time``
    (brace's call path passes ``after_mark``, the mark number it read then). Looks at the
    value, its response and the errors it was raised from. Brace policies never retry such
    a value (``reason=inner_exhausted``); use it to retry at one layer in tenacity code.
    A response of 500 or more carrying ``Brace-Exhausted: 1`` was given up on by a
    service downstream (``brace.web``): it counts as exhausted too.
    """
    if given_up_downstream(value):
        return True
    if after_mark is not None and LAST_MARK[0] <= after_mark:
        return False  # nothing was given up on anywhere since the call began
    for _ in range(_UNWRAP_DEPTH):
        if value is None:
            return False
        for holder in (value, getattr(value, "response", None)):
            mark = getattr(holder, _EXHAUSTED, None)
            if isinstance(mark, tuple) and (mark[0] > after_mark if after_mark is not None
                                            else mark[1] >= since):
                return True
        value = getattr(value, "__cause__", None) or getattr(value, "__context__", None)
    return False


def given_up_downstream(value: object) -> bool:
    """Whether ``value`` is (or carries) a 5xx response marked ``Brace-Exhausted: 1``."""
    response = response_of(value)
    if response is None or response.status_code < 500:
        return False
    try:
        return bool(response.headers.get("brace-exhausted") == "1")
    except Exception:  # headers of an unexpected shape: no marker can be read
        return False


def mark_exhausted(value: object) -> None:
    """Mark ``value`` (an error or a response) as given up on by a brace policy, now."""
    number = next(_sequence)
    try:
        setattr(value, _EXHAUSTED, (number, clock()))
    except (AttributeError, TypeError):
        return  # a value without attributes (an int, a slotted object) carries no mark
    finally:
        gave_up()  # the brace.deadline scopes around say so (brace.web marks the response)
    LAST_MARK[0] = number


# --- what an HTTP outcome carries --------------------------------------------------------
# By duck typing: an httpx.Response, an httpx.HTTPStatusError, or any exception with
# `status_code` or `response.status_code` (the LLM SDKs' errors, requests' HTTPError,
# websockets' InvalidStatus), importing none of them; the other libraries' shapes (aiohttp's
# `.status`, botocore's ResponseMetadata ...) through brace._clients, by class.

def httpx_error(exc: BaseException, names: frozenset[str]) -> bool:
    """Whether ``exc`` is one of httpx's errors ``names``, by class name and module."""
    # By name and module, not by import: `import brace` stays free of httpx, and SDKs that
    # ship a fork of httpx (openai 3 raises `httpx2.ConnectError`) are recognised too.
    return any(cls.__name__ in names and cls.__module__.startswith("httpx")
               for cls in type(exc).__mro__)


def _int_status(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def status_of(value: object) -> int | None:
    """The HTTP status a result or exception carries, or None.

    ``status_code`` or ``response.status_code`` (httpx, requests, the LLM SDKs, websockets'
    ``InvalidStatus``), else a client library's own shape (``brace._clients.status``):
    aiohttp's ``.status``, botocore's ``response["ResponseMetadata"]["HTTPStatusCode"]``,
    google-api-core's and urllib's ``.code``, urllib3's and http.client's ``.status``.
    """
    code = getattr(value, "status_code", None)
    if type(code) is int:  # httpx's, requests' and the SDKs' responses: at once
        return code
    if code is not None:
        code = _int_status(code)
        if code is not None:
            return code
    response = getattr(value, "response", None)
    if response is not None:
        code = _int_status(getattr(response, "status_code", None))
        if code is not None:
            return code
    if value.__class__.__module__ == "builtins":  # a plain value or a builtin error
        return None
    return _clients.status(value)  # one dict look-up by class


def _is_response(value: object) -> bool:
    return _int_status(getattr(value, "status_code", None)) is not None and hasattr(
        value, "headers")


def response_of(value: object) -> Any:
    """The HTTP response a result or exception carries (anything with status and headers).

    A builtin error (an OSError, a TimeoutError) or a plain value carries none.
    """
    if type(value).__module__ == "builtins":
        return None
    if _is_response(value):
        return value
    response = getattr(value, "response", None)
    return response if response is not None and _is_response(response) else None


def request_of(value: object) -> Any:
    """The HTTP request a response or exception carries, or None."""
    if type(value).__module__ == "builtins":  # an OSError, a plain value: no request
        return None
    for holder in (value, getattr(value, "response", None)):
        if holder is None:
            continue
        try:  # httpx raises RuntimeError for a request that was never attached
            request = getattr(holder, "request", None)
        except RuntimeError:
            continue
        if request is None:  # aiohttp's errors and responses carry `request_info`
            request = getattr(holder, "request_info", None)
        if request is not None and isinstance(getattr(request, "method", None), (str, bytes)):
            return request
    return None


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods safe to send twice (RFC 9110 section 9.2.2)."""
# Failures that happen before a request leaves the client: nothing reached the server.
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})


def _not_sent(value: object) -> bool:
    if isinstance(value, ConnectionRefusedError):
        return True
    if isinstance(value, BaseException):
        # Also an SDK error raised from a connect failure (openai's APIConnectionError), and
        # the other client libraries' connect failures (requests, urllib3, aiohttp, botocore).
        return httpx_error(value, _NOT_SENT) or _clients.not_sent(value) or (
            value.__cause__ is not None and httpx_error(value.__cause__, _NOT_SENT))
    return False


def is_safe_to_resend(value: object) -> bool:
    """False only for an HTTP request that must not be sent again.

    That is a POST, PATCH (or other non-idempotent method) without an ``Idempotency-Key``
    header whose failure may have reached the server. Outcomes that carry no request are
    not HTTP and are always safe as far as this rule goes.
    """
    request = request_of(value)
    return request is None or is_idempotent_request(request) or _not_sent(value)


def is_idempotent_request(request: Any) -> bool:
    """True for a request safe to send twice: an idempotent method or an Idempotency-Key."""
    method = request.method.decode() if isinstance(request.method, bytes) else request.method
    headers = getattr(request, "headers", None)
    return method.upper() in IDEMPOTENT_METHODS or bool(
        headers is not None and headers.get("idempotency-key"))


#: The header OpenAI's and Anthropic's SDKs (Stainless-generated) send with the number of
#: times they already resent a request: above 0, the SDK retries under brace's retries.
SDK_RETRY_HEADER = "x-stainless-retry-count"


def sdk_retries(value: object) -> str | None:
    """``x-stainless-retry-count=N`` when the request behind ``value`` was an SDK's resend."""
    request = request_of(value)
    headers = getattr(request, "headers", None)
    count = None if headers is None else headers.get(SDK_RETRY_HEADER)
    if count is None or str(count).strip() in ("", "0"):
        return None
    return f"{SDK_RETRY_HEADER}={count}"


# --- the one classifier ---------------------------------------------------------------------

# Statuses that say "slow down" rather than "broken": rate limits and overload.
_THROTTLING = frozenset({429, 529})


def _throttled(value: object, status: int | None) -> bool:
    # `status` is status_of(value), which the caller has already read.
    if status in _THROTTLING:
        return True
    if status == 503:  # unavailable, and saying when to come back
        response = response_of(value)
        if response is not None and response.headers.get("retry-after") is not None:
            return True
    return isinstance(value, BaseException) and _clients.is_throttling(value)


def is_throttling(value: object) -> bool:
    """Whether an outcome (an error or a returned response) says "slow down".

    An HTTP 429 or 529, a 503 with Retry-After, or a client library's throttling error
    (``brace._clients``: grpc ``RESOURCE_EXHAUSTED``, botocore's throttling codes such as
    ``ThrottlingException`` and ``SlowDown``, google-api-core's ``TooManyRequests``,
    websockets' close code 1013). Events report it as ``error_kind="throttling"``; the
    adaptive limits lower their rate on it.
    """
    return _throttled(value, status_of(value))


# brace's own gates, and a pybreaker breaker a user passed (its CircuitBreakerError).
_REFUSALS = (BraceError, pybreaker.CircuitBreakerError)


class Done(tenacity.Future):
    """A finished attempt's outcome as tenacity reads it, without the lock a pending one needs.

    tenacity reads an outcome several times per attempt (the predicate, the wait, the stop,
    events); ``concurrent.futures.Future`` takes a lock on every read.
    """

    #: Whether the attempt raised (an attribute: tenacity's predicates read it every time).
    failed = False

    def __init__(self, attempt_number: int, exc: BaseException | None, value: Any) -> None:
        # No Future.__init__: a finished outcome never waits, so it needs no Condition.
        self.attempt_number = attempt_number
        self._exc = exc
        self._value = value
        self.failed = exc is not None

    def done(self) -> bool:
        """Always: the attempt has ended."""
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The attempt's exception, or None."""
        return self._exc

    def result(self, timeout: float | None = None) -> Any:
        """The attempt's value, or raise its exception."""
        if self._exc is not None:
            raise self._exc
        return self._value

    def __repr__(self) -> str:
        return f"<attempt {self.attempt_number}: {'failed' if self._exc else 'returned'}>"


def _judged_state(policy: Any, error: BaseException | None, value: Any) -> Any:
    # A tenacity call state holding only this outcome, for predicates written for tenacity.
    state = tenacity.RetryCallState(policy._retryer, None, (), {})
    state.outcome = Done(1, error, value)
    return state


def quick_verdict(policy: Any, error: BaseException | None, value: Any) -> Outcome | None:
    """The verdicts that need no predicate, or None: ``classify``'s first rules.

    A cancellation or exit, a refusal by a gate, ``tenacity.TryAgain``, a client library's
    authentication or permission error (``brace._clients``, verdict ``NEVER``), and a value
    the policy's result check does not flag (a plain success).
    """
    if error is not None:
        if not isinstance(error, Exception) or isinstance(error, _THREAD_CANCELLED):  # is_exit
            return Outcome(Kind.CANCELLED, error, None)
        if isinstance(error, _REFUSALS):
            return Outcome(Kind.REFUSED, error, None)
        if isinstance(error, tenacity.TryAgain):
            return Outcome(Kind.RETRYABLE, error, None)  # the function asked for a retry
        if error.__class__.__module__ != "builtins":  # builtin errors are in no table
            row = _clients.verdict(error)
            if row is not None and row.never:
                # A client library's authentication or permission error: never retried,
                # whatever on= says (redis-py's AuthenticationError is a ConnectionError),
                # and no failure of the dependency for breakers to count.
                return Outcome(Kind.NOT_RETRIED, error, None, why="not_retryable")
        return None
    check = policy._result_check
    if check is None or not check(value):
        return Outcome(Kind.SUCCESS, None, value)
    return None


def classify(policy: Any, error: BaseException | None, value: Any, mark: int | None = None,
             state: Any = None) -> Outcome:
    """What one attempt's ``error`` (or returned ``value``) is, under ``policy``.

    The one place that decides it: breakers, budgets, the retry decision, events and
    hedging read the ``Outcome``. ``mark`` is the exhausted-mark number the call began at
    (brace's call path); ``state`` the tenacity call state holding this outcome, when there
    is one (tenacity's own loops, brace's call path after its first failure), whose start
    time then dates the call when there is no ``mark``.
    """
    verdict = quick_verdict(policy, error, value)
    if verdict is not None:
        return verdict
    return judged(policy, error, value, mark,
                  _judged_state(policy, error, value) if state is None else state)


def judged(policy: Any, error: BaseException | None, value: Any, mark: int | None,
           state: Any) -> Outcome:
    """``classify`` past its first rules: the policy's predicate decides, on ``state``.

    ``state`` is a tenacity call state whose ``outcome`` holds this attempt.
    """
    failure = bool(policy._failure(state))
    subject = value if error is None else error
    since = getattr(state, "start_time", None)
    if (mark is not None and is_exhausted(subject, after_mark=mark)) or (
            mark is None and since is not None and is_exhausted(subject, since)):
        return Outcome(Kind.EXHAUSTED, error, value, failure=failure, why="inner_exhausted")
    if not failure:
        if error is None:
            return Outcome(Kind.SUCCESS, None, value)
        return Outcome(Kind.NOT_RETRIED, error, None, why="not_retryable")
    if policy.idempotent_only and not is_safe_to_resend(subject):
        return Outcome(Kind.NOT_RETRIED, error, value, failure=True, why="not_idempotent")
    # A builtin error (an OSError, a TimeoutError) carries no status and is no client
    # library's throttling error.
    throttled = (type(subject).__module__ != "builtins"
                 and _throttled(subject, status_of(subject)))
    return Outcome(Kind.RETRYABLE, error, value, failure=True,
                   why="throttled" if throttled else None)
