"""Retry at one layer only: nested policies add attempts, never multiply them (rule 15);
and "no" instead of silently ignoring a setting that cannot take effect (rule 21)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import tenacity
from structlog.testing import capture_logs

import brace
from tests.fault_server import FaultServer, reply

pytestmark = pytest.mark.no_waits


def test_decorator_in_decorator_adds_attempts_never_multiplies() -> None:
    calls = 0

    @brace.network(attempts=4)
    def inner() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("dead")

    @brace.network(attempts=4)
    def outer() -> None:
        inner()

    with capture_logs() as logs, pytest.raises(ConnectionRefusedError):
        outer()
    assert calls == 4  # the inner policy's attempts, not 4 x 4
    gave_up = [(e["callable"].rsplit(".", 1)[-1], e["reason"]) for e in logs
               if e["event"] == "retry.gave_up"]
    assert gave_up == [("inner", "attempts"), ("outer", "inner_exhausted")]


def test_async_decorator_in_decorator() -> None:
    calls = 0

    @brace.network(attempts=3)
    async def inner() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("reset")

    @brace.interactive
    async def outer() -> None:
        await inner()

    with pytest.raises(ConnectionResetError):
        asyncio.run(outer())
    assert calls == 3


def test_an_exception_instance_raised_again_later_is_retried_again() -> None:
    # Mocks raise one instance over and over: a later call must not take it as given up.
    error = ConnectionError("always the same instance")
    calls = 0

    @brace.network(attempts=3)
    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise error

    for expected in (3, 6):
        with pytest.raises(ConnectionError):
            flaky()
        assert calls == expected


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_decorator_around_a_brace_client(mode: str, fault_server: FaultServer) -> None:
    fault_server.script("/down", reply(503, b"down"))
    url = fault_server.url_for("/down")

    if mode == "sync":
        @brace.http(attempts=3)
        def fetch() -> None:
            with brace.http.client(trust_env=False) as client:
                client.get(url).raise_for_status()

        with pytest.raises(httpx.HTTPStatusError):
            fetch()
    else:
        @brace.http(attempts=3)
        async def afetch() -> None:
            async with brace.http.async_client(trust_env=False) as client:
                (await client.get(url)).raise_for_status()

        with pytest.raises(httpx.HTTPStatusError):
            asyncio.run(afetch())
    assert fault_server.count("/down", "GET") == brace.http.attempts  # 4, not 3 x 4


def test_transport_under_a_decorated_function_with_a_connect_error() -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    @brace.network(attempts=5)
    def fetch() -> httpx.Response:
        with brace.http(attempts=2).client(transport=httpx.MockTransport(refuse)) as client:
            return client.get("http://api.test/")

    with pytest.raises(httpx.ConnectError) as info:
        fetch()
    assert calls == 2
    assert brace.predicates.is_exhausted(info.value)


# -- say no instead of ignoring ----------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"breaker": "say-no"}, {"fallback": None},
                                      {"breaker": "say-no", "fallback": 0}])
def test_tenacity_kwargs_and_retrying_refuse_what_they_cannot_apply(
        settings: dict[str, Any]) -> None:
    policy = brace.network(**settings)
    for build in (policy.tenacity_kwargs, policy.retrying, policy.async_retrying):
        with pytest.raises(TypeError) as info:
            build()
        for name in settings:
            assert f"{name}=" in str(info.value)
        assert "decorate the function" in str(info.value)


def test_a_users_own_stop_gives_up_with_reason_stop() -> None:
    kwargs = {**brace.network(attempts=10).tenacity_kwargs(),
              "stop": tenacity.stop_after_attempt(2)}
    calls = 0

    @tenacity.retry(sleep=lambda s: None, **kwargs)
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with capture_logs() as logs, pytest.raises(ConnectionError):
        down()
    assert calls == 2
    assert [e["reason"] for e in logs if e["event"] == "retry.gave_up"] == ["stop"]


def test_generator_functions_are_refused() -> None:
    def rows() -> Any:
        yield 1

    async def arows() -> Any:
        yield 1

    for fn in (rows, arows):
        with pytest.raises(TypeError, match="cannot retry the generator function"):
            brace.network(fn)


def test_classes_are_refused() -> None:
    class Client:
        pass

    with pytest.raises(TypeError, match=r"not the class .*Client: decorate the methods"):
        brace.network(Client)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: brace.breaker("say-no-1", reset_timeout=1e12), "reset_timeout"),
    (lambda: brace.breaker("say-no-2", redis_url=None), "redis_url"),
    (lambda: brace.breaker("say-no-3", redis_url="not a url"), "redis_url"),
    (lambda: brace.breaker("say-no-4", exclude=ValueError), "exclude="),
    (lambda: brace.network(initial=1e12, max_wait=1e12, deadline=1e13), "initial"),
    (lambda: brace.budget("say-no-5", window=5e-324), "window"),
])
def test_numbers_and_settings_that_would_break_at_call_time(build: Any, message: str,
                                                            brace_reset_breakers: None) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        build()
