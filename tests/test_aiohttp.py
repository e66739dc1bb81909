"""Policy.aiohttp_middleware() and aiohttp_session(): aiohttp requests through a policy.

The same cases as tests/test_requests.py, on asyncio, against ``tests/fault_server.py``'s
scripted HTTP server on 127.0.0.1. Backoff sleeps are skipped with
``brace.testing.no_waits()``; only the deadline tests take real time, a fraction of a
second each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pybreaker
import pytest
import tenacity

import brace
import brace.testing
from brace import _transport
from tests.conftest import Events, fields, named
from tests.fault_server import FaultServer, hang, reply, reset_before_response

Answer = tuple[int, bytes, dict[str, Any]]  # status, body, response.brace


def run(policy: brace.Policy, send: Callable[[aiohttp.ClientSession], Awaitable[Any]],
        **kwargs: Any) -> Any:
    """``send(session)`` on a fresh asyncio loop, through ``policy.aiohttp_session()``."""
    async def main() -> Any:
        async with policy.aiohttp_session(**kwargs) as session:
            return await send(session)

    return asyncio.run(main())


def get(url: str, method: str = "GET", **kwargs: Any) -> Callable[
        [aiohttp.ClientSession], Awaitable[Answer]]:
    async def send(session: aiohttp.ClientSession) -> Answer:
        async with session.request(method, url, **kwargs) as response:
            return response.status, await response.read(), response.brace  # type: ignore[attr-defined]

    return send


# ------------------------------------------------------------------ retries, one call


def test_503_503_200_is_one_call_of_three_requests(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/flaky", reply(503, b"busy"), reply(503, b"busy"), reply(200, b"done"))
    status, body, info = run(brace.http, get(fault_server.url_for("/flaky")))
    assert (status, body) == (200, b"done")
    assert fault_server.count("/flaky") == 3
    assert info["attempts"] == 3
    assert info["exhausted"] is False
    assert named(brace_events) == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]
    scheduled = fields(brace_events, "retry.scheduled")
    assert {f["callable"] for f in scheduled} == {f"GET http://127.0.0.1:{fault_server.port}"}
    assert [f["status"] for f in scheduled] == [503, 503]
    assert scheduled[0]["error"] == "result ClientResponse status 503"
    # Retried responses were read and released: their connection served the next attempt.
    assert len(set(fault_server.connection_ids("/flaky"))) == 1


def test_retries_run_out_on_a_status_the_last_response_is_returned(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/down", reply(503, b"busy"))

    async def send(session: aiohttp.ClientSession) -> bool:
        async with session.get(fault_server.url_for("/down")) as response:
            assert response.status == 503
            assert await response.read() == b"busy"
            assert response.brace == {  # type: ignore[attr-defined]
                "attempts": 3, "elapsed_s": response.brace["elapsed_s"],  # type: ignore[attr-defined]
                "exhausted": True}
            return brace.predicates.is_exhausted(response)

    assert run(brace.http(attempts=3), send) is True
    assert fault_server.count("/down") == 3
    assert [f["reason"] for f in fields(brace_events, "retry.gave_up")] == ["attempts"]


# ------------------------------------------------------------------ idempotency


def test_a_post_without_idempotency_key_is_sent_once(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/orders", reply(503), reply(200))
    status, _, _ = run(brace.http, get(fault_server.url_for("/orders"), "POST",
                                       json={"sku": 42}))
    assert status == 503
    assert fault_server.count("/orders") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["not_idempotent"]


def test_a_post_with_idempotency_key_is_retried(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/payments", reply(503), reply(200, b"paid"))
    status, body, _ = run(brace.http, get(fault_server.url_for("/payments"), "POST",
                                          json={"cents": 100},
                                          headers={"Idempotency-Key": "order-42"}))
    assert (status, body) == (200, b"paid")
    sent = fault_server.matching("/payments")
    assert len(sent) == 2
    assert sent[0].body == sent[1].body == b'{"cents": 100}'


def test_a_streamed_body_is_sent_once(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/upload", reply(503), reply(200))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def send(session: aiohttp.ClientSession) -> int:
        async with session.put(fault_server.url_for("/upload"), data=chunks()) as response:
            return response.status

    assert run(brace.http, send) == 503
    assert fault_server.count("/upload") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["streamed_body"]


def test_a_connection_lost_is_retried_for_a_get_never_for_a_post(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    # aiohttp's errors carry no request; brace gives them one, so the POST is known for
    # what it is and not sent again.
    fault_server.script("/get", reset_before_response(), reply(200, b"whole"))
    fault_server.script("/post", reset_before_response(), reply(200, b"whole"))

    async def send(session: aiohttp.ClientSession) -> None:
        async with session.get(fault_server.url_for("/get")) as response:
            assert await response.read() == b"whole"
        with pytest.raises(aiohttp.ClientError) as lost:
            await session.post(fault_server.url_for("/post"), data=b"order")
        assert lost.value.request.method == "POST"  # type: ignore[attr-defined]

    run(brace.http, send)
    assert fault_server.count("/get") == 2
    assert fault_server.count("/post") == 1


# ------------------------------------------------------------------ Retry-After


def test_retry_after_is_honoured(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/limited", reply(429, headers={"Retry-After": "1"}), reply(200))
    started = time.monotonic()
    status, _, info = run(brace.http, get(fault_server.url_for("/limited")))
    assert (status, info["attempts"]) == (200, 2)
    assert time.monotonic() - started < 1  # no_waits(): the second was skipped, not slept
    [scheduled] = fields(brace_events, "retry.scheduled")
    assert scheduled["wait_source"] == "retry_after"
    assert scheduled["wait_s"] >= 1.0
    assert scheduled["status"] == 429


# ------------------------------------------------------------------ breakers


def test_the_default_breaker_is_per_authority_and_opens(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/down", reply(503))
    url = fault_server.url_for("/down")
    calls = _transport.AUTHORITY_BREAKER["min_calls"]

    async def send(session: aiohttp.ClientSession) -> BaseException:
        for _ in range(calls):
            async with session.get(url) as response:
                assert response.status == 503
        with pytest.raises(brace.CircuitOpenError) as refused:
            await session.get(url)
        return refused.value

    refusal = run(brace.http(attempts=1), send)
    assert isinstance(refusal, aiohttp.ClientError)  # except aiohttp.ClientError sees it
    name = f"http://127.0.0.1:{fault_server.port}"  # the name the httpx transports use
    assert refusal.breaker == name  # type: ignore[attr-defined]
    assert brace.breaker(name).current_state == "open"
    assert fault_server.count("/down") == calls


def test_a_named_breaker_opens(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    brace.breaker("orders-api", fail_max=2, reset_timeout=30)
    fault_server.script("/down", reply(503))

    async def send(session: aiohttp.ClientSession) -> None:
        for _ in range(2):
            async with session.get(fault_server.url_for("/down")) as response:
                assert response.status == 503
        with pytest.raises(aiohttp.ClientError) as refused:
            await session.get(fault_server.url_for("/down"))
        assert isinstance(refused.value, pybreaker.CircuitBreakerError)

    run(brace.http(attempts=1), send, breaker="orders-api")
    assert fault_server.count("/down") == 2
    assert [f["new"] for f in fields(brace_events, "breaker.state_changed")] == ["open"]


def test_no_breaker(fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/down", reply(503))

    async def send(session: aiohttp.ClientSession) -> None:
        for _ in range(3):
            async with session.get(fault_server.url_for("/down")) as response:
                assert response.status == 503

    run(brace.http(attempts=1), send, breaker=None)
    assert f"http://127.0.0.1:{fault_server.port}" not in brace.breakers()


def test_a_rate_limit_refuses_what_the_deadline_cannot_wait_for(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    brace.rate_limit("api", per_s=0.01, burst=1)  # the next token in 100 s

    async def send(session: aiohttp.ClientSession) -> None:
        async with session.get(fault_server.url_for("/")) as response:
            assert response.status == 200
        with pytest.raises(brace.RateLimitedError) as refused:
            await session.get(fault_server.url_for("/"))
        assert isinstance(refused.value, aiohttp.ClientError)

    run(brace.http(rate_limit="api", deadline=5), send)
    assert fault_server.count("/") == 1


# ------------------------------------------------------------------ deadlines


def test_the_deadline_bounds_the_call_not_aiohttps_timeout(fault_server: FaultServer) -> None:
    fault_server.script("/slow", hang(max_s=5))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError) as cut:
        run(brace.http(deadline=0.4), get(fault_server.url_for("/slow")),
            timeout=aiohttp.ClientTimeout(total=10))
    assert 0.35 < time.monotonic() - started < 2.5
    assert isinstance(cut.value, aiohttp.ServerTimeoutError)  # and an aiohttp.ClientError
    assert "deadline of 0.4 s reached" in str(cut.value)
    assert brace.predicates.is_exhausted(cut.value)
    assert fault_server.count("/slow") == 1


def test_a_request_scoped_deadline_bounds_the_call(fault_server: FaultServer) -> None:
    fault_server.script("/slow", hang(max_s=5))

    async def send(session: aiohttp.ClientSession) -> None:
        async with brace.deadline(0.3):
            await session.get(fault_server.url_for("/slow"))

    started = time.monotonic()
    with pytest.raises(aiohttp.ServerTimeoutError):
        run(brace.http, send)  # the http preset's own deadline is 30 s
    assert 0.25 < time.monotonic() - started < 2.5


def test_attempt_timeout_bounds_each_attempt(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    # The first attempt hangs and is cut at 0.3 s; the GET is sent again and answered.
    fault_server.script("/slow", hang(max_s=5), reply(200, b"late"))
    started = time.monotonic()
    status, body, info = run(brace.http(attempt_timeout=0.3), get(fault_server.url_for("/slow")))
    assert (status, body, info["attempts"]) == (200, b"late", 2)
    assert 0.25 < time.monotonic() - started < 2.5
    assert fault_server.count("/slow") == 2


def test_a_post_cut_off_by_attempt_timeout_is_not_resent(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/orders", hang(max_s=5), reply(200))
    with pytest.raises(aiohttp.ServerTimeoutError, match=r"attempt timed out after 0\.3 s"):
        run(brace.http(attempt_timeout=0.3), get(fault_server.url_for("/orders"), "POST",
                                                   data=b"order"))
    assert fault_server.count("/orders") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["not_idempotent"]


# ------------------------------------------------------------------ one retry layer


def test_a_response_given_up_on_below_is_not_retried(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/gateway", reply(503, headers={"Brace-Exhausted": "1"}), reply(200))
    status, _, info = run(brace.http, get(fault_server.url_for("/gateway")))
    assert (status, info["attempts"], info["exhausted"]) == (503, 1, True)
    assert fault_server.count("/gateway") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.gave_up")] == ["inner_exhausted"]


def test_an_enclosing_policy_does_not_retry_what_the_middleware_gave_up_on(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/down", reply(503))

    async def send(session: aiohttp.ClientSession) -> None:
        # A result the enclosing policy would retry: the response the middleware gave up on.
        @brace.http(attempts=3, retry=tenacity.retry_if_result(lambda r: r.status >= 500))
        async def fetch() -> aiohttp.ClientResponse:
            async with session.get(fault_server.url_for("/down")) as response:
                return response

        response = await fetch()
        assert response.status == 503

    run(brace.http(attempts=2), send)
    assert fault_server.count("/down") == 2  # added, never multiplied (2 x 3)


# ------------------------------------------------------------------ set-up and bad input


def test_the_middleware_on_a_plain_session_and_per_request(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/flaky", reply(502), reply(200))
    middleware = brace.http(attempts=2).aiohttp_middleware()

    async def main() -> tuple[int, int]:
        async with aiohttp.ClientSession(middlewares=[middleware]) as session, session.get(
                fault_server.url_for("/flaky")) as first:
            pass
        fault_server.script("/flaky", reply(502), reply(200))
        async with aiohttp.ClientSession() as session, session.get(
                fault_server.url_for("/flaky"), middlewares=[middleware]) as second:
            pass
        return first.status, second.status

    assert asyncio.run(main()) == (200, 200)
    assert fault_server.count("/flaky") == 4


def test_user_middlewares_run_outside_brace(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/flaky", reply(503), reply(200))
    seen: list[int] = []

    async def outer(request: aiohttp.ClientRequest,
                    handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        response = await handler(request)
        seen.append(response.status)
        return response

    status, _, _ = run(brace.http, get(fault_server.url_for("/flaky")), middlewares=[outer])
    assert status == 200
    assert seen == [200]  # one request and its final response; brace saw both attempts
    assert fault_server.count("/flaky") == 2


@pytest.mark.parametrize(("policy", "kwargs", "message"), [
    (brace.http(attempts=3, hedge_after=0.1), {}, "hedge_after="),
    (brace.http(fallback=None), {}, "fallback="),
    (brace.http, {"breaker": 3}, "breaker="),
    (brace.http, {"timeout": 3}, "'timeout'"),
])
def test_bad_input_is_refused_when_the_middleware_is_built(
        policy: brace.Policy, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        policy.aiohttp_middleware(**kwargs)


def test_chaos_is_refused_not_ignored() -> None:
    policy = brace.http(chaos=brace.testing.chaos(fault=ConnectionError(), rate=0.5, seed=1))
    with pytest.raises(TypeError, match="chaos="):
        policy.aiohttp_middleware()


def test_a_policy_that_is_not_a_policy_is_refused() -> None:
    from brace import _aiohttp

    with pytest.raises(TypeError, match=r"policy= must be a brace\.Policy"):
        _aiohttp.aiohttp_middleware("http")  # type: ignore[arg-type]


def test_every_attempt_sends_the_deadline_left_and_its_number(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/hop", reply(503), reply(503), reply(200))
    run(brace.http(deadline=5), get(fault_server.url_for("/hop")))
    sent = [(int(r.headers["brace-deadline-ms"]), r.headers["brace-attempt"])
            for r in fault_server.requests if r.path == "/hop"]
    assert [attempt for _, attempt in sent] == ["1", "2", "3"]
    assert 0 < sent[-1][0] <= sent[0][0] <= 5000
    fault_server.script("/other", reply(200))
    run(brace.http, get(fault_server.url_for("/other")), propagate=("X-Deadline", "X-Try"))
    run(brace.http, get(fault_server.url_for("/other")), propagate=None)
    named_, silent = [r.headers for r in fault_server.requests if r.path == "/other"]
    assert "x-deadline" in named_ and named_["x-try"] == "1"
    assert not {"brace-deadline-ms", "brace-attempt", "x-try"} & set(silent)
    with pytest.raises(TypeError, match="propagate"):
        brace.http.aiohttp_middleware(propagate="Brace-Deadline-Ms")
