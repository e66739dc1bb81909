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
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import tenacity

from brace import _validate
from brace._outcome import (
    IDEMPOTENT_METHODS,
    httpx_error,
    is_exhausted,
    is_idempotent_request,
    is_safe_to_resend,
    mark_exhausted,
    request_of,
    response_of,
    status_of,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "IDEMPOTENT_METHODS",
    "NEVER_RETRY",
    "db_code",
    "dbapi_transient",
    "idempotent",
    "is_dbapi_transient",
    "is_exhausted",
    "is_idempotent_request",
    "is_safe_to_resend",
    "is_transient",
    "mark_exhausted",
    "outcome_value",
    "request_of",
    "response_of",
    "status",
    "status_of",
    "transient",
]

NEVER_RETRY: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)
"""Exceptions that propagate at once from every policy, whatever a predicate says: retrying a
cancellation or an interrupt is always a bug (tenacity issue 529)."""

# On 3.10 asyncio's and concurrent.futures' TimeoutError are not yet the builtin.
_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
)

# httpx errors that mean "the same request may work next time". Not LocalProtocolError,
# UnsupportedProtocol, DecodingError or TooManyRedirects: those are bugs or config.
_HTTPX_TRANSIENT = frozenset({"TimeoutException", "ConnectError", "ReadError", "WriteError",
                              "RemoteProtocolError"})


def is_transient(exc: BaseException) -> bool:
    """Return True for errors that mean "try again": connection errors and timeouts.

    Covers ``ConnectionError`` (refused, reset, aborted, broken pipe), ``TimeoutError`` and
    httpx's connect/read/write/pool timeouts, connect, read, write and remote-protocol errors,
    and an exception explicitly raised from one of those (``raise SDKError() from exc``).
    Never programming errors (ValueError, TypeError, KeyError ...), ``PermissionError`` or
    other ``OSError``, and never anything in ``NEVER_RETRY``.
    """
    if isinstance(exc, NEVER_RETRY):
        return False
    # SDKs wrap transport errors (openai's APIConnectionError is raised `from` httpx's
    # ConnectError): follow the explicit cause chain a few links.
    cause: BaseException | None = exc
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, _TRANSIENT_BUILTINS) or httpx_error(cause, _HTTPX_TRANSIENT):
            return True
        cause = cause.__cause__
    return False


# --- databases ---------------------------------------------------------------------------
# The classification table, in one place: what each driver reports, and why it is (or is
# not) worth re-running the transaction. README.md's "Databases" section documents it and
# tests/test_database_rules.py pins every row. A code that is not listed as retried is never
# retried: that is the safe default for authentication, syntax, integrity and data errors.

PG_TRANSIENT_CLASSES: Mapping[str, str] = MappingProxyType({
    "08": "connection_exception: the connection failed or was lost; a new one may work",
})
"""PostgreSQL SQLSTATE classes (the code's first two characters) that are retried."""
PG_TRANSIENT_CODES: Mapping[str, str] = MappingProxyType({
    "40001": "serialization_failure: PostgreSQL asks the client to re-run the transaction",
    "40P01": "deadlock_detected: this transaction was the victim; the other one proceeds",
    "55P03": "lock_not_available: NOWAIT or lock_timeout; the lock may be free next time",
    "57P01": "admin_shutdown: the server is being stopped or restarted",
    "57P02": "crash_shutdown: the server is restarting after another backend crashed",
    "57P03": "cannot_connect_now: the server is starting up or shutting down",
    "53300": "too_many_connections: a connection slot may be free next time",
})
"""PostgreSQL SQLSTATEs that are retried, with the reason."""
PG_PERMANENT_CLASSES: Mapping[str, str] = MappingProxyType({
    "28": "invalid_authorization_specification: wrong password or role; it will not change",
    "42": "syntax_error_or_access_rule_violation: a bug (syntax, undefined table or column)",
    "23": "integrity_constraint_violation: the data conflicts (unique, foreign key, not null)",
    "22": "data_exception: the values are invalid (division by zero, bad input syntax)",
})
"""PostgreSQL SQLSTATE classes that are never retried (any class not retried above is not
retried either; these are the ones a hand-written retry gets wrong)."""
SQLITE_TRANSIENT_CODES: Mapping[int, str] = MappingProxyType({
    5: "SQLITE_BUSY: another connection holds the lock (\"database is locked\")",
    6: "SQLITE_LOCKED: a table is locked by a conflicting statement (\"table is locked\")",
})
"""SQLite primary result codes that are retried (an extended code carries its primary code in
the low byte, e.g. SQLITE_BUSY_SNAPSHOT = 517)."""
MYSQL_TRANSIENT_CODES: Mapping[int, str] = MappingProxyType({
    1040: "ER_CON_COUNT_ERROR: too many connections; a slot may be free next time",
    1205: "ER_LOCK_WAIT_TIMEOUT: a lock wait timed out; the lock may be free next time",
    1213: "ER_LOCK_DEADLOCK: this transaction was the deadlock victim; re-run it",
    2003: "CR_CONN_HOST_ERROR: cannot connect (server down or restarting)",
    2006: "CR_SERVER_GONE_ERROR: the server closed the connection",
    2013: "CR_SERVER_LOST: the connection was lost during the query",
})
"""MySQL server and client error numbers (PyMySQL and mysqlclient put them in ``args[0]``) that
are retried."""
MYSQL_PERMANENT_CODES: Mapping[int, str] = MappingProxyType({
    1045: "ER_ACCESS_DENIED_ERROR: wrong user or password",
    1064: "ER_PARSE_ERROR: SQL syntax error",
    1062: "ER_DUP_ENTRY: duplicate key",
})
"""MySQL error numbers that are never retried (as for PostgreSQL, unlisted ones are not retried
either)."""
# A PostgreSQL connection that failed before any SQLSTATE (psycopg reports none for a
# failed connection: a wrong password and "connection refused" are the same OperationalError
# with sqlstate None) is transient, unless the server's message says it refused the
# credentials, the role or the database, or the client's TLS setup is wrong.
_PG_REFUSED_MESSAGE = re.compile(
    r"password authentication failed|authentication failed|no password supplied"
    r"|no pg_hba\.conf entry|pg_hba\.conf rejects connection"
    r"|role (?:\"[^\"]*\"|\S+) (?:does not exist|is not permitted to log in)"
    r"|database (?:\"[^\"]*\"|\S+) (?:does not exist|is not currently accepting connections)"
    r"|permission denied for database|SSL .*required|certificate",
    re.IGNORECASE,
)
# asyncpg raises InterfaceError("...connection is closed") on a connection the server
# terminated (also from `async with conn.transaction()`), and, when the termination notice
# (57P01) arrives between two statements, InternalClientError("cannot switch to state 15;
# another operation (2) is in progress") (asyncpg issues 784 and 1069; SQLAlchemy
# invalidates the connection for it): the session is gone, nothing was committed.
_ASYNCPG_CLOSED = "connection is closed"
_ASYNCPG_STUCK = "cannot switch to state"
_PG_DRIVERS = ("psycopg", "asyncpg")  # "psycopg" covers psycopg2 and psycopg_pool
_SQLITE_DRIVERS = ("sqlite3", "aiosqlite")
_MYSQL_DRIVERS = ("pymysql", "MySQLdb")
# Python 3.10's sqlite3 has no sqlite_errorcode: the message is all there is.
_SQLITE_MESSAGES = {"database is locked": "SQLITE_BUSY", "database table is locked":
                    "SQLITE_LOCKED", "database schema is locked": "SQLITE_LOCKED"}
