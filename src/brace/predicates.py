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
from collections.abc import Callable
from typing import TYPE_CHECKING

import tenacity

from brace import _clients, _dbcodes, _validate
from brace._dbcodes import (
    MYSQL_PERMANENT_CODES,
    MYSQL_TRANSIENT_CODES,
    PG_PERMANENT_CLASSES,
    PG_TRANSIENT_CLASSES,
    PG_TRANSIENT_CODES,
    SQLITE_TRANSIENT_CODES,
    db_code,
)
from brace._outcome import (
    IDEMPOTENT_METHODS,
    is_exhausted,
    is_exit,
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
    "MYSQL_PERMANENT_CODES",
    "MYSQL_TRANSIENT_CODES",
    "NEVER_RETRY",
    "PG_PERMANENT_CLASSES",
    "PG_TRANSIENT_CLASSES",
    "PG_TRANSIENT_CODES",
    "SQLITE_TRANSIENT_CODES",
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
    concurrent.futures.CancelledError,
)
"""Exceptions that propagate at once from every policy, whatever a predicate says: retrying a
cancellation or an interrupt is always a bug (tenacity issue 529). Every other async
library's cancellation (trio's ``Cancelled``, anyio's) is treated the same way: brace's one
rule is that any ``BaseException`` that is not an ``Exception`` never is retried or counted,
nor is a thread's ``concurrent.futures.CancelledError``."""

# On 3.10 asyncio's and concurrent.futures' TimeoutError are not yet the builtin.
_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Return True for errors that mean "try again": connection errors and timeouts.

    Covers ``ConnectionError`` (refused, reset, aborted, broken pipe), ``TimeoutError``, the
    transient errors of the client libraries in brace's table (``brace._clients``, shown in
    docs/clients.md): httpx's connect/read/write/pool timeouts, connect, read, write and
    remote-protocol errors; requests' and urllib3's connection errors and timeouts; redis-py's
    and valkey-py's ``ConnectionError``, ``TimeoutError``, ``BusyLoadingError``, cluster
    fail-overs; botocore's connection errors and throttling or 5xx ``ClientError`` codes;
    grpc ``UNAVAILABLE`` and ``RESOURCE_EXHAUSTED``; google-api-core's ``ServiceUnavailable``
    and ``TooManyRequests``; aiohttp's connection errors; pymongo's ``AutoReconnect`` and
    retryable labels; websockets' abnormal closes), and an exception explicitly raised from
    one of those (``raise SDKError() from exc``).

    Never programming errors (ValueError, TypeError, KeyError ...), ``PermissionError`` or
    other ``OSError``, never an authentication or permission error of any library (redis-py's
    ``AuthenticationError`` is a subclass of its ``ConnectionError``: the table says no
    first), and never a cancellation (of any library), an interrupt or an exit.
    """
    if is_exit(exc):
        return False
    # SDKs wrap transport errors (openai's APIConnectionError is raised `from` httpx's
    # ConnectError): follow the explicit cause chain a few links.
    cause: BaseException | None = exc
    for _ in range(4):
        if cause is None:
            return False
        # A builtin error is in no library's table: one attribute read, no look-up.
        if cause.__class__.__module__ != "builtins":
            row = _clients.verdict(cause)  # one dict look-up by class (cached)
            if row is not None:
                return row.retried
        if isinstance(cause, _TRANSIENT_BUILTINS):
            return True
        cause = cause.__cause__
    return False


def is_dbapi_transient(exc: BaseException) -> bool:
    """Return True when a database driver reports ``exc`` as worth retrying.

    Judged by driver facts, found by duck typing (no driver is imported), from the tables in
    ``brace._dbcodes`` (``PG_TRANSIENT_CODES``, ``PG_TRANSIENT_CLASSES``,
    ``SQLITE_TRANSIENT_CODES``, ``MYSQL_TRANSIENT_CODES``, re-exported here):

    - PostgreSQL (psycopg 3, psycopg2, asyncpg): SQLSTATE class 08 and 40001, 40P01, 55P03,
      57P01-3, 53300; a connection that failed or was lost before any SQLSTATE, unless the
      server's message says it refused the password, role or database;
    - SQLite (sqlite3, aiosqlite): SQLITE_BUSY and SQLITE_LOCKED;
    - MySQL (PyMySQL, mysqlclient): 1040, 1205, 1213, 2003, 2006, 2013;
    - SQLAlchemy: a wrapper (``DBAPIError``) by the driver error in ``.orig``, and any with
      ``connection_invalidated=True``;

    plus everything ``is_transient`` accepts. Never authentication, syntax, integrity
    or data errors, and never a cancellation, interrupt or exit.
    """
    if is_transient(exc):
        return True
    if is_exit(exc):
        return False
    inner, invalidated = _dbcodes.driver_error(exc)
    return invalidated or is_transient(inner) or _dbcodes.transient(inner)


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
