"""brace.predicates: transient and dbapi_transient, as tenacity predicates and as functions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tenacity

import brace
from brace.predicates import dbapi_transient, is_dbapi_transient, is_transient, transient

REQUEST = httpx.Request("GET", "http://127.0.0.1/")


class AuthenticationError(Exception):
    """Imitates an SDK's auth error (openai/anthropic style): carries a 401."""

    status_code = 401


def _httpx(cls: type[httpx.HTTPError], message: str = "boom") -> httpx.HTTPError:
    return cls(message, request=REQUEST)  # type: ignore[call-arg]


TRANSIENT: list[Any] = [
    pytest.param(ConnectionError("down"), id="ConnectionError"),
    pytest.param(ConnectionRefusedError(111, "refused"), id="ConnectionRefusedError"),
    pytest.param(ConnectionResetError(104, "reset"), id="ConnectionResetError"),
    pytest.param(ConnectionAbortedError(103, "aborted"), id="ConnectionAbortedError"),
    pytest.param(BrokenPipeError(32, "pipe"), id="BrokenPipeError"),
    pytest.param(TimeoutError("slow"), id="TimeoutError"),
    pytest.param(socket.timeout("timed out"), id="socket.timeout"),  # noqa: UP041
    pytest.param(asyncio.TimeoutError(), id="asyncio.TimeoutError"),
    pytest.param(concurrent.futures.TimeoutError(), id="concurrent.futures.TimeoutError"),
    pytest.param(_httpx(httpx.ConnectError), id="httpx.ConnectError"),
    pytest.param(_httpx(httpx.ReadTimeout), id="httpx.ReadTimeout"),
    pytest.param(_httpx(httpx.ConnectTimeout), id="httpx.ConnectTimeout"),
    pytest.param(_httpx(httpx.PoolTimeout), id="httpx.PoolTimeout"),
    pytest.param(_httpx(httpx.WriteTimeout), id="httpx.WriteTimeout"),
    pytest.param(_httpx(httpx.ReadError), id="httpx.ReadError"),
    pytest.param(_httpx(httpx.WriteError), id="httpx.WriteError"),
    pytest.param(_httpx(httpx.RemoteProtocolError), id="httpx.RemoteProtocolError"),
]

NOT_TRANSIENT: list[Any] = [
    pytest.param(ValueError("bug"), id="ValueError"),
    pytest.param(TypeError("bug"), id="TypeError"),
    pytest.param(KeyError("k"), id="KeyError"),
    pytest.param(PermissionError(13, "denied"), id="PermissionError"),
    pytest.param(OSError("generic"), id="OSError"),
    pytest.param(FileNotFoundError(2, "missing"), id="FileNotFoundError"),
    pytest.param(_httpx(httpx.LocalProtocolError), id="httpx.LocalProtocolError"),
    pytest.param(_httpx(httpx.UnsupportedProtocol), id="httpx.UnsupportedProtocol"),
    pytest.param(AuthenticationError("invalid api key"), id="AuthenticationError-401"),
    pytest.param(asyncio.CancelledError(), id="CancelledError"),
    pytest.param(KeyboardInterrupt(), id="KeyboardInterrupt"),
    pytest.param(SystemExit(1), id="SystemExit"),
    pytest.param(GeneratorExit(), id="GeneratorExit"),
]


def failed_state(exc: BaseException, attempt: int = 1) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def result_state(value: Any) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.set_result(value)
    return state


def raising(exc: BaseException) -> Callable[[], Any]:
    """A function that always raises `exc`, counting its calls in `.calls`."""

    def fn() -> Any:
        fn.calls += 1  # type: ignore[attr-defined]
        raise exc

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


def plain_retrying(retry: Any, attempts: int = 3) -> tenacity.Retrying:
    return tenacity.Retrying(retry=retry, stop=tenacity.stop_after_attempt(attempts),
                             sleep=lambda s: None, reraise=True)


