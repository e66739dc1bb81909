"""brace's transports with httpx's own test tools (MockTransport, respx), as users test:
pre-read responses, per-request policies, response.extensions["brace"], and "no" to what a
transport cannot apply. The same scenarios against a real server are in
tests/integration/test_http_transport.py."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

import brace

MODES = ["sync", "async"]


pytestmark = pytest.mark.no_waits


def scripted(*statuses: tuple[int, dict[str, str]]) -> tuple[Any, list[httpx.Request]]:
    """A MockTransport handler answering each request with the next (status, headers)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers = statuses[min(len(seen), len(statuses)) - 1]
        return httpx.Response(status, headers=headers, text=f"answer {len(seen)}")

    return handler, seen


def get(mode: str, transport: Any, url: str = "http://api.test/x", **kwargs: Any) -> Any:
    if mode == "sync":
        with brace.http.client(transport=transport) as client:
            return client.get(url, **kwargs)

    async def main() -> httpx.Response:
        async with brace.http.async_client(transport=transport) as client:
            return await client.get(url, **kwargs)

    return asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first", [(503, {}), (429, {"Retry-After": "1"})],
                         ids=["503", "429-retry-after"])
def test_mock_transport_retried_then_answered(mode: str, first: tuple[int, dict[str, str]]
                                               ) -> None:
    handler, seen = scripted(first, (200, {}))
    response = get(mode, httpx.MockTransport(handler))
    assert response.status_code == 200 and response.text == "answer 2"
    assert len(seen) == 2
    assert response.extensions["brace"]["attempts"] == 2
    assert response.extensions["brace"]["exhausted"] is False


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first", [(503, {}), (429, {"Retry-After": "1"})],
                         ids=["503", "429-retry-after"])
def test_respx_retried_then_answered(mode: str, first: tuple[int, dict[str, str]]) -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.get("http://api.test/x").mock(side_effect=[
            httpx.Response(first[0], headers=first[1]), httpx.Response(200, text="done")])
        if mode == "sync":
            with brace.http.client() as client:
                response = client.get("http://api.test/x")
        else:
            async def main() -> httpx.Response:
                async with brace.http.async_client() as client:
                    return await client.get("http://api.test/x")

            response = asyncio.run(main())
    assert response.status_code == 200 and response.text == "done"
    assert route.call_count == 2


@pytest.mark.parametrize("mode", MODES)
def test_retries_running_out_mark_the_response(mode: str) -> None:
    handler, seen = scripted((503, {}))
    response = get(mode, httpx.MockTransport(handler))
    assert response.status_code == 503
    attempts = brace.http().attempts
    assert len(seen) == attempts  # brace.http's attempts
    assert response.extensions["brace"]["attempts"] == attempts
    assert response.extensions["brace"]["exhausted"] is True
    assert response.extensions["brace"]["elapsed_s"] >= 0
    assert brace.predicates.is_exhausted(response)


@pytest.mark.parametrize("mode", MODES)
def test_per_request_policy(mode: str) -> None:
    handler, seen = scripted((503, {}))
    response = get(mode, httpx.MockTransport(handler),
                   extensions={"brace": brace.http(attempts=1)})
    assert len(seen) == 1  # this request: no retries
    assert response.extensions["brace"] == {
        "attempts": 1, "elapsed_s": response.extensions["brace"]["elapsed_s"],
        "exhausted": True}
    handler, seen = scripted((503, {}))
    get(mode, httpx.MockTransport(handler), extensions={"brace": brace.http(attempts=2)})
    assert len(seen) == 2


def test_a_healthy_response_says_one_attempt() -> None:
    handler, _seen = scripted((200, {}))
    response = get("sync", httpx.MockTransport(handler))
    assert response.extensions["brace"]["attempts"] == 1
    assert response.extensions["brace"]["exhausted"] is False


def test_per_request_policy_must_be_a_policy() -> None:
    handler, _ = scripted((200, {}))
    with pytest.raises(TypeError, match=r'extensions\["brace"\] must be a brace.Policy'):
        get("sync", httpx.MockTransport(handler), extensions={"brace": 3})


