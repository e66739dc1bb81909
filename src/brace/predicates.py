"""Shared tenacity retry predicates.

Each public predicate is a genuine ``tenacity.retry_base`` object, so it composes with
tenacity's own through ``|`` and ``&``::

    retry = brace.predicates.transient | tenacity.retry_if_result(lambda r: r is None)

The ``is_*`` functions are the same decisions on a bare exception, for use in ``on=`` or in
code that is not tenacity's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tenacity

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "IDEMPOTENT_METHODS",
    "NEVER_RETRY",
    "dbapi_transient",
    "idempotent",
    "is_dbapi_transient",
    "is_safe_to_resend",
    "is_transient",
    "outcome_value",
    "request_of",
    "response_of",
    "status",
    "status_of",
    "transient",
]

#: Exceptions that propagate at once from every policy, whatever a predicate says:
#: retrying a cancellation or an interrupt is always a bug (tenacity issue 529).
NEVER_RETRY: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

# On 3.10 asyncio's and concurrent.futures' TimeoutError are not yet the builtin.
_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
)

# httpx errors that mean "the same request may work next time". Not LocalProtocolError,
# UnsupportedProtocol, DecodingError or TooManyRedirects: those are bugs or config.
_HTTPX_TRANSIENT = ("TimeoutException", "ConnectError", "ReadError", "WriteError",
                    "RemoteProtocolError")
_httpx_types: tuple[type[BaseException], ...] | None = None


def _httpx_transient_types() -> tuple[type[BaseException], ...]:
    # Look httpx up only once the program imported it: an httpx error cannot exist before,
    # and `import brace` stays free of httpx's import cost.
    global _httpx_types
    if _httpx_types is None:
        httpx = sys.modules.get("httpx")
        if httpx is None:
            return ()
        _httpx_types = tuple(getattr(httpx, name) for name in _HTTPX_TRANSIENT)
    return _httpx_types


def is_transient(exc: BaseException) -> bool:
    """Return True for errors that mean "try again": connection errors and timeouts.

    Covers ``ConnectionError`` (refused, reset, aborted, broken pipe), ``TimeoutError`` and
    httpx's connect/read/write/pool timeouts, connect, read, write and remote-protocol errors,
    and an exception explicitly raised from one of those (``raise SDKError() from exc``).
    Never programming errors (ValueError, TypeError, KeyError ...), ``PermissionError`` or
    other ``OSError``, and never anything in :data:`NEVER_RETRY`.
    """
    if isinstance(exc, NEVER_RETRY):
        return False
    transient = (*_TRANSIENT_BUILTINS, *_httpx_transient_types())
    # SDKs wrap transport errors (openai's APIConnectionError is raised `from` httpx's
    # ConnectError): follow the explicit cause chain a few links.
    cause: BaseException | None = exc
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, transient):
            return True
        cause = cause.__cause__
    return False


# --- databases ---------------------------------------------------------------------------
# One table, by what the driver reports. PostgreSQL SQLSTATEs (psycopg 3 `sqlstate`,
# psycopg2 `pgcode`, asyncpg `sqlstate`): the classes and codes PostgreSQL tells clients
# are worth a retry.
PG_TRANSIENT_CLASSES = frozenset({"08"})  # connection exceptions
PG_TRANSIENT_CODES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
})
# SQLite primary result codes (extended codes carry them in the low byte).
SQLITE_TRANSIENT_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
# MySQL server / client error numbers (PyMySQL and mysqlclient put them in args[0]).
MYSQL_TRANSIENT_CODES = frozenset({
    1040,  # too many connections
    1205,  # lock wait timeout
    1213,  # deadlock
    2003,  # can't connect
    2006,  # server has gone away
    2013,  # lost connection during query
})
# A PostgreSQL connection refused for credentials or configuration reports no SQLSTATE in
# psycopg (same OperationalError as "connection refused"); only the message tells them apart.
_PG_NOT_RETRYABLE_MESSAGE = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|authentication failed"
    r"|role (?:\"[^\"]*\"|\S+) (?:does not exist|is not permitted to log in)"
    r"|database (?:\"[^\"]*\"|\S+) does not exist|permission denied for database"
    r"|SSL .*required",
    re.IGNORECASE,
)
_PG_DRIVERS = ("psycopg", "asyncpg")  # psycopg covers psycopg2 as well
_MYSQL_DRIVERS = ("pymysql", "MySQLdb")


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(exc, attr, None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_dbapi_transient(exc: BaseException) -> bool:
    """Return True when a database driver reports ``exc`` as worth retrying.

    Judged by driver facts, found by duck typing (no driver is imported): PostgreSQL
    SQLSTATE class 08 and 40001, 40P01, 55P03, 57P01-3, 53300; a PostgreSQL connection that
    failed before any SQLSTATE unless the server refused the credentials; SQLite BUSY and
    LOCKED; MySQL 1040, 1205, 1213, 2003, 2006, 2013; a SQLAlchemy ``DBAPIError`` by its
    ``.orig`` or ``connection_invalidated``. Plus everything :func:`is_transient` accepts.
    Never authentication, syntax, integrity or data errors.
    """
    if is_transient(exc):
        return True
    if isinstance(exc, NEVER_RETRY):
        return False
    module = _module(exc)
    if module.startswith("sqlalchemy"):
        if getattr(exc, "connection_invalidated", False) is True:
            return True
        orig = getattr(exc, "orig", None)
        return isinstance(orig, BaseException) and is_dbapi_transient(orig)
    code = _sqlstate(exc)
    if code is not None:
        return code in PG_TRANSIENT_CODES or code[:2] in PG_TRANSIENT_CLASSES
    if module.startswith(("sqlite3", "aiosqlite")):
        errorcode = getattr(exc, "sqlite_errorcode", None)
        if isinstance(errorcode, int):
            return errorcode & 0xFF in SQLITE_TRANSIENT_CODES
        # Python 3.10 has no sqlite_errorcode: the message is all there is.
        return "database is locked" in str(exc) or "database table is locked" in str(exc)
    if module.startswith(_MYSQL_DRIVERS):
        args: tuple[object, ...] = getattr(exc, "args", ())
        return len(args) > 0 and isinstance(args[0], int) and args[0] in MYSQL_TRANSIENT_CODES
    if module.startswith(_PG_DRIVERS) and type(exc).__name__ == "OperationalError":
        return _PG_NOT_RETRYABLE_MESSAGE.search(str(exc)) is None
    return False


class _ExceptionPredicate(tenacity.retry_if_exception):
    """A named ``retry_if_exception`` whose repr says which brace predicate it is."""

    def __init__(self, name: str, predicate: Callable[[BaseException], bool]) -> None:
        super().__init__(predicate)
        self._name = name

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True when the attempt failed with an exception the predicate accepts."""
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and self.predicate(exc)

    def __repr__(self) -> str:
        return f"brace.predicates.{self._name}"


