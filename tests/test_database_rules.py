"""The database classification table, row by row, with the drivers' real exception classes.

The table below is the specification (README "Databases"): it is written out here, not read
from brace, so changing any row in brace.predicates fails a test. Exceptions are built the
way the drivers build them (psycopg's class for a SQLSTATE, asyncpg's ``PostgresError.new``
from ErrorResponse fields, PyMySQL's ``raise_mysql_exception`` from an error packet,
SQLAlchemy's ``DBAPIError.instance``) or, for SQLite, raised by a real database. No server.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _dbcodes, _events, predicates
from brace.predicates import db_code, dbapi_transient, is_dbapi_transient
from brace.testing import no_waits
from tests.conftest import require

psycopg = require("psycopg")
asyncpg = require("asyncpg")
pymysql = require("pymysql")
sqlalchemy = require("sqlalchemy")

# --- the specification ---------------------------------------------------------------------

PG_RETRIED_CODES = ["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"]
PG_RETRIED_CLASSES = {"08": ["08000", "08003", "08006", "08001", "08004", "08P01"]}
PG_NEVER_CLASSES = {
    "28": ["28000", "28P01"],
    "3D": ["3D000"],
    "42": ["42601", "42P01", "42703", "42501", "42883"],
    "23": ["23505", "23503", "23502", "23514"],
    "22": ["22012", "22P02", "22001", "22003"],
}
# Not in the table, so not retried either: statement timeout, aborted transaction, ...
PG_OTHER_CODES = ["57014", "25P02", "40002", "40003", "0A000", "XX000"]
SQLITE_RETRIED = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED"}
MYSQL_RETRIED = [1040, 1205, 1213, 2003, 2006, 2013]
MYSQL_NEVER = [1044, 1045, 1049, 1064, 1062]


def test_the_table_in_brace_is_the_specification() -> None:
    assert set(predicates.PG_TRANSIENT_CODES) == set(PG_RETRIED_CODES)
    assert set(predicates.PG_TRANSIENT_CLASSES) == set(PG_RETRIED_CLASSES)
    assert set(predicates.PG_PERMANENT_CLASSES) == set(PG_NEVER_CLASSES)
    assert set(predicates.SQLITE_TRANSIENT_CODES) == set(SQLITE_RETRIED)
    assert set(predicates.MYSQL_TRANSIENT_CODES) == set(MYSQL_RETRIED)
    assert set(predicates.MYSQL_PERMANENT_CODES) == set(MYSQL_NEVER)
    tables: list[Any] = [predicates.PG_TRANSIENT_CODES, predicates.PG_TRANSIENT_CLASSES,
                         predicates.PG_PERMANENT_CLASSES, predicates.SQLITE_TRANSIENT_CODES,
                         predicates.MYSQL_TRANSIENT_CODES, predicates.MYSQL_PERMANENT_CODES]
    for table in tables:  # every row says why, and nobody edits the table at run time
        assert all(isinstance(why, str) and why for why in table.values())
        with pytest.raises(TypeError):
            table["x"] = "y"


# --- helpers -------------------------------------------------------------------------------


def attempts_under_database(exc: BaseException) -> int:
    """How many times @brace.database(attempts=3) calls a function that raises ``exc``."""
    calls = 0

    @brace.database(attempts=3)
    def transaction() -> None:
        nonlocal calls
        calls += 1
        raise exc

    with no_waits(), pytest.raises(type(exc)) as info:
        transaction()
    assert info.value is exc  # the driver's error, as raised
    return calls


def assert_decision(exc: BaseException, retried: bool) -> None:
    assert is_dbapi_transient(exc) is retried
    assert attempts_under_database(exc) == (3 if retried else 1)


def psycopg_error(sqlstate: str, message: str = "server message") -> BaseException:
    exc: BaseException = psycopg.errors.lookup(sqlstate)(message)
    return exc


def asyncpg_error(sqlstate: str, message: str = "server message") -> BaseException:
    exc: BaseException = asyncpg.PostgresError.new(
        {"C": sqlstate, "M": message, "S": "ERROR"})
    return exc


# The SQLSTATE MySQL sends with each server error (PyMySQL keeps it as `.sqlstate`): not a
# PostgreSQL SQLSTATE, so it must not decide anything (1205's is the generic HY000).
MYSQL_SQLSTATE = {1040: "08004", 1205: "HY000", 1213: "40001", 1045: "28000", 1064: "42000",
                  1062: "23000", 1146: "42S02", 1452: "23000", 1044: "42000", 1049: "42000"}


def pymysql_error(errno: int, message: str = "server message") -> BaseException:
    if errno >= 2000:  # client errors: PyMySQL raises OperationalError(CR_..., message)
        return pymysql.err.OperationalError(errno, message)
    packet = (b"\xff" + struct.pack("<H", errno) + b"#" + MYSQL_SQLSTATE[errno].encode()
              + message.encode())
    try:
        pymysql.err.raise_mysql_exception(packet)
    except pymysql.err.MySQLError as exc:
        return exc
    raise AssertionError("PyMySQL raised nothing")


def wrapped(orig: BaseException, *, invalidated: bool = False,
            base: type[BaseException] | None = None) -> BaseException:
    """A SQLAlchemy DBAPIError, built as SQLAlchemy builds it around a driver error."""
    if base is None:  # the driver's DB-API Error base class
        base = next(cls for cls in (psycopg.Error, pymysql.err.MySQLError, sqlite3.Error)
                    if isinstance(orig, cls))
    exc: BaseException = sqlalchemy.exc.DBAPIError.instance(
        "UPDATE accounts SET balance = %(b)s", {"b": 1}, orig, base,
        connection_invalidated=invalidated)
    return exc


PG_DRIVERS = [pytest.param(psycopg_error, id="psycopg"), pytest.param(asyncpg_error, id="asyncpg")]


# --- PostgreSQL, row by row ----------------------------------------------------------------


@pytest.mark.parametrize("make", PG_DRIVERS)
@pytest.mark.parametrize("code", PG_RETRIED_CODES)
def test_pg_retried_code(make: Any, code: str) -> None:
    exc = make(code)
    assert exc.sqlstate == code
    assert_decision(exc, True)
    assert db_code(exc) == code


@pytest.mark.parametrize("make", PG_DRIVERS)
@pytest.mark.parametrize(("cls", "code"), [(cls, code) for cls, codes in
                                           PG_RETRIED_CLASSES.items() for code in codes])
def test_pg_retried_class(make: Any, cls: str, code: str) -> None:
    exc = make(code)
    assert_decision(exc, True)
    assert db_code(exc) == code


@pytest.mark.parametrize("make", PG_DRIVERS)
@pytest.mark.parametrize(("cls", "code"), [(cls, code) for cls, codes in
                                           PG_NEVER_CLASSES.items() for code in codes])
def test_pg_never_class(make: Any, cls: str, code: str) -> None:
    exc = make(code)
    assert_decision(exc, False)
    assert db_code(exc) == code


@pytest.mark.parametrize("make", PG_DRIVERS)
@pytest.mark.parametrize("code", PG_OTHER_CODES)
def test_pg_codes_outside_the_table_are_not_retried(make: Any, code: str) -> None:
    assert_decision(make(code), False)


# A connection that failed before any SQLSTATE: psycopg raises OperationalError with
# sqlstate=None for all of these (messages as libpq / psycopg 3.3 word them).
FAILED = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
PG_CONNECTION_RETRIED = [
    FAILED + "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
             "connections?",
    FAILED + "FATAL:  the database system is starting up",
    FAILED + "FATAL:  the database system is shutting down",
    FAILED + "FATAL:  sorry, too many clients already",
    FAILED + "server closed the connection unexpectedly\n\tThis probably means the server "
             "terminated abnormally\n\tbefore or while processing the request.",
    "consuming input failed: server closed the connection unexpectedly",
    "the connection is closed",
]
PG_CONNECTION_REFUSED = [
    FAILED + 'FATAL:  password authentication failed for user "brace"',
    FAILED + 'FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "brace", database "app", '
             "no encryption",
    FAILED + 'FATAL:  pg_hba.conf rejects connection for host "10.1.2.3", user "brace"',
    FAILED + 'FATAL:  role "nobody" does not exist',
    FAILED + 'FATAL:  role "reader" is not permitted to log in',
    FAILED + 'FATAL:  database "nodb" does not exist',
    FAILED + 'FATAL:  database "template0" is not currently accepting connections',
    FAILED + 'FATAL:  permission denied for database "app"\nDETAIL:  User does not have '
             "CONNECT privilege.",
    FAILED + "fe_sendauth: no password supplied",
    FAILED + "server does not support SSL, but SSL was required",
]


@pytest.mark.parametrize("message", PG_CONNECTION_RETRIED)
def test_pg_connection_lost_without_sqlstate_is_retried(message: str) -> None:
    exc = psycopg.OperationalError(message)
    assert exc.sqlstate is None
    assert_decision(exc, True)
    assert db_code(exc) is None


@pytest.mark.parametrize("message", PG_CONNECTION_REFUSED)
def test_pg_connection_refused_by_the_server_is_not_retried(message: str) -> None:
    exc = psycopg.OperationalError(message)
    assert exc.sqlstate is None
    assert_decision(exc, False)


# --- the same refusals in the server's language (lc_messages) ------------------------------
# PostgreSQL words a refusal in its lc_messages language and psycopg gives no SQLSTATE for it.
# The translations are read from PostgreSQL's own message catalogs when the machine has them
# (Debian's postgresql package: /usr/share/locale/LANG/LC_MESSAGES/postgres-VERSION.mo).

CATALOGS = sorted(Path("/usr/share/locale").glob("*/LC_MESSAGES/postgres-*.mo"))
# msgid -> the names it quotes, in order (host, role, database, encryption)
REFUSAL_MSGIDS = {
    'password authentication failed for user "%s"': ("brace",),
    'authentication failed for user "%s": host rejected': ("brace",),
    'Ident authentication failed for user "%s"': ("brace",),
    'Peer authentication failed for user "%s"': ("brace",),
    'LDAP authentication failed for user "%s"': ("brace",),
    'PAM authentication failed for user "%s"': ("brace",),
    'RADIUS authentication failed for user "%s"': ("brace",),
    'certificate authentication failed for user "%s"': ("brace",),
    'no pg_hba.conf entry for host "%s", user "%s", database "%s", %s':
        ("10.1.2.3", "brace", "app", "no encryption"),
    'pg_hba.conf rejects connection for host "%s", user "%s", database "%s", %s':
        ("10.1.2.3", "brace", "app", "no encryption"),
    'role "%s" does not exist': ("brace",),
    'role "%s" is not permitted to log in': ("brace",),
    'database "%s" does not exist': ("app",),
    'database "%s" is not currently accepting connections': ("app",),
    'permission denied for database "%s"': ("app",),
}
# What a restart, a failover or a full server says at connection time: retried.
TRANSIENT_MSGIDS = {
    "the database system is starting up": (),
    "the database system is shutting down": (),
    "the database system is not yet accepting connections": (),
    "the database system is in recovery mode": (),
    "sorry, too many clients already": (),
    'too many connections for role "%s"': ("brace",),
    'too many connections for database "%s"': ("app",),
}




class FailedConnection:
    """What psycopg 3 attaches to a failed connection's error (``exc.pgconn``), in part."""

    user = b"brace"
    db = b"app"


