"""The call path (``brace._call``): one call object and one Deadline per call, the layers in
DESIGN rule 5's order, one outcome per attempt, cancellation on asyncio and trio, and clean
give-ups.

The cancellation sweeps race a caller's cancel, the deadline and ``attempt_timeout`` against a
hedge race, a bulkhead wait and a rate-limit wait at seeded timings, and check each run:
never a CancelledError nobody asked for, never a swallowed cancel, no slot, token or task left
behind.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
import trio

import brace
import brace._call
import brace._deadline
from brace import _limits
from brace.testing import no_waits

RUNNERS: dict[str, Callable[[Callable[[], Awaitable[Any]]], Any]] = {
    "asyncio": lambda main: asyncio.run(main()),
    "trio": trio.run,
}
runners = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))
SWEEP = 200  # seeded timings per sweep


def brace_frames(error: BaseException) -> list[traceback.FrameSummary]:
    return [frame for frame in traceback.extract_tb(error.__traceback__)
            if "/brace/" in frame.filename.replace("\\", "/")]


# -- one call, one Deadline ----------------------------------------------------------------


class Spy:
    """Records the time budget each gate is given, and every Call and Deadline made.

    A call's deadline is its ``Call``'s (``seconds`` from ``started``); its ``Deadline``
    object is made only when something needs more than what is left (skipped sleeps).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.deadlines: list[brace._deadline.Deadline] = []
        self.calls: list[brace._call.Call] = []
        self.rate_budgets: list[float] = []
        self.slot_budgets: list[float] = []
        spy = self

        class Counted(brace._deadline.Deadline):
            __slots__ = ()

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                spy.deadlines.append(self)

        class CountedCall(brace._call.Call):
            __slots__ = ()

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                spy.calls.append(self)

        monkeypatch.setattr(brace._call, "Deadline", Counted)
        monkeypatch.setattr(brace._call, "Call", CountedCall)
        reserve, acquire, aacquire = (_limits.RateLimit.reserve, _limits.Bulkhead.acquire,
                                      _limits.Bulkhead.aacquire)

        def spy_reserve(limit: Any, name: str, budget_s: float) -> float:
            self.rate_budgets.append(budget_s)
            return reserve(limit, name, budget_s)

        def spy_acquire(slots: Any, name: str, budget_s: float) -> None:
            self.slot_budgets.append(budget_s)
            acquire(slots, name, budget_s)

        async def spy_aacquire(slots: Any, name: str, budget_s: float) -> None:
            self.slot_budgets.append(budget_s)
            await aacquire(slots, name, budget_s)

        monkeypatch.setattr(_limits.RateLimit, "reserve", spy_reserve)
        monkeypatch.setattr(_limits.Bulkhead, "acquire", spy_acquire)
        monkeypatch.setattr(_limits.Bulkhead, "aacquire", spy_aacquire)


def deadline_policy() -> brace.Policy:
    # Attempts every 3 virtual seconds, no backoff: the 10 s deadline ends the call after
    # the 4th attempt (9 s + 3 s > 10 s), long before attempts run out.
    brace.rate_limit("one-deadline", per_s=1e6, burst=100)
    brace.bulkhead("one-deadline", max_concurrent=4)
    return brace.network(attempts=9, initial=0, max_wait=0, deadline=10,
                         rate_limit="one-deadline", bulkhead="one-deadline")


