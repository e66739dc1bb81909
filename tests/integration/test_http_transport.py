"""The httpx retry transports against a real local HTTP server with scripted faults.

Every scenario runs with the sync ``httpx.Client`` and the ``httpx.AsyncClient`` (through
``asyncio.run``), and checks what the server saw as well as what the client got. Traffic stays
on 127.0.0.1 (the proxy test sends ``http://example.invalid/...`` to the local server acting
as the proxy). Backoff sleeps are skipped with ``brace.testing.no_waits()`` unless a test
measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gc
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits
from tests.fault_server import (
    Action,
    FaultServer,
    hang,
    reply,
    reset_before_response,
    reset_mid_body,
    slow_body,
)

MODES = ("sync", "async")
Outcome = Any  # httpx.Response or the exception a request raised
Request = tuple[str, str, dict[str, Any]]
Builder = Callable[[str], Any]  # mode -> httpx.Client | httpx.AsyncClient

mode_param = pytest.mark.parametrize("mode", MODES)


# ----------------------------------------------------------------------------- helpers


def policy_client(policy: brace.Policy, **client_kwargs: Any) -> Builder:
    """Build ``policy.client()`` / ``policy.async_client()`` (no environment proxies)."""
    client_kwargs.setdefault("trust_env", False)

    def build(mode: str) -> Any:
        factory = policy.client if mode == "sync" else policy.async_client
        return factory(**client_kwargs)

    return build


def send_all(mode: str, build: Builder, requests: list[Request]) -> list[Outcome]:
    """Send ``requests`` in order through one client; return each response or error."""
    if mode == "sync":
        outcomes: list[Outcome] = []
        with build("sync") as client:
            for method, url, kwargs in requests:
                try:
                    outcomes.append(client.request(method, url, **kwargs))
                except Exception as exc:  # the outcome under test
                    outcomes.append(exc)
        return outcomes

    async def main() -> list[Outcome]:
        results: list[Outcome] = []
        async with build("async") as client:
            for method, url, kwargs in requests:
                try:
                    results.append(await client.request(method, url, **kwargs))
                except Exception as exc:
                    results.append(exc)
        return results

    return asyncio.run(main())


def send(mode: str, policy: brace.Policy, method: str, url: str, *,
         client: dict[str, Any] | None = None, **kwargs: Any) -> Outcome:
    """One request through ``policy``'s client in ``mode``."""
    return send_all(mode, policy_client(policy, **(client or {})), [(method, url, kwargs)])[0]


def retry_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if str(e["event"]).startswith("retry.")]


def names(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in retry_events(logs)]


def ok(outcome: Outcome, status: int = 200) -> httpx.Response:
    assert isinstance(outcome, httpx.Response), f"expected a response, got {outcome!r}"
    assert outcome.status_code == status
    return outcome


@pytest.fixture
def quick() -> Iterator[None]:
    """No backoff sleeps; attempts, waits, deadlines and events stay as in production."""
    with no_waits():
        yield


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------- 1. 503 then 200