def catalog(path: Path) -> dict[str, str]:
    import gettext

    with open(path, "rb") as file:
        return {key: value for key, value in gettext.GNUTranslations(file)._catalog.items()
                if isinstance(key, str) and isinstance(value, str)}


def server_message(template: str, names: tuple[str, ...]) -> str:
    return FAILED + "FATAL:  " + (template.replace("%s", "{}").format(*names))


def test_translations_cover_every_language_the_table_names() -> None:
    assert {"de", "es", "fr", "it"} <= set(_dbcodes.PG_REFUSED_TRANSLATIONS)


@pytest.mark.parametrize("language", sorted(_dbcodes.PG_REFUSED_TRANSLATIONS))
def test_table_translations_are_refusals_without_the_connection(language: str) -> None:
    # psycopg2 attaches no connection: the message alone must be recognised.
    for template in _dbcodes.PG_REFUSED_TRANSLATIONS[language]:
        names = ("10.1.2.3", "brace", "app", "no encryption")[:template.count("%s")]
        exc = psycopg.OperationalError(server_message(template, names))
        assert _dbcodes.pg_refused(exc), template
        assert not is_dbapi_transient(exc)


def test_the_postgresql_message_catalogs_are_there() -> None:
    # They come with PostgreSQL, which `make test` installs: on CI their absence fails.
    if not CATALOGS:
        message = "no PostgreSQL message catalogs in /usr/share/locale (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert len(CATALOGS) >= 5


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.parts[-3])
def test_every_catalog_language(path: Path) -> None:
    language = path.parts[-3]
    messages = catalog(path)
    for msgid, names in REFUSAL_MSGIDS.items():
        template = messages.get(msgid) or msgid
        text = server_message(template, names)
        # psycopg 3: any language, by the quoted role or database name
        assert _dbcodes.pg_refused(psycopg.OperationalError(text, pgconn=FailedConnection())), \
            (language, template)
        if language in _dbcodes.PG_REFUSED_TRANSLATIONS and msgid in messages and \
                "PAM" not in msgid and "RADIUS" not in msgid:
            # psycopg2: the table's own languages by message alone, as PostgreSQL words them
            assert _dbcodes.pg_refused(psycopg.OperationalError(text)), (language, template)
    for msgid, names in TRANSIENT_MSGIDS.items():
        text = server_message(messages.get(msgid) or msgid, names)
        for exc in (psycopg.OperationalError(text, pgconn=FailedConnection()),
                    psycopg.OperationalError(text)):
            assert not _dbcodes.pg_refused(exc), (language, text)
            assert is_dbapi_transient(exc), (language, text)