def test_a_transport_says_no_to_a_fallback() -> None:
    with pytest.raises(TypeError, match=r"fallback=.*transport cannot apply"):
        brace.RetryTransport(policy=brace.http(fallback=None))
    with pytest.raises(TypeError, match=r"fallback=.*transport cannot apply"):
        brace.http(fallback=None).client()
    with pytest.raises(TypeError, match=r"fallback=.*transport cannot apply"):
        brace.AsyncRetryTransport(policy=brace.http(fallback=lambda exc: None))
    handler, _ = scripted((200, {}))
    with pytest.raises(TypeError, match=r'extensions\["brace"\] has a fallback='):
        get("sync", httpx.MockTransport(handler),
            extensions={"brace": brace.http(fallback=None)})


def test_per_authority_breakers_stay_bounded_whatever_the_hosts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from brace import _transport

    # 10,000 distinct authorities against the documented bound.
    for host in range(10_000):
        _transport._authority_breaker(f"GET http://h{host}.test")
    kept = _transport.authority_breakers()
    assert kept <= _transport.MAX_AUTHORITY_BREAKERS
    assert len(brace.breakers()) == kept  # evicted ones are forgotten, not leaked
    assert "http://h9999.test" in brace.breakers()  # the most recent stay
    assert "http://h0.test" not in brace.breakers()

    # End to end through a client, with a small bound: an open breaker is never evicted.
    brace.testing.reset_breakers()
    monkeypatch.setattr(_transport, "MAX_AUTHORITY_BREAKERS", 20)
    transport = brace.RetryTransport(transport=httpx.MockTransport(
        lambda request: httpx.Response(200)))
    with httpx.Client(transport=transport) as client:
        assert client.get("http://first.test/").status_code == 200
        brace.breaker("http://first.test").open()
        for host in range(200):
            assert client.get(f"http://e{host}.test/").status_code == 200
    assert len([n for n in brace.breakers() if n.startswith("http://e")]) <= 20
    assert brace.breakers()["http://first.test"].state == "open"


@pytest.mark.parametrize("forget", ["brace.forget", "reset_breakers"])
def test_a_forgotten_per_authority_breaker_is_made_again_as_one(forget: str) -> None:
    # A client keeps its authority's breaker; forgotten, the next request makes it again
    # with the per-authority settings (not a named breaker's defaults) and counts there.
    from brace import _breakers, _transport

    with brace.http.client(transport=httpx.MockTransport(
            lambda request: httpx.Response(200))) as client:
        client.get("http://kept.test/")
        first = _breakers.registry["http://kept.test"]
        if forget == "brace.forget":
            assert brace.forget("http://kept.test")
        else:
            brace.testing.reset_breakers()
        assert "http://kept.test" not in brace.breakers()
        client.get("http://kept.test/")
    again = _breakers.registry["http://kept.test"]
    assert again is not first
    assert _breakers._settings["http://kept.test"] == _transport.AUTHORITY_BREAKER
    assert again.tally is not None and again.tally[0] == 1  # the request after, counted


def test_response_request_slot() -> None:
    # A response's request is tested through the slot httpx's Response.request guards (the
    # property raises when unset, and raising per response is the attach's main cost). If
    # httpx keeps it elsewhere, this fails here first; brace then falls back on the property.
    from brace import _transport

    request = httpx.Request("GET", "http://api.test/x")
    assert getattr(httpx.Response(200), "_request", "moved") is None
    assert _transport._unattached(httpx.Response(200))
    assert not _transport._unattached(httpx.Response(200, request=request))
    own = httpx.Request("GET", "http://other.test/y")
    kept = httpx.Response(200, request=own)
    _transport._attach(request, kept)
    assert kept.request is own  # a request the transport below attached stays
    bare = httpx.Response(200)
    _transport._attach(request, bare)
    assert bare.request is request
