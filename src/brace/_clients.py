"""What each client library's errors mean: one row per library and error (or code), and why.

The table brace's "transient" predicate and its outcome classifier consult (DESIGN rule
29): requests, urllib3, redis-py and valkey-py, botocore (classes, error codes, HTTP
statuses), grpc (status codes), google-api-core, aiohttp, pymongo (error labels and codes),
websockets (close codes, handshake statuses) and httpx. docs/clients.md shows the same
table (``table_markdown()``; tests/test_clients.py fails when the page drifts from it), and
tests/test_clients.py provokes every row's error for real against a local fault.

A row's verdict is one of:

- ``RETRY``: the same call may work next time (a refused or lost connection, a timeout, a
  server restarting, a 503);
- ``THROTTLING``: retried, and the dependency said "slow down" (429, ``RESOURCE_EXHAUSTED``,
  botocore's throttling codes): events and the adaptive limits read it;
- ``NO``: not retried by the presets (the request itself is wrong, or retrying is unsafe or
  belongs to another layer); a policy's ``on=`` may still retry it;
- ``NEVER``: authentication and permission errors: never retried, whatever ``on=`` says
  (redis-py's ``AuthenticationError`` subclasses its ``ConnectionError``, so
  ``on=redis.ConnectionError`` would otherwise retry a wrong password).

Errors are matched by module and class name over the exception's MRO, most derived class
first (so redis-py's ``AuthenticationError`` row wins over its ``ConnectionError`` row);
no library is imported, so ``import brace`` stays light and a library that is not installed
costs nothing. The verdict of a class is cached in a dict keyed by the class: classifying
an exception is one dict look-up after the first of its class. Only classes whose meaning
is in the instance (botocore's ``ClientError`` code and HTTP status, grpc's ``code()``,
pymongo's labels and codes, websockets' close code and handshake status, urllib3's
``MaxRetryError`` reason) read the instance, through a per-class reader found the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, TypeAlias

__all__ = [
    "CACHE_MAX",
    "LIBRARIES",
    "NEVER",
    "NO",
    "RETRY",
    "THROTTLING",
    "Row",
    "is_throttling",
    "not_sent",
    "rows",
    "status",
    "table_markdown",
    "verdict",
]

RETRY: Final = "retry"
THROTTLING: Final = "throttling"
NO: Final = "no"
NEVER: Final = "never"

#: Classes remembered by the caches before they are emptied and refilled (bounded memory
#: for programs that create exception classes at run time; rule 28).
CACHE_MAX: Final = 4096


class Row:
    """One row of the table: what one library's error (or error code) means, and why.

    Attributes:
        library: The package whose modules the row matches (``"redis"`` also matches
            valkey's), as keyed in ``LIBRARIES``.
        error: The class, or the class and what of it is read (``ClientError code
            SlowDown``).
        verdict: ``RETRY``, ``THROTTLING``, ``NO`` or ``NEVER``.
        reason: Why, in a few words.
        retried: The verdict is ``RETRY`` or ``THROTTLING``.
        throttling: The verdict is ``THROTTLING``.
        never: The verdict is ``NEVER`` (authentication or permission).
    """

    __slots__ = ("error", "library", "never", "reason", "retried", "throttling", "verdict")

    def __init__(self, library: str, error: str, verdict: str, reason: str) -> None:
        if verdict not in (RETRY, THROTTLING, NO, NEVER):
            raise ValueError(f"verdict must be RETRY, THROTTLING, NO or NEVER, got {verdict!r}")
        self.library = library
        self.error = error
        self.verdict = verdict
        self.reason = reason
        # Plain attributes, not properties: the retry decision reads them on every failure.
        self.retried = verdict in (RETRY, THROTTLING)
        self.throttling = verdict == THROTTLING
        self.never = verdict == NEVER

    def __repr__(self) -> str:
        return f"<{self.library} {self.error}: {self.verdict} ({self.reason})>"


LIBRARIES: Mapping[str, str] = MappingProxyType({
    "requests": "requests",
    "urllib3": "urllib3",
    "httpx": "httpx",
    "aiohttp": "aiohttp",
    "redis": "redis-py and valkey-py",
    "botocore": "botocore (boto3)",
    "grpc": "grpc (grpcio)",
    "google.api_core": "google-api-core",
    "pymongo": "pymongo",
    "websockets": "websockets",
})
"""The libraries the table covers: the package its rows match, and the name the docs use."""

# Packages matched as another: valkey-py is a fork of redis-py with the same classes.
_ALIASES: Final = {"valkey": "redis"}


def _package(module: str) -> str:
    """The table's library key for a class defined in ``module``."""
    top = module.partition(".")[0]
    if top == "google":  # google is a namespace package: only google.api_core is ours
        return "google.api_core" if module.startswith("google.api_core") else module
    if top.startswith("httpx"):  # SDKs that ship a fork (openai's httpx2) raise its errors
        return "httpx"
    return _ALIASES.get(top, top)


# ------------------------------------------------------------------------------ the table
# Each library's rows, most specific first only for readability: matching goes by the MRO.

_Spec = tuple[str, str, str]  # (class name, verdict, reason)
_TLS = "TLS failed: a certificate or TLS configuration problem, which a resend does not fix"
_BY_STATUS = ("an HTTP answer: retried by its status under the http presets (statuses=), "
              "as httpx's HTTPStatusError")

_CLASS_SPECS: dict[str, list[_Spec]] = {
    "requests": [
        ("ConnectionError", RETRY, "could not connect, or the connection was lost (requests "
                                   "wraps urllib3's error without `from`)"),
        ("ConnectTimeout", RETRY, "connecting timed out: nothing was sent"),
        ("ReadTimeout", RETRY, "the server did not answer in time"),
        ("Timeout", RETRY, "connecting or reading timed out"),
        ("ChunkedEncodingError", RETRY, "the response body broke off (connection lost)"),
        ("SSLError", NO, _TLS),
        ("ProxyError", NO, "the proxy refused or failed the tunnel: configuration far more "
                           "often than a blip"),
        ("RetryError", NO, "urllib3's own Retry (max_retries=) gave up: retry at one layer"),
        ("HTTPError", NO, _BY_STATUS),
        ("TooManyRedirects", NO, "a redirect loop: the same every time"),
        ("ContentDecodingError", NO, "the body could not be decoded: the same every time"),
    ],
    "urllib3": [
        ("NewConnectionError", RETRY, "could not connect (refused, unreachable): nothing sent"),
        ("NameResolutionError", RETRY, "the host name did not resolve: DNS blips pass; a "
                                       "wrong name fails every attempt within the deadline"),
        ("ConnectTimeoutError", RETRY, "connecting timed out: nothing was sent"),
        ("ReadTimeoutError", RETRY, "the server did not answer in time"),
        ("TimeoutError", RETRY, "connecting or reading timed out"),
        ("ProtocolError", RETRY, "the connection broke mid-request or mid-response (reset, "
                                 "remote disconnected)"),
        ("MaxRetryError", NO, "judged by its reason (below); urllib3 already retried"),
        ("ResponseError", NO, "urllib3's Retry gave up on a status: retry at one layer"),
        ("SSLError", NO, _TLS),
        ("ProxyError", NO, "the proxy refused or failed the tunnel: configuration far more "
                           "often than a blip"),
        ("DecodeError", NO, "the body could not be decoded: the same every time"),
        ("LocationValueError", NO, "a malformed URL: a bug"),
    ],
    "httpx": [
        ("TimeoutException", RETRY, "connect, read, write or pool timeout"),
        ("ConnectError", RETRY, "could not connect: nothing was sent"),
        ("ReadError", RETRY, "the connection broke while reading the response"),
        ("WriteError", RETRY, "the connection broke while sending the request"),
        ("RemoteProtocolError", RETRY, "the server broke the protocol (closed mid-response)"),
        ("LocalProtocolError", NO, "the client broke the protocol: a bug"),
        ("UnsupportedProtocol", NO, "a URL scheme httpx cannot send: a bug"),
        ("DecodingError", NO, "the body could not be decoded: the same every time"),
        ("TooManyRedirects", NO, "a redirect loop: the same every time"),
        ("ProxyError", NO, "the proxy refused: configuration far more often than a blip"),
        ("HTTPStatusError", NO, _BY_STATUS),
    ],
    "aiohttp": [
        ("ClientConnectionError", RETRY, "could not connect, or the connection was lost"),
        ("ClientConnectorError", RETRY, "could not connect (refused, unreachable, DNS)"),
        ("ClientOSError", RETRY, "the connection failed at the socket (reset, refused)"),
        ("ServerDisconnectedError", RETRY, "the server closed the connection before answering"),
        ("ServerTimeoutError", RETRY, "connecting or reading timed out"),
        ("ConnectionTimeoutError", RETRY, "connecting timed out: nothing was sent"),
        ("SocketTimeoutError", RETRY, "the server did not answer in time (sock_read)"),
        ("ClientPayloadError", RETRY, "the response body broke off (connection lost)"),
        ("ClientSSLError", NO, _TLS),
        ("ServerFingerprintMismatch", NO, "the certificate is not the pinned one: security, "
                                          "not a blip"),
        ("ClientResponseError", NO, _BY_STATUS + " (its `.status`)"),
        ("InvalidURL", NO, "a malformed URL: a bug"),
    ],
    "redis": [
        ("AuthenticationError", NEVER, "wrong password or user: checked before ConnectionError, "
                                       "which it subclasses"),
        ("AuthenticationWrongNumberOfArgsError", NEVER, "AUTH with a user on a server without "
                                                        "ACLs: configuration"),
        ("AuthorizationError", NEVER, "the user may not connect: permission"),
        ("NoPermissionError", NEVER, "the ACL forbids the command or key (NOPERM)"),
        ("ExternalAuthProviderError", NEVER, "the credentials provider failed: authentication"),
        ("ConnectionError", RETRY, "could not connect, or the connection was lost"),
        ("TimeoutError", RETRY, "the server did not answer within socket_timeout"),
        ("BusyLoadingError", RETRY, "the server is loading its dataset after a restart"),
        ("MaxConnectionsError", RETRY, "the client's pool is full: a connection may be free "
                                       "after a backoff"),
        ("TryAgainError", RETRY, "cluster: the keys are being moved between nodes (TRYAGAIN)"),
        ("ClusterDownError", RETRY, "cluster: slots unserved during a failover (CLUSTERDOWN)"),
        ("MasterDownError", RETRY, "a replica lost its primary during a failover (MASTERDOWN)"),
        ("ReadOnlyError", NO, "a write reached a replica: it fails until the client reconnects "
                              "to the new primary (redis-py's Sentinel client turns it into a "
                              "ConnectionError, which is retried)"),
        ("WatchError", NO, "an optimistic transaction lost a race: re-run the whole "
                           "transaction, a level up"),
        ("ResponseError", NO, "the server refused the command (wrong type, bad arguments)"),
        ("DataError", NO, "a value the client cannot send: a bug"),
    ],
    "botocore": [
        ("NoCredentialsError", NEVER, "no credentials found: configuration"),
        ("PartialCredentialsError", NEVER, "incomplete credentials: configuration"),
        ("UnauthorizedSSOTokenError", NEVER, "the SSO session expired: log in again"),
        ("EndpointConnectionError", RETRY, "could not connect to the endpoint: nothing sent"),
        ("ConnectTimeoutError", RETRY, "connecting timed out: nothing was sent"),
        ("ReadTimeoutError", RETRY, "the service did not answer in time"),
        ("ConnectionClosedError", RETRY, "the connection closed before the response"),
        ("ResponseStreamingError", RETRY, "the response body broke off"),
        ("ConnectionError", RETRY, "could not connect, or the connection was lost"),
        ("HTTPClientError", RETRY, "the connection failed at the socket (botocore's standard "
                                   "retry mode retries it)"),
        ("SSLError", NO, _TLS),
        ("ProxyConnectionError", NO, "the proxy refused: configuration far more often than a "
                                     "blip"),
        ("ParamValidationError", NO, "the parameters are invalid: a bug"),
        ("ClientError", NO, "judged by its error code, then its HTTP status (below); other "
                            "codes are answers about the request"),
    ],
    "grpc": [
        ("RpcError", NO, "judged by its status code, `.code()` (below); other codes are "
                         "answers about the request"),
    ],
    "google.api_core": [
        ("Unauthenticated", NEVER, "UNAUTHENTICATED / 401: missing or invalid credentials"),
        ("Unauthorized", NEVER, "401: missing or invalid credentials"),
        ("PermissionDenied", NEVER, "PERMISSION_DENIED / 403: not allowed"),
        ("Forbidden", NEVER, "403: not allowed"),
        ("ServiceUnavailable", RETRY, "UNAVAILABLE / 503 (google-api-core's own default "
                                      "retry predicate retries it)"),
        ("ResourceExhausted", THROTTLING, "RESOURCE_EXHAUSTED / 429: quota or rate limit"),
        ("TooManyRequests", THROTTLING, "429: rate limited"),
        ("InternalServerError", RETRY, "INTERNAL / 500 (google-api-core's own default retry "
                                       "predicate retries it)"),
        ("BadGateway", RETRY, "502 from a gateway: the backend was unreachable"),
        ("DeadlineExceeded", NO, "DEADLINE_EXCEEDED: the call may have run on the server; "
                                 "retry it only for idempotent calls, with on= (see above)"),
        ("GatewayTimeout", RETRY, "504 from a gateway: the backend did not answer in time"),
        ("RetryError", NO, "google-api-core's own Retry gave up: retry at one layer"),
        ("Aborted", NO, "ABORTED: a concurrency conflict; re-run the whole transaction, a "
                        "level up (gRPC's guidance)"),
        ("GoogleAPICallError", NO, "other answers are about the request (invalid argument, "
                                   "not found, conflict)"),
    ],
    "pymongo": [
        ("OperationFailure", NO, "judged by its code and error labels (below); other server "
                                 "errors are about the operation"),
        ("NotPrimaryError", RETRY, "the primary stepped down or changed: pymongo rediscovers "
                                   "it on the next operation"),
        ("NetworkTimeout", RETRY, "the server did not answer within socketTimeoutMS"),
        ("ServerSelectionTimeoutError", RETRY, "no suitable server answered within "
                                               "serverSelectionTimeoutMS"),
        ("AutoReconnect", RETRY, "the connection was lost: pymongo reconnects on the next "
                                 "operation"),
        ("WaitQueueTimeoutError", RETRY, "the pool had no free connection in time"),
        ("ConnectionFailure", RETRY, "could not connect, or the connection was lost"),
        ("ConfigurationError", NO, "a bad URI or option: configuration"),
        ("PyMongoError", NO, "judged by its error labels (below); others are about the "
                             "operation"),
    ],
    "websockets": [
        ("ConnectionClosedOK", NO, "the peer closed normally (1000, 1001): nothing failed"),
        ("ConnectionClosedError", NO, "judged by its close code (below); other codes say the "
                                      "messages are wrong"),
        ("InvalidStatus", NO, "judged by the handshake's HTTP status (below)"),
        ("InvalidStatusCode", NO, "judged by the handshake's HTTP status (below; websockets' "
                                  "legacy client)"),
        ("InvalidURI", NO, "a malformed URI: a bug"),
    ],
}

_STATUS_SPECS: list[tuple[int, str, str]] = [
    (429, THROTTLING, "429: rate limited"),
    (500, RETRY, "500: a server-side failure"),
    (502, RETRY, "502: the gateway could not reach the backend"),
    (503, RETRY, "503: unavailable (overloaded, restarting)"),
    (504, RETRY, "504: the gateway timed out waiting for the backend"),
    (401, NEVER, "401: missing or invalid credentials"),
    (403, NEVER, "403: not allowed"),
]

# botocore/retries/standard.py's _THROTTLED_ERROR_CODES, in its order.
_BOTOCORE_THROTTLING = (
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
)
_BOTOCORE_TRANSIENT = {
    # botocore/retries/standard.py's _TRANSIENT_ERROR_CODES (less PriorRequestNotComplete,
    # which it also lists as throttling: so does brace) ...
    "RequestTimeout": "the service timed out reading the request (S3)",
    "RequestTimeoutException": "the service timed out reading the request",
    # ... and the server-side failures its 5xx statuses stand for, by their codes.
    "InternalError": "a server-side failure (S3: 500 InternalError)",
    "InternalFailure": "a server-side failure (JSON protocols)",
    "InternalServerError": "a server-side failure",
    "ServiceUnavailable": "the service is unavailable (overloaded, restarting)",
    "ServiceUnavailableException": "the service is unavailable (overloaded, restarting)",
}
_BOTOCORE_AUTH = {
    "AccessDenied": "not allowed (IAM policy)",
    "AccessDeniedException": "not allowed (IAM policy)",
    "UnauthorizedOperation": "not allowed (EC2)",
    "AuthFailure": "credentials refused (EC2)",
    "InvalidClientTokenId": "the access key id does not exist",
    "InvalidAccessKeyId": "the access key id does not exist (S3)",
    "SignatureDoesNotMatch": "wrong secret key",
    "InvalidSignatureException": "wrong secret key",
    "IncompleteSignature": "the request's signature is incomplete",
    "MissingAuthenticationToken": "no credentials were sent",
    "UnrecognizedClientException": "the credentials are not recognised",
    "ExpiredToken": "the session token expired: refresh the credentials",
    "ExpiredTokenException": "the session token expired: refresh the credentials",
    "InvalidToken": "the session token is invalid",
    "TokenRefreshRequired": "the token must be refreshed",
    "NotAuthorized": "not allowed",
    "OptInRequired": "the account is not subscribed to the service",
}

_GRPC_SPECS: list[tuple[str, str, str]] = [
    ("UNAVAILABLE", RETRY, "the server is unreachable or restarting (gRPC's guidance: safe "
                           "to retry)"),
    ("RESOURCE_EXHAUSTED", THROTTLING, "quota or rate limit: slow down"),
    ("INTERNAL", RETRY, "a server-side failure (google-api-core retries it by default)"),
    ("DEADLINE_EXCEEDED", NO, "the call may have run on the server: retry it only for "
                              "idempotent calls, with on= (see above)"),
    ("ABORTED", NO, "a concurrency conflict: re-run the whole transaction, a level up"),
    ("UNAUTHENTICATED", NEVER, "missing or invalid credentials"),
    ("PERMISSION_DENIED", NEVER, "not allowed"),
    ("INVALID_ARGUMENT", NO, "the request is wrong: a resend fails the same way"),
    ("FAILED_PRECONDITION", NO, "the system is not in the state the call needs"),
    ("NOT_FOUND", NO, "the entity does not exist"),
    ("UNIMPLEMENTED", NO, "the method does not exist on the server"),
    ("CANCELLED", NO, "the call was cancelled by the client"),
]

_WS_CLOSE_SPECS: list[tuple[int, str, str]] = [
    (1006, RETRY, "closed abnormally: the connection dropped without a close frame"),
    (1011, RETRY, "the server hit an unexpected condition (internal error)"),
    (1012, RETRY, "the server is restarting"),
    (1013, THROTTLING, "try again later: the server is overloaded"),
    (1014, RETRY, "bad gateway: the gateway's upstream failed"),
]

_PYMONGO_CODES: list[tuple[int, str, str]] = [
    (18, NEVER, "AuthenticationFailed: wrong user or password"),
    (13, NEVER, "Unauthorized: the user may not run the operation"),
    (8000, NEVER, "AtlasError: MongoDB Atlas's code for a refused login"),
]
_PYMONGO_LABELS: list[tuple[str, str, str]] = [
    ("RetryableWriteError", RETRY, "the server says the write may be retried"),
    ("TransientTransactionError", RETRY, "the server says the whole transaction may be "
                                         "re-run"),
]


def _build() -> tuple[list[Row], dict[tuple[str, str], Row], dict[str, dict[object, Row]]]:
    """Every row in the docs' order, the class rows by (package, name), the code rows."""
    ordered: list[Row] = []
    classes: dict[tuple[str, str], Row] = {}
    for library, specs in _CLASS_SPECS.items():
        for name, said, reason in specs:
            row = Row(library, name, said, reason)
            classes[library, name] = row
            ordered.append(row)
    codes: dict[str, dict[object, Row]] = {}

    def add(kind: str, library: str, label: str, key: object, said: str, why: str) -> None:
        row = Row(library, label, said, why)
        codes.setdefault(kind, {})[key] = row
        ordered.append(row)

    for code in _BOTOCORE_AUTH:
        add("botocore code", "botocore", f"ClientError code {code}", code, NEVER,
            _BOTOCORE_AUTH[code])
    for code in _BOTOCORE_THROTTLING:
        add("botocore code", "botocore", f"ClientError code {code}", code, THROTTLING,
            "throttled (botocore's own list of throttling codes)")
    for code, why in _BOTOCORE_TRANSIENT.items():
        add("botocore code", "botocore", f"ClientError code {code}", code, RETRY, why)
    for status_code, said, why in _STATUS_SPECS:
        add("botocore status", "botocore", f"ClientError HTTP {status_code} (any other code)",
            status_code, said, why)
    for name, said, why in _GRPC_SPECS:
        add("grpc code", "grpc", f"RpcError {name}", name, said, why)
    for label, said, why in _PYMONGO_LABELS:
        add("pymongo label", "pymongo", f"PyMongoError label {label}", label, said, why)
    for number, said, why in _PYMONGO_CODES:
        add("pymongo code", "pymongo", f"OperationFailure code {number}", number, said, why)
    for number, said, why in _WS_CLOSE_SPECS:
        add("websockets close", "websockets", f"ConnectionClosedError code {number}", number,
            said, why)
    for status_code, said, why in _STATUS_SPECS:
        add("websockets status", "websockets", f"InvalidStatus HTTP {status_code}",
            status_code, said, why)
    add("urllib3 reason", "urllib3", "MaxRetryError, reason a builtin ConnectionError or "
        "TimeoutError", "builtin", RETRY, "urllib3 ran out of retries on a connection error")
    return ordered, classes, codes


_ROWS, _CLASSES, _CODES = _build()


def rows() -> Iterator[Row]:
    """Every row of the table, in the docs' order (library by library)."""
    for library in LIBRARIES:
        yield from (row for row in _ROWS if row.library == library)


# ------------------------------------------------------------------------------ readers
# The classes whose meaning is in the instance. Each returns the row for this instance, or
# None (the class's own row applies). Readers never raise: a library that changed its shape
# gets the class's row, never an error from brace.

def _botocore_response(exc: BaseException) -> dict[object, object] | None:
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else None


def _http_int(value: object) -> int | None:
    # An HTTP status: an int (IntEnum such as HTTPStatus too) in 100..599, never a bool.
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)
    return None


