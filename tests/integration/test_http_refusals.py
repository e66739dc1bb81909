"""Refusals out of brace's httpx clients are httpx errors too (DESIGN rule 24).

An open breaker, a full bulkhead and a rate limit without a token, each against a real
local HTTP server, through ``policy.client()`` and ``policy.async_client()``: the refusal
is caught by ``except httpx.HTTPError`` (it is an ``httpx.TransportError``), and it is
still a ``brace.BraceError`` and the specific brace class, with its attributes, its
``request`` and a traceback that goes into the call path. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pybreaker
import pytest

import brace
from brace import _transport
from brace._outcome import is_exhausted, mark_exhausted
from brace.testing import no_waits
from tests.fault_server import Action, FaultServer, reply

MODES = ("sync", "async")
mode_param = pytest.mark.parametrize("mode", MODES)


@pytest.fixture(autouse=True)
def _fresh(brace_reset_breakers: None, brace_reset_limits: None) -> Iterator[None]:
    with no_waits():  # nothing here should sleep; should a retry happen, it is instant
        yield


@dataclass(frozen=True, eq=False)
class Held(Action):
    """Answer 200 only once the test sets ``release``: the request holds its slot until then."""

    release: threading.Event = field(default_factory=threading.Event)

    def run(self, handler: Any) -> None:
        self.release.wait(10)
        handler.send_complete(200, b"held", None)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def send_all(mode: str, policy: brace.Policy, urls: list[str]) -> list[Any]:
    """GET each URL in order through one client of ``policy``; each response or error."""
    outcomes: list[Any] = []
    if mode == "sync":
        with policy.client(trust_env=False) as client:
            for url in urls:
                try:
                    outcomes.append(client.get(url))
                except httpx.HTTPError as exc:  # what is under test: caught as httpx's
                    outcomes.append(exc)
        return outcomes

    async def main() -> None:
        async with policy.async_client(trust_env=False) as client:
            for url in urls:
                try:
                    outcomes.append(await client.get(url))
                except httpx.HTTPError as exc:
                    outcomes.append(exc)

    asyncio.run(main())
    return outcomes


def check_refusal(error: Any, cls: type[brace.BraceError], url: str) -> None:
    """``error`` is an httpx error and the brace refusal ``cls``, for a GET of ``url``."""
    assert isinstance(error, httpx.TransportError), error
    assert isinstance(error, httpx.HTTPError)
    assert isinstance(error, brace.BraceError)
    assert isinstance(error, cls)
    assert type(error).__name__ == cls.__name__ and type(error).__module__ == "brace"
    assert str(error)  # the brace message, unchanged
    assert error.request.url == url
    assert error.__cause__ is None and error.__suppress_context__
    # The original traceback is kept: it goes on below the transport, into the call path.
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    transport = frames.index("handle_request" if "handle_request" in frames
                             else "handle_async_request")
    assert frames[transport + 1:], frames
    # The transport and the call path: no more than two of brace's frames (DESIGN rule 24).
    assert len([frame for frame in traceback.extract_tb(error.__traceback__)
                if "/brace/" in frame.filename]) <= 2, frames


@mode_param
def test_an_open_breaker(mode: str, fault_server: FaultServer) -> None:
    brace.breaker("refusing-svc", fail_max=1, reset_timeout=60)
    fault_server.script("/down", reply(503, b"down"))
    url = fault_server.url_for("/down")
    first, second = send_all(mode, brace.http(attempts=1, breaker="refusing-svc"), [url, url])
    assert isinstance(first, httpx.Response) and first.status_code == 503  # it tripped
    check_refusal(second, brace.CircuitOpenError, url)
    assert second.breaker == "refusing-svc"
    assert 0 < second.remaining_s <= 60
    assert fault_server.count("/down") == 1  # the refused request never left
    assert isinstance(second, pybreaker.CircuitBreakerError)


@mode_param
def test_an_exhausted_rate_limit(mode: str, fault_server: FaultServer) -> None:
    brace.rate_limit("refusing-rate", per_s=0.001, burst=1)  # the next token: 1000 s away
    url = fault_server.url_for("/hello")
    first, second = send_all(mode, brace.http(rate_limit="refusing-rate"), [url, url])
    assert isinstance(first, httpx.Response) and first.status_code == 200
    check_refusal(second, brace.RateLimitedError, url)
    assert fault_server.count("/hello") == 1


@mode_param
def test_a_full_bulkhead(mode: str, fault_server: FaultServer) -> None:
    brace.bulkhead("refusing-b", max_concurrent=1)  # queue_timeout 0: refuse at once
    held = Held()
    fault_server.script("/held", held)
    held_url, url = fault_server.url_for("/held"), fault_server.url_for("/hello")
    policy = brace.http(bulkhead="refusing-b")
    in_flight = lambda: fault_server.count("/held") == 1  # noqa: E731
    refused: Any = None
    if mode == "sync":
        with policy.client(trust_env=False) as client, ThreadPoolExecutor(1) as pool:
            holder = pool.submit(client.get, held_url)
            _wait_for(in_flight, "the first request to hold the slot")
            try:
                client.get(url)
            except httpx.HTTPError as exc:
                refused = exc
            finally:
                held.release.set()
            assert holder.result(10).content == b"held"
    else:
        async def main() -> None:
            nonlocal refused
            async with policy.async_client(trust_env=False) as client:
                holder = asyncio.ensure_future(client.get(held_url))
                started = time.monotonic()
                while not in_flight():
                    assert time.monotonic() - started < 5, "the first request never arrived"
                    await asyncio.sleep(0.005)
                try:
                    await client.get(url)
                except httpx.HTTPError as exc:
                    refused = exc
                finally:
                    held.release.set()
                assert (await holder).content == b"held"

        asyncio.run(main())
    check_refusal(refused, brace.BulkheadFullError, url)
    assert fault_server.count("/hello") == 0  # refused before it was sent
    assert brace.bulkhead("refusing-b").in_use == 0  # the held slot was given back


@mode_param
def test_an_enclosing_policy_does_not_retry_the_refusal(mode: str,
                                                        fault_server: FaultServer) -> None:
    brace.breaker("refusing-outer", fail_max=1, reset_timeout=60)
    brace.breaker("refusing-outer").open()
    url = fault_server.url_for("/hello")
    policy = brace.http(attempts=1, breaker="refusing-outer")
    calls = 0

    if mode == "sync":
        @brace.network(attempts=3)
        def fetch() -> httpx.Response:
            nonlocal calls
            calls += 1
            with policy.client(trust_env=False) as client:
                return client.get(url)

        with pytest.raises(httpx.HTTPError) as info:
            fetch()
    else:
        @brace.network(attempts=3)
        async def afetch() -> httpx.Response:
            nonlocal calls
            calls += 1
            async with policy.async_client(trust_env=False) as client:
                return await client.get(url)

        with pytest.raises(httpx.HTTPError) as info:
            asyncio.run(afetch())
    assert isinstance(info.value, brace.CircuitOpenError)
    assert calls == 1
    assert fault_server.count("/hello") == 0


# --- the conversion itself ---------------------------------------------------------------------


def test_the_httpx_twin_is_built_once_per_class_and_keeps_everything() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/x")
    try:
        raise brace.CircuitOpenError("payments", 2.5)
    except brace.CircuitOpenError as exc:
        original = exc
    mark_exhausted(original)
    original.__notes__ = ["a note"]  # what add_note() keeps (3.11+), set by hand for 3.10
    twin = _transport._as_httpx_error(original, request)
    assert type(twin) is type(_transport._as_httpx_error(brace.CircuitOpenError("x", 1),
                                                          request))
    assert type(twin).__mro__[1] is brace.CircuitOpenError
    assert isinstance(twin, httpx.TransportError) and isinstance(twin, brace.CircuitOpenError)
    assert (twin.args, twin.breaker, twin.remaining_s) == (original.args, "payments", 2.5)
    assert twin.request is request
    # The traceback below the frame that caught it (re-raising there adds that frame again).
    assert original.__traceback__ is not None
    assert twin.__traceback__ is original.__traceback__.tb_next
    assert is_exhausted(twin)  # marked as the original was
    assert getattr(twin, "__notes__", None) == ["a note"]
    assert str(twin) == str(original) and repr(twin) == repr(original)
    # Already an httpx error (a brace transport inside another): raised as it is.
    assert _transport._as_httpx_error(twin, request) is twin
    # A refusal that was not marked stays unmarked.
    assert not is_exhausted(_transport._as_httpx_error(brace.RateLimitedError("no"), request))