def test_the_name_signal_needs_quotes_around_the_name() -> None:
    class Named:
        user = b"failed"
        db = b"server"

    for message in (FAILED + "Connection refused", FAILED + "timeout expired",
                    FAILED + "FATAL:  the database system is starting up"):
        assert not _dbcodes.pg_refused(psycopg.OperationalError(message, pgconn=Named()))
    assert _dbcodes.pg_refused(psycopg.OperationalError(
        FAILED + "FATAL:  la base de données « server » n'existe pas", pgconn=Named()))


def test_a_closed_connection_object_is_no_signal() -> None:
    class Closed:
        @property
        def user(self) -> bytes:
            raise psycopg.OperationalError("the connection is closed")

        db = user

    assert not _dbcodes.pg_refused(psycopg.OperationalError(FAILED + "Connection refused",
                                                             pgconn=Closed()))


def test_psycopg_subclasses_of_operational_error_are_connection_failures() -> None:
    assert_decision(psycopg.errors.ConnectionTimeout("connection timeout expired"), True)
    assert_decision(psycopg.errors.ConnectionTimeout(
        FAILED + 'FATAL:  password authentication failed for user "brace"'), False)


def test_psycopg_pool_timeout_is_retried() -> None:
    class PoolTimeout(psycopg.OperationalError):  # psycopg_pool's (not a test dependency)
        pass

    PoolTimeout.__module__ = "psycopg_pool"
    assert_decision(PoolTimeout("couldn't get a connection after 30.00 sec"), True)