def test_every_layer_of_a_sync_call_reads_its_one_deadline(clock: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    events: list[dict[str, Any]] = []
    observer = brace.observe(lambda event, fields: events.append(fields)
                             if event == "retry.gave_up" else None)

    @deadline_policy()
    def call() -> None:
        clock.advance(3)
        raise ConnectionError("refused")

    try:
        with pytest.raises(ConnectionError):
            call()
    finally:
        brace.unobserve(observer)
    assert len(spy.calls) == 1 and len(spy.deadlines) <= 1  # one call, one deadline
    # The first attempt found its token and slot free (the healthy path waits for
    # nothing); later ones are given what is left of that deadline, attempt by attempt; the
    # stop ends the call by the same deadline.
    assert spy.rate_budgets == spy.slot_budgets == [7.0, 4.0, 1.0]
    assert [e["reason"] for e in events] == ["deadline"]
    assert call.statistics["attempt_number"] == 4


@runners
def test_every_layer_of_an_async_call_reads_its_one_deadline(
        run: Callable[..., Any], clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)

    @deadline_policy()
    async def call() -> None:
        clock.advance(3)
        raise ConnectionError("refused")

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await call()

    run(main)
    assert len(spy.calls) == 1 and len(spy.deadlines) <= 1
    # As above on asyncio; under trio every attempt passes its gates through the cancel
    # scope's loop, the first one included.
    first = [10.0] if run is RUNNERS["trio"] else []
    assert spy.rate_budgets == spy.slot_budgets == [*first, 7.0, 4.0, 1.0]
    assert call.statistics["attempt_number"] == 4


def test_a_transport_request_reads_its_one_deadline(clock: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    read_timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        read_timeouts.append(request.extensions["timeout"]["read"])
        clock.advance(3)
        return httpx.Response(503)

    policy = deadline_policy().replace(statuses=[503])
    transport = brace.RetryTransport(policy=policy, transport=httpx.MockTransport(handler))
    with httpx.Client(transport=transport, timeout=5.0) as client:
        response = client.get("http://127.0.0.1:9/")
    assert len(spy.calls) == 1 and len(spy.deadlines) <= 1
    # httpx's own 5 s timeout, cut to what is left of the request's deadline.
    assert read_timeouts == [5.0, 5.0, 4.0, 1.0]
    # The first attempt takes its free token at once (the healthy path, as a decorated
    # call's); the retries wait for theirs within what is left.
    assert spy.rate_budgets == [7.0, 4.0, 1.0]
    assert response.extensions["brace"] == {"attempts": 4, "elapsed_s": 12.0,
                                            "exhausted": True}


def test_an_async_transport_request_reads_its_one_deadline(
        clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    read_timeouts: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        read_timeouts.append(request.extensions["timeout"]["read"])
        clock.advance(3)
        return httpx.Response(503)

    policy = deadline_policy().replace(statuses=[503])
    transport = brace.AsyncRetryTransport(policy=policy, transport=httpx.MockTransport(handler),
                                          breaker=None)  # no breaker: the healthy path

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            return await client.get("http://127.0.0.1:9/")

    response = asyncio.run(main())
    assert len(spy.calls) == 1 and len(spy.deadlines) <= 1
    assert read_timeouts == [5.0, 5.0, 4.0, 1.0]
    # The first attempt found its token and slot free (the async healthy path).
    assert spy.rate_budgets == spy.slot_budgets == [7.0, 4.0, 1.0]
    assert response.extensions["brace"]["attempts"] == 4


def test_skipped_sleeps_count_against_the_deadline_inside_no_waits(clock: Any) -> None:
    calls = 0

    @brace.network(attempts=50, initial=4, max_wait=4, deadline=10)
    def call() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    with no_waits(), pytest.raises(ConnectionError):
        call()
    # Waits are uniform in [0, 4] s; the skipped ones still use up the 10 s deadline.
    assert 2 <= calls < 50
    assert call.statistics["idle_for"] < 10


# -- the layers in rule 5's order ---------------------------------------------------------------


@runners
def test_a_bulkhead_wait_longer_than_attempt_timeout_does_not_cut_the_attempt(
        run: Callable[..., Any]) -> None:
    brace.bulkhead("order-slots", max_concurrent=1, queue_timeout=5)
    policy = brace.network(bulkhead="order-slots", attempt_timeout=0.05, deadline=5)
    runs: list[str] = []

    @policy
    async def hold(release: Any) -> None:
        await release.wait()

    @policy
    async def quick() -> str:
        await anyio.sleep(0.01)  # well within attempt_timeout
        runs.append("quick")
        return "ok"

    async def main() -> None:
        release = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(hold, release)
            while brace.bulkhead("order-slots").in_use < 1:
                await anyio.sleep(0)
            waiter = anyio.Event()
            result: list[str] = []

            async def wait_for_slot() -> None:
                result.append(await quick())
                waiter.set()

            group.start_soon(wait_for_slot)
            while brace.bulkhead("order-slots").waiting < 1:
                await anyio.sleep(0)
            started = anyio.current_time()
            await anyio.sleep(0.12)  # the waiter queues longer than attempt_timeout
            release.set()
            await waiter.wait()
            assert anyio.current_time() - started >= 0.12
        assert result == ["ok"]

    run(main)
    assert runs == ["quick"]  # one attempt, never cut while it waited for its slot
    assert brace.bulkhead("order-slots").in_use == 0


@runners
def test_a_rate_limit_wait_is_never_cut_by_attempt_timeout(run: Callable[..., Any]) -> None:
    brace.rate_limit("order-rate", per_s=10, burst=1)  # a token every 0.1 s
    calls = 0

    @brace.network(rate_limit="order-rate", attempt_timeout=0.05, deadline=5)
    async def call() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    async def main() -> None:
        assert await call() == "ok"  # takes the only token
        started = anyio.current_time()
        assert await call() == "ok"  # waits ~0.1 s for the next one, longer than 0.05 s
        assert anyio.current_time() - started >= 0.08

    run(main)
    assert calls == 2  # no token burned by a cut wait, no retry


def test_the_sync_transports_attempt_timeout_is_not_spent_waiting_for_a_token() -> None:
    brace.rate_limit("order-sync", per_s=10, burst=1)
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(200)

    policy = brace.http(rate_limit="order-sync", attempt_timeout=0.05, deadline=5)
    with policy.client(transport=httpx.MockTransport(handler)) as client:
        assert client.get("http://127.0.0.1:9/a").status_code == 200
        assert client.get("http://127.0.0.1:9/b").status_code == 200  # waited ~0.1 s
    assert timeouts == [0.05, 0.05]


# -- the healthy path takes a free token and slot at once --------------------------------------


def test_a_healthy_call_takes_its_token_and_slot_at_once_and_frees_the_slot() -> None:
    rate = brace.rate_limit("healthy-gates", per_s=1000, burst=3)
    slots = brace.bulkhead("healthy-gates", max_concurrent=1)
    seen: list[int] = []

    @brace.network(rate_limit="healthy-gates", bulkhead="healthy-gates")
    def call(fail: bool = False) -> int:
        seen.append(slots.in_use)
        if fail:
            raise ValueError("a bug: not retried")
        return 1

    assert call() == 1
    with pytest.raises(ValueError):
        call(fail=True)
    assert seen == [1, 1]  # each ran holding the one slot ...
    assert slots.in_use == 0  # ... and gave it back, success or failure
    assert rate._tat > 0  # tokens were taken from the bucket


def test_a_healthy_call_whose_slot_is_taken_gives_its_token_back_and_waits_its_turn() -> None:
    rate = brace.rate_limit("healthy-full", per_s=1, burst=1)
    slots = brace.bulkhead("healthy-full", max_concurrent=1, queue_timeout=0)
    assert slots.try_acquire()  # someone else holds the only slot

    @brace.network(rate_limit="healthy-full", bulkhead="healthy-full", attempts=1)
    def call() -> int:
        return 1

    with pytest.raises(brace.BulkheadFullError):
        call()
    slots.release()
    # The refused call's token was given back where it was not used: the next call gets
    # one at once (a burst of 1 at 1 a second would otherwise make it wait a second).
    assert rate.take_now()


@runners
def test_a_cancelled_healthy_async_call_gives_its_slot_back(run: Callable[..., Any]) -> None:
    slots = brace.bulkhead("healthy-cancel", max_concurrent=2)
    started = anyio.Event()

    @brace.network(bulkhead="healthy-cancel")
    async def call() -> None:
        started.set()
        await anyio.sleep(30)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await started.wait()
            assert slots.in_use == 1
            group.cancel_scope.cancel()

    run(main)
    assert slots.in_use == 0


# -- one outcome per attempt: cancellation counts for nothing ---------------------------------


@runners
def test_a_callers_cancel_is_neither_a_success_nor_a_failure_for_the_breaker(
        run: Callable[..., Any]) -> None:
    cb = brace.breaker("cancel-count", fail_max=3)
    policy = brace.network(attempts=1, breaker="cancel-count", deadline=5)

    @policy
    async def failing() -> None:
        raise ConnectionError("refused")

    @policy
    async def hanging() -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await failing()
        assert cb.fail_counter == 1
        with anyio.move_on_after(0.01) as scope:
            await hanging()
        assert scope.cancelled_caught
        # Not a success (that would reset the count to 0), not a failure (2).
        assert cb.fail_counter == 1

    run(main)


@runners
def test_a_deadline_cut_counts_as_the_dependencys_failure(run: Callable[..., Any]) -> None:
    # A hung dependency must trip the breaker on every async library.
    cb = brace.breaker("deadline-count", fail_max=2)

    @brace.network(attempts=1, breaker="deadline-count", deadline=0.02)
    async def hanging() -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await hanging()

    run(main)
    assert cb.current_state == "open"


# -- cancellation sweeps ---------------------------------------------------------------------------


class Sweep:
    """Outcomes of one sweep, checked after every run."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}

    def saw(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1


async def asyncio_cancel(call: Callable[[], Awaitable[Any]], at: float | None,
                         sweep: Sweep) -> None:
    """Run ``call`` in a task and cancel it ``at`` seconds in (None: never): a cancel that
    asyncio accepted must end the task cancelled (never swallowed), and nothing else may
    raise."""
    task = asyncio.ensure_future(call())
    requested = False
    if at is not None:
        await asyncio.sleep(at)
        requested = task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        assert requested, "a CancelledError nobody requested"
        sweep.saw("cancelled")
        return
    except TimeoutError:
        sweep.saw("timeout")
        return
    assert not requested, "a cancel was swallowed: the task returned normally"
    sweep.saw("done")


async def trio_cancel(call: Callable[[], Awaitable[Any]], at: float | None,
                      sweep: Sweep) -> None:
    with trio.move_on_after(60 if at is None else at) as scope:
        try:
            await call()
        except TimeoutError:
            sweep.saw("timeout")
            return
    sweep.saw("cancelled" if scope.cancelled_caught else "done")


async def no_stray_tasks() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # trio is structured: nothing can outlive the call
    assert {task for task in asyncio.all_tasks() if not task.done()} == {asyncio.current_task()}


def sweep(run: Callable[..., Any], one: Callable[[random.Random, Sweep], Awaitable[None]]) -> Sweep:
    rng = random.Random(20)
    seen = Sweep()

    async def main() -> None:
        for _ in range(SWEEP):
            await one(rng, seen)
            await no_stray_tasks()

    run(main)
    return seen


def canceller(run: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    return asyncio_cancel if run is RUNNERS["asyncio"] else trio_cancel


class Dependency:
    """An async dependency answering after a delay; counts answers that were abandoned."""

    def __init__(self) -> None:
        self.open = 0

    async def __call__(self, delay: float) -> str:
        await anyio.sleep(delay)
        return "ok"


@runners
@pytest.mark.parametrize("source", ["caller", "deadline", "attempt_timeout"])
def test_sweep_cancellation_racing_a_hedge_race(run: Callable[..., Any], source: str) -> None:
    cb = brace.breaker(f"sweep-hedge-{source}", fail_max=10_000)
    settings: dict[str, Any] = {"deadline": 5.0}
    if source == "deadline":
        settings["deadline"] = 0.004
    if source == "attempt_timeout":
        settings["attempt_timeout"] = 0.002
    dependency = Dependency()
    policy = brace.network(attempts=3, hedge_after=0.001, hedges=2, initial=0, max_wait=0,
                           breaker=f"sweep-hedge-{source}", **settings)
    call = policy(dependency)
    cancel = canceller(run)

    async def one(rng: random.Random, seen: Sweep) -> None:
        delay = rng.uniform(0, 0.005)
        at = rng.uniform(0, 0.006) if source == "caller" else None
        await cancel(lambda: call(delay), at, seen)

    seen = sweep(run, one)
    assert sum(seen.outcomes.values()) == SWEEP
    if source == "caller":
        assert seen.outcomes.get("cancelled", 0) > 0 and seen.outcomes.get("done", 0) > 0
        assert cb.fail_counter == 0  # cancelled copies and calls counted for nothing
    else:
        assert seen.outcomes.get("timeout", 0) > 0 and seen.outcomes.get("done", 0) > 0
        assert "cancelled" not in seen.outcomes  # never a CancelledError nobody requested


@runners
@pytest.mark.parametrize("source", ["caller", "deadline", "attempt_timeout"])
def test_sweep_cancellation_racing_a_bulkhead_wait(run: Callable[..., Any], source: str,
                                                   request: pytest.FixtureRequest) -> None:
    name = f"sweep-bulk-{source}"
    slots = brace.bulkhead(name, max_concurrent=1, queue_timeout=1.0)
    settings: dict[str, Any] = {"deadline": 5.0}
    if source == "deadline":
        settings["deadline"] = 0.003
    if source == "attempt_timeout":
        settings["attempt_timeout"] = 0.003  # bounds the call only, never the wait
    policy = brace.network(attempts=1, bulkhead=name, **settings)
    @brace.network(attempts=1, bulkhead=name, deadline=5.0)
    async def holder(delay: float, entered: anyio.Event) -> None:
        entered.set()  # inside the bulkhead: the slot is taken
        await anyio.sleep(delay)

    call = policy(Dependency())
    cancel = canceller(run)
    if source == "attempt_timeout":
        # In virtual time: a loaded machine must not stretch the instant call itself past
        # its 3 ms timeout (the property is that the slot waits are never cut).
        clock = request.getfixturevalue("clock")  # brace's clock follows the virtual one
        run = clock.runner("trio" if run is RUNNERS["trio"] else "asyncio")

    async def one(rng: random.Random, seen: Sweep) -> None:
        # Under attempt_timeout every wait for the slot outlasts the timeout.
        hold = rng.uniform(0.003, 0.006) if source == "attempt_timeout" else rng.uniform(0, 0.004)
        at = rng.uniform(0, 0.005) if source == "caller" else None
        async with anyio.create_task_group() as group:
            entered = anyio.Event()
            group.start_soon(holder, hold, entered)
            await entered.wait()
            try:
                await cancel(lambda: call(0), at, seen)
            except brace.BulkheadFullError:
                seen.saw("refused")
        assert slots.in_use == 0 and slots.waiting == 0  # no slot leaked

    seen = sweep(run, one)
    assert sum(seen.outcomes.values()) == SWEEP
    if source == "caller":
        assert seen.outcomes.get("cancelled", 0) > 0
    elif source == "deadline":
        assert "cancelled" not in seen.outcomes
        assert seen.outcomes.get("refused", 0) + seen.outcomes.get("timeout", 0) > 0
    else:
        # attempt_timeout never cuts the wait for a slot: every call gets one and answers.
        assert seen.outcomes == {"done": SWEEP}


@runners
@pytest.mark.parametrize("source", ["caller", "deadline", "attempt_timeout"])
def test_sweep_cancellation_racing_a_rate_limit_wait(run: Callable[..., Any], source: str,
                                                     request: pytest.FixtureRequest) -> None:
    name = f"sweep-rate-{source}"
    # A token every 2 ms; under attempt_timeout every 5 ms, longer than the timeout
    # (which bounds the instant call alone, never the wait for its token).
    per_s = 200 if source == "attempt_timeout" else 500
    limit = brace.rate_limit(name, per_s=per_s, burst=1)
    settings: dict[str, Any] = {"deadline": 5.0}
    if source == "deadline":
        settings["deadline"] = 0.002
    if source == "attempt_timeout":
        settings["attempt_timeout"] = 0.003
    call = brace.network(attempts=1, rate_limit=name, **settings)(Dependency())
    cancel = canceller(run)
    if source == "attempt_timeout":
        # In virtual time: a loaded machine must not stretch the instant call itself past
        # its 3 ms timeout (the property is that the token waits are never cut).
        clock = request.getfixturevalue("clock")  # brace's clock follows the virtual one
        run = clock.runner("trio" if run is RUNNERS["trio"] else "asyncio")

    async def one(rng: random.Random, seen: Sweep) -> None:
        at = rng.uniform(0, 0.003) if source == "caller" else None
        try:
            await cancel(lambda: call(0), at, seen)
        except brace.RateLimitedError:
            seen.saw("refused")

    seen = sweep(run, one)
    assert sum(seen.outcomes.values()) == SWEEP
    # No reservation outlives its waiter: the next token is at most one interval away.
    assert limit.reserve("check", 1.0) <= 1.05 / per_s
    if source == "caller":
        assert seen.outcomes.get("cancelled", 0) > 0
    else:
        assert "cancelled" not in seen.outcomes
    if source == "attempt_timeout":
        assert seen.outcomes == {"done": SWEEP}


def test_a_cancelled_rate_limit_waiter_gives_its_token_back() -> None:
    limit = brace.rate_limit("give-back", per_s=10, burst=1)  # a token every 0.1 s

    @brace.network(attempts=1, rate_limit="give-back", deadline=60)
    async def call() -> str:
        return "ok"

    async def main() -> None:
        assert await call() == "ok"
        for _ in range(30):  # each waits for the next token, and is cancelled at once
            task = asyncio.ensure_future(call())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    # Without giving back, 30 reservations would put the next token 3 s away.
    assert limit.reserve("check", 60.0) <= 0.1


def test_the_hedge_winner_is_freed_when_the_caller_is_cancelled_while_losers_unwind() -> None:
    freed: list[str] = []

    async def discard(value: Any) -> None:
        freed.append(value)

    policy = brace.network(attempts=3, hedge_after=0.001, hedges=1, deadline=5)
    copies = iter(["slow", "fast"])

    async def main() -> None:
        unwinding, release = asyncio.Event(), asyncio.Event()

        async def dependency() -> str:
            if next(copies) == "fast":
                return "winner"
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                unwinding.set()  # lost the race: it takes a while to let go
                await asyncio.shield(release.wait())
                raise
            return "never"

        path = brace._call.Path(policy, dependency, name="winner", breaker=None,
                                discard=discard, asynchronous=True)
        task = asyncio.ensure_future(path.acall())
        await unwinding.wait()  # the hedge answered; the first copy is unwinding
        task.cancel()  # the caller gives up meanwhile
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert freed == ["winner"]  # nobody reads the winner: it is freed too


# -- clean give-ups -------------------------------------------------------------------------------


def test_a_give_up_raises_the_last_attempts_own_error_with_two_brace_frames_at_most() -> None:
    errors: list[ConnectionError] = []

    @brace.network(attempts=3)
    def call() -> None:
        errors.append(ConnectionError(f"attempt {len(errors) + 1}"))
        raise errors[-1]

    with no_waits(), pytest.raises(ConnectionError) as info:
        call()
    assert info.value is errors[-1]
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert len(brace_frames(info.value)) <= 2
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "call"


@runners
def test_an_async_give_up_is_clean_too(run: Callable[..., Any]) -> None:
    errors: list[ConnectionError] = []

    @brace.network(attempts=3, attempt_timeout=1, fallback=brace.NO_FALLBACK)
    async def call() -> None:
        errors.append(ConnectionError(f"attempt {len(errors) + 1}"))
        raise errors[-1]

    async def main() -> BaseException:
        with no_waits(), pytest.raises(ConnectionError) as info:
            await call()
        return info.value

    error = run(main)
    assert error is errors[-1]
    assert error.__context__ is None
    assert len(brace_frames(error)) <= 2


def test_a_give_up_under_a_fallback_that_reraises_a_bug_stays_clean() -> None:
    @brace.network(attempts=2, fallback="default")
    def call() -> None:
        raise KeyError("a bug")  # never retried, never covered by the fallback

    with pytest.raises(KeyError) as info:
        call()
    assert len(brace_frames(info.value)) <= 2


def test_a_refusal_carries_no_brace_frames_beyond_the_call() -> None:
    brace.breaker("frames", fail_max=1, reset_timeout=60).open()

    @brace.network(breaker="frames")
    def call() -> None:
        raise AssertionError("never runs")

    with pytest.raises(brace.CircuitOpenError) as info:
        call()
    assert len(brace_frames(info.value)) <= 2


# -- brace switched off --------------------------------------------------------------------------


def test_statistics_are_right_while_brace_is_switched_off() -> None:
    @brace.network(attempts=5)
    def call() -> None:
        raise ConnectionError("refused")

    brace.set_active(False)
    try:
        with pytest.raises(ConnectionError):
            call()
    finally:
        brace.set_active(True)
    assert call.statistics["attempt_number"] == 1
    assert call.statistics["idle_for"] == 0
