"""``brace._outcome``: what one attempt's result or error IS, decided in one place.

Every kind of outcome, on every library's cancellation, and the breaker, the retry decision
and the fallback reading the same verdict.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from typing import Any

import httpx
import pybreaker
import pytest
import tenacity
import trio

import brace
from brace._outcome import Kind, classify, is_exit, mark_exhausted

pytestmark = pytest.mark.no_waits


def trio_cancelled() -> BaseException:
    """A real trio.Cancelled (trio only makes them inside a cancelled scope)."""
    caught: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                caught.append(exc)
                raise

    trio.run(main)
    return caught[0]


EXITS: list[BaseException] = [asyncio.CancelledError(), concurrent.futures.CancelledError(),
                              KeyboardInterrupt(), SystemExit(1), GeneratorExit()]
if sys.version_info >= (3, 11):  # a group holding a cancellation is no Exception either
    EXITS.append(BaseExceptionGroup("g", [KeyboardInterrupt()]))  # noqa: F821


@pytest.mark.parametrize("error", EXITS, ids=lambda e: type(e).__name__)
def test_cancellations_interrupts_and_exits_are_cancelled(error: BaseException) -> None:
    assert is_exit(error)
    outcome = classify(brace.network, error, None)
    assert outcome.kind is Kind.CANCELLED and not outcome.failure and not outcome.retry


def test_trios_cancellation_is_cancelled_too() -> None:
    error = trio_cancelled()
    assert is_exit(error)
    assert classify(brace.network, error, None).kind is Kind.CANCELLED


@pytest.mark.parametrize("error", [
    brace.CircuitOpenError("b", 1.0), brace.BulkheadFullError("full"),
    brace.RateLimitedError("no token"), pybreaker.CircuitBreakerError("a user's breaker"),
], ids=lambda e: type(e).__name__)
def test_refusals_are_refused_and_never_failures(error: BaseException) -> None:
    outcome = classify(brace.network, error, None)
    assert outcome.kind is Kind.REFUSED and not outcome.failure


def test_kinds_of_errors_and_values() -> None:
    policy = brace.http(statuses=[503])
    assert classify(policy, ConnectionError("refused"), None).kind is Kind.RETRYABLE
    assert classify(policy, tenacity.TryAgain(), None).kind is Kind.RETRYABLE
    bug = classify(policy, KeyError("x"), None)
    assert (bug.kind, bug.why, bug.failure) == (Kind.NOT_RETRIED, "not_retryable", False)
    assert classify(policy, None, "plain value").kind is Kind.SUCCESS
    ok = httpx.Response(200, request=httpx.Request("GET", "http://127.0.0.1/"))
    assert classify(policy, None, ok).kind is Kind.SUCCESS


def test_a_failure_not_safe_to_resend_is_a_failure_that_is_not_retried() -> None:
    post = httpx.Response(503, request=httpx.Request("POST", "http://127.0.0.1/"))
    outcome = classify(brace.http, None, post)
    assert (outcome.kind, outcome.why, outcome.failure) == (Kind.NOT_RETRIED,
                                                           "not_idempotent", True)
    keyed = httpx.Response(503, request=httpx.Request(
        "POST", "http://127.0.0.1/", headers={"Idempotency-Key": "k1"}))
    assert classify(brace.http, None, keyed).retry


@pytest.mark.parametrize(("status", "headers", "throttled"), [
    (429, {}, True), (529, {}, True), (503, {"Retry-After": "2"}, True), (503, {}, False),
    (500, {}, False),
])
def test_throttling_answers_are_marked(status: int, headers: dict[str, str],
                                       throttled: bool) -> None:
    response = httpx.Response(status, headers=headers,
                              request=httpx.Request("GET", "http://127.0.0.1/"))
    outcome = classify(brace.llm, None, response)
    assert outcome.retry and outcome.throttled is throttled


def test_what_an_inner_policy_gave_up_on_is_exhausted_since_the_call_began() -> None:
    from brace._outcome import LAST_MARK

    began = LAST_MARK[0]
    error = ConnectionError("given up on inside")
    assert classify(brace.network, error, None, began).kind is Kind.RETRYABLE
    mark_exhausted(error)
    outcome = classify(brace.network, error, None, began)
    assert (outcome.kind, outcome.why, outcome.failure) == (Kind.EXHAUSTED,
                                                           "inner_exhausted", True)
    # A call that began after the mark did not see it given up on.
    assert classify(brace.network, error, None, LAST_MARK[0]).kind is Kind.RETRYABLE


def test_the_breaker_and_the_retry_decision_read_one_verdict(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import brace._call

    judged: list[Any] = []
    real = brace._call.quick_verdict

    def counting(*args: Any, **kwargs: Any) -> Any:
        judged.append(args[1])
        return real(*args, **kwargs)

    # Every verdict of the call path begins with classify's first rules; the retry decision
    # (brace._policy) never judges again.
    monkeypatch.setattr(brace._call, "quick_verdict", counting)
    again: list[Any] = []
    judge_again = brace._policy.classify
    monkeypatch.setattr(brace._policy, "classify",
                        lambda *args, **kwargs: again.append(args) or judge_again(*args,
                                                                                  **kwargs))
    brace.breaker("one-verdict", fail_max=100)
    calls = 0

    @brace.network(attempts=3, breaker="one-verdict")
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("refused")
        return "ok"

    assert flaky() == "ok"
    # Three attempts, three verdicts: the breaker, the retry decision and the events all
    # read them; none judges the attempt again.
    assert len(judged) == 3
    assert again == []
