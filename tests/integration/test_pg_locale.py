"""A PostgreSQL that speaks German, French or Spanish: its refusals are still never retried.

The server words a wrong password or a missing database in its ``lc_messages`` language, and
psycopg 3 reports them without a SQLSTATE. brace must attempt them once whatever the language
(issue 21, item 9), and still ride out a restart, whose messages are translated too. The
locales are generated when missing (``ensure_locale``); the cluster is ``postgres_localized``,
so the shared ``postgres`` cluster keeps speaking English.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits
from tests.conftest import require
from tests.integration.conftest import ensure_locale

psycopg = require("psycopg")
asyncpg = require("asyncpg")

# locale -> (wrong password, missing database), as the server's catalog words them
LANGUAGES = {
    "de_DE.UTF-8": ("Passwort-Authentifizierung", "existiert nicht"),
    "fr_FR.UTF-8": ("authentification par mot de passe", "n'existe pas"),
    "es_ES.UTF-8": ("la autentificación password", "no existe la base de datos"),
}
WAIT_S = 30.0


@pytest.fixture(params=list(LANGUAGES))
def speaking(request: pytest.FixtureRequest, postgres_localized: Any) -> Iterator[Any]:
    """``postgres_localized`` speaking the parameter's language; English again afterwards."""
    ensure_locale(request.param)
    postgres_localized.set_lc_messages(request.param)
    try:
        yield Speaking(postgres_localized, request.param)
    finally:
        postgres_localized.set_lc_messages("C")


class Speaking:
    """The localized server and the language it speaks."""

    def __init__(self, server: Any, language: str) -> None:
        self.server = server
        self.language = language

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


def test_wrong_password_and_missing_database_psycopg(speaking: Any) -> None:
    password_text, missing_text = LANGUAGES[speaking.language]
    for conninfo, text in [(speaking.conninfo(password="not-the-password"), password_text),
                           (speaking.conninfo(dbname="no_such_db"), missing_text)]:
        calls = 0

        @brace.database
        def connect(conninfo: str = conninfo) -> None:
            nonlocal calls
            calls += 1
            with psycopg.connect(conninfo):
                pass

        # no_waits: a misjudged refusal still fails fast here, with the attempts counted.
        with no_waits(), capture_logs() as logs, pytest.raises(psycopg.OperationalError) as info:
            connect()
        assert text in str(info.value), str(info.value)  # the server did speak the language
        assert info.value.sqlstate is None  # psycopg gives no code: the message is all there is
        assert calls == 1 and logs == []


def test_wrong_password_and_missing_database_psycopg_async(speaking: Any) -> None:
    for conninfo in (speaking.conninfo(password="not-the-password"),
                     speaking.conninfo(dbname="no_such_db")):
        calls = 0

        @brace.database
        async def connect(conninfo: str = conninfo) -> None:
            nonlocal calls
            calls += 1
            conn = await psycopg.AsyncConnection.connect(conninfo)
            await conn.close()

        with no_waits(), pytest.raises(psycopg.OperationalError):
            asyncio.run(asyncio.wait_for(connect(), WAIT_S))
        assert calls == 1


def test_wrong_password_and_missing_database_asyncpg(speaking: Any) -> None:
    # asyncpg always reports the SQLSTATE: 28P01 and 3D000 are refusals by code.
    for overrides, code in (({"password": "not-the-password"}, "28P01"),
                            ({"database": "no_such_db"}, "3D000")):
        calls = 0

        @brace.database
        async def connect(overrides: dict[str, Any] = overrides) -> None:
            nonlocal calls
            calls += 1
            conn = await asyncpg.connect(**{**speaking.kwargs(), **overrides})
            await conn.close()

        with no_waits(), pytest.raises(asyncpg.PostgresError) as info:
            asyncio.run(asyncio.wait_for(connect(), WAIT_S))
        assert calls == 1 and info.value.sqlstate == code


def test_without_the_connection_object_the_translations_decide(speaking: Any) -> None:
    # psycopg2 attaches no connection to the error: the translated message alone must do.
    try:
        psycopg.connect(speaking.conninfo(password="not-the-password")).close()
    except psycopg.OperationalError as exc:
        bare = psycopg.OperationalError(str(exc))
    else:
        pytest.fail("the wrong password was accepted")
    assert bare.pgconn is None
    assert not brace.predicates.is_dbapi_transient(bare)


def test_a_restart_in_german_is_still_ridden_out(postgres_localized: Any) -> None:
    """The default ``database`` preset rides out a restart whose messages are German."""
    ensure_locale("de_DE.UTF-8")
    server = postgres_localized
    server.set_lc_messages("de_DE.UTF-8")
    try:
        calls = 0

        @brace.database
        def transaction() -> int:
            nonlocal calls
            calls += 1
            with psycopg.connect(server.conninfo()) as conn, conn.transaction():
                return int(conn.execute("SELECT 1").fetchone()[0])

        server.stop()  # down: refused, then "das Datenbanksystem startet" while it comes up
        restarter = threading.Thread(target=server.start)
        try:
            with capture_logs() as logs:
                restarter.start()
                assert transaction() == 1
        finally:
            restarter.join(WAIT_S)
        assert not restarter.is_alive()
        assert calls > 1 and not [e for e in logs if e["event"] == "retry.gave_up"]
    finally:
        server.wait_ready()
        server.set_lc_messages("C")
