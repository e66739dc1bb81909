"""The `database` preset against real databases: PostgreSQL (psycopg 3 sync and async,
asyncpg, SQLAlchemy) from the ``postgres`` fixture, and SQLite files (sqlite3, aiosqlite).

Every transaction function counts its own calls: that is the number of attempts brace made.
Conflicts are synchronised with barriers and events, never with sleeps; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits
from tests.conftest import require

psycopg = require("psycopg")
asyncpg = require("asyncpg")

T = TypeVar("T")

# Small real waits (the restart test needs them); the conflict tests run under no_waits().
FAST: dict[str, Any] = dict(attempts=5, initial=0.01, max_wait=0.05, deadline=15)
SYNC_WAIT_S = 15.0  # every barrier, event and join is bounded by this
START = {1: 100, 2: 100, 3: 0}


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, SYNC_WAIT_S * 2)

    return asyncio.run(bounded())


class AsyncBarrier:
    """asyncio.Barrier for one use (it is new in 3.11)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.open = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.open.set()
        await asyncio.wait_for(self.open.wait(), SYNC_WAIT_S)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


@pytest.fixture
def pg(postgres: Any) -> Any:
    """The server with fresh tables: accounts 1, 2, 3 (balances 100, 100, 0) and entries."""
    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS accounts, entries")
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO accounts VALUES (1, 100), (2, 100), (3, 0)")
        conn.execute("CREATE TABLE entries (id int PRIMARY KEY, email text UNIQUE)")
    return postgres


def balances(pg: Any) -> dict[int, int]:
    with psycopg.connect(pg.conninfo()) as conn:
        return dict(conn.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall())


def entry_ids(pg: Any) -> list[int]:
    with psycopg.connect(pg.conninfo()) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM entries ORDER BY id")]


def open_sync(pg: Any) -> Any:
    conn = psycopg.connect(pg.conninfo(), autocommit=True)
    conn.execute("SET lock_timeout = '10s'")  # a bug in a test never hangs it
    return conn


async def open_asyncpg(pg: Any) -> Any:
    conn = await asyncpg.connect(**pg.kwargs())
    await conn.execute("SET lock_timeout = '10s'")
    return conn


def in_threads(*calls: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def guarded(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SYNC_WAIT_S * 2)
        assert not thread.is_alive(), "a transaction thread did not finish"
    if errors:
        raise errors[0]


# --- (a) serialization failure: the whole transaction is re-run ----------------------------
# Two transfers out of account 1 both read its balance, then both write balance - amount.
# Under SERIALIZABLE the second writer gets 40001; re-running only its UPDATE would lose the
# first transfer, so brace must re-run the whole function (read included).


def test_serialization_failure_reruns_the_transaction_psycopg(pg: Any) -> None:
    both_read = threading.Barrier(2, timeout=SYNC_WAIT_S)
    calls: collections.Counter[str] = collections.Counter()

    @brace.database(**FAST)
    def transfer(name: str, src: int, dst: int, amount: int) -> None:
        calls[name] += 1
        with open_sync(pg) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = %s",
                                      (src,)).fetchone()
            if calls[name] == 1:
                both_read.wait()
            conn.execute("UPDATE accounts SET balance = %s WHERE id = %s",
                         (balance - amount, src))
            conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                         (amount, dst))

    with no_waits(), capture_logs() as logs:
        in_threads(lambda: transfer("t1", 1, 2, 10), lambda: transfer("t2", 1, 3, 20))
    assert balances(pg) == {1: 70, 2: 110, 3: 20}
    assert sorted(calls.values()) == [1, 2]  # one ran once, the other was re-run once
    (scheduled,) = events(logs, "retry.scheduled")
    assert scheduled["db_code"] == "40001"
    assert scheduled["error"].startswith("SerializationFailure: could not serialize access")
    assert len(events(logs, "retry.succeeded")) == 1 and not events(logs, "retry.gave_up")


