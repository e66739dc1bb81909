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
    "PG_REFUSED_TRANSLATIONS",
    "PG_TRANSIENT_CLASSES",
    "PG_TRANSIENT_CODES",
    "SQLITE_TRANSIENT_CODES",
    "db_code",
    "driver_error",
    "pg_refused",
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
    "3D": "invalid_catalog_name: the database does not exist; it will not appear by retrying",
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
    1044: "ER_DBACCESS_DENIED_ERROR: the user may not use this database",
    1045: "ER_ACCESS_DENIED_ERROR: wrong user or password",
    1049: "ER_BAD_DB_ERROR: the database does not exist",
    1064: "ER_PARSE_ERROR: SQL syntax error",
    1062: "ER_DUP_ENTRY: duplicate key",
})
"""MySQL error numbers that are never retried (as for PostgreSQL, unlisted ones are not retried
either)."""
# A PostgreSQL connection that failed before any SQLSTATE (psycopg reports none for a
# failed connection: a wrong password and "connection refused" are the same OperationalError
# with sqlstate None, because libpq keeps the server's SQLSTATE of a failed connection to
# itself) is transient, unless the server refused the credentials, the role or the database,
# or the client's TLS setup is wrong. The server words that refusal in its `lc_messages`
# language, so three signals are read, in order:
#   1. the English message (libpq's own, and servers left at the default `C` locale);
#   2. the server's translations of the same messages, for the languages below (copied from
#      PostgreSQL's message catalogs, postgres-15.mo; tests/test_database_rules.py checks
#      them against the catalogs installed on the machine);
#   3. language-independent (psycopg 3, which attaches the failed connection as
#      ``exc.pgconn``): the server's message quotes the connection's own role or database
#      name, as every refusal of a role or a database does ("Rolle »brace« existiert nicht")
#      and no startup, shutdown or network failure does. The per-role and per-database
#      connection limits (53300, transient) also quote them: they are excepted by message.
_PG_REFUSED_ENGLISH = (
    r"password authentication failed|authentication failed|no password supplied"
    r"|no pg_hba\.conf entry|pg_hba\.conf rejects connection"
    r"|role (?:\"[^\"]*\"|\S+) (?:does not exist|is not permitted to log in)"
    r"|database (?:\"[^\"]*\"|\S+) (?:does not exist|is not currently accepting connections)"
    r"|permission denied for database|SSL .*required|certificate"
)
# The server's refusals of a connection, as translated (msgids: password / host / Ident /
# Peer / LDAP / certificate authentication failed for user, no pg_hba.conf entry,
# pg_hba.conf rejects connection, role does not exist, role is not permitted to log in,
# database does not exist, database is not currently accepting connections, permission
# denied for database). %s is the role, database or host name.
PG_REFUSED_TRANSLATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "de": (
        "Passwort-Authentifizierung für Benutzer »%s« fehlgeschlagen",
        "Authentifizierung für Benutzer »%s« fehlgeschlagen: Host abgelehnt",
        "Ident-Authentifizierung für Benutzer »%s« fehlgeschlagen",
        "Peer-Authentifizierung für Benutzer »%s« fehlgeschlagen",
        "LDAP-Authentifizierung für Benutzer »%s« fehlgeschlagen",
        "Zertifikatauthentifizierung für Benutzer »%s« fehlgeschlagen",
        "kein pg_hba.conf-Eintrag für Host »%s«, Benutzer »%s«, Datenbank »%s«, %s",
        "pg_hba.conf lehnt Verbindung ab für Host »%s«, Benutzer »%s«, Datenbank »%s«, %s",
        "Rolle »%s« existiert nicht",
        "Rolle »%s« hat keine Berechtigung zum Einloggen",
        "Datenbank »%s« existiert nicht",
        "Datenbank »%s« akzeptiert gegenwärtig keine Verbindungen",
        "keine Berechtigung für Datenbank »%s«",
    ),
    "es": (
        "la autentificación password falló para el usuario «%s»",
        "la autentificación falló para el usuario «%s»: anfitrión rechazado",
        "la autentificación Ident falló para el usuario «%s»",
        "la autentificación Peer falló para el usuario «%s»",
        "la autentificación LDAP falló para el usuario «%s»",
        "la autentificación por certificado falló para el usuario «%s»",
        "no hay una línea en pg_hba.conf para «%s», usuario «%s», base de datos «%s», %s",
        "pg_hba.conf rechaza la conexión para el servidor «%s», usuario «%s», "
        "base de datos «%s», %s",
        "no existe el rol «%s»",
        "al rol «%s» no se le permite conectarse",
        "no existe la base de datos «%s»",
        "la base de datos «%s» no acepta conexiones",
        "permiso denegado a la base de datos «%s»",
    ),
    "fr": (
        "authentification par mot de passe échouée pour l'utilisateur  « %s »",
        "authentification échouée pour l'utilisateur « %s » : hôte rejeté",
        "Échec de l'authentification Ident pour l'utilisateur « %s »",
        "authentification peer échouée pour l'utilisateur « %s »",
        "authentification LDAP échouée pour l'utilisateur « %s »",
        "authentification par le certificat échouée pour l'utilisateur « %s »",
        "aucune entrée dans pg_hba.conf pour l'hôte « %s », utilisateur « %s »,\n"
        "base de données « %s », %s",
        "pg_hba.conf rejette la connexion pour l'hôte « %s », utilisateur « %s », base\n"
        "de données « %s », %s",
        "le rôle « %s » n'existe pas",
        "le rôle « %s » n'est pas autorisé à se connecter",
        "la base de données « %s » n'existe pas",
        "la base de données « %s » n'accepte plus les connexions",
        "droit refusé pour la base de données « %s »",
    ),
    "it": (
        "autenticazione con password fallita per l'utente \"%s\"",
        "autenticazione fallita per l'utente \"%s\": host rifiutato",
        "Autenticazione Ident fallita per l'utente \"%s\"",
        "Autenticazione Peer fallita per l'utente \"%s\"",
        "Autenticazione LDAP fallita per l'utente \"%s\"",
        "autenticazione con certificato fallita per l'utente \"%s\"",
        "nessuna voce in pg_hba.conf per l'host \"%s\", utente \"%s\", database \"%s\", %s",
        "pg_hba.conf rifiuta connessioni per l'host \"%s\", utente \"%s\", database \"%s\", %s",
        "il ruolo \"%s\" non esiste",
        "al ruolo \"%s\" non è consentito effettuare il login",
        "il database \"%s\" non esiste",
        "il database \"%s\" attualmente non accetta connessioni",
        "permesso negato per il database \"%s\"",
    ),
})
"""PostgreSQL's refusals of a connection in the server languages read without a SQLSTATE
(besides English), from PostgreSQL's own translations; ``%s`` stands for a name."""
# 53300 at connection time quotes the role or database too, but is worth retrying: its
# wording in every language PostgreSQL 15 ships.
_PG_CONNECTION_LIMITS = (
    "too many connections for role \"%s\"", "too many connections for database \"%s\"",
    "zu viele Verbindungen von Rolle »%s«", "zu viele Verbindungen für Datenbank »%s«",
    "demasiadas conexiones para el rol «%s»", "demasiadas conexiones para la base de datos «%s»",
    "trop de connexions pour le rôle « %s »",
    "trop de connexions pour la base de données « %s »",
    "troppe connessioni per il ruolo \"%s\"", "troppe connessioni al database \"%s\"",
    'ロール"%s"からの接続が多すぎます',  # ja
    'データベース"%s"への接続が多すぎます',
    'მეტისმეტად ბევრი კავშირი როლისთვის "%s"',  # ka
    'ძალიან ბევრი კავშირი ბაზისთვის "%s"',
    '"%s" 롤의 최대 동시 접속수를 초과했습니다',  # ko
    '"%s" 데이터베이스 최대 접속수를 초과했습니다',
    'слишком много подключений для роли "%s"',  # ru
    'слишком много подключений к БД "%s"',
    'för många uppkopplingar för roll "%s"',  # sv
    'för många uppkopplingar till databasen "%s"',
    'занадто багато підключень для ролі "%s"',  # uk
    'занадто багато підключень до бази даних "%s"',
    '由角色"%s"发起的连接太多了',  # zh_CN
    '到数据库 "%s"的连接太多了',
)


