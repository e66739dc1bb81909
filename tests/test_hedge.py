"""Hedging (``hedge_after=``, ``hedges=``) on decorated async functions, under asyncio, trio
and anyio on either backend: a copy races an attempt that has not answered, the first answer
the policy would not retry wins, the others are cancelled, and every copy is an attempt that
passes the breaker, the rate limit, the bulkhead and the retry budget.

Slow attempts wait on events or sleeps that the winner's cancellation ends; nothing here
waits and hopes: each test asserts what ran and what was cancelled. Every race runs in
virtual time (``tests.clocks``): hedges start, answers arrive and copies time out at the
exact moments the script and the policy say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

import brace
from brace import _deadline
from brace.testing import no_waits
from tests.clocks import LIBRARIES, VirtualClock, exactly

# anyio picks the asyncio or the trio way by the running library: the two plain runners cover
# both, and the headline tests also run under anyio on either backend.
every_runner = pytest.mark.parametrize("run", LIBRARIES, indirect=True)
runners = pytest.mark.parametrize("run", ["asyncio", "trio"], indirect=True)


@pytest.fixture
def run(request: pytest.FixtureRequest, clock: VirtualClock) -> Callable[..., Any]:
    """The parametrized library's runner, in the test's virtual time."""
    return clock.runner(request.param)


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def observer(event: str, fields: dict[str, Any]) -> None:
        seen.append((event, fields))

    brace.observe(observer)
    yield seen
    brace.unobserve(observer)


class Copies:
    """A dependency whose answers are scripted per copy: (delay_s, outcome) in call order.

    Records every call, when it started (on brace's clock: virtual in these tests) and
    every copy that was cancelled while it waited.
    """

    def __init__(self, *script: tuple[float, Any]) -> None:
        self.script = list(script)
        self.calls = 0
        self.cancelled: list[int] = []
        self.started_at: list[float] = []

    async def __call__(self) -> Any:
        self.calls += 1
        number = self.calls
        self.started_at.append(_deadline.clock())
        delay, outcome = self.script[min(number, len(self.script)) - 1]
        try:
            await anyio.sleep(delay)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(number)
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@every_runner
def test_the_hedge_answers_a_slow_first_attempt_and_the_first_is_cancelled(
        run: Callable[..., Any], clock: VirtualClock,
        events: list[tuple[str, dict[str, Any]]]) -> None:
    dependency = Copies((5.0, "slow"), (0.0, "fast"))
    call = brace.network(hedge_after=0.1)(dependency)

    async def main() -> tuple[Any, float]:
        started = clock.now
        return await call(), clock.now - started

    started = clock.now
    value, elapsed = run(main)
    assert value == "fast"
    assert elapsed == exactly(0.1)  # hedge_after, then the hedge's answer at once
    assert [at - started for at in dependency.started_at] == [exactly(0), exactly(0.1)]
    assert dependency.calls == 2 and dependency.cancelled == [1]
    assert call.statistics["attempt_number"] == 2  # the hedge is an attempt
    hedges = [fields for event, fields in events if event == "hedge.started"]
    assert len(hedges) == 1
    assert hedges[0]["attempt"] == 2 and hedges[0]["preset"] == "network"
    assert hedges[0]["after_s"] == exactly(0.1)
    assert not [event for event, _ in events if event.startswith("retry.")]


@runners
def test_an_answer_before_hedge_after_starts_no_hedge(
        run: Callable[..., Any], events: list[tuple[str, dict[str, Any]]]) -> None:
    dependency = Copies((0.0, "at once"))
    call = brace.network(hedge_after=0.2)(dependency)
    assert run(call) == "at once"
    assert dependency.calls == 1 and dependency.cancelled == []
    assert call.statistics["attempt_number"] == 1
    assert not [event for event, _ in events if event == "hedge.started"]


@runners
def test_a_failed_hedge_waits_for_the_attempt_still_running(run: Callable[..., Any],
                                                            clock: VirtualClock) -> None:
    # The hedge fails at once; the first attempt answers later, and its answer wins.
    dependency = Copies((0.15, "first"), (0.0, ConnectionResetError("reset")))
    call = brace.network(hedge_after=0.05)(dependency)
    started = clock.now
    with no_waits():
        assert run(call) == "first"
    assert dependency.calls == 2 and dependency.cancelled == []
    assert clock.now - started == exactly(0.15)  # the first attempt's answer, when it came


@runners
def test_hedges_count_as_attempts_and_copies_that_all_fail_are_retried(
        run: Callable[..., Any], events: list[tuple[str, dict[str, Any]]]) -> None:
    # attempts=3: the first attempt and its hedge fail, the retry is the third attempt and
    # has no room left for a hedge.
    dependency = Copies((0.1, ConnectionResetError("1")), (0.0, ConnectionResetError("2")),
                        (0.1, ConnectionResetError("3")))
    call = brace.network(hedge_after=0.05, attempts=3)(dependency)
    with no_waits(), pytest.raises(ConnectionResetError, match="3"):
        run(call)
    assert dependency.calls == 3
    assert call.statistics["attempt_number"] == 3
    scheduled = [fields for event, fields in events if event == "retry.scheduled"]
    assert [fields["attempt"] for fields in scheduled] == [2]  # the copies were 1 and 2
    gave_up = [fields for event, fields in events if event == "retry.gave_up"]
    assert gave_up[0]["attempts"] == 3 and gave_up[0]["reason"] == "attempts"
    assert [fields["attempt"] for event, fields in events if event == "hedge.started"] == [2]


@runners
def test_hedges_start_one_per_hedge_after_up_to_hedges(run: Callable[..., Any],
                                                       clock: VirtualClock) -> None:
    dependency = Copies((5.0, "slow"), (5.0, "slow"), (0.0, "third"))
    call = brace.network(hedge_after=0.05, hedges=2, attempts=4)(dependency)

    async def main() -> Any:
        started = clock.now
        value = await call()
        return value, [at - started for at in dependency.started_at], clock.now - started

    value, starts, elapsed = run(main)
    assert value == "third"
    assert starts == [exactly(0), exactly(0.05), exactly(0.1)]
    assert elapsed == exactly(0.1)  # the third copy answered as it started
    assert sorted(dependency.cancelled) == [1, 2]
    assert call.statistics["attempt_number"] == 3


@runners
def test_an_answer_that_is_not_retried_wins_at_once(run: Callable[..., Any]) -> None:
    # A bug (or a 404) is an answer: the slow first attempt is cancelled, the error raised.
    dependency = Copies((5.0, "slow"), (0.0, ValueError("bad input")))
    call = brace.network(hedge_after=0.05)(dependency)
    with pytest.raises(ValueError, match="bad input"):
        run(call)
    assert dependency.cancelled == [1]


@runners
def test_attempt_timeout_bounds_each_copy(run: Callable[..., Any], clock: VirtualClock) -> None:
    # Both copies of attempt 1 time out (0.1 s each, started 0.05 s apart); attempt 3 answers.
    dependency = Copies((5.0, "slow"), (5.0, "slow"), (0.0, "third"))
    call = brace.network(hedge_after=0.05, attempt_timeout=0.1, attempts=3)(dependency)

    async def main() -> tuple[Any, float]:
        started = clock.now
        return await call(), clock.now - started

    started = clock.now
    with no_waits():
        value, elapsed = run(main)
    assert value == "third"
    # The second copy timed out at 0.05 + 0.1 s; the retry (no backoff) answered at once.
    assert elapsed == exactly(0.15)
    assert [at - started for at in dependency.started_at] == [exactly(0), exactly(0.05),
                                                              exactly(0.15)]
    assert sorted(dependency.cancelled) == [1, 2]
    assert call.statistics["attempt_number"] == 3


@every_runner
def test_the_deadline_cuts_every_copy_off(run: Callable[..., Any], clock: VirtualClock) -> None:
    dependency = Copies((5.0, "slow"))
    call = brace.network(hedge_after=0.05, deadline=0.2)(dependency)

    async def main() -> float:
        started = clock.now
        with pytest.raises(TimeoutError, match=r"deadline of 0\.2 s reached"):
            await call()
        return clock.now - started

    elapsed = run(main)
    assert elapsed == exactly(0.2)
    assert dependency.calls == 2 and sorted(dependency.cancelled) == [1, 2]


def test_a_callers_cancellation_cancels_every_copy(clock: VirtualClock) -> None:
    dependency = Copies((5.0, "slow"))
    call = brace.network(hedge_after=0.02)(dependency)

    async def main() -> None:
        task = asyncio.create_task(call())
        while dependency.calls < 2:  # bounded by the hedge: it starts after 0.02 s
            await asyncio.sleep(0.01)
        cancelled_at = clock.now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.now == cancelled_at  # the copies were cancelled at once

    started = clock.now
    clock.run_asyncio(main())
    assert [at - started for at in dependency.started_at] == [exactly(0), exactly(0.02)]
    assert sorted(dependency.cancelled) == [1, 2]


def test_a_copy_that_wins_leaves_the_callers_task_uncancelled(clock: VirtualClock) -> None:
    # The first copy runs in the caller's task; the winning copy cancels that task, and the
    # call withdraws the request: the caller's next await is not cancelled.
    dependency = Copies((5.0, "slow"), (0.0, "fast"))
    call = brace.network(hedge_after=0.1)(dependency)

    async def main() -> tuple[Any, int]:
        value = await call()
        await asyncio.sleep(0)  # would raise CancelledError if a request were left over
        task = asyncio.current_task()
        assert task is not None
        return value, task.cancelling() if hasattr(task, "cancelling") else 0

    assert clock.run_asyncio(main()) == ("fast", 0)
    assert dependency.cancelled == [1]


def test_a_first_copy_that_swallows_its_cancellation_still_loses(clock: VirtualClock) -> None:
    answers: list[str] = []

    async def stubborn() -> str:
        answers.append("called")
        if len(answers) == 1:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                return "swallowed"  # a function that ignores its cancellation
            return "slow"
        return "fast"

    call = brace.network(hedge_after=0.1)(stubborn)

    async def main() -> tuple[str, int]:
        value = await call()
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return value, task.cancelling() if hasattr(task, "cancelling") else 0

    assert clock.run_asyncio(main()) == ("fast", 0)


def test_a_callers_cancellation_as_a_copy_wins_is_the_callers(clock: VirtualClock) -> None:
    # The caller cancels the call in the very step a copy's answer wins: the caller's
    # cancellation propagates; the copy's answer is not delivered.
    won = asyncio.Event

    async def main() -> None:
        ready = won()
        answers = 0

        async def dependency() -> str:
            nonlocal answers
            answers += 1
            if answers == 1:
                await asyncio.sleep(5)
                return "slow"
            ready.set()
            return "fast"

        call = brace.network(hedge_after=0.1)(dependency)
        task = asyncio.create_task(call())
        await ready.wait()  # the copy answered; its done-callback runs in the next step
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert answers == 2

    clock.run_asyncio(main())


def test_a_hedge_on_the_real_event_loop_answers_a_stuck_first_copy() -> None:
    # asyncio's own loop, on brace's clock: the race's timers use the call's start.
    stuck: list[str] = []

    async def dependency() -> str:
        stuck.append("call")
        if len(stuck) == 1:
            await asyncio.Event().wait()  # never answers; cancelled by the winner
        return "hedge"

    call = brace.network(hedge_after=0.01)(dependency)
    assert asyncio.run(call()) == "hedge"
    assert stuck == ["call", "call"]


@runners
def test_hedges_count_in_the_breaker(run: Callable[..., Any]) -> None:
    brace.breaker("hedged", fail_max=2, reset_timeout=60)
    dependency = Copies((0.2, ConnectionResetError("slow")), (0.0, ConnectionResetError("hedge")))
    call = brace.network(hedge_after=0.05, attempts=2, breaker="hedged")(dependency)
    with pytest.raises(ConnectionResetError):
        run(call)
    assert dependency.calls == 2
    assert brace.breakers()["hedged"].state == "open"  # two failures, one call
    with pytest.raises(brace.CircuitOpenError):
        run(call)
    assert dependency.calls == 2


@runners
def test_an_open_breaker_refuses_the_hedge_and_the_first_attempt_still_wins(
        run: Callable[..., Any]) -> None:
    breaker = brace.breaker("opens", fail_max=1, reset_timeout=60)
    calls = 0

    async def trip_then_answer() -> str:
        nonlocal calls
        calls += 1
        breaker.open()  # the breaker opens while the first attempt runs
        await anyio.sleep(0.15)
        return "first"

    call = brace.network(hedge_after=0.05, breaker="opens")(trip_then_answer)
    assert run(call) == "first"
    assert calls == 1  # the hedge was refused at the gate


@runners
def test_hedges_pass_the_bulkhead(run: Callable[..., Any],
                                  events: list[tuple[str, dict[str, Any]]]) -> None:
    brace.bulkhead("one", max_concurrent=1, queue_timeout=0)
    dependency = Copies((0.15, "first"), (0.0, "hedge"))
    call = brace.network(hedge_after=0.05, bulkhead="one")(dependency)
    assert run(call) == "first"  # the hedge found the only slot taken
    assert dependency.calls == 1
    assert [event for event, _ in events if event == "bulkhead.rejected"]


@runners
def test_hedges_take_rate_limit_tokens(run: Callable[..., Any],
                                       events: list[tuple[str, dict[str, Any]]]) -> None:
    brace.rate_limit("slowly", per_s=1, burst=1)
    dependency = Copies((0.15, "first"), (0.0, "hedge"))
    call = brace.network(hedge_after=0.05, rate_limit="slowly", deadline=0.5)(dependency)
    assert run(call) == "first"  # the next token is 1 s away, past the deadline
    assert dependency.calls == 1
    rejected = [fields for event, fields in events if event == "rate_limit.rejected"]
    assert [fields["wait_s"] for fields in rejected] == [0.95]  # asked for at 0.05 s


@runners
def test_a_spent_retry_budget_starts_no_hedge(run: Callable[..., Any]) -> None:
    brace.budget("spent", ratio=0.0, min_per_s=0.0)
    dependency = Copies((0.15, "first"), (0.0, "hedge"))
    call = brace.network(hedge_after=0.05, budget="spent")(dependency)
    assert run(call) == "first"
    assert dependency.calls == 1


def test_with_brace_switched_off_nothing_is_hedged(clock: VirtualClock) -> None:
    dependency = Copies((0.1, "first"), (0.0, "hedge"))
    call = brace.network(hedge_after=0.02)(dependency)
    brace.set_active(False)
    started = clock.now
    try:
        assert clock.run_asyncio(call()) == "first"
    finally:
        brace.set_active(True)
    assert dependency.calls == 1
    assert clock.now - started == exactly(0.1)  # the one attempt's own time


# -- settings that cannot take effect are refused --------------------------------------------


def test_a_sync_function_cannot_be_hedged() -> None:
    with pytest.raises(TypeError, match="hedge_after= races copies of an async call"):
        @brace.network(hedge_after=0.1)
        def sync() -> None: ...


@pytest.mark.parametrize(("overrides", "error", "message"), [
    ({"hedge_after": 0}, ValueError, "hedge_after must be a finite number of seconds"),
    ({"hedge_after": -1}, ValueError, "hedge_after"),
    ({"hedge_after": float("nan")}, ValueError, "hedge_after"),
    ({"hedge_after": True}, TypeError, "hedge_after"),
    ({"hedge_after": "0.1"}, TypeError, "hedge_after"),
    ({"hedge_after": 30.0, "deadline": 30.0}, ValueError, r"hedge_after must be < deadline"),
    ({"hedge_after": 0.1, "attempts": 1}, ValueError, "needs attempts >= 2"),
    ({"hedge_after": 0.1, "hedges": 0}, ValueError, "hedges must be an int in 1-1000"),
    ({"hedge_after": 0.1, "hedges": 4, "attempts": 4}, ValueError,
     r"hedges must be an int in \[1, 3\]"),
    ({"hedge_after": 0.1, "hedges": 1.5}, TypeError, "hedges"),
    ({"hedges": 2}, TypeError, "pass hedge_after= too"),
])
def test_bad_hedging_settings_are_refused_when_the_policy_is_built(
        overrides: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        brace.http(**overrides)


def test_tenacity_code_cannot_hedge() -> None:
    policy = brace.http(hedge_after=0.1)
    for build in (policy.tenacity_kwargs, policy.retrying, policy.async_retrying):
        with pytest.raises(TypeError, match="hedge_after="):
            build()


def test_the_sync_transport_refuses_a_hedging_policy() -> None:
    policy = brace.http(hedge_after=0.1)
    with pytest.raises(TypeError, match="only the async transport"):
        brace.RetryTransport(policy)
    with pytest.raises(TypeError, match="only the async transport"):
        policy.client()
    transport = brace.RetryTransport(
        brace.http, httpx.MockTransport(lambda request: httpx.Response(200)))
    with httpx.Client(transport=transport) as client, pytest.raises(
            TypeError, match=r'extensions\["brace"\] has a hedge_after='):
        client.get("http://127.0.0.1/", extensions={"brace": policy})


def test_explain_shows_hedging() -> None:
    assert brace.http.explain()["hedging"] is None
    shown = brace.http(hedge_after=0.2, hedges=2).explain()
    assert shown["hedging"]["after_s"] == 0.2 and shown["hedging"]["hedges"] == 2
    text = "\n".join(brace._explain.render_text(shown))
    assert "Hedging: a copy races an attempt unanswered after 0.2 s, at most 2" in text


# -- the async transport: which requests hedge, and losing responses are closed ---------------


class _Body(httpx.AsyncByteStream):
    def __init__(self, closed: list[int], number: int) -> None:
        self.closed, self.number = closed, number

    async def __aiter__(self) -> Any:
        yield b"body"

    async def aclose(self) -> None:
        self.closed.append(self.number)


def _hedging_client(delays: list[float], statuses: list[int], closed: list[int],
                    sent: list[str]) -> httpx.AsyncClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        number = len(sent)
        sent.append(request.method)
        await asyncio.sleep(delays[min(number, len(delays) - 1)])
        status = statuses[min(number, len(statuses) - 1)]
        return httpx.Response(status, stream=_Body(closed, number + 1))

    policy = brace.http(hedge_after=0.05)
    return httpx.AsyncClient(transport=brace.AsyncRetryTransport(
        policy, httpx.MockTransport(handler)))


def test_a_losing_response_is_closed(clock: VirtualClock) -> None:
    closed: list[int] = []
    sent: list[str] = []

    async def main() -> httpx.Response:
        async with _hedging_client([0.15, 0.0], [200, 503], closed, sent) as client:
            return await client.get("http://127.0.0.1/item")

    started = clock.now
    response = clock.run_asyncio(main())
    assert clock.now - started == exactly(0.15)  # the first attempt's answer won
    assert response.status_code == 200 and response.extensions["brace"]["attempts"] == 2
    assert sent == ["GET", "GET"]
    assert 2 in closed  # the hedge's 503 lost to the first attempt's 200


@pytest.mark.parametrize(("method", "headers", "copies"), [
    ("GET", {}, 2), ("PUT", {}, 2), ("DELETE", {}, 2),
    ("POST", {}, 1), ("PATCH", {}, 1), ("POST", {"Idempotency-Key": "k1"}, 2),
])
def test_the_transport_hedges_only_requests_safe_to_resend(
        method: str, headers: dict[str, str], copies: int, clock: VirtualClock) -> None:
    sent: list[str] = []

    async def main() -> httpx.Response:
        async with _hedging_client([0.15, 0.0], [200], [], sent) as client:
            return await client.request(method, "http://127.0.0.1/item", headers=headers)

    assert clock.run_asyncio(main()).status_code == 200
    assert len(sent) == copies