#: Retry connection errors and timeouts (:func:`is_transient`).
transient: tenacity.retry_base = _ExceptionPredicate("transient", is_transient)
#: Retry what the database driver reports as transient (:func:`is_dbapi_transient`).
dbapi_transient: tenacity.retry_base = _ExceptionPredicate("dbapi_transient", is_dbapi_transient)


# --- HTTP ------------------------------------------------------------------------------------
# Read by duck typing: an httpx.Response result, an httpx.HTTPStatusError, or any exception
# that carries `status_code` or `response.status_code` (the openai and anthropic SDKs' errors),
# without importing those libraries.


def outcome_value(retry_state: RetryCallState) -> object:
    """The exception an attempt raised, else the value it returned (None before any)."""
    outcome = retry_state.outcome
    if outcome is None:
        return None
    exc = outcome.exception()
    return exc if exc is not None else outcome.result()


def _int_status(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def status_of(value: object) -> int | None:
    """The HTTP status a result or exception carries, or None."""
    code = _int_status(getattr(value, "status_code", None))
    if code is None:
        code = _int_status(getattr(getattr(value, "response", None), "status_code", None))
    return code


def response_of(value: object) -> Any:
    """The HTTP response a result or exception carries (anything with status and headers)."""
    for candidate in (value, getattr(value, "response", None)):
        if _int_status(getattr(candidate, "status_code", None)) is not None and hasattr(
                candidate, "headers"):
            return candidate
    return None


def request_of(value: object) -> Any:
    """The HTTP request a response or exception carries, or None."""
    for holder in (value, getattr(value, "response", None)):
        if holder is None:
            continue
        try:  # httpx raises RuntimeError for a request that was never attached
            request = getattr(holder, "request", None)
        except RuntimeError:
            continue
        if request is not None and isinstance(getattr(request, "method", None), (str, bytes)):
            return request
    return None


def _check_status(code: object) -> int:
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"status codes must be ints in 100-599, got {code!r}")
    if not 100 <= code <= 599:
        raise ValueError(f"status codes must be in 100-599, got {code!r}")
    return code


class status(tenacity.retry_base):  # lower case, as tenacity names its predicates
    """Retry when the result or exception carries one of ``codes`` as its HTTP status.

    Works on an ``httpx.Response`` result, an ``httpx.HTTPStatusError``, and any exception
    with ``status_code`` or ``response.status_code`` (openai's and anthropic's errors).

    Raises:
        TypeError, ValueError: a code is not an int in 100-599.
    """

    def __init__(self, *codes: int) -> None:
        self.codes = frozenset(_check_status(code) for code in codes)

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True when the outcome's status is one of the codes."""
        return status_of(outcome_value(retry_state)) in self.codes

    def __repr__(self) -> str:
        return f"brace.predicates.status({', '.join(map(str, sorted(self.codes)))})"


#: Methods safe to send twice (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Failures that happen before a request leaves the client: nothing reached the server.
_NOT_SENT = ("ConnectError", "ConnectTimeout", "PoolTimeout")


def _not_sent(value: object) -> bool:
    if isinstance(value, ConnectionRefusedError):
        return True
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(
        value, tuple(getattr(httpx, name) for name in _NOT_SENT))


def is_safe_to_resend(value: object) -> bool:
    """False only for an HTTP request that must not be sent again.

    That is a POST, PATCH (or other non-idempotent method) without an ``Idempotency-Key``
    header whose failure may have reached the server. Outcomes that carry no request are
    not HTTP and are always safe as far as this rule goes.
    """
    request = request_of(value)
    if request is None:
        return True
    method = request.method.decode() if isinstance(request.method, bytes) else request.method
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    headers = getattr(request, "headers", None)
    if headers is not None and headers.get("idempotency-key"):
        return True
    return _not_sent(value)


class _Idempotent(tenacity.retry_base):
    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True unless a retry would resend a non-idempotent request."""
        return is_safe_to_resend(outcome_value(retry_state))

    def __repr__(self) -> str:
        return "brace.predicates.idempotent"


#: AND this with other predicates: never resend a non-idempotent HTTP request (POST, PATCH)
#: unless it carries an Idempotency-Key header or failed before it was sent.
idempotent: tenacity.retry_base = _Idempotent()
