"""Per-attempt timeouts, deadlines that hold for async calls, cancellation, the one switch."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import time
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

import brace
from brace import _deadline
from tests.clocks import VirtualClock, exactly


def test_a_hanging_first_attempt_is_cut_off_and_the_second_answers(clock: VirtualClock) -> None:
    calls = 0

    @brace.network(attempt_timeout=0.1, initial=0, max_wait=0)
    async def lookup() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never set: hangs
        return "answer"

    started = clock.now
    with capture_logs() as logs:
        assert clock.run_asyncio(lookup()) == "answer"
    assert calls == 2
    assert clock.now - started == exactly(0.1)  # the attempt timeout, then no wait at all
    assert logs[0]["event"] == "retry.scheduled"
    assert logs[0]["error"] == "TimeoutError: attempt timed out after 0.1 s"


def test_the_deadline_ends_a_coroutine_that_never_returns(clock: VirtualClock) -> None:
    @brace.network(deadline=0.3)
    async def never() -> None:
        await asyncio.Event().wait()

    started = clock.now
    with capture_logs() as logs, pytest.raises(TimeoutError, match=r"deadline of 0\.3 s"):
        clock.run_asyncio(never())
    assert clock.now - started == exactly(0.3)
    assert logs[-1]["event"] == "retry.gave_up"
    assert logs[-1]["reason"] == "deadline"


def test_users_own_timeout_error_is_not_relabelled() -> None:
    @brace.network(attempts=1, attempt_timeout=5)
    async def fails_fast() -> None:
        raise TimeoutError("upstream said timeout")

    with pytest.raises(TimeoutError, match="upstream said timeout"):
        asyncio.run(fails_fast())


def _combinations() -> list[dict[str, Any]]:
    """300 seeded combinations of deadline, attempt timeout, backoff, attempts and behaviour."""
    rng = random.Random(20261124)
    cases = []
    for _ in range(300):
        deadline = rng.uniform(0.02, 0.15)
        cases.append({
            "deadline": deadline,
            "attempt_timeout": rng.choice([None, rng.uniform(0.005, deadline)]),
            "initial": rng.uniform(0, 0.05),
            "behaviour": rng.choice(["hang", "fail", "slow-fail"]),
            "attempts": rng.randint(1, 8),
        })
    return cases


def _combined(case: dict[str, Any]) -> Any:
    """The async function of one combination, under its policy."""
    policy = brace.network(attempts=case["attempts"], deadline=case["deadline"],
                           initial=case["initial"], max_wait=max(case["initial"], 0.05),
                           attempt_timeout=case["attempt_timeout"])

    @policy
    async def call() -> None:
        if case["behaviour"] == "hang":
            await asyncio.Event().wait()
        if case["behaviour"] == "slow-fail":
            await asyncio.sleep(case["deadline"] / 3)
        raise ConnectionError("down")

    return call


def test_deadline_holds_exactly_for_hundreds_of_combinations(clock: VirtualClock) -> None:
    """In virtual time no call ends a moment past its deadline, whatever combines, and a
    call that hangs with no attempt timeout ends exactly at it, with the deadline's error."""
    cases = _combinations()

    async def one(case: dict[str, Any]) -> tuple[float, BaseException]:
        call = _combined(case)
        started = clock.now
        with pytest.raises((TimeoutError, ConnectionError)) as info:
            await call()
        return clock.now - started, info.value

    async def main() -> list[tuple[float, BaseException]]:
        return list(await asyncio.gather(*(one(case) for case in cases)))

    ended = clock.run_asyncio(main())
    for case, (elapsed, error) in zip(cases, ended, strict=True):
        assert elapsed <= case["deadline"] + 1e-9, (case, elapsed)
        if case["behaviour"] == "hang" and case["attempt_timeout"] is None:
            assert elapsed == exactly(case["deadline"]), (case, elapsed)
            assert str(error) == f"deadline of {case['deadline']:g} s reached"
    # Every way of ending occurs: the deadline, an attempt timeout, the last failure.
    assert {str(error).split(" ")[0] for _, error in ended} >= {"deadline", "attempt", "down"}