def test_serialization_failure_reruns_the_transaction_asyncpg(pg: Any) -> None:
    calls: collections.Counter[str] = collections.Counter()

    async def scenario() -> None:
        both_read = AsyncBarrier(2)

        @brace.database(**FAST)
        async def transfer(name: str, src: int, dst: int, amount: int) -> None:
            calls[name] += 1
            conn = await open_asyncpg(pg)
            try:
                async with conn.transaction(isolation="serializable"):
                    balance = await conn.fetchval(
                        "SELECT balance FROM accounts WHERE id = $1", src)
                    if calls[name] == 1:
                        await both_read.wait()
                    await conn.execute("UPDATE accounts SET balance = $1 WHERE id = $2",
                                       balance - amount, src)
                    await conn.execute(
                        "UPDATE accounts SET balance = balance + $1 WHERE id = $2", amount, dst)
            finally:
                await conn.close()

        await asyncio.gather(transfer("t1", 1, 2, 10), transfer("t2", 1, 3, 20))

    with no_waits(), capture_logs() as logs:
        run(scenario())
    assert balances(pg) == {1: 70, 2: 110, 3: 20}
    assert sorted(calls.values()) == [1, 2]
    (scheduled,) = events(logs, "retry.scheduled")
    assert scheduled["db_code"] == "40001"
    assert scheduled["error"].startswith("SerializationError: could not serialize access")


def test_serialization_failure_reruns_the_transaction_psycopg_async(pg: Any) -> None:
    calls: collections.Counter[str] = collections.Counter()

    async def scenario() -> None:
        both_read = AsyncBarrier(2)

        @brace.database(**FAST)
        async def transfer(name: str, src: int, dst: int, amount: int) -> None:
            calls[name] += 1
            async with await psycopg.AsyncConnection.connect(
                    pg.conninfo(), autocommit=True) as conn:
                await conn.execute("SET lock_timeout = '10s'")
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    cursor = await conn.execute("SELECT balance FROM accounts WHERE id = %s",
                                                (src,))
                    (balance,) = await cursor.fetchone()
                    if calls[name] == 1:
                        await both_read.wait()
                    await conn.execute("UPDATE accounts SET balance = %s WHERE id = %s",
                                       (balance - amount, src))
                    await conn.execute(
                        "UPDATE accounts SET balance = balance + %s WHERE id = %s",
                        (amount, dst))

        await asyncio.gather(transfer("t1", 1, 2, 10), transfer("t2", 1, 3, 20))

    with no_waits(), capture_logs() as logs:
        run(scenario())
    assert balances(pg) == {1: 70, 2: 110, 3: 20}
    assert sorted(calls.values()) == [1, 2]
    assert [e["db_code"] for e in events(logs, "retry.scheduled")] == ["40001"]


# --- (b) a real deadlock -------------------------------------------------------------------
# t1 moves 10 from 1 to 2, t2 moves 20 from 2 to 1; each locks its source row, both wait at
# the barrier, then each asks for the other's row. PostgreSQL (deadlock_timeout 50 ms) aborts
# one with 40P01; brace re-runs it once the other has committed. The retry waits for that
# commit explicitly: PostgreSQL does not hand a released row lock to its waiter, so an
# immediate retry (no_waits) can take the row first and deadlock again on a loaded machine.


def test_deadlock_is_retried_psycopg(pg: Any) -> None:
    both_locked = threading.Barrier(2, timeout=SYNC_WAIT_S)
    committed = threading.Event()
    calls: collections.Counter[str] = collections.Counter()

    @brace.database(**FAST)
    def transfer(name: str, src: int, dst: int, amount: int) -> None:
        calls[name] += 1
        if calls[name] > 1:
            assert committed.wait(SYNC_WAIT_S)
        with open_sync(pg) as conn, conn.transaction():
            conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s",
                         (amount, src))
            if calls[name] == 1:
                both_locked.wait()
            conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                         (amount, dst))
        committed.set()

    with no_waits(), capture_logs() as logs:
        in_threads(lambda: transfer("t1", 1, 2, 10), lambda: transfer("t2", 2, 1, 20))
    assert balances(pg) == {1: 110, 2: 90, 3: 0}
    assert sorted(calls.values()) == [1, 2]
    (scheduled,) = events(logs, "retry.scheduled")
    assert scheduled["db_code"] == "40P01"
    assert scheduled["error"].startswith("DeadlockDetected: deadlock detected")


