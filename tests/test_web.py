"""brace.web: inbound deadlines (Brace-Deadline-Ms, Envoy's, gRPC's) and Brace-Exhausted.

The middleware runs under real servers on 127.0.0.1: the ASGI one under uvicorn, the WSGI
one under wsgiref, each started by a fixture in a thread and stopped after the test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import uvicorn

import brace
from brace import web
from brace.testing import no_waits


@pytest.fixture(autouse=True)
def _reported_afresh() -> Iterator[None]:
    web._reported.clear()  # malformed headers are reported once per process: per test here
    yield
    web._reported.clear()


@contextlib.contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a thread; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # bounded: uvicorn says when it listens
            if server.started:
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """``app`` under wsgiref on 127.0.0.1 in a thread; its base URL."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


# --- the headers ------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Brace-Deadline-Ms": "1500"}, 1.5),
    ({"brace-deadline-ms": " 250 "}, 0.25),
    ({"x-envoy-expected-rq-timeout-ms": "2000"}, 2.0),
    ({"grpc-timeout": "2S"}, 2.0),
    ({"grpc-timeout": "250m"}, 0.25),
    ({"grpc-timeout": "1M"}, 60.0),
    ({"grpc-timeout": "1H"}, 3600.0),
    ({"grpc-timeout": "5000u"}, 0.005),
    ({"grpc-timeout": "7000000n"}, 0.007),
    ({"Brace-Deadline-Ms": "900", "grpc-timeout": "2S"}, 0.9),  # the tightest wins
    ({"Brace-Deadline-Ms": "999999999999"}, 1e7),  # capped at brace's longest duration
    ({}, None),
])
def test_inbound_deadlines(headers: dict[str, str], seconds: float | None) -> None:
    found = web.inbound_deadline(headers.items())
    assert found == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(("remaining", "attempt", "sent"), [
    (29.9, 1, ("29900", "1")),
    (0.0004, 2, ("0", "2")),  # under a millisecond left: whole ms, rounded down
    (-3.0, 15, ("0", "15")),  # past the deadline: 0, never negative
    (1e15, 16, ("999999999999", "16")),  # at most 12 digits, as brace.web reads them
    (5.0, 1234, ("5000", "1234")),
])
def test_outbound_headers(remaining: float, attempt: int, sent: tuple[str, str]) -> None:
    names = ("Brace-Deadline-Ms", "Brace-Attempt")
    assert web.outbound(remaining, attempt, names) == tuple(zip(names, sent, strict=True))
    # What one service sends, the next one reads back.
    assert web.inbound_deadline(web.outbound(remaining, attempt, names)) == pytest.approx(
        max(int(remaining * 1000), 0) / 1000 if remaining < 1e7 else 1e7)


@pytest.mark.parametrize(("name", "value"), [
    ("Brace-Deadline-Ms", "1.5"), ("Brace-Deadline-Ms", "-5"), ("Brace-Deadline-Ms", "1e3"),
    ("Brace-Deadline-Ms", "\u0665"), ("Brace-Deadline-Ms", ""), ("Brace-Deadline-Ms", "9" * 13),
    ("x-envoy-expected-rq-timeout-ms", "soon"), ("grpc-timeout", "2s"),
    ("grpc-timeout", "123456789S"), ("grpc-timeout", "S"), ("grpc-timeout", "1.5S"),
])
def test_a_malformed_header_is_ignored_and_reported_once(name: str, value: str) -> None:
    seen: list[dict[str, Any]] = []
    observer = brace.observe(lambda event, fields: seen.append(fields)
                             if event == "deadline.malformed" else None)
    try:
        assert web.inbound_deadline([(name, value)]) is None
        assert web.inbound_deadline([(name, value)]) is None
    finally:
        brace.unobserve(observer)
    assert seen == [{"header": name.lower(), "value": value}]