def test_psycopg_errors_that_are_not_connection_failures() -> None:
    assert_decision(psycopg.ProgrammingError('invalid connection option "passwd"'), False)
    assert_decision(psycopg.InterfaceError("the connection is lost"), False)
    assert_decision(psycopg.DataError("no SQLSTATE"), False)


@pytest.mark.parametrize(("exc", "retried"), [
    pytest.param(lambda: asyncpg.InterfaceError("connection is closed"), True,
                 id="closed"),
    pytest.param(lambda: asyncpg.InterfaceError(
        "cannot call Transaction.__aexit__(): the underlying connection is closed"), True,
        id="closed-in-transaction"),
    pytest.param(lambda: asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"), True,
        id="terminated-between-statements"),
    pytest.param(lambda: asyncpg.InterfaceError(
        "cannot perform operation: another operation is in progress"), False,
        id="concurrent-use-bug"),
    pytest.param(lambda: asyncpg.InternalClientError("unknown error in protocol"), False,
                 id="internal"),
    pytest.param(lambda: asyncpg.InterfaceError("the server expects 2 arguments, 1 was "
                                                "passed"), False, id="wrong-arguments"),
])
def test_asyncpg_connection_errors_without_sqlstate(exc: Any, retried: bool) -> None:
    error = exc()
    assert_decision(error, retried)
    assert db_code(error) is None


# --- SQLite, with errors raised by a real database -----------------------------------------


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[sqlite3.OperationalError]:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("INSERT INTO t VALUES (1)")
        yield info.value
    finally:
        holder.close()
        other.close()


@pytest.fixture
def table_locked() -> Iterator[sqlite3.OperationalError]:
    uri = "file:brace-locked?mode=memory&cache=shared"
    writer = sqlite3.connect(uri, uri=True, isolation_level=None)
    reader = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
    try:
        writer.execute("CREATE TABLE t (x)")
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as info:
            reader.execute("SELECT * FROM t").fetchall()
        yield info.value
    finally:
        writer.close()
        reader.close()