def test_deadline_holds_for_hundreds_of_combinations() -> None:
    """In real time, on a real loop, under a burst of 300 calls: total time never exceeds
    the deadline by more than 0.1 s beyond the event loop's own lateness, whatever combines.

    Kept on the wall clock on purpose: it measures brace's own cost at the deadline under
    load, next to what the same loop's plain timers suffer in the same burst (the exact
    deadline arithmetic is ``test_deadline_holds_exactly_for_hundreds_of_combinations``'s).
    """
    cases = _combinations()

    async def one(case: dict[str, Any]) -> float:
        call = _combined(case)
        started = time.monotonic()
        with pytest.raises((TimeoutError, ConnectionError)):
            await call()
        return time.monotonic() - started - case["deadline"]

    async def sentinel(case: dict[str, Any]) -> float:
        # A plain sleep of the same length in the same burst: how late the loop itself runs.
        started = time.monotonic()
        await asyncio.sleep(case["deadline"])
        return time.monotonic() - started - case["deadline"]

    async def ticker(done: asyncio.Event) -> float:
        # Short plain sleeps until the last call ended: how late the loop itself runs at
        # any moment of the burst, after the last sentinel woke too (a busy machine stalls
        # the process then as well, while calls are still ending).
        worst = 0.0
        while not done.is_set():
            started = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - started - 0.005)
        return worst

    async def main() -> tuple[list[float], list[float], float]:
        done = asyncio.Event()
        ticking = asyncio.ensure_future(ticker(done))
        results = await asyncio.gather(*(one(case) for case in cases),
                                       *(sentinel(case) for case in cases))
        done.set()
        return list(results[:len(cases)]), list(results[len(cases):]), await ticking

    # The heap other tests leave behind (SDKs, drivers) makes a full garbage collection
    # during this burst of 300 calls cost more than the margin measured here.
    gc.collect()
    gc.freeze()
    try:
        overshoots, loop_lateness, ticked = asyncio.run(main())
    finally:
        gc.unfreeze()
    # brace's own share of the overshoot, beyond what the loop's lateness under this burst
    # (on a busy machine) costs every timer alike: the sentinels' lateness at the deadlines,
    # or any moment while calls were still ending (the ticker's).
    lateness = max(*loop_lateness, ticked)
    assert max(overshoots) <= lateness + 0.1, (max(overshoots), max(loop_lateness), ticked)


def test_cancelling_the_caller_mid_attempt_cancels_at_once(clock: VirtualClock) -> None:
    calls = 0

    async def main() -> None:
        started = asyncio.Event()

        @brace.network(attempts=5)
        async def slow() -> None:
            nonlocal calls
            calls += 1
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(slow())
        await started.wait()
        t0 = clock.now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.now == t0  # at once: no timer had to fire

    clock.run_asyncio(main())
    assert calls == 1


def test_cancelling_the_caller_mid_sleep_cancels_at_once(clock: VirtualClock) -> None:
    calls = 0

    async def main() -> None:
        failed = asyncio.Event()

        @brace.network(attempts=5, initial=5, max_wait=5)  # sleeps of up to 5 s
        async def flaky() -> None:
            nonlocal calls
            calls += 1
            failed.set()
            raise ConnectionError("down")

        task = asyncio.ensure_future(flaky())
        await failed.wait()
        await asyncio.sleep(0)  # let it enter the backoff sleep
        t0 = clock.now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.now == t0  # at once: not at the end of the backoff sleep

    clock.run_asyncio(main())
    assert calls == 1


def test_cancellation_is_never_turned_into_a_fallback() -> None:
    async def main() -> None:
        started = asyncio.Event()

        @brace.network(fallback="degraded")
        async def slow() -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        task = asyncio.ensure_future(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


# -- the one switch ---------------------------------------------------------------------------


def test_event_loops_are_not_kept_alive() -> None:
    import gc
    import weakref

    @brace.network(attempt_timeout=1)
    async def call() -> int:
        return 1

    refs = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(call()) == 1
        finally:
            loop.close()
        refs.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]  # brace's watchdogs let them go


# -- a caller's cancellation always wins ------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason=(
    "before 3.11 asyncio merges two cancel requests that land in one loop iteration into "
    "one, so a caller's cancel at the very moment of a timeout is reported as the timeout"))
