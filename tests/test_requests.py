"""brace.RetryAdapter and Policy.session(): requests through a policy, against a real server.

Every test talks to ``tests/fault_server.py``'s scripted HTTP server on 127.0.0.1 and checks
what the server saw as well as what the client got. Backoff sleeps are skipped with
``brace.testing.no_waits()`` (the waits still happen in the events and count against the
deadline); only the deadline tests take real time, a fraction of a second each.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from typing import Any

import pybreaker
import pytest
import requests
import urllib3

import brace
import brace.testing
from brace import _requests, _transport
from tests.conftest import Events, fields, named
from tests.fault_server import (
    FaultServer,
    hang,
    reply,
    reset_before_response,
    reset_mid_body,
    slow_body,
)


def session(policy: brace.Policy = brace.http, **kwargs: Any) -> requests.Session:
    built = policy.session(**kwargs)
    built.trust_env = False  # the server is local: never through an environment proxy
    return built


# ------------------------------------------------------------------ retries, one call


def test_503_503_200_is_one_call_of_three_requests(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/flaky", reply(503, b"busy"), reply(503, b"busy"), reply(200, b"done"))
    with session() as s:
        response = s.get(fault_server.url_for("/flaky"), timeout=5)
    assert response.status_code == 200
    assert response.text == "done"
    assert fault_server.count("/flaky") == 3
    assert response.brace["attempts"] == 3
    assert response.brace["exhausted"] is False
    assert named(brace_events) == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]
    scheduled = fields(brace_events, "retry.scheduled")
    port = fault_server.port
    assert {f["callable"] for f in scheduled} == {f"GET http://127.0.0.1:{port}"}
    assert [f["status"] for f in scheduled] == [503, 503]
    assert scheduled[0]["preset"] == "http"
    # Retried responses were read and closed: their connection served the next attempt.
    assert len(set(fault_server.connection_ids("/flaky"))) == 1


def test_retries_run_out_on_a_status_the_last_response_is_returned(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/down", reply(503, b"busy"))
    with session(brace.http(attempts=3)) as s:
        response = s.get(fault_server.url_for("/down"))
    assert response.status_code == 503
    assert response.text == "busy"
    assert fault_server.count("/down") == 3
    assert response.brace["attempts"] == 3
    assert response.brace["exhausted"] is True  # no enclosing brace policy retries it
    assert brace.predicates.is_exhausted(response)
    assert [f["reason"] for f in fields(brace_events, "retry.gave_up")] == ["attempts"]


def test_a_404_is_not_retried(fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/missing", reply(404))
    with session() as s:
        assert s.get(fault_server.url_for("/missing")).status_code == 404
    assert fault_server.count("/missing") == 1


# ------------------------------------------------------------------ idempotency


def test_a_post_without_idempotency_key_is_sent_once(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/orders", reply(503), reply(200))
    with session() as s:
        response = s.post(fault_server.url_for("/orders"), json={"sku": 42})
    assert response.status_code == 503
    assert fault_server.count("/orders") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["not_idempotent"]


def test_a_post_with_idempotency_key_is_retried(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/payments", reply(503), reply(200, b"paid"))
    with session() as s:
        response = s.post(fault_server.url_for("/payments"), json={"cents": 100},
                          headers={"Idempotency-Key": "order-42"})
    assert response.text == "paid"
    sent = fault_server.matching("/payments")
    assert len(sent) == 2
    assert sent[0].body == sent[1].body == b'{"cents": 100}'


def test_a_streamed_body_is_sent_once(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/upload", reply(503), reply(200))
    with session() as s:
        response = s.put(fault_server.url_for("/upload"), data=iter([b"a", b"b"]))
    assert response.status_code == 503
    assert fault_server.count("/upload") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["streamed_body"]


def test_a_body_cut_off_is_retried_for_a_get_never_for_a_post(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    # The body is read inside the attempt: a reset mid-body is that attempt's error. The
    # error requests raises then carries no request; brace gives it one, so the POST is
    # known for what it is and not sent again.
    fault_server.script("/get", reset_mid_body(), reply(200, b"whole"))
    fault_server.script("/post", reset_mid_body(), reply(200, b"whole"))
    with session() as s:
        assert s.get(fault_server.url_for("/get")).text == "whole"
        with pytest.raises(requests.RequestException) as cut:
            s.post(fault_server.url_for("/post"), data=b"order")
    assert cut.value.request is not None
    assert fault_server.count("/get") == 2
    assert fault_server.count("/post") == 1


def test_a_streamed_body_that_failed_is_not_sent_again(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/upload", reset_before_response(), reply(200))
    with session() as s, pytest.raises(requests.ConnectionError):
        s.put(fault_server.url_for("/upload"), data=iter([b"a", b"b"]))
    assert fault_server.count("/upload") == 1
    assert [f["reason"] for f in fields(brace_events, "retry.skipped")] == ["streamed_body"]


# ------------------------------------------------------------------ Retry-After


def test_retry_after_is_honoured(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/limited", reply(429, headers={"Retry-After": "1"}), reply(200))
    started = time.monotonic()
    with session() as s:
        response = s.get(fault_server.url_for("/limited"))
    assert response.status_code == 200
    assert time.monotonic() - started < 1  # no_waits(): the second was skipped, not slept
    [scheduled] = fields(brace_events, "retry.scheduled")
    assert scheduled["wait_source"] == "retry_after"
    assert scheduled["wait_s"] >= 1.0  # the server's word is a floor
    assert scheduled["status"] == 429


# ------------------------------------------------------------------ breakers


def test_the_default_breaker_is_per_authority_and_opens(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/down", reply(503))
    url = fault_server.url_for("/down")
    calls = _transport.AUTHORITY_BREAKER["min_calls"]
    with session(brace.http(attempts=1)) as s:
        for _ in range(calls):
            assert s.get(url).status_code == 503
        with pytest.raises(brace.CircuitOpenError) as refused:
            s.get(url)
    # The refusal is requests' too, and the dependency never saw the refused call.
    assert isinstance(refused.value, requests.RequestException)
    assert refused.value.request is not None
    name = f"http://127.0.0.1:{fault_server.port}"  # the name the httpx transports use
    assert refused.value.breaker == name
    assert brace.breaker(name).current_state == "open"
    assert fault_server.count("/down") == calls


def test_a_named_breaker_opens(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    brace.breaker("orders-api", fail_max=2, reset_timeout=30)
    fault_server.script("/down", reply(503))
    with session(brace.http(attempts=1), breaker="orders-api") as s:
        for _ in range(2):
            assert s.get(fault_server.url_for("/down")).status_code == 503
        with pytest.raises(requests.RequestException) as refused:
            s.get(fault_server.url_for("/down"))
    assert isinstance(refused.value, brace.CircuitOpenError)
    assert isinstance(refused.value, pybreaker.CircuitBreakerError)
    assert fault_server.count("/down") == 2
    assert [f["new"] for f in fields(brace_events, "breaker.state_changed")] == ["open"]


def test_a_pybreaker_breaker_and_none(fault_server: FaultServer, brace_no_waits: None) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30)
    fault_server.script("/down", reply(503))
    with session(brace.http(attempts=1), breaker=breaker) as s:
        s.get(fault_server.url_for("/down"))
        with pytest.raises(requests.RequestException):
            s.get(fault_server.url_for("/down"))
    with session(brace.http(attempts=1), breaker=None) as s:
        for _ in range(3):
            assert s.get(fault_server.url_for("/down")).status_code == 503
    assert fault_server.count("/down") == 4
    assert f"http://127.0.0.1:{fault_server.port}" not in brace.breakers()


def test_a_rate_limit_refuses_what_the_deadline_cannot_wait_for(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    brace.rate_limit("api", per_s=0.01, burst=1)  # the next token in 100 s
    with session(brace.http(rate_limit="api", deadline=5)) as s:
        assert s.get(fault_server.url_for("/")).status_code == 200
        with pytest.raises(brace.RateLimitedError) as refused:
            s.get(fault_server.url_for("/"))
    assert isinstance(refused.value, requests.RequestException)
    assert fault_server.count("/") == 1


# ------------------------------------------------------------------ deadlines


def test_the_deadline_bounds_the_call_not_requests_timeout(fault_server: FaultServer) -> None:
    fault_server.script("/slow", hang(max_s=5))
    started = time.monotonic()
    with session(brace.http(deadline=0.4)) as s, pytest.raises(requests.Timeout):
        s.get(fault_server.url_for("/slow"), timeout=10)
    elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 2.5  # requests' own timeout (10 s) was cut to the deadline
    assert fault_server.count("/slow") == 1


def test_a_request_scoped_deadline_bounds_the_call(fault_server: FaultServer) -> None:
    fault_server.script("/slow", hang(max_s=5))
    started = time.monotonic()
    with session() as s, brace.deadline(0.3), pytest.raises(requests.Timeout):
        s.get(fault_server.url_for("/slow"), timeout=10)  # the http preset's own is 30 s
    assert 0.25 < time.monotonic() - started < 2.5


def test_attempt_timeout_bounds_each_attempt(fault_server: FaultServer) -> None:
    fault_server.script("/slow", hang(max_s=5))
    started = time.monotonic()
    with session(brace.http(attempts=1, attempt_timeout=0.3)) as s, \
            pytest.raises(requests.Timeout):
        s.get(fault_server.url_for("/slow"), timeout=(10, 10))
    assert 0.25 < time.monotonic() - started < 2.5


def test_the_deadline_bounds_a_trickling_body(fault_server: FaultServer) -> None:
    # Every piece arrives well within the read timeout; the whole body would take 2 s.
    fault_server.script("/trickle", slow_body(chunks=20, delay_s=0.1))
    started = time.monotonic()
    with session(brace.http(deadline=0.4)) as s, pytest.raises(requests.Timeout) as cut:
        s.get(fault_server.url_for("/trickle"), timeout=5)
    assert 0.35 < time.monotonic() - started < 2.0
    assert "deadline of 0.4 s reached while reading the response body" in str(cut.value)


def test_bounded_timeout_takes_every_shape_requests_takes() -> None:
    policy = brace.http(deadline=5, attempt_timeout=2)
    path_call = _call_with(5)
    assert _requests.bounded_timeout(None, policy, path_call) == (2, 2)
    assert _requests.bounded_timeout(1, policy, path_call) == (1, 1)
    assert _requests.bounded_timeout((0.5, 9), policy, path_call) == (0.5, 2)
    assert _requests.bounded_timeout(urllib3.Timeout(connect=1, read=None), policy,
                                     path_call) == (1, 2)
    assert _requests.bounded_timeout((1, None), brace.http(deadline=5), _call_with(0.25)) \
        == pytest.approx((0.25, 0.25), abs=0.01)
    with pytest.raises(ValueError, match="connect, read"):
        _requests.bounded_timeout((1, 2, 3), policy, path_call)


def _call_with(seconds: float) -> Any:
    from brace._call import Call

    return Call(seconds)


# ------------------------------------------------------------------ one retry layer


def test_a_response_given_up_on_below_is_not_retried(
        fault_server: FaultServer, brace_no_waits: None, brace_events: Events) -> None:
    fault_server.script("/gateway", reply(503, headers={"Brace-Exhausted": "1"}), reply(200))
    with session() as s:
        response = s.get(fault_server.url_for("/gateway"))
    assert response.status_code == 503
    assert fault_server.count("/gateway") == 1
    assert response.brace == {"attempts": 1, "elapsed_s": response.brace["elapsed_s"],
                              "exhausted": True}
    assert [f["reason"] for f in fields(brace_events, "retry.gave_up")] == ["inner_exhausted"]


def test_an_enclosing_policy_does_not_retry_what_the_session_gave_up_on(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/down", reply(503))
    with session(brace.http(attempts=2)) as s:

        @brace.http(attempts=3)
        def fetch() -> None:
            s.get(fault_server.url_for("/down")).raise_for_status()

        with pytest.raises(requests.HTTPError):
            fetch()
    assert fault_server.count("/down") == 2  # added, never multiplied (2 x 3)


# ------------------------------------------------------------------ bodies and streams


def test_a_retried_streamed_response_is_read_and_closed(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    # With stream=True the caller reads bodies; a retried one is drained by brace, so its
    # connection serves the next attempt instead of staying busy with an unread body.
    fault_server.script("/flaky", reply(503, b"x" * 5000), reply(200, b"done"))
    with session() as s:
        response = s.get(fault_server.url_for("/flaky"), stream=True)
        assert response.raw.read() == b"done"
        response.close()
    assert fault_server.count("/flaky") == 2
    assert len(set(fault_server.connection_ids("/flaky"))) == 1


def test_a_buffered_body_reads_as_requests_reads_it(fault_server: FaultServer) -> None:
    # Pins the one write of requests' internals (_requests._buffer): content, text, json()
    # and iter_content serve the body read inside the attempt, decoded as requests decodes.
    body = b'{"greeting": "hello"}'
    fault_server.script("/json", reply(200, gzip.compress(body), headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json"}))
    with session() as s:
        response = s.get(fault_server.url_for("/json"))
        assert response.content == body
        assert response.json() == {"greeting": "hello"}
        assert b"".join(response.iter_content(4)) == body
        streamed = s.get(fault_server.url_for("/json"), stream=True)
        assert b"".join(streamed.iter_content(4)) == body  # streamed: read by the caller
        streamed.close()


# ------------------------------------------------------------------ set-up and bad input


def test_a_session_mounts_the_adapter_on_http_and_https() -> None:
    with brace.http(deadline=3).session(pool_maxsize=4) as s:
        for prefix in ("http://", "https://"):
            adapter = s.get_adapter(prefix + "example.test/")
            assert isinstance(adapter, brace.RetryAdapter)
            assert adapter.policy.deadline == 3
            assert adapter.max_retries.total == 0  # urllib3 never retries under brace


def test_the_adapter_mounts_on_a_plain_session(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/flaky", reply(502), reply(200))
    with requests.Session() as s:
        s.trust_env = False
        s.mount("http://", brace.RetryAdapter(policy=brace.http(attempts=2)))
        assert s.get(fault_server.url_for("/flaky")).status_code == 200
    assert fault_server.count("/flaky") == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policy": "http"}, "policy= must be a brace.Policy"),
    ({"policy": brace.http}, None),
    ({"policy": brace.http(attempts=3, hedge_after=0.1)}, "hedge_after="),
    ({"policy": brace.http(fallback=None)}, "fallback="),
    ({"max_retries": 3}, "max_retries="),
    ({"timeout": 3}, "'timeout'"),
    ({"breaker": 3}, "breaker="),
    ({"breaker": ""}, "breaker="),
])
def test_bad_input_is_refused_when_the_adapter_is_built(
        kwargs: dict[str, Any], message: str | None) -> None:
    if message is None:
        brace.RetryAdapter(**kwargs).close()
        return
    with pytest.raises(TypeError, match=message):
        brace.RetryAdapter(**kwargs)
    policy = kwargs.pop("policy", brace.http)
    if isinstance(policy, brace.Policy):  # the same refusal from Policy.session()
        with pytest.raises(TypeError, match=message):
            policy.session(**kwargs)


def test_chaos_is_refused_not_ignored() -> None:
    policy = brace.http(chaos=brace.testing.chaos(fault=ConnectionError(), rate=0.5, seed=1))
    with pytest.raises(TypeError, match="chaos="):
        brace.RetryAdapter(policy)


def test_importing_brace_imports_neither_requests_nor_aiohttp() -> None:
    code = ("import sys, brace; brace.http.explain(); "
            "assert 'requests' not in sys.modules and 'aiohttp' not in sys.modules; "
            "brace.RetryAdapter; assert 'requests' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_attempt_sends_the_deadline_left_and_its_number(
        fault_server: FaultServer, brace_no_waits: None) -> None:
    fault_server.script("/hop", reply(503), reply(503), reply(200))
    with session(brace.http(deadline=5)) as s:
        s.get(fault_server.url_for("/hop"), timeout=5)
    sent = [(int(r.headers["brace-deadline-ms"]), r.headers["brace-attempt"])
            for r in fault_server.requests if r.path == "/hop"]
    assert [attempt for _, attempt in sent] == ["1", "2", "3"]
    assert 0 < sent[-1][0] <= sent[0][0] <= 5000  # what is left: never more than the deadline
    fault_server.script("/other", reply(200))
    with session(propagate=("X-Deadline", "X-Try")) as s:
        s.get(fault_server.url_for("/other"), timeout=5)
    with session(propagate=None) as s:
        s.get(fault_server.url_for("/other"), timeout=5)
    named, silent = [r.headers for r in fault_server.requests if r.path == "/other"]
    assert "x-deadline" in named and named["x-try"] == "1" and "brace-attempt" not in named
    assert not {"brace-deadline-ms", "brace-attempt", "x-try"} & set(silent)
    with pytest.raises(ValueError, match="propagate"):
        brace.RetryAdapter(propagate=("a b", "c"))