def test_deadlock_is_retried_asyncpg(pg: Any) -> None:
    calls: collections.Counter[str] = collections.Counter()

    async def scenario() -> None:
        both_locked = AsyncBarrier(2)
        committed = asyncio.Event()

        @brace.database(**FAST)
        async def transfer(name: str, src: int, dst: int, amount: int) -> None:
            calls[name] += 1
            if calls[name] > 1:
                await asyncio.wait_for(committed.wait(), SYNC_WAIT_S)
            conn = await open_asyncpg(pg)
            try:
                async with conn.transaction():
                    await conn.execute(
                        "UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, src)
                    if calls[name] == 1:
                        await both_locked.wait()
                    await conn.execute(
                        "UPDATE accounts SET balance = balance + $1 WHERE id = $2", amount, dst)
                committed.set()
            finally:
                await conn.close()

        await asyncio.gather(transfer("t1", 1, 2, 10), transfer("t2", 2, 1, 20))

    with no_waits(), capture_logs() as logs:
        run(scenario())
    assert balances(pg) == {1: 110, 2: 90, 3: 0}
    assert sorted(calls.values()) == [1, 2]
    assert [e["db_code"] for e in events(logs, "retry.scheduled")] == ["40P01"]


def test_deadlock_is_retried_sqlalchemy_session(pg: Any) -> None:
    sqlalchemy = require("sqlalchemy")
    from sqlalchemy.orm import Session

    engine = sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"),
                                      connect_args={"options": "-c lock_timeout=10s"})
    both_locked = threading.Barrier(2, timeout=SYNC_WAIT_S)
    committed = threading.Event()
    calls: collections.Counter[str] = collections.Counter()
    update = sqlalchemy.text("UPDATE accounts SET balance = balance + :delta WHERE id = :id")

    @brace.database(**FAST)
    def transfer(name: str, src: int, dst: int, amount: int) -> None:
        calls[name] += 1
        if calls[name] > 1:
            assert committed.wait(SYNC_WAIT_S)
        with Session(engine) as session, session.begin():
            session.execute(update, {"delta": -amount, "id": src})
            if calls[name] == 1:
                both_locked.wait()
            session.execute(update, {"delta": amount, "id": dst})
        committed.set()

    try:
        with no_waits(), capture_logs() as logs:
            in_threads(lambda: transfer("t1", 1, 2, 10), lambda: transfer("t2", 2, 1, 20))
    finally:
        engine.dispose()
    assert balances(pg) == {1: 110, 2: 90, 3: 0}
    assert sorted(calls.values()) == [1, 2]
    (scheduled,) = events(logs, "retry.scheduled")
    assert scheduled["db_code"] == "40P01"
    assert scheduled["error"].startswith("OperationalError: (psycopg.errors.DeadlockDetected)")
    assert "[parameters: ***]" in scheduled["error"]  # SQL parameters are never logged


# --- (c) the server restarts mid-run -------------------------------------------------------
# A long-lived connection (as from a pool) records entries with unique ids while
# `pg_ctl restart -m fast` runs: the server terminates the session (57P01), refuses or is
# starting up (57P03) for a while, then is back. Every call must land exactly once. The
# insert is idempotent by construction (ON CONFLICT DO NOTHING), so an attempt whose commit
# reached the server before the connection died cannot duplicate it; the count proves that
# none was lost.

RESTART_POLICY: dict[str, Any] = dict(attempts=500, initial=0.01, max_wait=0.1, deadline=20)
MAX_ROWS = 5000  # bounds the loop that runs while the restart is in progress