@pytest.mark.parametrize("via", ["attempt_timeout", "deadline"])
def test_a_cancel_that_lands_with_a_timeout_is_never_converted(via: str) -> None:
    """Hundreds of seeded timings around the moment the timeout fires: the task always ends
    cancelled, and no attempt starts after the cancel."""
    rng = random.Random(1125)
    limit = 0.05
    kwargs: dict[str, Any] = ({"attempt_timeout": limit, "deadline": 5} if via == "attempt_timeout"
                              else {"deadline": limit})
    policy = brace.network(initial=0, max_wait=0, **kwargs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        starts: dict[int, list[float]] = {}

        def make(i: int) -> Any:
            @policy
            async def hang() -> None:
                starts.setdefault(i, []).append(loop.time())
                await asyncio.sleep(30)

            return hang

        tasks, cancelled_at = [], {}
        for i in range(200):
            task = asyncio.create_task(make(i)())
            delay = limit + rng.uniform(-0.004, 0.004)

            def cancel(task: asyncio.Task[Any] = task, i: int = i) -> None:
                if task.cancel():  # False: the call had ended (say by its deadline) before
                    cancelled_at[i] = loop.time()

            loop.call_later(delay, cancel)
            tasks.append(task)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert len(cancelled_at) > 100  # most cancels landed while the call was running
        for i, result in enumerate(results):
            if i not in cancelled_at:
                assert isinstance(result, TimeoutError), (i, result)
                continue
            assert isinstance(result, asyncio.CancelledError), (i, result)
            assert all(start <= cancelled_at[i] for start in starts[i]), i

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is new in 3.11")
def test_inside_a_task_group_a_siblings_failure_cancels_the_call() -> None:
    calls = 0

    @brace.network(attempt_timeout=0.05, deadline=5, initial=0, max_wait=0)
    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)

    async def sibling() -> None:
        await asyncio.sleep(0.05)  # fails as the first attempt times out
        raise ValueError("sibling failed")

    async def main() -> None:
        with pytest.raises(ExceptionGroup) as group:  # noqa: F821 - 3.11+
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(hang())
                tasks.create_task(sibling())
        # Only the sibling's error: the call was cancelled, not turned into a TimeoutError.
        assert [type(e) for e in group.value.exceptions] == [ValueError]

    asyncio.run(main())
    assert calls <= 2  # the call stopped with the group, not after its retries


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
def test_under_asyncio_timeout_the_callers_timeout_wins(clock: VirtualClock) -> None:
    calls = 0

    @brace.network(attempt_timeout=0.05, deadline=5, initial=0, max_wait=0)
    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)

    async def main() -> float:
        started = clock.now
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.05):  # expires at the very moment of the attempt's
                await hang()
        # asyncio.timeout's own TimeoutError (raised from the cancellation), not brace's.
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return clock.now - started

    assert clock.run_asyncio(main()) == exactly(0.05)  # the caller's timeout, no later
    assert calls == 1  # both land in one loop iteration: the cut attempt is not retried


def test_distinct_deadlines_keep_the_watchdog_count_bounded() -> None:
    async def one() -> int:
        return 1

    async def main() -> int:
        for i in range(10_000):  # far more distinct lengths than the bound of 64
            # A deadline derived from each request's remaining time: all distinct.
            assert await brace.network(deadline=1 + i * 1e-6)(one)() == 1
        return _deadline.watchdog_count()

    assert asyncio.run(main()) <= _deadline.MAX_IDLE_WATCHDOGS + 1


def _rss() -> int:
    # This process's resident memory, in bytes (Linux; tracemalloc would triple the run).
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") and os.environ.get("CI") != "true",
                    reason="reads Linux's /proc (CI runs on Linux: there it must run)")
def test_dropped_watchdogs_leave_no_timer_and_no_memory_behind() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        async def calls(count: int, base: float) -> None:
            for i in range(count):
                # What an async call under a deadline of its own does with the watchdog.
                dog = _deadline.watchdog(loop, base + i * 1e-3, "deadline")
                dog.release(dog.watch(task, loop))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # calls await: the loop runs

        await calls(20_000, 1_000)  # warm up: the allocator's arenas, the loop's heap
        gc.collect()
        before = _rss()
        await calls(200_000, 2_000)  # 200,000 calls, each with a deadline of its own
        gc.collect()
        pending = sum(1 for handle in loop._scheduled  # type: ignore[attr-defined]
                      if not handle.cancelled())
        return _rss() - before, pending

    grown, pending = asyncio.run(main())
    # A dropped watchdog cancels its timer: neither it nor its deque outlives the call.
    assert pending <= _deadline.MAX_IDLE_WATCHDOGS + 1
    assert grown < 5 * 1024 * 1024, f"{grown / 2**20:.1f} MB held after 200,000 calls"


# --- request-scoped deadlines: brace.deadline(seconds), brace.remaining() ------------------

scope_runners = pytest.mark.parametrize("library", ["asyncio", "trio"])


def test_a_scope_ends_a_policy_with_a_longer_deadline(virtual_sleeps: VirtualClock) -> None:
    clock = virtual_sleeps
    calls = 0

    @brace.network(deadline=30, attempts=1000, initial=0.01, max_wait=0.05)
    def fetch() -> None:
        nonlocal calls
        calls += 1
        clock.advance(0.01)
        raise ConnectionError("refused")

    started = clock.now
    with capture_logs() as logs, brace.deadline(0.5), pytest.raises(ConnectionError):
        fetch()
    elapsed = clock.now - started
    # The scope's 0.5 s (no sleep ends past it; the last attempt may run on), not 30 s.
    assert 0.4 < elapsed <= 0.5 + 0.01
    assert calls > 3
    assert [e["reason"] for e in logs if e["event"] == "retry.gave_up"] == ["deadline"]