def calls_under(retry: Any, exc: BaseException, attempts: int = 3) -> int:
    fn = raising(exc)
    with pytest.raises(type(exc)):
        plain_retrying(retry, attempts)(fn)
    return fn.calls  # type: ignore[attr-defined, no-any-return]


# --- transient -----------------------------------------------------------------------------


@pytest.mark.parametrize("exc", TRANSIENT)
def test_transient_errors_are_retried(exc: BaseException) -> None:
    assert is_transient(exc) is True
    assert transient(failed_state(exc)) is True
    assert calls_under(transient, exc) == 3


@pytest.mark.parametrize("exc", NOT_TRANSIENT)
def test_non_transient_errors_are_never_retried(exc: BaseException) -> None:
    assert is_transient(exc) is False
    assert transient(failed_state(exc)) is False
    assert calls_under(transient, exc) == 1


@pytest.mark.parametrize("exc", TRANSIENT + NOT_TRANSIENT)
def test_dbapi_transient_includes_transient(exc: BaseException) -> None:
    # Every plain transient error is also a database-transient one; the rest are not.
    assert is_dbapi_transient(exc) is is_transient(exc)


def test_subclass_of_connection_error_is_transient() -> None:
    class MyDriverDisconnect(ConnectionResetError):
        pass

    assert is_transient(MyDriverDisconnect("gone")) is True


@pytest.mark.parametrize("value", [None, 0, "", "ok", ConnectionError("returned, not raised")])
def test_results_are_never_retried(value: Any) -> None:
    assert transient(result_state(value)) is False
    assert dbapi_transient(result_state(value)) is False


def test_state_without_outcome_is_not_retried() -> None:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    assert transient(state) is False


def test_predicates_are_tenacity_retry_objects() -> None:
    assert isinstance(transient, tenacity.retry_base)
    assert isinstance(dbapi_transient, tenacity.retry_base)
    assert brace.predicates.transient is transient


def test_reprs() -> None:
    assert repr(brace.predicates.transient) == "brace.predicates.transient"
    assert repr(brace.predicates.dbapi_transient) == "brace.predicates.dbapi_transient"


def test_end_to_end_success_after_transient_failures() -> None:
    outcomes: Iterator[Any] = iter([ConnectionResetError("reset"), TimeoutError("slow"), "ok"])

    def fn() -> Any:
        fn.calls += 1  # type: ignore[attr-defined]
        item = next(outcomes)
        if isinstance(item, BaseException):
            raise item
        return item

    fn.calls = 0  # type: ignore[attr-defined]
    assert plain_retrying(transient)(fn) == "ok"
    assert fn.calls == 3  # type: ignore[attr-defined]


# --- composition ---------------------------------------------------------------------------


def test_or_with_retry_if_result_is_the_union() -> None:
    retry = brace.predicates.transient | tenacity.retry_if_result(lambda r: r is None)
    assert isinstance(retry, tenacity.retry_base)

    results: list[Any] = []

    def returns_none() -> Any:
        results.append(None)
        return None

    # tenacity raises RetryError when the last outcome is a retried result.
    with pytest.raises(tenacity.RetryError):
        plain_retrying(retry)(returns_none)
    assert len(results) == 3

    assert calls_under(retry, ConnectionError("down")) == 3
    assert calls_under(retry, ValueError("bug")) == 1

    ok_calls: list[int] = []

    def returns_value() -> int:
        ok_calls.append(1)
        return 42

    assert plain_retrying(retry)(returns_value) == 42
    assert len(ok_calls) == 1


def test_reflected_or_with_tenacity_predicate_on_the_left() -> None:
    retry = tenacity.retry_if_result(lambda r: r is None) | brace.predicates.transient
    assert retry(result_state(None)) is True
    assert retry(failed_state(TimeoutError())) is True
    assert retry(failed_state(KeyError("k"))) is False