def _botocore_status(exc: object) -> int | None:
    response = getattr(exc, "response", None)
    meta = response.get("ResponseMetadata") if isinstance(response, dict) else None
    return _http_int(meta.get("HTTPStatusCode")) if isinstance(meta, dict) else None


def _botocore_client_error(exc: BaseException) -> Row | None:
    # The error code first (an auth code is never retried whatever the status), then the
    # HTTP status for codes the table does not know (a 502 from a proxy, a new 5xx code).
    response = _botocore_response(exc)
    if response is None:
        return None
    error = response.get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    if isinstance(code, str):
        row = _CODES["botocore code"].get(code)
        if row is not None:
            return row
    return _CODES["botocore status"].get(_botocore_status(exc))


def _grpc_code(exc: BaseException) -> Row | None:
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        name = getattr(code(), "name", None)  # a grpc.StatusCode member
    except Exception:  # a half-built error: the class's row applies
        return None
    return _CODES["grpc code"].get(name) if isinstance(name, str) else None


def _pymongo_labels(exc: BaseException) -> Row | None:
    has_label = getattr(exc, "has_error_label", None)
    if callable(has_label):
        for label, row in _CODES["pymongo label"].items():
            if has_label(label):
                return row
    return None


def _pymongo_operation(exc: BaseException) -> Row | None:
    # Authentication codes first: a refused login is never retried, whatever its labels.
    code = getattr(exc, "code", None)
    row = _CODES["pymongo code"].get(code) if isinstance(code, int) else None
    return row if row is not None else _pymongo_labels(exc)


