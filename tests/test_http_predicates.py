"""Status, idempotency and Retry-After building blocks (narrow unit tests, no network)."""

from __future__ import annotations

import email.utils
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import tenacity

import brace
from brace.testing import no_waits

REQUEST = httpx.Request("GET", "http://127.0.0.1/")


def state_with(value: Any, *, failed: bool) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    if failed:
        state.set_exception((type(value), value, None))
    else:
        state.set_result(value)
    return state


def response(code: int, method: str = "GET", headers: dict[str, str] | None = None,
             request_headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request(method, "http://127.0.0.1/x", headers=request_headers)
    return httpx.Response(code, headers=headers, request=request)


class SDKError(Exception):
    """Shaped like openai.APIStatusError: carries the response and its status."""

    def __init__(self, resp: httpx.Response) -> None:
        super().__init__(f"Error code: {resp.status_code}")
        self.response = resp
        self.status_code = resp.status_code
        self.request = resp.request


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_status_predicate_on_results_http_errors_and_sdk_errors(code: int) -> None:
    predicate = brace.predicates.status(408, 429, 500, 502, 503, 504)
    resp = response(code)
    assert predicate(state_with(resp, failed=False))
    error = httpx.HTTPStatusError("boom", request=resp.request, response=resp)
    assert predicate(state_with(error, failed=True))
    assert predicate(state_with(SDKError(resp), failed=True))


@pytest.mark.parametrize("code", [200, 201, 301, 400, 401, 403, 404, 409, 422, 501, 529])
def test_status_predicate_ignores_other_statuses(code: int) -> None:
    predicate = brace.predicates.status(408, 429, 500, 502, 503, 504)
    assert not predicate(state_with(response(code), failed=False))
    assert not predicate(state_with(SDKError(response(code)), failed=True))
    assert not predicate(state_with(ValueError(), failed=True))
    assert not predicate(state_with(code, failed=False))  # a bare int is not a response


def test_status_composes_with_tenacity() -> None:
    calls = 0

    def fetch() -> httpx.Response:
        nonlocal calls
        calls += 1
        return response(503 if calls < 3 else 200)

    retrying = tenacity.Retrying(
        retry=brace.predicates.status(503) | tenacity.retry_if_exception_type(KeyError),
        stop=tenacity.stop_after_attempt(5), sleep=lambda s: None)
    assert retrying(fetch).status_code == 200
    assert calls == 3
    assert repr(brace.predicates.status(503, 429)) == "brace.predicates.status(429, 503)"


@pytest.mark.parametrize("bad", [99, 600, -1, 0])
def test_status_codes_are_validated(bad: int) -> None:
    with pytest.raises(ValueError, match="100-599"):
        brace.predicates.status(bad)
    with pytest.raises(ValueError, match="statuses must be in 400-599"):
        brace.http(statuses=(503, bad))
    with pytest.raises(TypeError, match="100-599"):
        brace.predicates.status("503")  # type: ignore[arg-type]


@pytest.mark.parametrize(("bad", "error", "message"), [
    (503, TypeError, r"statuses must be a list or tuple .* for one status write statuses=\[503\]"),
    ("503", TypeError, "statuses must be a list or tuple"),
    ([200], ValueError, "statuses must be in 400-599, got 200"),
    ([302, 503], ValueError, "statuses must be in 400-599, got 302"),
    (["503"], TypeError, "statuses must be ints in 400-599"),
    ([True], TypeError, "statuses must be ints in 400-599"),
])
def test_statuses_say_what_is_wrong(bad: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        brace.http(statuses=bad)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])
def test_idempotent_methods_are_safe(method: str) -> None:
    assert brace.predicates.is_safe_to_resend(response(503, method))


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_need_a_key_or_a_failure_before_sending(method: str) -> None:
    assert not brace.predicates.is_safe_to_resend(response(503, method))
    keyed = response(503, method, request_headers={"Idempotency-Key": "abc"})
    assert brace.predicates.is_safe_to_resend(keyed)
    request = httpx.Request(method, "http://127.0.0.1/x")
    for not_sent in (httpx.ConnectError("refused", request=request),
                     httpx.ConnectTimeout("slow", request=request),
                     httpx.PoolTimeout("busy", request=request)):
        assert brace.predicates.is_safe_to_resend(not_sent)
    for maybe_sent in (httpx.ReadTimeout("slow", request=request),
                       httpx.RemoteProtocolError("reset", request=request),
                       httpx.ReadError("reset", request=request)):
        assert not brace.predicates.is_safe_to_resend(maybe_sent)
    assert brace.predicates.is_safe_to_resend(ConnectionError("no request attached"))
    # The request alone (what hedging asks before anything is sent): method or key only.
    assert not brace.predicates.is_idempotent_request(request)
    assert brace.predicates.is_idempotent_request(httpx.Request(
        method, "http://127.0.0.1/x", headers={"Idempotency-Key": "abc"}))
    assert brace.predicates.is_idempotent_request(httpx.Request("get", "http://127.0.0.1/x"))


