"""Database drivers' error codes, and why each is (or is not) worth re-running.

The classification table, in one place: what each driver reports, and why it is (or is not)
worth re-running the transaction. README.md's "Databases" section documents it and
tests/test_database_rules.py pins every row. A code that is not listed as retried is never
retried: that is the safe default for authentication, syntax, integrity and data errors.
Drivers are read by duck typing (module and attribute names); none is imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "MYSQL_PERMANENT_CODES",
    "MYSQL_TRANSIENT_CODES",
    "PG_PERMANENT_CLASSES",
    "PG_TRANSIENT_CLASSES",
    "PG_TRANSIENT_CODES",
    "SQLITE_TRANSIENT_CODES",
    "db_code",
    "driver_error",
    "transient",
]

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
# psycopg's and psycopg2's failed or lost connections say "connection failed: ...", "server
# closed the connection unexpectedly", "the connection is closed"... asyncpg raises
# InterfaceError("connection is closed") on a connection the server terminated, and
# InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
# from `async with conn.transaction()` when it was terminated inside the transaction. When the
# server's termination notice (57P01) arrives between two statements, asyncpg's protocol waits
# for a sync that never comes and the next statement raises InternalClientError("cannot
# switch to state 15; another operation (2) is in progress") (asyncpg issues 784 and 1069;
# SQLAlchemy invalidates the connection for it): the session is gone, nothing was committed.
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


def driver_error(exc: BaseException) -> tuple[BaseException, bool]:
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
    if exc.__cause__ is None and type(exc).__module__ == "builtins":
        return None  # no driver raises a builtin exception: nothing to look for
    exc, _ = driver_error(exc)
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


def transient(exc: BaseException) -> bool:
    """Whether the driver's own error ``exc`` (unwrapped) carries a transient code.

    ``brace.predicates.is_dbapi_transient`` adds the general transient errors and the
    unwrapping of SQLAlchemy's wrappers.
    """
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