@scope_runners
def test_a_scope_ends_async_calls_in_time(library: str, clock: VirtualClock) -> None:
    calls = 0

    @brace.network(deadline=30, attempts=1000, initial=0.01, max_wait=0.05)
    async def fetch() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    @brace.network(deadline=30)
    async def hangs() -> None:
        await anyio.sleep(3600)

    async def main() -> tuple[float, float]:
        started = clock.now
        async with brace.deadline(0.5):
            with pytest.raises(ConnectionError):
                await fetch()
        failing = clock.now - started
        started = clock.now
        async with brace.deadline(0.5):
            with pytest.raises(TimeoutError):
                await hangs()  # cut off by the scope's deadline, in flight
        return failing, clock.now - started

    failing, hung = clock.runner(library)(main)
    assert 0.4 < failing <= 0.5 and calls > 3
    assert hung == exactly(0.5)


def test_scopes_nest_to_the_tighter_and_remaining_reads_the_innermost(
        clock: VirtualClock) -> None:
    assert brace.remaining() is None
    with brace.deadline(1.0) as outer:
        assert brace.remaining() == exactly(1.0)
        with brace.deadline(5.0):
            assert brace.remaining() == exactly(1.0)  # never outlives the outer scope
        with brace.deadline(0.2):
            clock.advance(0.05)
            assert brace.remaining() == exactly(0.15)
        assert brace.remaining() == exactly(0.95) == outer.remaining()
    assert brace.remaining() is None
    assert _deadline.OPEN[0] == 0


def test_a_call_in_a_scope_that_ran_out_never_calls_its_function(clock: VirtualClock) -> None:
    called: list[int] = []

    @brace.network()
    def sync_call() -> None:
        called.append(1)

    @brace.network()
    async def async_call() -> None:
        called.append(2)

    async def main() -> None:
        async with brace.deadline(0.1):
            clock.advance(0.2)
            with pytest.raises(TimeoutError, match=r"brace\.deadline scope ran out"):
                await async_call()

    with brace.deadline(0), pytest.raises(TimeoutError, match=r"brace\.deadline scope ran out"):
        sync_call()
    clock.run_asyncio(main())
    assert called == []


def test_tasks_started_inside_a_scope_inherit_it_and_other_threads_do_not(
        clock: VirtualClock) -> None:
    import threading

    seen: dict[str, float | None] = {}

    async def main() -> None:
        async with brace.deadline(2.0):
            seen["task"] = await asyncio.create_task(_remaining())
            other = threading.Thread(target=lambda: seen.__setitem__("thread",
                                                                     brace.remaining()))
            other.start()
            other.join(5)

    clock.run_asyncio(main())
    assert seen == {"task": exactly(2.0), "thread": None}


async def _remaining() -> float | None:
    return brace.remaining()


def test_tenacity_code_under_a_scope_stops_at_it(virtual_sleeps: VirtualClock) -> None:
    clock = virtual_sleeps
    policy = brace.network(deadline=30, attempts=1000, initial=0.01, max_wait=0.05)
    attempts = 0
    started = clock.now
    with brace.deadline(0.5), pytest.raises(ConnectionError):
        for attempt in policy.retrying(sleep=clock.sleep):
            with attempt:
                attempts += 1
                clock.advance(0.01)
                raise ConnectionError("refused")
    assert clock.now - started <= 0.5 + 0.01 and attempts > 3


def test_a_scope_knows_whether_a_policy_inside_gave_up(clock: VirtualClock) -> None:
    @brace.network(attempts=2, initial=0, max_wait=0)
    def failing() -> None:
        raise ConnectionError("refused")

    @brace.network(breaker="scope-dependency")
    def guarded() -> str:
        return "ok"

    with brace.deadline(5) as healthy:
        assert guarded() == "ok"
    assert not healthy.exhausted
    with brace.deadline(5) as outer, brace.deadline(5) as inner, pytest.raises(ConnectionError):
        failing()
    assert inner.exhausted and outer.exhausted  # every scope around says so
    brace.breaker("scope-dependency").force_open()
    with brace.deadline(5) as refused, pytest.raises(brace.CircuitOpenError):
        guarded()
    assert refused.exhausted


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (float("nan"), ValueError),
                                              ("2", TypeError), (None, TypeError)])
def test_a_bad_scope_is_refused_naming_seconds(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="seconds"):
        brace.deadline(value)


def test_a_scope_is_entered_once() -> None:
    scope = brace.deadline(1)
    with scope, pytest.raises(RuntimeError, match="entered once"), scope:
        pass