def test_http_preset_never_resends_a_post_without_a_key() -> None:
    calls = 0

    @brace.http
    def create() -> httpx.Response:
        nonlocal calls
        calls += 1
        return response(503, "POST")

    with no_waits():
        assert create().status_code == 503  # the last response comes back, not resent
    assert calls == 1


def test_llm_preset_resends_posts_and_retries_529() -> None:
    calls = 0

    @brace.llm
    def complete() -> httpx.Response:
        nonlocal calls
        calls += 1
        return response(529 if calls < 3 else 200, "POST")

    with no_waits():
        assert complete().status_code == 200
    assert calls == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": " 7 "}, 7.0),  # surrounding whitespace is no part of the value
        ({"retry-after-ms": "1500"}, 1.5),
        # Both sent: the later moment wins.
        ({"retry-after-ms": "250", "Retry-After": "9"}, 9.0),
        ({"retry-after-ms": "2500", "Retry-After": "1"}, 2.5),
        ({"retry-after-ms": "junk", "Retry-After": "4"}, 4.0),
        ({"retry-after-ms": "100", "Retry-After": "1e3"}, 0.1),
        # RFC 9110 delta-seconds are ASCII digits: everything else is refused (backoff).
        ({"Retry-After": "2.5"}, None),
        ({"Retry-After": "1e3"}, None),
        ({"Retry-After": "+1"}, None),
        ({"Retry-After": "-0"}, None),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "1_000"}, None),
        ({"Retry-After": "\u0665".encode()}, None),  # Arabic-Indic five (UTF-8 bytes)
        ({"Retry-After": "\uff15".encode()}, None),  # fullwidth five
        ({"Retry-After": "0x10"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": ""}, None),
        ({"retry-after-ms": "1.5"}, None),
        ({"retry-after-ms": "-100"}, None),
        # A valid value too large to represent: longer than any deadline.
        ({"Retry-After": "9" * 400}, math.inf),
        ({"Retry-After": "0" * 30 + "3"}, 3.0),  # leading zeros are still digits
        ({}, None),
    ],
)
def test_server_delay_parsing(headers: dict[str, Any], expected: float | None) -> None:
    assert brace.waits.server_delay(response(429, headers=headers)) == expected


def test_a_refused_retry_after_is_reported_once_per_policy() -> None:
    events: list[dict[str, Any]] = []
    observer = brace.observe(lambda event, fields: events.append(fields)
                             if event == "retry_after.ignored" else None)
    wait = brace.waits.retry_after(fallback=tenacity.wait_fixed(0.5))
    try:
        for _ in range(3):
            assert wait(state_with(response(429, headers={"Retry-After": "1e3"}),
                                   failed=False)) == 0.5  # backoff applies
    finally:
        brace.unobserve(observer)
    assert [e["header"] for e in events] == ["Retry-After: 1e3"]


def test_server_delay_http_date() -> None:
    future = datetime.now(timezone.utc) + timedelta(seconds=30)
    delay = brace.waits.server_delay(
        response(503, headers={"Retry-After": email.utils.format_datetime(future, usegmt=True)}))
    assert delay is not None and 28 <= delay <= 30
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert brace.waits.server_delay(
        response(503, headers={"Retry-After": email.utils.format_datetime(past, usegmt=True)})
    ) == 0.0