def test_or_with_exception_type_adds_it() -> None:
    class MyError(Exception):
        pass

    retry = brace.predicates.transient | tenacity.retry_if_exception_type(MyError)
    assert calls_under(retry, MyError("flaky")) == 3
    assert calls_under(retry, ConnectionError("down")) == 3
    assert calls_under(retry, ValueError("bug")) == 1


def test_and_is_the_intersection() -> None:
    retry = brace.predicates.transient & tenacity.retry_if_exception_type(ConnectionRefusedError)
    assert isinstance(retry, tenacity.retry_base)
    assert calls_under(retry, ConnectionRefusedError("refused")) == 3
    assert calls_under(retry, ConnectionResetError("reset")) == 1  # transient, wrong type
    assert calls_under(retry, TimeoutError("slow")) == 1


def test_or_with_plain_function() -> None:
    seen: list[tenacity.RetryCallState] = []

    def is_none_result(state: tenacity.RetryCallState) -> bool:
        seen.append(state)
        return state.outcome is not None and not state.outcome.failed and \
            state.outcome.result() is None

    retry = brace.predicates.transient | is_none_result
    assert isinstance(retry, tenacity.retry_base)
    assert retry(result_state(None)) is True
    assert retry(result_state("x")) is False
    assert retry(failed_state(ConnectionError())) is True
    assert retry(failed_state(ValueError())) is False
    assert seen, "the plain function was never consulted"
    assert calls_under(retry, BrokenPipeError("pipe")) == 3


def test_and_with_plain_function() -> None:
    retry = brace.predicates.transient & (lambda state: state.attempt_number < 2)
    assert retry(failed_state(ConnectionError(), attempt=1)) is True
    assert retry(failed_state(ConnectionError(), attempt=2)) is False
    assert retry(failed_state(ValueError(), attempt=1)) is False
    assert calls_under(retry, ConnectionError("down"), attempts=5) == 2


# --- dbapi_transient: fake drivers ---------------------------------------------------------


def fake_error(module: str, name: str, *args: Any, **attrs: Any) -> Exception:
    """An exception whose class imitates a driver's (by __module__ and __name__)."""
    cls = type(name, (Exception,), {"__module__": module})
    exc = cls(*args)
    for key, value in attrs.items():
        setattr(exc, key, value)
    return exc


PG_TRANSIENT_CODES = ["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300",
                      "08006", "08001", "08000", "08003", "08004"]
PG_PERMANENT_CODES = ["28P01", "28000", "42P01", "42601", "23505", "22012", "42501", "3D000"]


def assert_db_decision(exc: BaseException, expected: bool) -> None:
    assert is_dbapi_transient(exc) is expected
    assert dbapi_transient(failed_state(exc)) is expected
    assert calls_under(dbapi_transient, exc) == (3 if expected else 1)


@pytest.mark.parametrize("code", PG_TRANSIENT_CODES)
def test_psycopg3_transient_sqlstates(code: str) -> None:
    assert_db_decision(fake_error("psycopg", "OperationalError", "x", sqlstate=code), True)
    assert_db_decision(fake_error("psycopg.errors", "DatabaseError", "x", sqlstate=code), True)


@pytest.mark.parametrize("code", PG_PERMANENT_CODES)
def test_psycopg3_permanent_sqlstates(code: str) -> None:
    assert_db_decision(fake_error("psycopg", "OperationalError", "x", sqlstate=code), False)
    assert_db_decision(fake_error("psycopg.errors", "ProgrammingError", "x", sqlstate=code),
                       False)


@pytest.mark.parametrize("code", PG_TRANSIENT_CODES)
def test_psycopg2_transient_pgcodes(code: str) -> None:
    assert_db_decision(fake_error("psycopg2", "OperationalError", "x", pgcode=code), True)
    assert_db_decision(fake_error("psycopg2.errors", "TransactionRollbackError", "x",
                                  pgcode=code), True)