_MISSING: Final = object()


def _ws_close(exc: BaseException) -> Row | None:
    received = getattr(exc, "rcvd", _MISSING)
    if received is _MISSING:  # websockets < 10 had only `code`
        code = getattr(exc, "code", None)
    else:  # no close frame received: the connection dropped (1006, "abnormal closure")
        code = 1006 if received is None else getattr(received, "code", None)
    return _CODES["websockets close"].get(code)


def _ws_status(exc: BaseException) -> Row | None:
    response = getattr(exc, "response", None)  # InvalidStatus (websockets >= 13)
    code = (getattr(response, "status_code", None) if response is not None
            else getattr(exc, "status_code", None))  # the legacy client's InvalidStatusCode
    return _CODES["websockets status"].get(code)


def _urllib3_reason(exc: BaseException) -> Row | None:
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, BaseException) or reason is exc:
        return None
    row = verdict(reason)
    if row is None and isinstance(reason, (ConnectionError, TimeoutError)):
        row = _CODES["urllib3 reason"]["builtin"]
    return row


_READERS: dict[tuple[str, str], Callable[[BaseException], Row | None]] = {
    ("botocore", "ClientError"): _botocore_client_error,
    ("grpc", "RpcError"): _grpc_code,
    ("pymongo", "OperationFailure"): _pymongo_operation,
    ("pymongo", "PyMongoError"): _pymongo_labels,
    ("websockets", "ConnectionClosedError"): _ws_close,
    ("websockets", "InvalidStatus"): _ws_status,
    ("websockets", "InvalidStatusCode"): _ws_status,
    ("urllib3", "MaxRetryError"): _urllib3_reason,
}


