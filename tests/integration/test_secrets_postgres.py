"""A real PostgreSQL's errors for statements that hold a password never carry it out.

The fault campaign of issue 23 found SQLAlchemy's error for a retried ``ALTER ROLE ...
PASSWORD '...'`` putting the new password into ``retry.scheduled``: SQLAlchemy quotes the
statement (``[SQL: ...]``), PostgreSQL quotes the line of a syntax error (``LINE 1: ...``).
Each statement is retried (``on=``) so that both ``retry.scheduled`` and ``retry.gave_up``
describe the real error, through structlog and an observer.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits
from tests.conftest import require
from tests.secret_shapes import leaked

psycopg = require("psycopg")

NEW_PASSWORD = "n3w-Role-pw'quoted"  # holds a quote: SQL doubles it
QUOTED = NEW_PASSWORD.replace("'", "''")
STATEMENTS = [
    # brace is no superuser: permission denied, quoted by SQLAlchemy's [SQL: ...]
    f"ALTER ROLE postgres PASSWORD '{QUOTED}'",
    f"ALTER ROLE nobody_here WITH ENCRYPTED PASSWORD '{QUOTED}' VALID UNTIL 'infinity'",
    # a syntax error: PostgreSQL's LINE 1: quotes the statement itself
    f"ALTER ROLE brace PASSWORD '{QUOTED}' VALID UNTILL 'infinity'",
    f"CREATE ROLE intruder LOGIN PASSWORD '{QUOTED}'",
]


def run_retried(call: Any) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]],
                                    BaseException]:
    seen: list[tuple[str, dict[str, Any]]] = []
    observer = brace.observe(lambda event, fields: seen.append((event, fields)))
    try:
        with no_waits(), capture_logs() as logs, pytest.raises(Exception) as raised:
            brace.database(attempts=2, on=lambda exc: True)(call)()
    finally:
        brace.unobserve(observer)
    return logs, seen, raised.value


@pytest.mark.parametrize("statement", STATEMENTS)
def test_sqlalchemy_errors_never_carry_the_password_secret(postgres: Any,
                                                           statement: str) -> None:
    sqlalchemy = require("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres.url(scheme="postgresql+psycopg"))

    def alter_role() -> None:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement))

    try:
        logs, seen, error = run_retried(alter_role)
    finally:
        engine.dispose()
    assert QUOTED in str(error)  # the error itself quotes the statement
    assert [entry["event"] for entry in logs] == ["retry.scheduled", "retry.gave_up"]
    text = repr(logs) + repr(seen)
    for secret in (NEW_PASSWORD, QUOTED, postgres.password):
        assert not leaked(secret, text), text
    assert "ALTER ROLE" in text or "CREATE ROLE" in text  # the statement's shape stays


@pytest.mark.parametrize("statement", STATEMENTS)
def test_psycopg_errors_never_carry_the_password_secret(postgres: Any, statement: str) -> None:
    def alter_role() -> None:
        with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
            conn.execute(statement)

    logs, seen, error = run_retried(alter_role)
    assert isinstance(error, psycopg.Error)
    assert [entry["event"] for entry in logs] == ["retry.scheduled", "retry.gave_up"]
    text = repr(logs) + repr(seen)
    for secret in (NEW_PASSWORD, QUOTED, postgres.password):
        assert not leaked(secret, text), text


def test_a_wrong_password_in_the_dsn_is_never_carried(postgres: Any) -> None:
    wrong = "wr0ng pw'with\"quotes"
    url = postgres.url(password=wrong.replace("'", "%27").replace('"', "%22")
                       .replace(" ", "%20"))
    sqlalchemy = require("sqlalchemy")
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    def connect() -> None:
        with engine.connect():
            pass

    try:
        logs, seen, _ = run_retried(connect)
    finally:
        engine.dispose()
    text = repr(logs) + repr(seen)
    assert not leaked(wrong, text) and not leaked("wr0ng%20pw", text), text
