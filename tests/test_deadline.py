"""Per-attempt timeouts, deadlines that hold for async calls, cancellation, the one switch."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace


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
    """Total time never exceeds the deadline by more than 0.1 s, whatever combines."""
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

    async def main() -> list[float]:
        return list(await asyncio.gather(*(one(case) for case in cases)))

    # The heap other tests leave behind (SDKs, drivers) makes a full garbage collection
    # during this burst of 300 calls cost more than the margin measured here.
    gc.collect()
    gc.freeze()
    try:
        overshoots = asyncio.run(main())
    finally:
        gc.unfreeze()
    assert max(overshoots) <= 0.1, max(overshoots)


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