# ------------------------------------------------------------------------------ look-ups

_Reader: TypeAlias = Callable[[BaseException], Row]
_Entry: TypeAlias = "Row | _Reader | None"
_UNSEEN: Final = Row("", "", NO, "not looked up yet")  # a sentinel the cache never holds
_BY_CLASS: dict[type, _Entry] = {}


def _read(reader: Callable[[BaseException], Row | None], row: Row, exc: BaseException) -> Row:
    try:
        return reader(exc) or row
    except Exception:  # an instance of an unexpected shape: its class's row, never an error
        return row


def _is_refusal(cls: type) -> bool:
    # brace's own refusals may also be a library's error (out of a transport or adapter):
    # brace judges them itself, never the table.
    return any(base.__name__ == "BraceError" and base.__module__ == "brace"
               for base in cls.__mro__)


def _learn(cls: type) -> _Entry:
    """The cache entry for ``cls``: the first row along its MRO (or its reader), or None."""
    entry: _Entry = None
    if not _is_refusal(cls):
        for base in cls.__mro__:
            module = base.__module__
            if module == "builtins" or not isinstance(module, str):
                continue
            key = (_package(module), base.__name__)
            row = _CLASSES.get(key)
            if row is not None:
                reader = _READERS.get(key)
                entry = row if reader is None else functools.partial(_read, reader, row)
                break
    if len(_BY_CLASS) >= CACHE_MAX:
        _BY_CLASS.clear()
    _BY_CLASS[cls] = entry
    return entry


