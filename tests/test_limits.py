"""Bulkheads and rate limits: they refuse, they do not queue forever (threads, asyncio, trio).

Async bulkheads and sync rate limits run in virtual time (``tests.clocks``), so the moments
slots are handed over and tokens come are exact. Threads waiting for a slot block on a real
``threading.Event``: those tests keep the real clock, with bounds far from the behaviour
they rule out.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
import trio

import brace
from brace.testing import no_waits
from tests.clocks import VirtualClock, exactly


class Peak:
    """Counts attempts running at once, from any thread or task."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def outcomes(results: list[Any]) -> list[str]:
    return sorted("ok" if r == "ok" else type(r).__name__ for r in results)


@pytest.mark.parametrize(("queue_timeout", "expected"), [
    (0, ["BulkheadFullError"] * 8 + ["ok"] * 2), (5, ["ok"] * 10)])
def test_threads(queue_timeout: float, expected: list[str]) -> None:
    # Real time: a thread waits for a slot on a threading.Event. The queue timeout is long
    # (the last callers wait 0.8 s), so a loaded machine cannot turn a wait into a refusal.
    brace.bulkhead("reports", max_concurrent=2, queue_timeout=queue_timeout)
    peak = Peak()

    release = threading.Event()

    @brace.network(attempts=1, bulkhead="reports")
    def report() -> str:
        peak.enter()
        if queue_timeout == 0:
            release.wait(10)  # hold the slot until every other caller was answered
        else:
            time.sleep(0.2)
        peak.leave()
        return "ok"

    results: list[Any] = []
    took: list[float] = []

    def worker() -> None:
        started = time.monotonic()
        try:
            result: Any = report()
        except brace.BulkheadFullError as exc:
            result = exc
        took.append(time.monotonic() - started)
        results.append(result)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    if queue_timeout == 0:
        # However late a loaded machine starts the threads, no slot frees up before the
        # other 8 callers were answered (a refusal, not a wait).
        try:
            _until(lambda: len(results) >= 8, "8 callers were answered", timeout=10)
        finally:
            release.set()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - started
    assert outcomes(results) == expected
    assert peak.peak == 2
    if queue_timeout == 0:
        # The 8 refused callers got their answer at once: they did not queue.
        assert sorted(took)[7] < 1.0
    else:
        # 10 calls of 0.2 s, 2 at a time: 1 s at least. A freed slot is handed over at
        # once: a waiter missing its wake-up would sit out the 5 s queue timeout.
        assert 1.0 <= elapsed < 2.5


def _async_case(queue_timeout: float, sleep: Any,
                clock: VirtualClock) -> tuple[Peak, Any, list[tuple[float, str]]]:
    brace.bulkhead("async-reports", max_concurrent=2, queue_timeout=queue_timeout)
    peak = Peak()
    ended: list[tuple[float, str]] = []  # (virtual seconds after the start, outcome)
    started = clock.now

    @brace.network(attempts=1, bulkhead="async-reports")
    async def report() -> str:
        peak.enter()
        await sleep(0.2)
        peak.leave()
        return "ok"

    async def one() -> Any:
        try:
            result: Any = await report()
        except brace.BulkheadFullError as exc:
            result = exc
        ended.append((clock.now - started, outcomes([result])[0]))
        return result

    return peak, one, ended


# 10 calls of 0.2 s, 2 at a time; when each ends (virtual seconds) and how.
ASYNC_CASES = pytest.mark.parametrize(("queue_timeout", "expected"), [
    # Refused at once: only the first two run.
    (0, [(0.0, "BulkheadFullError")] * 8 + [(0.2, "ok")] * 2),
    # Each freed slot goes to the next waiter: pairs end every 0.2 s; the last waited 0.8 s.
    (1, [(0.2, "ok")] * 2 + [(0.4, "ok")] * 2 + [(0.6, "ok")] * 2 + [(0.8, "ok")] * 2
        + [(1.0, "ok")] * 2),
    # Waiters still queued when their 0.5 s are up are refused then, not a moment later.
    (0.5, [(0.2, "ok")] * 2 + [(0.4, "ok")] * 2 + [(0.5, "BulkheadFullError")] * 4
          + [(0.6, "ok")] * 2),
])


def _exact(ended: list[tuple[float, str]]) -> list[tuple[Any, str]]:
    return [(exactly(at), outcome) for at, outcome in sorted(ended)]