@pytest.mark.parametrize("code", PG_PERMANENT_CODES)
def test_psycopg2_permanent_pgcodes(code: str) -> None:
    assert_db_decision(fake_error("psycopg2", "OperationalError", "x", pgcode=code), False)
    assert_db_decision(fake_error("psycopg2.errors", "IntegrityError", "x", pgcode=code), False)


@pytest.mark.parametrize(("code", "expected"), [("40001", True), ("40P01", True),
                                                ("28P01", False), ("23505", False)])
def test_asyncpg_sqlstate(code: str, expected: bool) -> None:
    exc = fake_error("asyncpg.exceptions", "PostgresError", "x", sqlstate=code)
    assert_db_decision(exc, expected)


@pytest.mark.parametrize(("message", "expected"), [
    ("connection failed: Connection refused", True),
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
     "server closed the connection unexpectedly", True),
    ("password authentication failed for user x", False),
    ('connection failed: FATAL:  password authentication failed for user "x"', False),
    ('role "x" does not exist', False),
    ('FATAL:  database "nope" does not exist', False),
    ("no pg_hba.conf entry for host 127.0.0.1", False),
])
def test_psycopg_operational_error_without_sqlstate_reads_message(message: str,
                                                                   expected: bool) -> None:
    assert_db_decision(fake_error("psycopg", "OperationalError", message, sqlstate=None),
                       expected)
    assert_db_decision(fake_error("psycopg2", "OperationalError", message, pgcode=None),
                       expected)


@pytest.mark.parametrize(("errorcode", "expected"), [
    (5, True),     # SQLITE_BUSY
    (6, True),     # SQLITE_LOCKED
    (261, True),   # SQLITE_BUSY_RECOVERY
    (517, True),   # SQLITE_BUSY_SNAPSHOT (extended, BUSY in the low byte)
    (262, True),   # SQLITE_LOCKED_SHAREDCACHE
    (1, False),    # SQLITE_ERROR
    (19, False),   # SQLITE_CONSTRAINT
    (2067, False),  # SQLITE_CONSTRAINT_UNIQUE
])
def test_sqlite_error_codes(errorcode: int, expected: bool) -> None:
    exc = fake_error("sqlite3", "OperationalError", "something", sqlite_errorcode=errorcode)
    assert_db_decision(exc, expected)


def test_sqlite_without_errorcode_reads_message() -> None:
    assert_db_decision(fake_error("sqlite3", "OperationalError", "database is locked"), True)
    assert_db_decision(fake_error("sqlite3", "OperationalError", "no such table: t"), False)


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to a database another connection holds an exclusive lock on."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO t VALUES (1)")
        yield other
    finally:
        other.close()
        holder.rollback()
        holder.close()


def test_real_sqlite_database_is_locked(locked_db: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError) as info:
        locked_db.execute("SELECT * FROM t").fetchall()
    assert "locked" in str(info.value)
    assert is_dbapi_transient(info.value) is True
    assert dbapi_transient(failed_state(info.value)) is True
    assert is_transient(info.value) is False

    def query() -> Any:
        query.calls += 1  # type: ignore[attr-defined]
        return locked_db.execute("SELECT * FROM t").fetchall()

    query.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain_retrying(dbapi_transient)(query)
    assert query.calls == 3  # type: ignore[attr-defined]


def test_real_sqlite_no_such_table_is_not_transient(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "empty.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table") as info:
            conn.execute("SELECT * FROM missing")
    finally:
        conn.close()
    assert is_dbapi_transient(info.value) is False
    assert dbapi_transient(failed_state(info.value)) is False


def test_real_sqlite_integrity_error_is_not_transient() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError) as info:
            conn.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()
    assert is_dbapi_transient(info.value) is False