def verdict(exc: BaseException) -> Row | None:
    """The row that says what ``exc`` means, or None when no client library's row does.

    O(1) after the first exception of a class: the class's verdict (or, for the classes
    whose meaning is in the instance, its reader) is cached by class.
    """
    cls = exc.__class__
    entry = _BY_CLASS.get(cls, _UNSEEN)
    if entry is _UNSEEN:
        entry = _learn(cls)
    if entry is None or entry.__class__ is Row:
        return entry
    return entry(exc)  # type: ignore[operator]


def is_throttling(exc: BaseException) -> bool:
    """True when the table marks ``exc`` as the dependency saying "slow down".

    grpc ``RESOURCE_EXHAUSTED``, botocore's throttling codes and HTTP 429, google-api-core's
    ``TooManyRequests`` / ``ResourceExhausted``, websockets' close code 1013 and handshake
    429. (HTTP statuses on other errors and responses are ``brace._outcome.is_throttling``'s.)
    """
    if exc.__class__.__module__ == "builtins":
        return False
    row = verdict(exc)
    return row is not None and row.throttling


# --- HTTP statuses in libraries' own shapes --------------------------------------------
# brace._outcome.status_of reads `status_code` and `response.status_code` itself (httpx,
# requests, the LLM SDKs, websockets' InvalidStatus); these are the other shapes, each on
# the classes known to carry an HTTP status there (`.code` is an errno, a database code or
# a method on many other exceptions).