def test_retry_after_wait_uses_the_header_capped_else_the_fallback() -> None:
    wait = brace.waits.retry_after(fallback=tenacity.wait_fixed(7), max_wait=10)
    # The server's delay is a floor, the fallback's draw the jitter above it (capped).
    assert wait(state_with(response(429, headers={"Retry-After": "3"}), failed=False)) == 10
    assert wait(state_with(response(429, headers={"Retry-After": "300"}), failed=False)) == 10
    error = SDKError(response(429, headers={"retry-after-ms": "1200"}))
    assert wait(state_with(error, failed=True)) == 8.2
    assert wait(state_with(ConnectionError(), failed=True)) == 7
    no_jitter = brace.waits.retry_after(fallback=tenacity.wait_none())
    assert no_jitter(state_with(response(429, headers={"Retry-After": "3"}), failed=False)) == 3
    assert wait(state_with(response(429, headers={"Retry-After": "x"}), failed=False)) == 7
    with pytest.raises(TypeError, match="fallback="):
        brace.waits.retry_after(fallback=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_wait"):
        brace.waits.retry_after(max_wait=-1)
    with pytest.raises(TypeError, match="max"):
        brace.waits.retry_after(max=10)  # type: ignore[call-arg]  # renamed max_wait=


def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    calls = 0

    @brace.http(deadline=5)
    def fetch() -> httpx.Response:
        nonlocal calls
        calls += 1
        return response(503, headers={"Retry-After": "60"})

    started = time.monotonic()
    assert fetch().status_code == 503  # no sleep at all: real waits are on
    assert time.monotonic() - started < 1
    assert calls == 1

    @brace.http(deadline=5)
    def fetch_error() -> None:
        resp = response(429, headers={"Retry-After": "60"})
        raise httpx.HTTPStatusError("429", request=resp.request, response=resp)

    with pytest.raises(httpx.HTTPStatusError):
        fetch_error()


def test_retry_after_within_the_deadline_is_honoured_in_full_past_max_wait() -> None:
    calls = 0

    @brace.http(deadline=30, max_wait=2)
    def fetch() -> httpx.Response:
        nonlocal calls
        calls += 1
        return response(429 if calls == 1 else 200, headers={"Retry-After": "20"})

    from structlog.testing import capture_logs

    with no_waits(), capture_logs() as logs:
        assert fetch().status_code == 200
    # max_wait caps the backoff, not the server: the server asked for 20 s, and the jitter
    # above it is at most one (capped) backoff step.
    assert logs[0]["event"] == "retry.scheduled" and 20 <= logs[0]["wait_s"] <= 22


def test_a_herd_told_retry_after_0_resends_spread_out_and_never_early() -> None:
    # 20 clients (each its own policy, as separate processes would be) hear the same answer.
    waits = []
    for _client in range(20):
        policy = brace.http(initial=0.5, max_wait=2)
        wait = policy.wait
        waits.append(wait(state_with(response(503, headers={"Retry-After": "0"}),
                                     failed=False)))
    assert min(waits) >= 0  # never before the server's moment
    assert len({round(w, 6) for w in waits}) == 20  # nobody at the same instant
    assert max(waits) - min(waits) > 0.2  # spread over the backoff's first step (0.5 s)
    assert max(waits) <= 0.5


def test_with_both_headers_nobody_resends_before_the_later_moment() -> None:
    policy = brace.http(initial=0.5, max_wait=2)
    for headers in ({"retry-after-ms": "100", "Retry-After": "2"},
                    {"retry-after-ms": "2000", "Retry-After": "0"}):
        waits = [policy.wait(state_with(response(429, headers=headers), failed=False))
                 for _ in range(50)]
        assert min(waits) >= 2.0 and max(waits) <= 2.5


def test_the_jitter_above_retry_after_never_reaches_past_the_deadline() -> None:
    attempts = 0

    @brace.http(deadline=3, initial=5, max_wait=5)
    def fetch() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return response(429 if attempts == 1 else 200, headers={"Retry-After": "2"})

    from structlog.testing import capture_logs

    with no_waits(), capture_logs() as logs:
        assert fetch().status_code == 200  # the 2 s floor fits the 3 s deadline: retried
    assert 2 <= logs[0]["wait_s"] < 3


def test_attempt_timeout_validation_and_sync_refusal() -> None:
    with pytest.raises(ValueError, match="attempt_timeout"):
        brace.http(attempt_timeout=0)
    with pytest.raises(ValueError, match="attempt_timeout"):
        brace.http(attempt_timeout=float("nan"))
    with pytest.raises(ValueError, match="attempt_timeout must be <= deadline"):
        brace.http(attempt_timeout=40, deadline=30)
    with pytest.raises(TypeError, match=r"httpx\.Client\(timeout=\.\.\.\)"):
        brace.http(attempt_timeout=1)(lambda: None)