@pytest.mark.parametrize("kind", ["client", "transport"])
@mode_param
def test_503_then_200_is_one_call_two_requests(
        mode: str, kind: str, fault_server: FaultServer, quick: None) -> None:
    fault_server.script("/flaky", reply(503, b"busy"), reply(200, b"done"))
    url = fault_server.url_for("/flaky")
    policy = brace.http()
    if kind == "client":
        build = policy_client(policy)
    else:
        def build(m: str) -> Any:
            if m == "sync":
                return httpx.Client(transport=brace.RetryTransport(policy=policy, transport=None),
                                    trust_env=False)
            return httpx.AsyncClient(transport=brace.AsyncRetryTransport(policy=policy),
                                     trust_env=False)
    with capture_logs() as logs:
        [outcome] = send_all(mode, build, [("GET", url, {})])
    assert ok(outcome).content == b"done"
    assert fault_server.count("/flaky", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    scheduled, succeeded = retry_events(logs)
    assert scheduled["callable"] == f"GET {fault_server.url}"  # bounded: no path
    assert scheduled["preset"] == "http" and scheduled["attempt"] == 1
    assert scheduled["error"] == "result Response status 503"
    assert 0 <= scheduled["wait_s"] <= 0.2  # http: first backoff window is initial=0.2
    assert succeeded["attempts"] == 2 and succeeded["callable"] == f"GET {fault_server.url}"


# ----------------------------------------------------------- 2. Retry-After


@mode_param
def test_retry_after_seconds_is_the_wait(mode: str, fault_server: FaultServer,
                                         quick: None) -> None:
    fault_server.script("/limited", reply(429, headers={"Retry-After": "1"}), reply(200, b"ok"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", fault_server.url_for("/limited"))
    ok(outcome)
    assert fault_server.count("/limited", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    # The server's 1 s is a floor; above it, up to the backoff's first step of jitter.
    assert 1.0 <= retry_events(logs)[0]["wait_s"] <= 1.0 + brace.http().initial


@mode_param
def test_retry_after_http_date_is_the_wait(mode: str, fault_server: FaultServer,
                                           quick: None) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    fault_server.script("/limited", reply(429, headers={"Retry-After": when}), reply(200))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", fault_server.url_for("/limited"))
    ok(outcome)
    assert fault_server.count("/limited", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    assert 0 < retry_events(logs)[0]["wait_s"] <= 2 + brace.http().initial


@mode_param
def test_retry_after_is_the_servers_word_even_past_max_wait(mode: str,
                                                             fault_server: FaultServer) -> None:
    # No no_waits(): the server asked for 1 s and the resend must not come earlier, although
    # max_wait (which caps the backoff, not the server) is 0.1 s.
    fault_server.script("/limited", reply(429, headers={"Retry-After": "1"}), reply(200))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(initial=0.05, max_wait=0.1), "GET",
                       fault_server.url_for("/limited"))
    ok(outcome)
    first, second = fault_server.matching("/limited", "GET")
    assert second.received_at - first.received_at >= 1.0
    assert retry_events(logs)[0]["event"] == "retry.scheduled"
    assert 1.0 <= retry_events(logs)[0]["wait_s"] <= 1.05  # jitter: one step of 0.05 s


@mode_param
def test_retry_after_longer_than_the_deadline_gives_up_at_once_with_the_429(
        mode: str, fault_server: FaultServer) -> None:
    fault_server.script("/quota", reply(429, b"slow down", headers={"Retry-After": "20"}))
    started = time.monotonic()
    with capture_logs() as logs:
        outcome = send(mode, brace.http(deadline=5), "GET", fault_server.url_for("/quota"))
    assert time.monotonic() - started < 1.0
    assert ok(outcome, 429).content == b"slow down"
    assert fault_server.count("/quota", "GET") == 1
    assert [(e["event"], e["reason"]) for e in retry_events(logs)] == [
        ("retry.gave_up", "deadline")]


# ----------------------------------------------------------- 3. Retry-After > deadline


@mode_param
def test_retry_after_past_deadline_returns_the_429_at_once(
        mode: str, fault_server: FaultServer) -> None:
    # No no_waits() here: a sleep past the deadline would show in the elapsed time.
    fault_server.script("/later", reply(429, b"later", headers={"Retry-After": "60"}))
    started = time.monotonic()
    with capture_logs() as logs:
        outcome = send(mode, brace.http(deadline=2), "GET", fault_server.url_for("/later"))
    elapsed = time.monotonic() - started
    assert ok(outcome, 429).content == b"later"
    assert fault_server.count("/later", "GET") == 1
    assert names(logs) == ["retry.gave_up"]
    gave_up = retry_events(logs)[0]
    assert gave_up["reason"] == "deadline" and gave_up["attempts"] == 1
    assert elapsed < 1.0


# ----------------------------------------------------------- 4. connection resets


@mode_param
def test_reset_mid_body_then_200_is_retried_on_get(mode: str, fault_server: FaultServer,
                                                   quick: None) -> None:
    # reset_mid_body: the head promises 1000 bytes, 10 arrive, then an RST. The transport
    # reads bodies of up to 1 MiB (by Content-Length) inside the attempt, so the ReadError
    # surfaces inside the retry loop instead of in the Client's own body read.
    fault_server.script("/m", reset_mid_body(), reply(200, b"whole"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", fault_server.url_for("/m"))
    assert ok(outcome).content == b"whole"
    assert fault_server.count("/m", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]


class ResetAfterHeadersRead(Action):
    """Head promising ``length`` bytes and 10 of them; RST once the client has read the head.

    ``headers_read`` is set by the transport below brace's when the response head arrived, so
    the reset certainly happens while the client reads the body (at most 2 s later anyway).
    """

    def __init__(self, headers_read: threading.Event, length: int = 1000) -> None:
        self.headers_read = headers_read
        self.length = length

    def run(self, handler: Any) -> None:
        head = handler.head_bytes(200, {"Content-Length": str(self.length)})
        handler.send_raw(head + b"x" * 10)
        deadline = time.monotonic() + 2.0
        while not self.headers_read.is_set() and time.monotonic() < deadline:
            if handler.fault_server.stopping.wait(0.005):
                break
        handler.abort_with_rst()


class _Signal(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, event: threading.Event) -> None:
        self.inner, self.event = inner, event

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.event.set()
        return response

    def close(self) -> None:
        self.inner.close()


class _AsyncSignal(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, event: threading.Event) -> None:
        self.inner, self.event = inner, event

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.event.set()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@mode_param
def test_reset_after_headers_mid_body_is_retried_on_get(
        mode: str, fault_server: FaultServer, quick: None) -> None:
    # DESIGN: a connection reset mid-response is transient, and a GET may be resent. Here the
    # client has the head when the RST comes, so the error surfaces while the body is read.
    headers_read = threading.Event()
    fault_server.script("/m", ResetAfterHeadersRead(headers_read), reply(200, b"whole"))
    policy = brace.http()

    def build(m: str) -> Any:
        if m == "sync":
            inner = _Signal(httpx.HTTPTransport(), headers_read)
            return httpx.Client(transport=brace.RetryTransport(policy, inner), trust_env=False)
        ainner = _AsyncSignal(httpx.AsyncHTTPTransport(), headers_read)
        return httpx.AsyncClient(transport=brace.AsyncRetryTransport(policy, ainner),
                                 trust_env=False)

    with capture_logs() as logs:
        [outcome] = send_all(mode, build, [("GET", fault_server.url_for("/m"), {})])
    assert headers_read.is_set()
    assert isinstance(outcome, httpx.Response), (
        f"a reset while reading the body of a GET was not retried: {outcome!r} "
        f"(server saw {fault_server.count('/m')} request(s))")
    assert outcome.content == b"whole"
    assert fault_server.count("/m", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]


@mode_param
def test_reset_mid_body_beyond_buffer_limit_is_the_callers(
        mode: str, fault_server: FaultServer, quick: None) -> None:
    # Documented limit (README "Bodies and connections"): a body over 1 MiB streams to the
    # caller, so an error while reading it is not retried (and the GET is sent once).
    headers_read = threading.Event()
    big = 2 * 1024 * 1024
    fault_server.script("/big", ResetAfterHeadersRead(headers_read, big), reply(200, b"whole"))
    policy = brace.http()

    def build(m: str) -> Any:
        if m == "sync":
            inner = _Signal(httpx.HTTPTransport(), headers_read)
            return httpx.Client(transport=brace.RetryTransport(policy, inner), trust_env=False)
        ainner = _AsyncSignal(httpx.AsyncHTTPTransport(), headers_read)
        return httpx.AsyncClient(transport=brace.AsyncRetryTransport(policy, ainner),
                                 trust_env=False)

    with capture_logs() as logs:
        [outcome] = send_all(mode, build, [("GET", fault_server.url_for("/big"), {})])
    assert isinstance(outcome, (httpx.ReadError, httpx.RemoteProtocolError)), outcome
    assert fault_server.count("/big", "GET") == 1
    assert names(logs) == []


@mode_param
def test_reset_before_response_then_200_is_retried_on_get(
        mode: str, fault_server: FaultServer, quick: None) -> None:
    fault_server.script("/r", reset_before_response(), reply(200, b"fine"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", fault_server.url_for("/r"))
    assert ok(outcome).content == b"fine"
    assert fault_server.count("/r", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]


# ----------------------------------------------------------- 5. accept-then-hang


TIMEOUT_VIA = {
    "attempt_timeout": (brace.http(attempt_timeout=0.2, attempts=2), {}),
    "client_timeout": (brace.http(attempts=2), {"timeout": 0.2}),
}


@pytest.mark.parametrize("via", sorted(TIMEOUT_VIA))
@mode_param
def test_hang_times_out_each_attempt(mode: str, via: str, fault_server: FaultServer,
                                     quick: None) -> None:
    policy, client_kwargs = TIMEOUT_VIA[via]
    fault_server.script("/hang", hang(max_s=3))
    started = time.monotonic()
    with capture_logs() as logs:
        outcome = send(mode, policy, "GET", fault_server.url_for("/hang"), client=client_kwargs)
    elapsed = time.monotonic() - started
    assert isinstance(outcome, httpx.ReadTimeout), outcome
    assert fault_server.count("/hang", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.gave_up"]
    assert retry_events(logs)[-1]["reason"] == "attempts"
    assert elapsed < 3.0


@pytest.mark.parametrize("via", sorted(TIMEOUT_VIA))
@mode_param
def test_hang_then_200_succeeds(mode: str, via: str, fault_server: FaultServer,
                                quick: None) -> None:
    policy, client_kwargs = TIMEOUT_VIA[via]
    fault_server.script("/hang", hang(max_s=3), reply(200, b"late but fine"))
    started = time.monotonic()
    with capture_logs() as logs:
        outcome = send(mode, policy, "GET", fault_server.url_for("/hang"), client=client_kwargs)
    assert ok(outcome).content == b"late but fine"
    assert fault_server.count("/hang", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    assert time.monotonic() - started < 3.0


# ----------------------------------------------------------- 6. slow body


@mode_param
def test_slow_body_within_timeout_is_one_request(mode: str, fault_server: FaultServer,
                                                 quick: None) -> None:
    action = slow_body(chunks=4, delay_s=0.05)
    fault_server.script("/slow", action)
    with capture_logs() as logs:
        outcome = send(mode, brace.http(attempt_timeout=1.0), "GET",
                       fault_server.url_for("/slow"))
    assert ok(outcome).content == action.full_body
    assert fault_server.count("/slow", "GET") == 1
    assert names(logs) == []


# ----------------------------------------------------------- 7. 4xx


@pytest.mark.parametrize("status", [400, 401, 404])
@mode_param
def test_client_errors_are_not_retried(mode: str, status: int, fault_server: FaultServer,
                                       quick: None) -> None:
    fault_server.script("/no", reply(status, b"no"), reply(200, b"would be wrong"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", fault_server.url_for("/no"))
    assert ok(outcome, status).content == b"no"
    assert fault_server.count("/no", "GET") == 1
    assert names(logs) == []


# ----------------------------------------------------------- 8. POST idempotency


POST_FAULTS: dict[str, Callable[[], Action]] = {
    "503": lambda: reply(503, b"busy"),
    "reset_before_response": reset_before_response,
    "reset_mid_body": reset_mid_body,
}


@pytest.mark.parametrize("fault", sorted(POST_FAULTS))
@mode_param
def test_post_without_idempotency_key_is_sent_once(
        mode: str, fault: str, fault_server: FaultServer, quick: None) -> None:
    fault_server.script("/orders", POST_FAULTS[fault](), reply(201, b"created"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "POST", fault_server.url_for("/orders"),
                       json={"item": 1})
    if fault == "503":
        ok(outcome, 503)
    else:
        assert isinstance(outcome, httpx.TransportError), outcome
    assert fault_server.count("/orders", "POST") == 1  # zero duplicate POSTs
    assert "retry.scheduled" not in names(logs)


@mode_param
def test_post_with_idempotency_key_is_retried(mode: str, fault_server: FaultServer,
                                              quick: None) -> None:
    fault_server.script("/orders", reply(503), reply(503), reply(201, b"created"))
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "POST", fault_server.url_for("/orders"),
                       json={"item": 1}, headers={"Idempotency-Key": "order-42"})
    assert ok(outcome, 201).content == b"created"
    assert fault_server.count("/orders", "POST") == 3
    seen = fault_server.matching("/orders", "POST")
    assert {r.headers["idempotency-key"] for r in seen} == {"order-42"}
    assert {r.body for r in seen} == {b'{"item":1}'}
    assert names(logs) == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]


@mode_param
def test_llm_client_resends_post_on_529(mode: str, fault_server: FaultServer,
                                        quick: None) -> None:
    fault_server.script("/v1/messages", reply(529, b"overloaded"), reply(200, b"{}"))
    build = policy_client(brace.llm)
    with capture_logs() as logs:
        [outcome] = send_all(mode, build, [("POST", fault_server.url_for("/v1/messages"),
                                            {"json": {"prompt": "hi"}})])
    ok(outcome)
    assert fault_server.count("/v1/messages", "POST") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    assert retry_events(logs)[0]["preset"] == "llm"
    assert retry_events(logs)[0]["error"] == "result Response status 529"


# ----------------------------------------------------------- 9. connect refused


@mode_param
def test_post_to_refused_port_is_retried(mode: str, fault_server: FaultServer,
                                         quick: None) -> None:
    url = f"http://127.0.0.1:{refused_port()}/submit"
    with capture_logs() as logs:
        outcome = send(mode, brace.http(attempts=3), "POST", url, json={"a": 1})
    assert isinstance(outcome, httpx.ConnectError), outcome
    # Nothing was sent, so the POST was safe to retry: every attempt was made.
    assert names(logs) == ["retry.scheduled", "retry.scheduled", "retry.gave_up"]
    gave_up = retry_events(logs)[-1]
    assert gave_up["attempts"] == 3 and gave_up["reason"] == "attempts"
    origin = url.rsplit("/", 1)[0]  # bounded: method, scheme, host and port only
    assert all(e["callable"] == f"POST {origin}" for e in retry_events(logs))
    assert fault_server.count() == 0  # and nothing went anywhere else


# ----------------------------------------------------------- 10. streamed upload


def _chunks() -> Iterator[bytes]:
    yield b"part-1;"
    yield b"part-2"


async def _achunks() -> AsyncIterator[bytes]:
    yield b"part-1;"
    yield b"part-2"


@mode_param
def test_streamed_upload_is_sent_once(mode: str, fault_server: FaultServer,
                                      quick: None) -> None:
    fault_server.script("/upload", reply(503, b"busy"), reply(201))
    body = _chunks() if mode == "sync" else _achunks()
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "POST", fault_server.url_for("/upload"),
                       content=body, headers={"Idempotency-Key": "up-1"})
    assert ok(outcome, 503).content == b"busy"
    [seen] = fault_server.matching("/upload", "POST")
    assert seen.chunked and seen.body == b"part-1;part-2"
    # The 503 would have been retried: the log says why it was not.
    assert [(e["event"], e["reason"], e["status"]) for e in logs] == [
        ("retry.skipped", "streamed_body", 503)]


@mode_param
def test_a_streamed_body_does_not_pass_an_open_breaker(mode: str,
                                                      fault_server: FaultServer) -> None:
    brace.breaker("stream-open", fail_max=1, reset_timeout=60)
    brace.breaker("stream-open").open()
    body = _chunks() if mode == "sync" else _achunks()
    outcome = send(mode, brace.http(breaker="stream-open"), "POST",
                   fault_server.url_for("/upload"), content=body)
    assert isinstance(outcome, brace.CircuitOpenError) and isinstance(outcome, httpx.HTTPError)
    assert fault_server.count("/upload", "POST") == 0


@mode_param
def test_a_streamed_body_waits_its_turn_at_a_full_bulkhead(mode: str,
                                                          fault_server: FaultServer) -> None:
    slots = brace.bulkhead("stream-full", max_concurrent=1, queue_timeout=0.05)
    assert slots.try_acquire()  # another request holds the only slot
    try:
        body = _chunks() if mode == "sync" else _achunks()
        outcome = send(mode, brace.http(bulkhead="stream-full"), "POST",
                       fault_server.url_for("/upload"), content=body)
    finally:
        slots.release()
    assert isinstance(outcome, brace.BulkheadFullError)
    assert fault_server.count("/upload", "POST") == 0


@mode_param
def test_a_streamed_body_to_a_silent_server_ends_at_the_deadline(
        mode: str, fault_server: FaultServer) -> None:
    fault_server.script("/upload", hang(max_s=10))
    body = _chunks() if mode == "sync" else _achunks()
    started = time.monotonic()
    outcome = send(mode, brace.http(deadline=0.5), "POST", fault_server.url_for("/upload"),
                   content=body, client={"timeout": 30})
    elapsed = time.monotonic() - started
    assert isinstance(outcome, httpx.TimeoutException)
    assert 0.45 <= elapsed < 2.0  # not httpx's 30 s read timeout
    assert fault_server.count("/upload", "POST") == 1  # sent once, never resent


@mode_param
def test_a_trickling_response_body_ends_at_the_deadline(mode: str,
                                                        fault_server: FaultServer) -> None:
    # 30 bytes, one every 0.1 s: each read answers well within httpx's read timeout.
    fault_server.script("/trickle", slow_body(chunks=30, delay_s=0.1, body=b"x" * 30))
    started = time.monotonic()
    outcome = send(mode, brace.http(deadline=1, attempts=1), "GET",
                   fault_server.url_for("/trickle"), client={"timeout": 30})
    elapsed = time.monotonic() - started
    assert isinstance(outcome, httpx.TimeoutException), outcome
    assert 0.95 <= elapsed < 1.6  # the deadline plus at most one read (was 3.1 s)


# ----------------------------------------------------------- 11. pool reuse


@mode_param
def test_retried_responses_free_their_pooled_connection(
        mode: str, fault_server: FaultServer, quick: None) -> None:
    fault_server.script("/pool", reply(503, b"busy"), reply(503, b"busy"), reply(200, b"done"))
    build = policy_client(brace.http(), limits=httpx.Limits(max_connections=1),
                          timeout=httpx.Timeout(2.0, pool=1.0))
    started = time.monotonic()
    [outcome] = send_all(mode, build, [("GET", fault_server.url_for("/pool"), {})])
    assert ok(outcome).content == b"done"
    assert fault_server.count("/pool", "GET") == 3
    assert set(fault_server.connection_ids("/pool")) == {1}  # drained: the connection is reused
    assert time.monotonic() - started < 1.0


# ----------------------------------------------------------- 12. proxy


@mode_param
def test_proxied_requests_are_retried(mode: str, fault_server: FaultServer,
                                      quick: None) -> None:
    fault_server.script("/p", reply(503), reply(200, b"via proxy"))
    build = policy_client(brace.http(), proxy=fault_server.url)
    with capture_logs() as logs:
        [outcome] = send_all(mode, build, [("GET", "http://example.invalid/p", {})])
    assert ok(outcome).content == b"via proxy"
    seen = fault_server.matching("/p", "GET")
    assert len(seen) == 2
    assert all(r.absolute_form and r.host == "example.invalid" for r in seen)
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    assert retry_events(logs)[0]["callable"] == "GET http://example.invalid"


@mode_param
def test_client_keeps_environment_proxies(mode: str, fault_server: FaultServer, quick: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx reads HTTP_PROXY only when it builds the transports itself: brace lets it, then
    # wraps what it built (the one read of httpx internals, brace._transport).
    monkeypatch.setenv("HTTP_PROXY", fault_server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fault_server.script("/env", reply(503), reply(200, b"via env proxy"))
    build = policy_client(brace.http(), trust_env=True)
    [outcome] = send_all(mode, build, [("GET", "http://example.invalid/env", {})])
    assert ok(outcome).content == b"via env proxy"
    seen = fault_server.matching("/env", "GET")
    assert len(seen) == 2  # retried through the proxy
    assert all(r.absolute_form and r.host == "example.invalid" for r in seen)


# ----------------------------------------------------------- 13. secrets


@mode_param
def test_events_never_contain_secrets(mode: str, fault_server: FaultServer,
                                      quick: None) -> None:
    fault_server.script("/x", reply(503), reply(200))
    url = f"http://user:s3cret@127.0.0.1:{fault_server.port}/x?token=abc&api_key=k&page=2"
    with capture_logs() as logs:
        outcome = send(mode, brace.http(), "GET", url,
                       headers={"Authorization": "Bearer sekrit-token"})
    ok(outcome)
    assert fault_server.count("/x", "GET") == 2
    assert names(logs) == ["retry.scheduled", "retry.succeeded"]
    text = repr(logs)
    for secret in ("s3cret", "token=abc", "api_key=k", "sekrit-token",
                   "dXNlcjpzM2NyZXQ="):  # the last: base64 of user:s3cret (Basic auth)
        assert secret not in text, secret
    for event in retry_events(logs):
        assert event["callable"] == f"GET http://127.0.0.1:{fault_server.port}"


# ----------------------------------------------------------- 14. breakers


@mode_param
def test_breaker_trips_on_503s_and_then_rejects(
        mode: str, fault_server: FaultServer, brace_reset_breakers: None, quick: None) -> None:
    brace.breaker("svc", fail_max=2)
    fault_server.script("/svc", reply(503, b"down"))
    url = fault_server.url_for("/svc")
    build = policy_client(brace.http(attempts=1, breaker="svc"))
    with capture_logs() as logs:
        first, second, third = send_all(mode, build, [("GET", url, {})] * 3)
    # The call whose failure trips the breaker returns its own 503, not a breaker error.
    assert ok(first, 503).content == b"down"
    assert ok(second, 503).content == b"down"
    assert isinstance(third, brace.CircuitOpenError), third
    assert fault_server.count("/svc", "GET") == 2  # the third never reached the server
    assert brace.breakers()["svc"].state == "open"
    assert [e["event"] for e in logs if e["event"] == "breaker.rejected"] == [
        "breaker.rejected"]
    assert "retry.scheduled" not in names(logs)


@mode_param
def test_every_authority_gets_its_own_breaker_by_default(
        mode: str, fault_server: FaultServer, brace_reset_breakers: None, quick: None) -> None:
    [outcome] = send_all(mode, policy_client(brace.http()),
                         [("GET", fault_server.url_for("/hello"), {})])
    assert ok(outcome).content == b"ok"
    name = f"http://127.0.0.1:{fault_server.port}"
    info = brace.breakers()[name]
    assert info.state == "closed"
    # Polly's standard handler's settings: naming them again is the same breaker (other
    # settings would be refused as a conflict).
    brace.breaker(name, failure_ratio=0.1, min_calls=100, window=30, reset_timeout=5,
                  fail_max=1_000_000)
    with pytest.raises(ValueError, match="already exists"):
        brace.breaker(name, failure_ratio=0.5)


@mode_param
def test_a_failing_authority_opens_its_breaker_and_another_is_unaffected(
        mode: str, fault_server: FaultServer, brace_reset_breakers: None, quick: None) -> None:
    refused = f"http://127.0.0.1:{refused_port()}/down"
    requests: list[Request] = [("GET", refused, {}) for _ in range(110)]
    requests.append(("GET", fault_server.url_for("/hello"), {}))
    outcomes = send_all(mode, policy_client(brace.http(attempts=1)), requests)
    assert isinstance(outcomes[-2], brace.CircuitOpenError)  # the ratio opened it
    assert sum(isinstance(o, brace.CircuitOpenError) for o in outcomes[:-1]) >= 5
    assert ok(outcomes[-1]).content == b"ok"  # the healthy host answers through the client
    down = refused.rsplit("/", 1)[0]
    assert brace.breakers()[down].state == "open"
    assert brace.breakers()[f"http://127.0.0.1:{fault_server.port}"].state == "closed"


@mode_param
@pytest.mark.parametrize("breaker", [None, "svc"])
def test_an_explicit_breaker_replaces_the_per_authority_ones(
        mode: str, breaker: str | None, fault_server: FaultServer,
        brace_reset_breakers: None, quick: None) -> None:
    [outcome] = send_all(mode, policy_client(brace.http(), breaker=breaker),
                         [("GET", fault_server.url_for("/hello"), {})])
    assert ok(outcome).content == b"ok"
    assert list(brace.breakers()) == ([] if breaker is None else ["svc"])
    # So does a breaker named on the policy.
    [outcome] = send_all(mode, policy_client(brace.http(breaker="on-policy")),
                         [("GET", fault_server.url_for("/hello"), {})])
    assert "on-policy" in brace.breakers()
    assert not [name for name in brace.breakers() if name.startswith("http://")]


# ----------------------------------------------------------- 16. deadline under concurrency


def test_async_deadline_holds_under_concurrency_next_to_plain_httpx(
        fault_server: FaultServer) -> None:
    """100 concurrent requests to a server that never answers, with a 0.5 s deadline: the
    worst one ends within 50 ms of plain httpx's own worst overrun with timeout=0.5."""
    fault_server.script("/hang", hang(max_s=3))
    url = fault_server.url_for("/hang")
    limits = httpx.Limits(max_connections=200)

    async def overruns(client: httpx.AsyncClient) -> float:
        async def one() -> float:
            started = time.monotonic()
            with contextlib.suppress(httpx.TimeoutException):
                await client.get(url)
            return time.monotonic() - started - 0.5

        async with client:
            return max(await asyncio.gather(*(one() for _ in range(100))))

    # Timing, not heap scanning: the objects earlier tests left must not be collected here.
    gc.collect()
    gc.freeze()
    pairs = []
    try:
        # Up to 3 pairs of runs: a loaded machine may stall one run of a pair (the other
        # test workers), never every pair; an overrun of brace's own shows in each.
        for _ in range(3):
            plain = asyncio.run(overruns(httpx.AsyncClient(timeout=0.5, limits=limits,
                                                           trust_env=False)))
            braced = asyncio.run(overruns(brace.http(deadline=0.5).async_client(
                timeout=5, limits=limits, trust_env=False)))
            assert braced >= 0  # the deadline is a deadline, not earlier
            pairs.append((braced, plain))
            if braced <= plain + 0.05:
                break
    finally:
        gc.unfreeze()
    assert any(braced <= plain + 0.05 for braced, plain in pairs), pairs