def _attribute_status(name: str) -> Callable[[object], int | None]:
    def read(value: object) -> int | None:
        return _http_int(getattr(value, name, None))
    read.__name__ = f"status_from_{name}"
    return read


def _no_status(value: object) -> int | None:
    return None


def _unseen(value: object) -> int | None:  # the status cache's "not looked up yet"
    return None


_status_attr = _attribute_status("status")
_STATUS_READERS: dict[tuple[str, str], Callable[[object], int | None]] = {
    ("aiohttp", "ClientResponseError"): _status_attr,
    ("aiohttp", "ClientResponse"): _status_attr,
    ("urllib3", "BaseHTTPResponse"): _status_attr,
    ("urllib3", "HTTPResponse"): _status_attr,  # urllib3 1.x
    ("http", "HTTPResponse"): _status_attr,  # http.client
    ("urllib", "HTTPError"): _attribute_status("code"),  # urllib.error
    ("botocore", "ClientError"): _botocore_status,
    # google-api-core gives a gRPC DEADLINE_EXCEEDED the HTTP code 504 of GatewayTimeout,
    # its base: read as a status, it would make the http presets (which retry 504) resend a
    # call that may have run. Its status is the gRPC code's, not an HTTP answer.
    ("google.api_core", "DeadlineExceeded"): _no_status,
    ("google.api_core", "GoogleAPICallError"): _attribute_status("code"),
}
_STATUS_BY_CLASS: dict[type, Callable[[object], int | None] | None] = {}


