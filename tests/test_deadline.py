"""Per-attempt timeouts, deadlines that hold for async calls, cancellation, the one switch."""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _deadline


def test_a_hanging_first_attempt_is_cut_off_and_the_second_answers() -> None:
    calls = 0

    @brace.network(attempt_timeout=0.1, initial=0, max_wait=0)
    async def lookup() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never set: hangs
        return "answer"

    started = time.monotonic()
    with capture_logs() as logs:
        assert asyncio.run(lookup()) == "answer"
    elapsed = time.monotonic() - started
    assert calls == 2
    assert 0.1 <= elapsed < 0.6
    assert logs[0]["event"] == "retry.scheduled"
    assert logs[0]["error"] == "TimeoutError: attempt timed out after 0.1 s"


def test_the_deadline_ends_a_coroutine_that_never_returns() -> None:
    @brace.network(deadline=0.3)
    async def never() -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(TimeoutError, match=r"deadline of 0\.3 s"):
        asyncio.run(never())
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.4
    assert logs[-1]["event"] == "retry.gave_up"
    assert logs[-1]["reason"] == "deadline"


def test_users_own_timeout_error_is_not_relabelled() -> None:
    @brace.network(attempts=1, attempt_timeout=5)
    async def fails_fast() -> None:
        raise TimeoutError("upstream said timeout")

    with pytest.raises(TimeoutError, match="upstream said timeout"):
        asyncio.run(fails_fast())


def test_deadline_holds_for_hundreds_of_combinations() -> None:
    """Total time never exceeds the deadline by more than 0.1 s beyond the event loop's own
    lateness, whatever combines."""
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

    async def one(case: dict[str, Any]) -> float:
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

        started = time.monotonic()
        with pytest.raises((TimeoutError, ConnectionError)):
            await call()
        return time.monotonic() - started - case["deadline"]

    async def sentinel(case: dict[str, Any]) -> float:
        # A plain sleep of the same length in the same burst: how late the loop itself runs.
        started = time.monotonic()
        await asyncio.sleep(case["deadline"])
        return time.monotonic() - started - case["deadline"]

    async def main() -> tuple[list[float], list[float]]:
        results = await asyncio.gather(*(one(case) for case in cases),
                                       *(sentinel(case) for case in cases))
        return list(results[:len(cases)]), list(results[len(cases):])

    # The heap other tests leave behind (SDKs, drivers) makes a full garbage collection
    # during this burst of 300 calls cost more than the margin measured here.
    gc.collect()
    gc.freeze()
    try:
        overshoots, loop_lateness = asyncio.run(main())
    finally:
        gc.unfreeze()
    # brace's own share of the overshoot, beyond what the loop's lateness under this burst
    # (on a busy machine) costs every timer alike.
    assert max(overshoots) <= max(loop_lateness) + 0.1, (max(overshoots), max(loop_lateness))


def test_cancelling_the_caller_mid_attempt_cancels_at_once() -> None:
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
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 0.05

    asyncio.run(main())
    assert calls == 1


def test_cancelling_the_caller_mid_sleep_cancels_at_once() -> None:
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
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 0.05

    asyncio.run(main())
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
def test_under_asyncio_timeout_the_callers_timeout_wins() -> None:
    @brace.network(attempt_timeout=0.05, deadline=5, initial=0, max_wait=0)
    async def hang() -> None:
        await asyncio.sleep(30)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.05):
                await hang()
        # asyncio.timeout's own TimeoutError (raised from the cancellation), not brace's.
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.2


def test_distinct_deadlines_keep_the_watchdog_count_bounded() -> None:
    async def one() -> int:
        return 1

    async def main() -> int:
        for i in range(10_000):  # far more distinct lengths than the bound of 64
            # A deadline derived from each request's remaining time: all distinct.
            assert await brace.network(deadline=1 + i * 1e-6)(one)() == 1
        return _deadline.watchdog_count()

    assert asyncio.run(main()) <= _deadline.MAX_IDLE_WATCHDOGS + 1