def real_sqlite_error(sql: str) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 1)")
        with pytest.raises(sqlite3.Error) as info:
            conn.execute(sql)
        return info.value
    finally:
        conn.close()


def test_sqlite_busy_is_retried(busy: sqlite3.OperationalError) -> None:
    assert str(busy) == "database is locked"
    assert_decision(busy, True)
    if hasattr(busy, "sqlite_errorcode"):  # Python 3.11+
        assert busy.sqlite_errorcode == 5 and db_code(busy) == "SQLITE_BUSY"


def test_sqlite_locked_is_retried(table_locked: sqlite3.OperationalError) -> None:
    assert str(table_locked).startswith("database table is locked")
    assert_decision(table_locked, True)
    if hasattr(table_locked, "sqlite_errorcode"):
        assert table_locked.sqlite_errorcode & 0xFF == 6
        assert db_code(table_locked) == "SQLITE_LOCKED_SHAREDCACHE"


@pytest.mark.parametrize("sql", [
    pytest.param("SELECT * FROM no_such_table", id="no-such-table"),
    pytest.param("SELEC 1", id="syntax"),
    pytest.param("INSERT INTO t VALUES (1, 2)", id="unique"),
    pytest.param("INSERT INTO t VALUES (2, NULL)", id="not-null"),
])
def test_sqlite_bugs_are_not_retried(sql: str) -> None:
    assert_decision(real_sqlite_error(sql), False)


@pytest.mark.parametrize(("message", "name", "retried"), [
    ("database is locked", "SQLITE_BUSY", True),
    ("database table is locked: t", "SQLITE_LOCKED", True),
    ("no such table: t", None, False),
])
def test_sqlite_on_python_310_reads_the_message(message: str, name: str | None,
                                                retried: bool) -> None:
    exc = sqlite3.OperationalError(message)  # as 3.10 raises it: no sqlite_errorcode
    assert not hasattr(exc, "sqlite_errorcode")
    assert_decision(exc, retried)
    assert db_code(exc) == name


@pytest.mark.parametrize("code", sorted(SQLITE_RETRIED))
def test_sqlite_primary_codes(code: int) -> None:
    exc = sqlite3.OperationalError("locked")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    assert_decision(exc, True)
    exc.sqlite_errorcode = code | (2 << 8)  # type: ignore[attr-defined]  # an extended code
    assert_decision(exc, True)


# --- MySQL (PyMySQL) -----------------------------------------------------------------------


@pytest.mark.parametrize("errno", MYSQL_RETRIED)
def test_mysql_retried(errno: int) -> None:
    exc = pymysql_error(errno)
    assert exc.args[0] == errno
    assert_decision(exc, True)
    assert db_code(exc) == str(errno)


@pytest.mark.parametrize("errno", [*MYSQL_NEVER, 1146, 1452])
def test_mysql_never(errno: int) -> None:
    exc = pymysql_error(errno)
    assert_decision(exc, False)
    assert db_code(exc) == str(errno)


def test_mysql_classes_are_the_drivers() -> None:
    assert type(pymysql_error(1213)) is pymysql.err.OperationalError
    assert type(pymysql_error(1064)) is pymysql.err.ProgrammingError
    assert type(pymysql_error(1062)) is pymysql.err.IntegrityError
    assert_decision(pymysql.err.InterfaceError(0, ""), False)  # a closed connection object


# --- SQLAlchemy ----------------------------------------------------------------------------


@pytest.mark.parametrize(("orig", "retried", "code"), [
    pytest.param(lambda: psycopg_error("40P01"), True, "40P01", id="psycopg-deadlock"),
    pytest.param(lambda: psycopg_error("40001"), True, "40001", id="psycopg-serialization"),
    pytest.param(lambda: psycopg_error("42P01"), False, "42P01", id="psycopg-undefined-table"),
    pytest.param(lambda: psycopg_error("23505"), False, "23505", id="psycopg-unique"),
    pytest.param(lambda: psycopg.OperationalError(FAILED + "Connection refused"), True, None,
                 id="psycopg-refused"),
    pytest.param(lambda: psycopg.OperationalError(
        FAILED + 'FATAL:  password authentication failed for user "x"'), False, None,
        id="psycopg-wrong-password"),
    pytest.param(lambda: pymysql_error(1213), True, "1213", id="pymysql-deadlock"),
    pytest.param(lambda: pymysql_error(1062), False, "1062", id="pymysql-duplicate"),
])
def test_sqlalchemy_is_judged_by_orig(orig: Any, retried: bool, code: str | None) -> None:
    driver_error = orig()
    exc = wrapped(driver_error)
    assert isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is driver_error
    assert_decision(exc, retried)
    assert db_code(exc) == code