def test_server_restart_mid_run_psycopg(pg: Any) -> None:
    holder: dict[str, Any] = {}
    calls = 0

    @brace.database(**RESTART_POLICY)
    def record(entry_id: int) -> None:
        nonlocal calls
        calls += 1
        if "conn" not in holder:
            holder["conn"] = open_sync(pg)
        conn = holder["conn"]
        try:
            with conn.transaction():
                conn.execute("INSERT INTO entries (id) VALUES (%s) ON CONFLICT (id) DO NOTHING",
                             (entry_id,))
        except BaseException:
            holder.pop("conn").close()  # a broken connection is replaced on the next attempt
            raise

    restart_errors: list[BaseException] = []

    def restart() -> None:
        try:
            pg.restart()
        except BaseException as exc:
            restart_errors.append(exc)

    for entry_id in range(5):
        record(entry_id)
    restarter = threading.Thread(target=restart)
    with capture_logs() as logs:
        restarter.start()
        n = 5
        while restarter.is_alive() and n < MAX_ROWS:
            record(n)
            n += 1
        restarter.join(SYNC_WAIT_S * 2)
        assert not restarter.is_alive() and not restart_errors, restart_errors
        for _ in range(5):  # the first of these meets the old connection if nothing else did
            record(n)
            n += 1
    holder["conn"].close()
    assert entry_ids(pg) == list(range(n))
    scheduled = events(logs, "retry.scheduled")
    assert scheduled, "the restart caused no retry"
    assert calls == n + len(scheduled)
    assert not events(logs, "retry.gave_up")
    # only connection-level errors were retried: 57P01, 57P03, or a failed connection
    assert {e["error"].split(":")[0] for e in scheduled} <= {"AdminShutdown", "OperationalError"}
    assert {e.get("db_code") for e in scheduled} <= {"57P01", "57P03", None}
    assert pg.password not in repr(logs)


def test_server_restart_mid_run_asyncpg(pg: Any) -> None:
    holder: dict[str, Any] = {}
    calls = 0

    @brace.database(**RESTART_POLICY)
    async def record(entry_id: int) -> None:
        nonlocal calls
        calls += 1
        if "conn" not in holder:
            holder["conn"] = await open_asyncpg(pg)
        conn = holder["conn"]
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO entries (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", entry_id)
        except BaseException:
            del holder["conn"]
            conn.terminate()
            raise

    async def scenario() -> int:
        for entry_id in range(5):
            await record(entry_id)
        restarting = asyncio.get_running_loop().run_in_executor(None, pg.restart)
        n = 5
        while not restarting.done() and n < MAX_ROWS:
            await record(n)
            n += 1
        await asyncio.wait_for(restarting, SYNC_WAIT_S * 2)
        for _ in range(5):
            await record(n)
            n += 1
        await holder["conn"].close()
        return n

    with capture_logs() as logs:
        n = run(scenario())
    assert entry_ids(pg) == list(range(n))
    scheduled = events(logs, "retry.scheduled")
    assert scheduled, "the restart caused no retry"
    assert calls == n + len(scheduled)
    assert not events(logs, "retry.gave_up")
    assert {e["error"].split(":")[0] for e in scheduled} <= {
        "InterfaceError", "ConnectionDoesNotExistError", "AdminShutdownError",
        "CannotConnectNowError", "ConnectionRefusedError", "ConnectionResetError",
        "InternalClientError"}  # asyncpg issue 784: the session ended between two statements
    assert pg.password not in repr(logs)


# --- (d) a wrong password: one attempt, the driver's own error -----------------------------


def test_wrong_password_is_one_attempt_psycopg(pg: Any) -> None:
    calls = 0

    @brace.database(**FAST)
    def load() -> None:
        nonlocal calls
        calls += 1
        with psycopg.connect(pg.conninfo(password="not-the-password")):
            pass

    with no_waits(), capture_logs() as logs, pytest.raises(psycopg.OperationalError) as info:
        load()
    assert calls == 1
    assert type(info.value) is psycopg.OperationalError  # as raised, never a RetryError
    assert info.value.sqlstate is None  # psycopg 3 reports no SQLSTATE for it
    assert "password authentication failed" in str(info.value)
    assert logs == []


def test_connection_refused_is_retried_psycopg(pg: Any) -> None:
    # The same exception type and sqlstate=None as a wrong password, but retried.
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls = 0

    @brace.database(**{**FAST, "attempts": 3})
    def load() -> None:
        nonlocal calls
        calls += 1
        with psycopg.connect(f"host=127.0.0.1 port={port} dbname=x user=x "
                             f"password={pg.password} connect_timeout=3"):
            pass

    with no_waits(), capture_logs() as logs, pytest.raises(psycopg.OperationalError) as info:
        load()
    assert calls == 3 and info.value.sqlstate is None
    assert "Connection refused" in str(info.value)
    assert [e["event"] for e in logs] == ["retry.scheduled"] * 2 + ["retry.gave_up"]
    assert all("db_code" not in e for e in logs)
    assert pg.password not in repr(logs)


def test_wrong_password_is_one_attempt_psycopg_async(pg: Any) -> None:
    calls = 0

    @brace.database(**FAST)
    async def load() -> None:
        nonlocal calls
        calls += 1
        conn = await psycopg.AsyncConnection.connect(pg.conninfo(password="not-the-password"))
        await conn.close()

    with no_waits(), pytest.raises(psycopg.OperationalError, match="password authentication"):
        run(load())
    assert calls == 1


def test_wrong_password_is_one_attempt_asyncpg(pg: Any) -> None:
    calls = 0

    @brace.database(**FAST)
    async def load() -> None:
        nonlocal calls
        calls += 1
        conn = await asyncpg.connect(**pg.kwargs(password="not-the-password"))
        await conn.close()

    with no_waits(), pytest.raises(asyncpg.InvalidPasswordError) as info:
        run(load())
    assert calls == 1 and info.value.sqlstate == "28P01"


def test_wrong_password_is_one_attempt_sqlalchemy(pg: Any) -> None:
    sqlalchemy = require("sqlalchemy")
    engine = sqlalchemy.create_engine(pg.url(password="not-the-password",
                                             scheme="postgresql+psycopg"))
    calls = 0

    @brace.database(**FAST)
    def load() -> None:
        nonlocal calls
        calls += 1
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))

    try:
        with no_waits(), pytest.raises(sqlalchemy.exc.OperationalError) as info:
            load()
    finally:
        engine.dispose()
    assert calls == 1 and isinstance(info.value.orig, psycopg.OperationalError)