def _template_pattern(template: str) -> str:
    """A catalog message as a regex: ``%s`` matches a name, any whitespace run any other."""
    pieces = (r"\s+".join(re.escape(word) for word in piece.split())
              for piece in template.split("%s"))
    return ".*?".join(pieces)


_PG_REFUSED_MESSAGE = re.compile(
    "|".join([_PG_REFUSED_ENGLISH, *(_template_pattern(template)
                                     for templates in PG_REFUSED_TRANSLATIONS.values()
                                     for template in templates)]),
    re.IGNORECASE,
)
_PG_CONNECTION_LIMIT = re.compile("|".join(map(_template_pattern, _PG_CONNECTION_LIMITS)),
                                  re.IGNORECASE)
# Quotation marks PostgreSQL's translations put around a name: ASCII quotes, guillemets
# (French sets them off by a space), German and English curly quotes, CJK corner brackets.
_QUOTE = "[\"'\u00ab\u00bb\u2039\u203a\u201c\u201d\u201e\u2018\u2019\u201a\u300c\u300d\u300e\u300f]"
_GUILLEMET = "[\u00ab\u00bb]"


def _pgconn_names(exc: BaseException) -> list[str]:
    """The role and database names of the connection psycopg 3 attached to ``exc``."""
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is None:
        return []
    names = []
    for attr in ("user", "db"):
        try:
            value = getattr(pgconn, attr, None)
        except Exception:  # a PGconn that was closed meanwhile raises; nothing to read then
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip():
            names.append(value)
    return names


def _quotes_own_name(exc: BaseException, message: str) -> bool:
    """The language-independent signal: the message quotes the connection's role or db.

    Quoted, or set off by a colon at the end of a line, as one translation words it
    (Georgian: "role is not permitted to log in: brace").
    """
    return any(
        re.search(f"(?:{_QUOTE}|{_GUILLEMET}\\s){re.escape(name)}(?:{_QUOTE}|\\s{_GUILLEMET})"
                  f"|:[ \\t]+{re.escape(name)}[ \\t]*$", message, re.MULTILINE) is not None
        for name in _pgconn_names(exc))


def pg_refused(exc: BaseException) -> bool:
    """Whether a PostgreSQL connection failure without SQLSTATE is the server's refusal.

    A wrong password, an unknown role or database, a pg_hba.conf rejection, a TLS setup the
    server does not accept: in English, in the translations of ``PG_REFUSED_TRANSLATIONS``,
    or (psycopg 3) in any language when the message quotes the connection's own role or
    database name.
    """
    message = str(exc)
    if _PG_REFUSED_MESSAGE.search(message) is not None:
        return True
    return _PG_CONNECTION_LIMIT.search(message) is None and _quotes_own_name(exc, message)


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
    return "OperationalError" in _mro_names(exc) and not pg_refused(exc)


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