def _learn_status(cls: type) -> Callable[[object], int | None] | None:
    reader = None
    for base in cls.__mro__:
        module = base.__module__
        if module != "builtins" and isinstance(module, str):
            reader = _STATUS_READERS.get((_package(module), base.__name__))
            if reader is not None:
                break
    if len(_STATUS_BY_CLASS) >= CACHE_MAX:
        _STATUS_BY_CLASS.clear()
    _STATUS_BY_CLASS[cls] = reader
    return reader


def status(value: object) -> int | None:
    """The HTTP status ``value`` carries in a client library's own shape, or None.

    aiohttp's ``.status`` (``ClientResponseError``, ``ClientResponse``), urllib3's and
    http.client's response ``.status``, urllib's ``HTTPError.code``, google-api-core's
    ``.code`` and botocore's ``response["ResponseMetadata"]["HTTPStatusCode"]``. One dict
    look-up by class after the first value of a class.
    """
    cls = value.__class__
    reader = _STATUS_BY_CLASS.get(cls, _unseen)
    if reader is _unseen:
        reader = _learn_status(cls)
    if reader is None:
        return None
    try:
        return reader(value)
    except Exception:  # a property of an unexpected shape: no status, never an error
        return None


# --- failures before the request left the client (DESIGN rule 4) --------------------------