# --- (e) undefined table, syntax error; (f) unique violation: one attempt each -------------

BUGS = [
    pytest.param("SELECT * FROM no_such_table", "42P01", id="undefined-table"),
    pytest.param("SELEC 1", "42601", id="syntax-error"),
    pytest.param("INSERT INTO accounts VALUES (1, 5)", "23505", id="unique-violation"),
]


@pytest.mark.parametrize(("sql", "sqlstate"), BUGS)
def test_not_retried_psycopg(pg: Any, sql: str, sqlstate: str) -> None:
    calls = 0

    @brace.database(**FAST)
    def transaction() -> None:
        nonlocal calls
        calls += 1
        with open_sync(pg) as conn, conn.transaction():
            conn.execute(sql)

    with no_waits(), capture_logs() as logs, pytest.raises(psycopg.Error) as info:
        transaction()
    assert calls == 1 and info.value.sqlstate == sqlstate and logs == []


@pytest.mark.parametrize(("sql", "sqlstate"), BUGS)
def test_not_retried_asyncpg(pg: Any, sql: str, sqlstate: str) -> None:
    calls = 0

    @brace.database(**FAST)
    async def transaction() -> None:
        nonlocal calls
        calls += 1
        conn = await open_asyncpg(pg)
        try:
            async with conn.transaction():
                await conn.execute(sql)
        finally:
            await conn.close()

    with no_waits(), pytest.raises(asyncpg.PostgresError) as info:
        run(transaction())
    assert calls == 1 and info.value.sqlstate == sqlstate


def test_events_never_carry_sql_parameters(pg: Any) -> None:
    # Force retries of a unique violation (on=) to see what events say about a real error
    # whose message quotes the duplicated value.
    sqlalchemy = require("sqlalchemy")
    secret = "alice.secret@example.com"
    with open_sync(pg) as conn:
        conn.execute("INSERT INTO entries VALUES (1, %s)", (secret,))
    engine = sqlalchemy.create_engine(pg.url(scheme="postgresql+psycopg"))
    insert = sqlalchemy.text("INSERT INTO entries VALUES (:id, :email)")
    unique = psycopg.errors.UniqueViolation

    @brace.database(**{**FAST, "attempts": 2}, on=lambda e: isinstance(e.__cause__, unique))
    def sqlalchemy_insert() -> None:
        with engine.begin() as conn:
            conn.execute(insert, {"id": 2, "email": secret})

    @brace.database(**{**FAST, "attempts": 2}, on=unique)
    def psycopg_insert() -> None:
        with open_sync(pg) as conn:
            conn.execute("INSERT INTO entries VALUES (%s, %s)", (3, secret))

    try:
        with no_waits(), capture_logs() as logs:
            with pytest.raises(sqlalchemy.exc.IntegrityError) as wrapped:
                sqlalchemy_insert()
            with pytest.raises(unique) as raw:
                psycopg_insert()
    finally:
        engine.dispose()
    assert secret in str(wrapped.value) and secret in str(raw.value)  # the messages have it
    assert [(e["event"], e["db_code"]) for e in logs] == [
        ("retry.scheduled", "23505"), ("retry.gave_up", "23505")] * 2
    assert secret not in repr(logs) and pg.password not in repr(logs)


