"""Hedged requests through brace's async httpx client against a real local HTTP server.

The server's first answer to a path hangs; the hedge (a second request, after
``hedge_after``) is answered at once. The server tells when the client of the hung request
went away, which is how these tests see that the losing request was cancelled. Every test
runs under asyncio and trio (httpx's async client runs on both through anyio).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

import brace
from brace.testing import reset_breakers
from tests.fault_server import FaultServer, hang, reply, slow_body

RUNNERS: dict[str, Callable[[Callable[[], Awaitable[Any]]], Any]] = {
    "asyncio": lambda main: asyncio.run(main()),
    "trio": trio.run,
}
runners = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))

HEDGE_AFTER = 0.1


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def observer(event: str, fields: dict[str, Any]) -> None:
        seen.append((event, fields))

    brace.observe(observer)
    reset_breakers()
    yield seen
    brace.unobserve(observer)
    reset_breakers()


def _send(run: Callable[..., Any], policy: brace.Policy, method: str, url: str,
          **kwargs: Any) -> tuple[httpx.Response | BaseException, float, float]:
    """Send one request; return its outcome, how long it took, and when it ended."""
    async def main() -> tuple[httpx.Response | BaseException, float, float]:
        async with policy.async_client(trust_env=False) as client:
            started = time.monotonic()
            try:
                outcome: httpx.Response | BaseException = await client.request(
                    method, url, **kwargs)
            except Exception as error:  # the test asserts on it
                outcome = error
            ended = time.monotonic()
            return outcome, ended - started, ended

    return run(main)  # type: ignore[no-any-return]


@runners
def test_a_hung_get_is_answered_by_the_hedge_and_the_hung_request_cancelled(
        run: Callable[..., Any], fault_server: FaultServer,
        events: list[tuple[str, dict[str, Any]]]) -> None:
    fault_server.script("/profile", hang(max_s=5), reply(200, b"from the hedge"))
    policy = brace.http(hedge_after=HEDGE_AFTER)
    response, elapsed, ended = _send(run, policy, "GET", fault_server.url_for("/profile"))
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.text == "from the hedge"
    assert HEDGE_AFTER <= elapsed < HEDGE_AFTER + 0.1
    assert response.extensions["brace"]["attempts"] == 2
    assert fault_server.count("/profile") == 2
    # The hung request's connection was closed by the client, right after the hedge won.
    (abandoned, gone_at), = fault_server.wait_for_abandoned(1, timeout=1.0)
    assert abandoned == fault_server.requests[0]
    assert gone_at - ended < 0.5
    hedges = [fields for event, fields in events if event == "hedge.started"]
    assert [(h["callable"], h["attempt"]) for h in hedges] == [
        (f"GET http://127.0.0.1:{fault_server.port}", 2)]


@runners
def test_a_post_without_a_key_is_sent_exactly_once(
        run: Callable[..., Any], fault_server: FaultServer,
        events: list[tuple[str, dict[str, Any]]]) -> None:
    # The server holds the POST for 0.3 s, then drops it: no hedge, and no retry either.
    fault_server.script("/orders", hang(max_s=0.3), reply(201, b"created"))
    policy = brace.http(hedge_after=HEDGE_AFTER)
    outcome, elapsed, _ = _send(run, policy, "POST", fault_server.url_for("/orders"),
                                json={"item": 1})
    assert isinstance(outcome, httpx.RemoteProtocolError)
    assert elapsed >= 0.3
    assert fault_server.count("/orders", method="POST") == 1
    assert not [event for event, _ in events if event == "hedge.started"]


@runners
def test_a_post_with_an_idempotency_key_is_hedged(
        run: Callable[..., Any], fault_server: FaultServer) -> None:
    fault_server.script("/orders", hang(max_s=5), reply(201, b"created"))
    policy = brace.http(hedge_after=HEDGE_AFTER)
    response, elapsed, _ = _send(run, policy, "POST", fault_server.url_for("/orders"),
                                 json={"item": 1}, headers={"Idempotency-Key": "order-1"})
    assert isinstance(response, httpx.Response) and response.status_code == 201
    assert elapsed < HEDGE_AFTER + 0.1
    sent = fault_server.matching("/orders", method="POST")
    assert [r.headers["idempotency-key"] for r in sent] == ["order-1", "order-1"]
    assert [r.body for r in sent] == [b'{"item":1}'] * 2


@runners
def test_hedges_count_in_the_breaker(run: Callable[..., Any], fault_server: FaultServer,
                                     events: list[tuple[str, dict[str, Any]]]) -> None:
    # The first request answers 503 after 0.2 s; its hedge answers 503 at once: one call,
    # two failures, and a breaker with fail_max=2 opens.
    brace.breaker("profiles", fail_max=2, reset_timeout=60)
    fault_server.script("/profile", slow_body(chunks=2, delay_s=0.1, status=503), reply(503))
    policy = brace.http(hedge_after=HEDGE_AFTER / 2, attempts=2, breaker="profiles")
    response, _, _ = _send(run, policy, "GET", fault_server.url_for("/profile"))
    assert isinstance(response, httpx.Response) and response.status_code == 503
    assert response.extensions["brace"] == {**response.extensions["brace"], "attempts": 2,
                                            "exhausted": True}
    assert fault_server.count("/profile") == 2
    assert brace.breakers()["profiles"].state == "open"
    opened = [fields for event, fields in events if event == "breaker.state_changed"
              and fields["new"] == "open"]
    assert len(opened) == 1
    outcome, _, _ = _send(run, policy, "GET", fault_server.url_for("/profile"))
    assert isinstance(outcome, brace.CircuitOpenError)
    assert fault_server.count("/profile") == 2  # the open breaker sent nothing
