"""The fault-injection test server itself, exercised with plain httpx (no brace)."""

# The fixture is imported here and used as a parameter, which pyflakes calls a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.fault_server import (  # noqa: F401 - fault_server is a fixture
    FaultServer,
    fault_server,
    hang,
    reply,
    reset_before_response,
    reset_mid_body,
    slow_body,
)

BROKEN = (httpx.RemoteProtocolError, httpx.ReadError)


def client(**kwargs: object) -> httpx.Client:
    return httpx.Client(trust_env=False, **kwargs)  # type: ignore[arg-type]


def aclient(**kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- reply scripts


def test_unscripted_path_answers_200_ok(fault_server: FaultServer) -> None:
    with client() as c:
        r = c.get(fault_server.url + "/anything?q=1")
    assert (r.status_code, r.text) == (200, "ok")
    assert r.headers["content-length"] == "2"
    [rec] = fault_server.requests
    assert (rec.method, rec.path, rec.path_only, rec.absolute_form) == (
        "GET",
        "/anything?q=1",
        "/anything",
        False,
    )
    assert rec.host == f"127.0.0.1:{fault_server.port}"
    assert rec.headers["host"] == rec.host  # lower-case names
    assert rec.peer_port > 0 and rec.connection_id == 1


def test_script_consumed_in_order_and_last_repeats(fault_server: FaultServer) -> None:
    fault_server.script("/s", reply(500), reply(502, "bad"), reply(200, b"done"))
    with client() as c:
        responses = [c.get(fault_server.url_for("/s")) for _ in range(5)]
        other = c.get(fault_server.url_for("/other"))
    got = [(r.status_code, r.text) for r in responses]
    assert got == [(500, ""), (502, "bad"), (200, "done"), (200, "done"), (200, "done")]
    assert other.status_code == 200
    assert fault_server.count("/s") == 5
    assert fault_server.count() == 6
    assert fault_server.count("/s", method="post") == 0


def test_script_matches_query_unless_a_more_specific_script_exists(
    fault_server: FaultServer,
) -> None:
    fault_server.script("/q", reply(503))
    fault_server.script("/q?exact=1", reply(201))
    with client() as c:
        assert c.get(fault_server.url_for("/q?page=2")).status_code == 503
        assert c.get(fault_server.url_for("/q?exact=1")).status_code == 201
    assert fault_server.count("/q") == 2
    assert fault_server.count("/q?exact=1") == 1


def test_503_then_200_async(fault_server: FaultServer) -> None:
    fault_server.script("/flaky", reply(503), reply(503), reply(200, b"done"))

    async def main() -> list[int]:
        async with aclient() as c:
            return [(await c.get(fault_server.url_for("/flaky"))).status_code for _ in range(4)]

    assert asyncio.run(main()) == [503, 503, 200, 200]
    assert fault_server.count("/flaky", method="GET") == 4


def test_retry_after_headers_seconds_and_http_date(fault_server: FaultServer) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    http_date = email.utils.format_datetime(when, usegmt=True)
    fault_server.script("/a", reply(429, headers={"Retry-After": "1"}))
    fault_server.script("/b", reply(503, b"busy", headers={"Retry-After": http_date}))
    with client() as c:
        a = c.get(fault_server.url_for("/a"))
        b = c.get(fault_server.url_for("/b"))
    assert (a.status_code, a.headers["retry-after"]) == (429, "1")
    assert (b.status_code, b.text, b.headers["retry-after"]) == (503, "busy", http_date)
    assert email.utils.parsedate_to_datetime(b.headers["retry-after"]) == when
    assert when - datetime.now(timezone.utc) > timedelta(days=1)


def test_reset_clears_scripts_and_records(fault_server: FaultServer) -> None:
    fault_server.script("/r", reply(500))
    with client() as c:
        assert c.get(fault_server.url_for("/r")).status_code == 500
        fault_server.reset()
        assert fault_server.requests == []
        assert c.get(fault_server.url_for("/r")).status_code == 200
    assert fault_server.count() == 1


def test_script_rejects_non_actions(fault_server: FaultServer) -> None:
    with pytest.raises(ValueError):
        fault_server.script("/x")
    with pytest.raises(TypeError):
        fault_server.script("/x", 503)  # type: ignore[arg-type]


# ---------------------------------------------------------------- connection faults


def test_reset_mid_body_sync(fault_server: FaultServer) -> None:
    fault_server.script("/r", reset_mid_body(), reply(200, b"fine"))
    with client() as c:
        with pytest.raises(BROKEN):
            c.get(fault_server.url_for("/r"))
        assert c.get(fault_server.url_for("/r")).text == "fine"  # the pool recovers
    assert fault_server.count("/r") == 2
    assert fault_server.errors == []


def test_reset_mid_body_headers_arrive_then_body_breaks(fault_server: FaultServer) -> None:
    fault_server.script("/r", reset_mid_body(status=200, content_length=1000, sent=10))
    with client() as c, c.stream("GET", fault_server.url_for("/r")) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == "1000"
        with pytest.raises(BROKEN):
            r.read()


def test_reset_mid_body_async(fault_server: FaultServer) -> None:
    fault_server.script("/r", reset_mid_body())

    async def main() -> None:
        async with aclient() as c:
            with pytest.raises(BROKEN):
                await c.get(fault_server.url_for("/r"))

    asyncio.run(main())


def test_reset_before_response_sync_and_async(fault_server: FaultServer) -> None:
    fault_server.script("/r", reset_before_response())
    with client() as c, pytest.raises(BROKEN):
        c.post(fault_server.url_for("/r"), content=b"payload")

    async def main() -> None:
        async with aclient() as c:
            with pytest.raises(BROKEN):
                await c.get(fault_server.url_for("/r"))

    asyncio.run(main())
    first, second = fault_server.requests
    assert (first.method, first.body) == ("POST", b"payload")  # read before the reset
    assert second.method == "GET"


def test_hang_gives_read_timeout_sync(fault_server: FaultServer) -> None:
    fault_server.script("/h", hang(max_s=5))
    start = time.monotonic()
    with client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.get(fault_server.url_for("/h"))
    assert time.monotonic() - start < 2
    assert fault_server.count("/h") == 1


def test_hang_gives_read_timeout_async(fault_server: FaultServer) -> None:
    fault_server.script("/h", hang(), reply(200, b"later"))

    async def main() -> str:
        async with aclient(timeout=0.2) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.get(fault_server.url_for("/h"))
            return (await c.get(fault_server.url_for("/h"))).text

    start = time.monotonic()
    assert asyncio.run(main()) == "later"
    assert time.monotonic() - start < 2


def test_hang_ends_after_max_s_by_closing(fault_server: FaultServer) -> None:
    fault_server.script("/h", hang(max_s=0.1))
    with client(timeout=2) as c, pytest.raises(httpx.RemoteProtocolError):
        c.get(fault_server.url_for("/h"))


def test_stop_is_quick_while_hang_is_active() -> None:
    server = FaultServer().start()
    outcome: list[BaseException | httpx.Response] = []

    def call() -> None:
        with client(timeout=10) as c:
            try:
                outcome.append(c.get(server.url_for("/h")))
            except httpx.HTTPError as exc:
                outcome.append(exc)

    server.script("/h", hang(max_s=30))
    caller = threading.Thread(target=call)
    caller.start()
    server.wait_for_requests(1, "/h")  # recorded before the action: it is hanging now
    start = time.monotonic()
    server.stop()
    stopped_in = time.monotonic() - start
    caller.join(2)
    assert stopped_in < 2
    assert not caller.is_alive()
    assert isinstance(outcome[0], BROKEN)
    assert not server.running
    server.stop()  # idempotent


def test_stop_releases_idle_keep_alive_connections() -> None:
    with client() as c:
        with FaultServer() as server:
            assert c.get(server.url_for("/x")).status_code == 200
            start = time.monotonic()
        assert time.monotonic() - start < 2  # the pooled connection didn't hold stop() up
        assert [t for t in threading.enumerate() if t.name.startswith("fault-server")] == []


# ---------------------------------------------------------------- slow body


def test_slow_body_sync_returns_full_body(fault_server: FaultServer) -> None:
    action = slow_body(chunks=5, delay_s=0.05)
    fault_server.script("/slow", action)
    start = time.monotonic()
    with client(timeout=0.2) as c:
        r = c.get(fault_server.url_for("/slow"))
    elapsed = time.monotonic() - start
    assert r.status_code == 200
    assert r.content == action.full_body == b"chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n"
    assert r.headers["content-length"] == str(len(action.full_body))
    assert elapsed >= 4 * 0.05 * 0.9  # 4 delays between 5 chunks, each below the timeout


def test_slow_body_async_streams_in_pieces(fault_server: FaultServer) -> None:
    body = bytes(range(256)) * 4
    fault_server.script("/slow", slow_body(chunks=4, delay_s=0.03, status=206, body=body))

    async def main() -> tuple[int, bytes, int]:
        async with aclient(timeout=0.2) as c, c.stream("GET", fault_server.url_for("/slow")) as r:
            pieces = [p async for p in r.aiter_raw()]
            return r.status_code, b"".join(pieces), len(pieces)

    status, got, n = asyncio.run(main())
    assert (status, got) == (206, body)
    assert n >= 2


# ---------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_one_connection(fault_server: FaultServer) -> None:
    with client() as c:
        for _ in range(3):
            assert c.get(fault_server.url_for("/k")).status_code == 200
    with client() as c2:
        c2.get(fault_server.url_for("/k"))
    ids = fault_server.connection_ids("/k")
    assert ids[0] == ids[1] == ids[2] != ids[3]
    ports = [r.peer_port for r in fault_server.requests]
    assert ports[0] == ports[1] == ports[2] != ports[3]


def test_keep_alive_async_and_connection_close(fault_server: FaultServer) -> None:
    fault_server.script("/close", reply(200, b"bye", headers={"Connection": "close"}))

    async def main() -> None:
        async with aclient() as c:
            for _ in range(3):
                await c.get(fault_server.url_for("/k"))
            for _ in range(2):
                await c.get(fault_server.url_for("/close"))

    asyncio.run(main())
    k = fault_server.connection_ids("/k")
    closing = fault_server.connection_ids("/close")
    assert len(set(k)) == 1
    assert closing[0] == k[0]  # still the pooled connection ...
    assert closing[1] != closing[0]  # ... which the server then closed


# ---------------------------------------------------------------- proxy (absolute form)


def test_absolute_form_as_forward_proxy_sync(fault_server: FaultServer) -> None:
    fault_server.script("/x", reply(418, b"teapot"))
    with client(proxy=fault_server.url) as c:
        r = c.get("http://example.invalid/x")
    assert (r.status_code, r.text) == (418, "teapot")
    [rec] = fault_server.requests
    assert rec.path == "/x"
    assert rec.absolute_form is True
    assert rec.host == "example.invalid"
    assert rec.target == "http://example.invalid/x"
    assert fault_server.count("/x") == 1


def test_absolute_form_as_forward_proxy_async(fault_server: FaultServer) -> None:
    async def main() -> int:
        async with aclient(proxy=fault_server.url) as c:
            return (await c.get("http://example.invalid:8080/p/q?z=1")).status_code

    assert asyncio.run(main()) == 200
    [rec] = fault_server.requests
    assert (rec.path, rec.absolute_form, rec.host) == ("/p/q?z=1", True, "example.invalid:8080")


# ---------------------------------------------------------------- request bodies


def test_post_body_and_headers_recorded(fault_server: FaultServer) -> None:
    with client() as c:
        c.post(fault_server.url_for("/submit"), json={"a": 1}, headers={"X-Trace": "t1"})
        c.put(fault_server.url_for("/submit"), content=b"")
    post, put = fault_server.requests
    assert (post.method, post.body, post.chunked) == ("POST", b'{"a":1}', False)
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-trace"] == "t1"
    assert (put.method, put.body) == ("PUT", b"")
    assert fault_server.count("/submit", method="post") == 1


def test_chunked_upload_recorded_sync(fault_server: FaultServer) -> None:
    def gen() -> Iterator[bytes]:
        yield b"hello "
        yield b""  # an empty piece must not end the upload early
        yield b"chunked world"

    with client() as c:
        r = c.post(fault_server.url_for("/up"), content=gen())
        again = c.get(fault_server.url_for("/after"))  # same connection still in sync
    assert r.status_code == again.status_code == 200
    up, after = fault_server.requests
    assert up.chunked and up.headers["transfer-encoding"] == "chunked"
    assert up.body == b"hello chunked world"
    assert after.connection_id == up.connection_id


def test_chunked_upload_recorded_async(fault_server: FaultServer) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"part%d;" % i

    async def main() -> int:
        async with aclient() as c:
            return (await c.post(fault_server.url_for("/up"), content=gen())).status_code

    assert asyncio.run(main()) == 200
    [up] = fault_server.requests
    assert up.chunked and up.body == b"part0;part1;part2;"


# ---------------------------------------------------------------- lifecycle


def test_context_manager_url_and_restart() -> None:
    server = FaultServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        with pytest.raises(RuntimeError):
            server.start()
        with client() as c:
            assert c.get(server.url).status_code == 200
    assert not server.running
    with server, client() as c:  # restartable on a new port
        assert c.get(server.url_for("again")).text == "ok"
    assert server.count() == 2
