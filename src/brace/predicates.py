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
from typing import TYPE_CHECKING

import tenacity

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "NEVER_RETRY",
    "dbapi_transient",
    "is_dbapi_transient",
    "is_transient",
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
    httpx's connect/read/write/pool timeouts, connect, read, write and remote-protocol errors.
    Never programming errors (ValueError, TypeError, KeyError ...), ``PermissionError`` or
    other ``OSError``, and never anything in :data:`NEVER_RETRY`.
    """
    if isinstance(exc, NEVER_RETRY):
        return False
    return isinstance(exc, (*_TRANSIENT_BUILTINS, *_httpx_transient_types()))


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
