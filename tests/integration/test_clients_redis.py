"""redis-py and valkey-py against a real redis-server: the client table's Redis rows.

A wrong password against a server started with ``--requirepass`` is an
``AuthenticationError``, which redis-py makes a subclass of its ``ConnectionError``: brace
must never retry it, whatever a policy's ``on=`` says, while a refused connection or a
frozen server (a timeout) is retried. An ACL user refused a command, a lost WATCH race and
a command on the wrong type are not retried. The stand-in cases (LOADING, TRYAGAIN,
CLUSTERDOWN ...) are in tests/test_clients.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.backoff
import redis.retry
import valkey
import valkey.backoff
import valkey.retry

import brace
from brace import _clients
from brace._outcome import Kind, classify
from brace.predicates import is_transient
from brace.testing import no_waits
from tests.integration.conftest import REDIS_PASSWORD, RedisServer

HOST = "127.0.0.1"
CLIENTS = pytest.mark.parametrize("client_module", [redis, valkey], ids=["redis", "valkey"])


def _refused_port() -> int:
    with socket.socket() as sock:  # bound, then closed: a connect there is refused
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _client(client_module: Any, port: int, **options: Any) -> Any:
    # No retries of the client's own (redis-py 6+ retries connection errors 3 times by
    # default): one call, one attempt, so brace's count is the count.
    settings = {"socket_timeout": 2, "socket_connect_timeout": 2,
                "retry": client_module.retry.Retry(client_module.backoff.NoBackoff(), 0)}
    return client_module.Redis(host=HOST, port=port, **{**settings, **options})


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Clients a test makes, closed after it."""
    made: list[Any] = []
    yield made
    for client in made:
        client.close()


def raised(provoke: Callable[[], object]) -> BaseException:
    try:
        provoke()
    except Exception as exc:
        return exc
    pytest.fail("no exception was raised: the fault was not provoked")


def judge(exc: BaseException, client_module: Any, error: str) -> None:
    assert type(exc).__module__.startswith(client_module.__name__)
    assert type(exc).__name__ == error
    row = _clients.verdict(exc)
    assert row is not None and (row.library, row.error) == ("redis", error), row
    assert is_transient(exc) is row.retried
    outcome = classify(brace.network, exc, None)
    assert outcome.kind is (Kind.RETRYABLE if row.retried else Kind.NOT_RETRIED)
    if row.never:
        assert classify(brace.network(on=[client_module.ConnectionError]), exc,
                        None).kind is Kind.NOT_RETRIED


@CLIENTS
def test_a_wrong_password_is_an_authentication_error_never_retried(
        client_module: Any, redis_server_auth: RedisServer, clients: list[Any]) -> None:
    wrong = _client(client_module, redis_server_auth.port, password="not-the-password")
    clients.append(wrong)
    exc = raised(wrong.ping)
    assert isinstance(exc, client_module.ConnectionError)  # the trap brace must not fall in
    judge(exc, client_module, "AuthenticationError")


@CLIENTS
def test_no_password_is_an_authentication_error_too(
        client_module: Any, redis_server_auth: RedisServer, clients: list[Any]) -> None:
    anonymous = _client(client_module, redis_server_auth.port)
    clients.append(anonymous)
    judge(raised(lambda: anonymous.get("key")), client_module, "AuthenticationError")


@CLIENTS
def test_an_acl_refusal_is_a_permission_error_never_retried(
        client_module: Any, redis_server_auth: RedisServer, clients: list[Any]) -> None:
    admin = _client(client_module, redis_server_auth.port, password=REDIS_PASSWORD)
    clients.append(admin)
    admin.acl_setuser("brace-limited", enabled=True, passwords=["+limited-pw"], keys=["*"],
                      commands=["-@all", "+@connection"])
    limited = _client(client_module, redis_server_auth.port, username="brace-limited",
                      password="limited-pw")
    clients.append(limited)
    judge(raised(lambda: limited.get("key")), client_module, "NoPermissionError")


@CLIENTS
def test_a_refused_connection_is_retried(client_module: Any, clients: list[Any]) -> None:
    client = _client(client_module, _refused_port())
    clients.append(client)
    judge(raised(client.ping), client_module, "ConnectionError")


@CLIENTS
def test_a_frozen_server_is_a_timeout_and_retried(
        client_module: Any, redis_server: RedisServer, clients: list[Any]) -> None:
    client = _client(client_module, redis_server.port, socket_timeout=0.2)
    clients.append(client)
    client.ping()  # connected while the server answers
    redis_server.pause()
    try:
        judge(raised(client.ping), client_module, "TimeoutError")
    finally:
        redis_server.resume()


@CLIENTS
def test_a_lost_watch_race_and_a_wrong_type_are_not_retried(
        client_module: Any, redis_server: RedisServer, clients: list[Any]) -> None:
    client = _client(client_module, redis_server.port)
    other = _client(client_module, redis_server.port)
    clients += [client, other]

    def lose_the_race() -> None:
        with client.pipeline() as pipe:
            pipe.watch("balance")
            other.set("balance", 1)  # another client writes between WATCH and EXEC
            pipe.multi()
            pipe.set("balance", 2)
            pipe.execute()

    judge(raised(lose_the_race), client_module, "WatchError")
    client.rpush("list", "x")
    judge(raised(lambda: client.get("list")), client_module, "ResponseError")


# --------------------------------------------------------------------------- the presets


@CLIENTS
def test_network_retries_a_redis_connection_error_and_never_a_wrong_password(
        client_module: Any, redis_server_auth: RedisServer, clients: list[Any]) -> None:
    down = _client(client_module, _refused_port())
    wrong = _client(client_module, redis_server_auth.port, password="not-the-password")
    clients += [down, wrong]
    attempts: list[str] = []

    @brace.network
    def ping(client: Any, label: str) -> object:
        attempts.append(label)
        return client.ping()

    with no_waits(attempts=4):
        with pytest.raises(client_module.ConnectionError):
            ping(down, "down")
        assert attempts == ["down"] * 4
        with pytest.raises(client_module.AuthenticationError):
            ping(wrong, "wrong")
        assert attempts.count("wrong") == 1

        # on= naming the parent class does not make a wrong password worth resending.
        @brace.network(on=[client_module.ConnectionError])
        def told(client: Any) -> object:
            attempts.append("told")
            return client.ping()

        with pytest.raises(client_module.AuthenticationError):
            told(wrong)
        assert attempts.count("told") == 1