@pytest.mark.parametrize(("args", "expected"), [
    ((1213, "Deadlock found when trying to get lock"), True),
    ((1205, "Lock wait timeout exceeded"), True),
    ((2006, "MySQL server has gone away"), True),
    ((2013, "Lost connection to MySQL server during query"), True),
    ((2003, "Can't connect to MySQL server"), True),
    ((1040, "Too many connections"), True),
    ((1045, "Access denied for user 'x'@'localhost'"), False),
    ((1064, "You have an error in your SQL syntax"), False),
    ((1062, "Duplicate entry '1' for key 'PRIMARY'"), False),
    (("1213", "code as a string is not a MySQL error number"), False),
    ((), False),
])
def test_mysql_error_numbers(args: tuple[Any, ...], expected: bool) -> None:
    assert_db_decision(fake_error("pymysql.err", "OperationalError", *args), expected)
    assert_db_decision(fake_error("MySQLdb._exceptions", "OperationalError", *args), expected)


def test_sqlalchemy_wrapper_is_judged_by_orig() -> None:
    deadlock = fake_error("psycopg.errors", "DeadlockDetected", "deadlock", sqlstate="40P01")
    syntax = fake_error("psycopg.errors", "SyntaxError", "syntax", sqlstate="42601")
    assert_db_decision(fake_error("sqlalchemy.exc", "OperationalError", "wrapped",
                                  orig=deadlock, connection_invalidated=False), True)
    assert_db_decision(fake_error("sqlalchemy.exc", "ProgrammingError", "wrapped",
                                  orig=syntax, connection_invalidated=False), False)
    mysql = fake_error("pymysql.err", "OperationalError", 1213, "Deadlock")
    assert_db_decision(fake_error("sqlalchemy.exc", "OperationalError", "wrapped", orig=mysql),
                       True)


def test_sqlalchemy_connection_invalidated_is_transient() -> None:
    syntax = fake_error("psycopg.errors", "SyntaxError", "syntax", sqlstate="42601")
    assert_db_decision(fake_error("sqlalchemy.exc", "DBAPIError", "invalidated",
                                  orig=syntax, connection_invalidated=True), True)
    assert_db_decision(fake_error("sqlalchemy.exc", "DBAPIError", "invalidated",
                                  orig=None, connection_invalidated=True), True)


def test_sqlalchemy_without_orig_is_not_transient() -> None:
    assert_db_decision(fake_error("sqlalchemy.exc", "DBAPIError", "no orig", orig=None), False)
    assert_db_decision(fake_error("sqlalchemy.exc", "DBAPIError", "not an exception",
                                  orig="40001"), False)


def test_sqlalchemy_with_real_sqlite_orig(locked_db: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError) as info:
        locked_db.execute("SELECT * FROM t")
    wrapper = fake_error("sqlalchemy.exc", "OperationalError", "wrapped", orig=info.value,
                         connection_invalidated=False)
    assert is_dbapi_transient(wrapper) is True


def test_unknown_modules_are_not_db_transient() -> None:
    # A class merely named like a driver's error, from an unknown module, is not judged.
    assert_db_decision(fake_error("myapp.errors", "OperationalError", "connection refused"),
                       False)
    assert_db_decision(fake_error("myapp.errors", "OperationalError", 1213, "Deadlock"), False)


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(0),
                                 GeneratorExit()])
def test_dbapi_never_retries_exits(exc: BaseException) -> None:
    assert is_dbapi_transient(exc) is False
    assert dbapi_transient(failed_state(exc)) is False


def test_database_preset_uses_dbapi_transient() -> None:
    assert brace.database.retry is brace.predicates.dbapi_transient


@pytest.mark.parametrize("message", [
    # Quoted role names may contain spaces; the server refused the credentials all the same.
    'connection failed: FATAL:  role "report user" does not exist',
    # A role without LOGIN, or without CONNECT privilege: configuration, not transient.
    'connection failed: FATAL:  role "bob" is not permitted to log in',
    'connection failed: FATAL:  permission denied for database "orders"',
])
def test_psycopg_refused_login_is_not_transient(message: str) -> None:
    assert_db_decision(fake_error("psycopg", "OperationalError", message, sqlstate=None), False)