# --- SQLite: a real file, two connections --------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "bank.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, note TEXT)")
    conn.close()
    return path


class LockHolder:
    """A second connection, in its own thread, holding the write lock until released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.locked = threading.Event()
        self.release = threading.Event()
        self.committed = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO entries (note) VALUES ('holder')")
                self.locked.set()
                assert self.release.wait(SYNC_WAIT_S), "never released"
                conn.execute("COMMIT")
            finally:
                conn.close()
        except BaseException as exc:
            self.error = exc
        finally:
            self.locked.set()
            self.committed.set()

    def __enter__(self) -> LockHolder:
        self.thread.start()
        assert self.locked.wait(SYNC_WAIT_S)
        return self

    def commit(self) -> None:
        self.release.set()
        assert self.committed.wait(SYNC_WAIT_S)
        assert self.error is None, self.error

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.thread.join(SYNC_WAIT_S)


def notes(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = [row[0] for row in conn.execute("SELECT note FROM entries ORDER BY id")]
    conn.close()
    return rows


@pytest.fixture
def locked(sqlite_path: Path) -> Iterator[LockHolder]:
    with LockHolder(sqlite_path) as holder:
        yield holder


def test_sqlite_database_is_locked_is_retried(locked: LockHolder) -> None:
    calls = 0

    @brace.database(**FAST)
    def write() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first attempt has failed: let the holder commit now
            locked.commit()
        conn = sqlite3.connect(locked.path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO entries (note) VALUES ('transfer')")
            conn.execute("COMMIT")
        finally:
            conn.close()

    with no_waits(), capture_logs() as logs:
        write()
    assert calls == 2
    assert notes(locked.path) == ["holder", "transfer"]  # the write landed once
    (scheduled,) = events(logs, "retry.scheduled")
    assert scheduled["error"] == "OperationalError: database is locked"
    assert scheduled["db_code"] in {"SQLITE_BUSY", "5"}


def test_aiosqlite_database_is_locked_is_retried(locked: LockHolder) -> None:
    aiosqlite = require("aiosqlite")
    calls = 0

    @brace.database(**FAST)
    async def write() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.to_thread(locked.commit)
        async with aiosqlite.connect(locked.path, timeout=0, isolation_level=None) as conn:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("INSERT INTO entries (note) VALUES ('transfer')")
            await conn.execute("COMMIT")

    with no_waits(), capture_logs() as logs:
        run(write())
    assert calls == 2
    assert notes(locked.path) == ["holder", "transfer"]
    assert [e["db_code"] for e in events(logs, "retry.scheduled")] == ["SQLITE_BUSY"]


def test_sqlite_no_such_table_is_not_retried(sqlite_path: Path) -> None:
    calls = 0

    @brace.database(**FAST)
    def read() -> None:
        nonlocal calls
        calls += 1
        conn = sqlite3.connect(sqlite_path, timeout=0)
        try:
            conn.execute("SELECT * FROM no_such_table")
        finally:
            conn.close()

    with no_waits(), pytest.raises(sqlite3.OperationalError, match="no such table"):
        read()
    assert calls == 1


def test_aiosqlite_no_such_table_is_not_retried(sqlite_path: Path) -> None:
    aiosqlite = require("aiosqlite")
    calls = 0

    @brace.database(**FAST)
    async def read() -> None:
        nonlocal calls
        calls += 1
        async with aiosqlite.connect(sqlite_path, timeout=0) as conn:
            await conn.execute("SELECT * FROM no_such_table")

    with no_waits(), pytest.raises(sqlite3.OperationalError, match="no such table"):
        run(read())
    assert calls == 1