_UNWRAP_DEPTH = 4


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(exc, attr, None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _mysql_errno(exc: BaseException) -> int | None:
    if not _module(exc).startswith(_MYSQL_DRIVERS):
        return None
    args: tuple[object, ...] = getattr(exc, "args", ())
    code = args[0] if args else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _sqlite_code(exc: BaseException) -> int | str | None:
    """SQLite's (possibly extended) result code, or on Python 3.10 a name from the message."""
    if not _module(exc).startswith(_SQLITE_DRIVERS):
        return None
    errorcode = getattr(exc, "sqlite_errorcode", None)
    if isinstance(errorcode, int):
        return errorcode
    message = str(exc)
    return next((name for text, name in _SQLITE_MESSAGES.items() if message.startswith(text)),
                None)


def _driver_error(exc: BaseException) -> tuple[BaseException, bool]:
    """The driver's exception behind SQLAlchemy's wrappers; True if one was invalidated.

    The boolean is a wrapper's ``connection_invalidated``. A ``StatementError`` /
    ``DBAPIError`` holds the driver's exception in ``.orig``; the errors of SQLAlchemy's
    asyncio adapters (asyncpg) hold it in ``.orig`` (2.1) or ``__cause__`` (2.0).
    """
    invalidated = False
    for _ in range(_UNWRAP_DEPTH):
        if not _module(exc).startswith("sqlalchemy"):
            break
        invalidated = invalidated or getattr(exc, "connection_invalidated", False) is True
        inner = getattr(exc, "orig", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc, invalidated


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _pg_connection_lost(exc: BaseException) -> bool:
    """A PostgreSQL connection that failed or was lost before the server sent a SQLSTATE."""
    module = _module(exc)
    if module.startswith("asyncpg"):
        name, message = type(exc).__name__, str(exc)
        return ((name == "InterfaceError" and message.endswith(_ASYNCPG_CLOSED))
                or (name == "InternalClientError" and message.startswith(_ASYNCPG_STUCK)))
    # psycopg (3), psycopg2 and psycopg_pool: OperationalError and its subclasses
    # (ConnectionTimeout, PoolTimeout) without a SQLSTATE.
    return "OperationalError" in _mro_names(exc) and _PG_REFUSED_MESSAGE.search(str(exc)) is None


def db_code(exc: BaseException) -> str | None:
    """The code the database driver reported for ``exc``, as a string, or None.

    A PostgreSQL SQLSTATE (``"40001"``; psycopg 3 and asyncpg ``sqlstate``, psycopg2
    ``pgcode``), a SQLite error name (``"SQLITE_BUSY"``; the number as a string when Python
    gives no name), a MySQL error number (``"1213"``; PyMySQL and mysqlclient). A SQLAlchemy
    error reports the code of the driver error it wraps (``.orig``). None when the error
    carries no code (a connection refused, a wrong password under psycopg) or is not a
    database error. Events name it as ``db_code``.
    """
    exc, _ = _driver_error(exc)
    errno = _mysql_errno(exc)  # before sqlstate: PyMySQL's errors carry MySQL's SQLSTATE too
    if errno is not None:
        return str(errno)
    sqlstate = _sqlstate(exc)
    if sqlstate is not None:
        return sqlstate
    sqlite = _sqlite_code(exc)
    if isinstance(sqlite, int):
        name = getattr(exc, "sqlite_errorname", None)
        return name if isinstance(name, str) and name else str(sqlite)
    return sqlite


def is_dbapi_transient(exc: BaseException) -> bool:
    """Return True when a database driver reports ``exc`` as worth retrying.

    Judged by driver facts, found by duck typing (no driver is imported), from the table
    above (``PG_TRANSIENT_CODES``, ``PG_TRANSIENT_CLASSES``,
    ``SQLITE_TRANSIENT_CODES``, ``MYSQL_TRANSIENT_CODES``):

    - PostgreSQL (psycopg 3, psycopg2, asyncpg): SQLSTATE class 08 and 40001, 40P01, 55P03,
      57P01-3, 53300; a connection that failed or was lost before any SQLSTATE, unless the
      server's message says it refused the password, role or database;
    - SQLite (sqlite3, aiosqlite): SQLITE_BUSY and SQLITE_LOCKED;
    - MySQL (PyMySQL, mysqlclient): 1040, 1205, 1213, 2003, 2006, 2013;
    - SQLAlchemy: a wrapper (``DBAPIError``) by the driver error in ``.orig``, and any with
      ``connection_invalidated=True``;

    plus everything ``is_transient`` accepts. Never authentication, syntax, integrity
    or data errors, and nothing in ``NEVER_RETRY``.
    """
    if is_transient(exc):
        return True
    if isinstance(exc, NEVER_RETRY):
        return False
    exc, invalidated = _driver_error(exc)
    if invalidated or is_transient(exc):
        return True
    if _module(exc).startswith(_MYSQL_DRIVERS):
        # By error number: PyMySQL's errors also carry MySQL's SQLSTATE, which is no
        # PostgreSQL SQLSTATE (a lock wait timeout is the generic "HY000").
        return _mysql_errno(exc) in MYSQL_TRANSIENT_CODES
    code = _sqlstate(exc)
    if code is not None:
        return code in PG_TRANSIENT_CODES or code[:2] in PG_TRANSIENT_CLASSES
    sqlite = _sqlite_code(exc)
    if sqlite is not None:
        if isinstance(sqlite, int):
            return sqlite & 0xFF in SQLITE_TRANSIENT_CODES
        return True  # a name is only ever read from a "... is locked" message
    if _module(exc).startswith(_PG_DRIVERS):
        return _pg_connection_lost(exc)
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


transient: tenacity.retry_base = _ExceptionPredicate("transient", is_transient)
"""Retry connection errors and timeouts (``is_transient``)."""
dbapi_transient: tenacity.retry_base = _ExceptionPredicate("dbapi_transient", is_dbapi_transient)
"""Retry what the database driver reports as transient (``is_dbapi_transient``)."""


# --- HTTP ------------------------------------------------------------------------------------
# By duck typing: an httpx.Response, an httpx.HTTPStatusError, or any exception with
# `status_code` or `response.status_code` (the LLM SDKs' errors), importing none of them.


def outcome_value(retry_state: RetryCallState) -> object:
    """The exception an attempt raised, else the value it returned (None before any)."""
    outcome = retry_state.outcome
    if outcome is None:
        return None
    exc = outcome.exception()
    return exc if exc is not None else outcome.result()


class status(tenacity.retry_base):  # lower case, as tenacity names its predicates
    """Retry when the result or exception carries one of ``codes`` as its HTTP status.

    Works on an ``httpx.Response`` result, an ``httpx.HTTPStatusError``, and any exception
    with ``status_code`` or ``response.status_code`` (openai's and anthropic's errors).

    Raises:
        TypeError, ValueError: a code is not an int in 100-599.
    """

    def __init__(self, *codes: int) -> None:
        self.codes = frozenset(_validate.status(code) for code in codes)

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True when the outcome's status is one of the codes."""
        return status_of(outcome_value(retry_state)) in self.codes

    def __repr__(self) -> str:
        return f"brace.predicates.status({', '.join(map(str, sorted(self.codes)))})"


class _Idempotent(tenacity.retry_base):
    def __call__(self, retry_state: RetryCallState) -> bool:
        """Return True unless a retry would resend a non-idempotent request."""
        return is_safe_to_resend(outcome_value(retry_state))

    def __repr__(self) -> str:
        return "brace.predicates.idempotent"


idempotent: tenacity.retry_base = _Idempotent()
"""AND this with other predicates: never resend a non-idempotent HTTP request (POST, PATCH)
unless it carries an Idempotency-Key header or failed before it was sent."""