def test_sqlalchemy_wrapping_real_sqlite(busy: sqlite3.OperationalError) -> None:
    exc = wrapped(busy, base=sqlite3.Error)
    assert type(exc) is sqlalchemy.exc.OperationalError
    assert_decision(exc, True)
    assert_decision(wrapped(real_sqlite_error("SELECT * FROM nope"), base=sqlite3.Error), False)


def test_sqlalchemy_connection_invalidated_is_retried() -> None:
    syntax = psycopg_error("42601")
    assert_decision(wrapped(syntax), False)
    exc = wrapped(syntax, invalidated=True)
    assert exc.connection_invalidated is True  # type: ignore[attr-defined]
    assert_decision(exc, True)


def test_sqlalchemy_asyncpg_adapter_errors() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    adapted_error = dbapi._asyncpg_error_translate[asyncpg.PostgresError]
    for code, retried in (("40001", True), ("42P01", False)):
        driver_error = asyncpg_error(code)
        adapted = adapted_error(str(driver_error), driver_error)
        if hasattr(adapted, "sqlstate"):  # SQLAlchemy 2.1 keeps the driver's code here
            assert adapted.sqlstate == code
        else:  # SQLAlchemy 2.0 (Python 3.10) only chains it where it raises: `from error`
            adapted.__cause__ = driver_error
        assert_decision(adapted, retried)
        assert_decision(wrapped(adapted, base=dbapi.Error), retried)
        assert db_code(wrapped(adapted, base=dbapi.Error)) == code
    # an adapter error that only chains the driver's (SQLAlchemy 2.0 style: raise ... from)
    closed = asyncpg.InterfaceError("connection is closed")
    adapted = dbapi.InterfaceError("connection is closed")
    adapted.__cause__ = closed
    assert_decision(wrapped(adapted, base=dbapi.Error), True)


def test_sqlalchemy_errors_without_a_driver_error() -> None:
    statement_error = sqlalchemy.exc.StatementError("bad value", "SELECT 1", {}, ValueError("x"))
    assert_decision(statement_error, False)
    assert_decision(sqlalchemy.exc.DBAPIError("SELECT 1", None, None), False)  # type: ignore[arg-type]
    assert_decision(sqlalchemy.exc.ArgumentError("bad URL"), False)
    assert db_code(statement_error) is None


# --- db_code -------------------------------------------------------------------------------


def test_db_code_is_none_for_everything_else() -> None:
    for exc in (ValueError("x"), ConnectionRefusedError(111, "refused"), TimeoutError(),
                psycopg.OperationalError(FAILED + "Connection refused"), KeyError("sqlstate")):
        assert db_code(exc) is None
    odd = RuntimeError("x")
    odd.sqlstate = "4000"  # type: ignore[attr-defined]  # not a SQLSTATE: 5 characters
    assert db_code(odd) is None


def test_db_code_reads_psycopg2_pgcode() -> None:
    class Psycopg2Error(Exception):  # psycopg2 is not a test dependency: its shape
        pgcode = "40P01"

    Psycopg2Error.__module__ = "psycopg2.errors"
    assert db_code(Psycopg2Error("deadlock detected")) == "40P01"
    assert is_dbapi_transient(Psycopg2Error("deadlock detected")) is True


# --- events: db_code, and nothing secret ---------------------------------------------------


def failing(errors: list[BaseException]) -> Any:
    state = {"calls": 0}

    def transfer(src: int, dst: int, password: str) -> str:
        state["calls"] += 1
        if state["calls"] <= len(errors):
            raise errors[state["calls"] - 1]
        return "done"

    return transfer


def test_events_carry_db_code() -> None:
    transfer = brace.database(failing([psycopg_error("40001", "could not serialize access"),
                                        asyncpg_error("40P01", "deadlock detected")]))
    with no_waits(), capture_logs() as logs:
        assert transfer(1, 2, password="hunter2") == "done"
    assert [(e["event"], e.get("db_code")) for e in logs] == [
        ("retry.scheduled", "40001"), ("retry.scheduled", "40P01"), ("retry.succeeded", None)]
    assert "hunter2" not in repr(logs)