def test_bad_apps_are_refused() -> None:
    with pytest.raises(TypeError, match="app"):
        web.ASGIMiddleware("app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="app"):
        web.WSGIMiddleware(None)  # type: ignore[arg-type]


# --- under real servers -------------------------------------------------------------------

@brace.network(attempts=2, initial=0, max_wait=0)
def failing_dependency() -> None:
    raise ConnectionError("refused")


def _answer(path: str) -> tuple[int, str]:
    # What both test apps do: report the scope, or fail after a policy gave up (or not).
    if path == "/remaining":
        left = brace.remaining()
        return 200, "none" if left is None else f"{left:.3f}"
    if path == "/gave-up":
        with no_waits():
            try:
                failing_dependency()
            except ConnectionError:
                return 503, "dependency down"
    return 503, "plain failure"  # a 503 of the app's own: no policy gave up


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    status, body = _answer(scope["path"])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    status, body = _answer(environ["PATH_INFO"])
    start_response(f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                   [("Content-Type", "text/plain")])
    return [body.encode()]


SERVERS = {"asgi": lambda: asgi_server(web.ASGIMiddleware(asgi_app)),
           "wsgi": lambda: wsgi_server(web.WSGIMiddleware(wsgi_app))}


@pytest.mark.parametrize("kind", list(SERVERS))
def test_the_inbound_deadline_is_the_handlers_scope(kind: str) -> None:
    with SERVERS[kind]() as url:
        answers = {
            header: httpx.get(f"{url}/remaining", headers=dict([header]) if header else {})
            for header in [("Brace-Deadline-Ms", "1500"), ("grpc-timeout", "2S"),
                           ("x-envoy-expected-rq-timeout-ms", "800"),
                           ("Brace-Deadline-Ms", "soon"), None]}
    assert {header: response.status_code for header, response in answers.items()} == \
        dict.fromkeys(answers, 200)  # malformed: no 500
    left = {header: response.text for header, response in answers.items()}
    assert 1.0 < float(left[("Brace-Deadline-Ms", "1500")]) <= 1.5
    assert 1.5 < float(left[("grpc-timeout", "2S")]) <= 2.0
    assert 0.3 < float(left[("x-envoy-expected-rq-timeout-ms", "800")]) <= 0.8
    assert left[("Brace-Deadline-Ms", "soon")] == left[None] == "none"


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_failure_after_a_give_up_is_marked_exhausted(kind: str) -> None:
    with SERVERS[kind]() as url:
        gave_up = httpx.get(f"{url}/gave-up")
        plain = httpx.get(f"{url}/plain")
    assert gave_up.status_code == 503 and gave_up.headers.get("brace-exhausted") == "1"
    assert plain.status_code == 503 and "brace-exhausted" not in plain.headers


def test_a_brace_client_never_retries_a_response_marked_exhausted() -> None:
    seen: list[dict[str, Any]] = []
    # The client's own give-ups (the server's policy reports its own in this process too).
    observer = brace.observe(lambda event, fields: seen.append(fields) if
                             event == "retry.gave_up" and fields["preset"] == "http" else None)
    try:
        with SERVERS["asgi"]() as url, no_waits(), \
                brace.http(attempts=4).client() as client:
            marked = client.get(f"{url}/gave-up")
            plain = client.get(f"{url}/plain")
    finally:
        brace.unobserve(observer)
    assert marked.extensions["brace"]["attempts"] == 1  # given up on downstream: not again
    assert plain.extensions["brace"]["attempts"] == 4
    assert [fields["reason"] for fields in seen] == ["inner_exhausted", "attempts"]


# --- a chain of four services ------------------------------------------------------------

# One TLS context for every client here: building one per client (certifi's bundle) takes
# longer than the deadlines these tests measure.
_TLS = ssl.create_default_context()


class Hop:
    """One service of a chain: calls ``downstream`` through a brace client, or is the leaf.

    Records when each request it handled began and ended (``time.monotonic``).
    """

    def __init__(self, downstream: str | None, leaf: str = "503") -> None:
        self.downstream = downstream
        self.leaf = leaf
        self.requests = 0
        self.spans: list[tuple[float, float]] = []
        self.headers: list[dict[str, str]] = []
        policy = brace.http(attempts=4, initial=0.01, max_wait=0.02, deadline=30)
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.requests += 1
        started = time.monotonic()
        self.headers.append({name.decode(): value.decode() for name, value in scope["headers"]})
        try:
            status = await self._work()
        finally:
            self.spans.append((started, time.monotonic()))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def _work(self) -> int:
        if self.downstream is None:
            if self.leaf == "hang":
                await _hang()  # @brace.network(deadline=30): cut by the inbound deadline
            return 503
        async with self.policy.async_client(verify=_TLS) as client:
            try:
                response = await client.get(self.downstream)
            except (TimeoutError, httpx.TimeoutException):
                return 504
        return 503 if response.status_code >= 500 else 200


@brace.network(deadline=30)
async def _hang() -> None:
    import asyncio

    await asyncio.Event().wait()


@contextlib.contextmanager
def chain(leaf: str) -> Iterator[tuple[str, list[Hop]]]:
    """Four services, A -> B -> C -> D, each under brace.web; A's URL and the hops."""
    hops: list[Hop] = []
    with contextlib.ExitStack() as stack:
        url = None
        for _ in range(4):
            hop = Hop(url, leaf)
            url = stack.enter_context(asgi_server(web.ASGIMiddleware(hop)))
            hops.insert(0, hop)
        assert url is not None
        yield url, hops


def test_a_chain_of_four_services_retries_at_one_layer() -> None:
    with chain("503") as (url, hops):
        answer = httpx.get(url, timeout=30, verify=_TLS)
    assert answer.status_code == 503 and answer.headers.get("brace-exhausted") == "1"
    # The hop above the leaf retried it (4 attempts); every hop above it sent one request:
    # 4 requests at the leaf per user request, where retrying at every hop makes 64.
    assert [hop.requests for hop in hops] == [1, 1, 1, 4]
    assert [headers.get("brace-attempt") for headers in hops[3].headers] == ["1", "2", "3",
                                                                             "4"]


def test_the_first_callers_deadline_holds_down_the_chain() -> None:
    with chain("hang") as (url, hops), httpx.Client(verify=_TLS, timeout=30) as user:
        started = time.monotonic()
        with brace.deadline(1.0):
            left = brace.remaining()
            assert left is not None
            answer = user.get(url, headers={"Brace-Deadline-Ms": str(int(left * 1000))})
        waited = time.monotonic() - started
        ended = max(end for hop in hops for _, end in hop.spans)
    assert answer.status_code in (503, 504) and waited < 1.2
    assert ended - started < 1.2  # no hop is still working past the user's deadline
    sent = [int(hop.headers[0]["brace-deadline-ms"]) for hop in hops]
    assert sent == sorted(sent, reverse=True) and sent[-1] < 1000  # less left at each hop