@ASYNC_CASES
def test_asyncio(queue_timeout: float, expected: list[tuple[float, str]],
                 clock: VirtualClock) -> None:
    peak, one, ended = _async_case(queue_timeout, asyncio.sleep, clock)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(one() for _ in range(10))))

    clock.run_asyncio(main())
    assert sorted(ended) == _exact(expected)
    assert peak.peak == 2


@ASYNC_CASES
def test_trio(queue_timeout: float, expected: list[tuple[float, str]],
              clock: VirtualClock) -> None:
    peak, one, ended = _async_case(queue_timeout, trio.sleep, clock)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)

    clock.run_trio(main)
    assert sorted(ended) == _exact(expected)
    assert peak.peak == 2


def _until(condition: Any, what: str, timeout: float = 5.0) -> None:
    """Wait (bounded) until another thread has reached a state the test can see."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.002)


def test_a_freed_slot_goes_to_the_longest_waiting_attempt_whatever_it_runs_on() -> None:
    # One slot, held; a thread, an asyncio task and a trio task queue in that order, each
    # on its own thread. Each gets the slot in turn, in queue order.
    slots = brace.bulkhead("fifo", max_concurrent=1, queue_timeout=5)
    order: list[str] = []
    holding, done = threading.Event(), threading.Event()

    @brace.network(attempts=1, bulkhead="fifo")
    def hold() -> None:
        holding.set()
        done.wait(5)

    @brace.network(attempts=1, bulkhead="fifo")
    def in_a_thread() -> None:
        order.append("thread")

    @brace.network(attempts=1, bulkhead="fifo")
    async def in_a_task(library: str) -> None:
        order.append(library)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    waiters = [threading.Thread(target=in_a_thread),
               threading.Thread(target=lambda: asyncio.run(in_a_task("asyncio"))),
               threading.Thread(target=lambda: trio.run(in_a_task, "trio"))]
    for queued, waiter in enumerate(waiters, start=1):
        waiter.start()
        _until(lambda queued=queued: slots.waiting == queued, f"{queued} attempts queue")
    done.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == ["thread", "asyncio", "trio"]
    assert (slots.in_use, slots.waiting) == (0, 0)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on(library: str) -> None:
    slots = brace.bulkhead("cancel", max_concurrent=1, queue_timeout=5)
    ran: list[str] = []

    @brace.network(attempts=1, bulkhead="cancel")
    async def work(tag: str, hold: Any = None) -> None:
        ran.append(tag)
        if hold is not None:
            await hold()

    async def until(condition: Any) -> None:
        for _ in range(1000):  # bounded
            if condition():
                return
            await (asyncio.sleep(0.001) if library == "asyncio" else trio.sleep(0.001))
        raise AssertionError("never reached")

    if library == "asyncio":
        async def main() -> None:
            release = asyncio.Event()
            holder = asyncio.create_task(work("holder", release.wait))
            await until(lambda: slots.in_use == 1)
            first = asyncio.create_task(work("cancelled"))
            second = asyncio.create_task(work("second"))
            await until(lambda: slots.waiting == 2)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert slots.waiting == 1
            release.set()
            await asyncio.gather(holder, second)

        asyncio.run(main())
    else:
        async def trio_main() -> None:
            release = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(work, "holder", release.wait)
                await until(lambda: slots.in_use == 1)
                scope = trio.CancelScope()

                async def cancelled() -> None:
                    with scope:
                        await work("cancelled")

                nursery.start_soon(cancelled)
                await until(lambda: slots.waiting == 1)
                nursery.start_soon(work, "second")
                await until(lambda: slots.waiting == 2)
                scope.cancel()
                await until(lambda: slots.waiting == 1)
                release.set()

        trio.run(trio_main)
    assert ran == ["holder", "second"]
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_a_refusal_is_not_retried_and_not_counted_by_the_breaker(
        brace_reset_breakers: None) -> None:
    brace.breaker("guarded", fail_max=1)
    brace.bulkhead("narrow", max_concurrent=1, queue_timeout=0)
    inside = threading.Event()
    release = threading.Event()

    @brace.network(attempts=4, breaker="guarded", bulkhead="narrow")
    def slow() -> str:
        inside.set()
        release.wait(5)
        return "ok"

    holder = threading.Thread(target=slow)
    holder.start()
    inside.wait(5)
    with pytest.raises(brace.BulkheadFullError):
        slow()  # refused once: not retried (4 attempts would all be refused anyway)
    release.set()
    holder.join(5)
    info = brace.breakers()["guarded"]
    assert (info.state, info.failures) == ("closed", 0)  # neither success nor failure


def test_a_rate_limit_spaces_attempts(virtual_sleeps: VirtualClock) -> None:
    clock = virtual_sleeps  # brace's waits for a token advance it
    brace.rate_limit("quota", per_s=20, burst=1)
    calls = brace.network(attempts=1, rate_limit="quota")(lambda: clock.now)
    started = clock.now
    ran_at = [calls() for _ in range(40)]
    # 40 tokens at 20 a second, the first at once: each attempt 0.05 s after the one before.
    assert ran_at[0] == started
    spacings = [later - earlier for earlier, later in itertools.pairwise(ran_at)]
    assert spacings == [exactly(0.05)] * 39
    assert clock.sleeps == [exactly(0.05)] * 39  # waited through brace.waits.sleep
    assert clock.now - started == exactly(1.95)


def test_a_token_past_the_deadline_is_refused_at_once(clock: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(brace.waits, "sleep", slept.append)
    brace.rate_limit("slowquota", per_s=0.1, burst=1)  # one token per 10 s
    call = brace.network(attempts=1, deadline=5, rate_limit="slowquota")(lambda: "ok")
    assert call() == "ok"  # the burst's token
    clock.advance(1)  # the next token is 9 s away, past the 5 s deadline
    with pytest.raises(brace.RateLimitedError, match=r"9\.000 s away"):
        call()
    assert slept == []  # refused without waiting


def test_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        brace.bulkhead("bad", max_concurrent=0)
    with pytest.raises(ValueError, match="per_s"):
        brace.rate_limit("bad", per_s=0)
    with pytest.raises(TypeError, match="bulkhead="):
        brace.network(bulkhead=3)  # type: ignore[arg-type]
    brace.bulkhead("once", max_concurrent=2)
    with pytest.raises(ValueError, match="already exists with max_concurrent=2"):
        brace.bulkhead("once", max_concurrent=3)


def test_explain_shows_the_rate_limit_and_bulkhead() -> None:
    brace.bulkhead("explained", max_concurrent=4, queue_timeout=0.5)
    data = brace.llm(rate_limit="not-yet", bulkhead="explained").explain()
    assert data["bulkhead"] == {"name": "explained", "max_concurrent": 4, "queue_timeout": 0.5,
                                "adaptive": False, "limit": 4}
    assert data["rate_limit"] == {"name": "not-yet"}  # looking does not create it
    assert brace.network().explain()["bulkhead"] is None


def test_a_retry_never_waits_for_a_token_past_the_calls_deadline(
        virtual_sleeps: VirtualClock) -> None:
    clock = virtual_sleeps  # brace's backoffs and waits for a token advance it
    brace.rate_limit("spaced", per_s=5, burst=1)  # a token every 0.2 s
    attempts = 0

    @brace.network(attempts=3, deadline=0.3, initial=0, max_wait=0, rate_limit="spaced")
    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    started = clock.now
    # Attempt 2 waits 0.2 s for its token; attempt 3's would come at 0.4 s, past the 0.3 s
    # deadline of the call (not of the attempt): refused at once, 0.2 s before its token.
    with pytest.raises(brace.RateLimitedError, match=r"0\.200 s away"):
        down()
    assert attempts == 2
    assert [wait for wait in clock.sleeps if wait] == [exactly(0.2)]  # attempt 2's token
    assert clock.now - started == exactly(0.2)


def test_no_waits_gives_a_rate_limited_call_the_attempts_a_real_run_makes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A token every 0.2 s and backoffs of 0.3 s: in a real run every retry finds its token.
    # Inside no_waits() the skipped backoffs count as time passed for the bucket too (and
    # a skipped token wait counts against the deadline), so the test sees the same calls.
    import random

    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # jitter at its top
    brace.rate_limit("skipped-time", per_s=5, burst=1)
    calls = 0

    @brace.network(attempts=3, deadline=1.0, initial=0.3, max_wait=0.3,
                   rate_limit="skipped-time")
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with no_waits(), pytest.raises(ConnectionError):  # not RateLimitedError
        down()
    assert calls == 3