def test_gave_up_carries_db_code() -> None:
    transfer = brace.database(attempts=2)(failing([pymysql_error(1213, "Deadlock found")] * 5))
    with no_waits(), capture_logs() as logs, pytest.raises(pymysql.err.OperationalError):
        transfer(1, 2, password="x")
    assert [(e["event"], e["db_code"]) for e in logs] == [
        ("retry.scheduled", "1213"), ("retry.gave_up", "1213")]


def test_events_without_a_database_code_have_no_db_code_field() -> None:
    refused = psycopg.OperationalError(FAILED + "Connection refused")
    transfer = brace.database(failing([ConnectionResetError("reset"), refused]))
    with no_waits(), capture_logs() as logs:
        transfer(1, 2, password="x")
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.scheduled",
                                          "retry.succeeded"]
    assert all("db_code" not in e for e in logs)
    assert "db_code" not in _events._outcome_fields(None)


def test_events_never_carry_sql_parameters_or_passwords() -> None:
    email, password = "alice@example.com", "hunter2-secret"
    unique = psycopg_error(
        "23505", 'duplicate key value violates unique constraint "users_email_key"\n'
                 f"DETAIL:  Key (email)=({email}) already exists.")
    wrapped_unique = sqlalchemy.exc.DBAPIError.instance(
        "INSERT INTO users (email, password) VALUES (%(email)s, %(password)s)",
        {"email": email, "password": password}, unique, psycopg.Error)
    in_url = psycopg.OperationalError(
        f"could not connect with postgresql://brace:{password}@db.internal:5432/app")
    in_dsn = psycopg.OperationalError(f"bad dsn: host=db user=brace password={password}")
    deadlock = psycopg_error("40P01", "deadlock detected\nDETAIL:  Process 12 waits for "
                                      "ShareLock on transaction 7; blocked by process 13.\n"
                                      "Process 13 waits for ShareLock on transaction 8.\n"
                                      "HINT:  See server log for query details.")
    errors = [wrapped_unique, in_url, in_dsn, deadlock]
    assert email in str(wrapped_unique) and password in str(wrapped_unique)
    transfer = brace.database(on=lambda exc: True)(failing(errors))
    with no_waits(), capture_logs() as logs:
        transfer(1, 2, password=password)
    scheduled = [e for e in logs if e["event"] == "retry.scheduled"]
    assert len(scheduled) == 4
    assert email not in repr(logs) and password not in repr(logs)
    assert scheduled[0]["db_code"] == "23505"
    assert scheduled[0]["error"].startswith(
        "IntegrityError: (psycopg.errors.UniqueViolation) duplicate key value violates")
    assert "[parameters: ***]" in scheduled[0]["error"]
    assert "[SQL: INSERT INTO users (email, password)" in scheduled[0]["error"]
    assert re.search(r"DETAIL:\s+\*\*\*", scheduled[0]["error"])
    assert "postgresql://***@db.internal" in scheduled[1]["error"]
    # Whitespace aside (events keep each field on one line): DETAIL goes, HINT stays.
    assert " ".join(scheduled[3]["error"].split()) == (
        "DeadlockDetected: deadlock detected DETAIL: *** HINT: See server log for query details.")


def test_redact_sqlalchemy_parameters_spanning_lines() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "line one\nsecret-two]"

    exc = sqlalchemy.exc.DBAPIError.instance("SELECT %(a)s", {"a": Odd()},
                                             psycopg_error("42P01"), psycopg.Error)
    text = _events.describe_error(exc)
    assert "secret-two" not in text and "line one" not in text
    assert re.search(r"\s\[SQL: SELECT %\(a\)s\]\s\[parameters: \*\*\*\]\s"
                     r"\(Background on this error at: ", text), text


def test_dbapi_transient_predicate_reads_the_outcome() -> None:
    import tenacity

    retrying = tenacity.Retrying(retry=dbapi_transient, stop=tenacity.stop_after_attempt(3),
                                 wait=tenacity.wait_none(), reraise=True)
    calls = 0

    def deadlock() -> None:
        nonlocal calls
        calls += 1
        raise psycopg_error("40P01")

    with pytest.raises(psycopg.errors.DeadlockDetected):
        retrying(deadlock)
    assert calls == 3