_UNSENT: Final = frozenset({
    ("requests", "ConnectTimeout"),
    ("urllib3", "ConnectTimeoutError"),  # NewConnectionError and NameResolutionError too
    ("aiohttp", "ClientConnectorError"),
    ("aiohttp", "ConnectionTimeoutError"),
    ("botocore", "EndpointConnectionError"),
    ("botocore", "ConnectTimeoutError"),
})
# Wrappers whose inner error says: requests' ConnectionError holds urllib3's MaxRetryError
# in args[0], which holds the failure in `.reason`.
_UNSENT_INSIDE: Final = {("requests", "ConnectionError"): "args",
                         ("urllib3", "MaxRetryError"): "reason"}


def not_sent(exc: BaseException, _depth: int = 0) -> bool:
    """True when ``exc`` says the request never left the client (a connect failure).

    Such a failure is safe to resend even for a POST (DESIGN rule 4): requests'
    ``ConnectTimeout`` and a ``ConnectionError`` around a refused connection, urllib3's
    connect errors, aiohttp's ``ClientConnectorError``, botocore's
    ``EndpointConnectionError`` and ``ConnectTimeoutError``, and ``ConnectionRefusedError``.
    """
    if isinstance(exc, ConnectionRefusedError):
        return True
    for base in exc.__class__.__mro__:
        module = base.__module__
        if module == "builtins" or not isinstance(module, str):
            continue
        key = (_package(module), base.__name__)
        if key in _UNSENT:
            return True
        where = _UNSENT_INSIDE.get(key)
        if where is not None and _depth < 3:
            inner = (exc.args[0] if exc.args else None) if where == "args" else getattr(
                exc, "reason", None)
            return isinstance(inner, BaseException) and inner is not exc and not_sent(
                inner, _depth + 1)
    return False


# --- the docs' table ------------------------------------------------------------------------

_SAYS: Final = {RETRY: "yes", THROTTLING: "yes, as throttling", NO: "no",
                NEVER: "never, even with `on=`"}


def table_markdown(libraries: Iterable[str] = LIBRARIES) -> str:
    """The table as the docs show it: one section per library, one line per row."""
    out: list[str] = []
    for library in libraries:
        out += [f"### {LIBRARIES[library]}", "", "| error | retried | why |",
                "|---|---|---|"]
        out += [f"| `{row.error}` | {_SAYS[row.verdict]} | {row.reason} |"
                for row in rows() if row.library == library]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
