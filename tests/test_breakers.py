"""Circuit breakers: named pybreaker breakers gated outside pybreaker's lock."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker
import pytest
import tenacity
from structlog.testing import capture_logs

import brace
from brace import _breakers
from brace.testing import reset_breakers


class Clock:
    """Moves the breaker gate's clock forward without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def breaker_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One shifted clock for brace's gate and pybreaker's `opened_at`."""
    clock = Clock()

    class ShiftedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=clock.offset)

    monkeypatch.setattr(_breakers, "_utcnow", clock.now)
    monkeypatch.setattr(pybreaker, "datetime", ShiftedDatetime)
    return clock


pytestmark = pytest.mark.no_waits


class Dependency:
    """A fake downstream service whose health a test switches."""

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False
        self.error: BaseException = ConnectionError("down")

    def __call__(self) -> str:
        self.calls += 1
        if not self.healthy:
            raise self.error
        return "ok"


def test_trips_fails_fast_half_opens_and_closes(breaker_clock: Clock) -> None:
    brace.breaker("payments", fail_max=3, reset_timeout=10)
    dep = Dependency()
    call = brace.network(attempts=1, breaker="payments")(dep)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            call()
    assert brace.breakers()["payments"].state == "open"

    with capture_logs() as logs, pytest.raises(brace.CircuitOpenError) as info:
        call()
    assert dep.calls == 3  # not called while open
    assert isinstance(info.value, pybreaker.CircuitBreakerError)
    assert info.value.breaker == "payments"
    assert 9 < info.value.remaining_s <= 10
    assert [e["event"] for e in logs] == ["breaker.rejected"]  # no retry, no sleep

    breaker_clock.advance(10.5)
    dep.healthy = True
    with capture_logs() as logs:
        assert call() == "ok"
    assert brace.breakers()["payments"].state == "closed"
    changes = [(e["old"], e["new"]) for e in logs if e["event"] == "breaker.state_changed"]
    assert changes == [("open", "half-open"), ("half-open", "closed")]


def test_failed_trial_reopens(breaker_clock: Clock) -> None:
    brace.breaker("search", fail_max=1, reset_timeout=5)
    dep = Dependency()
    call = brace.network(attempts=1, breaker="search")(dep)
    with pytest.raises(ConnectionError):
        call()
    breaker_clock.advance(6)
    with pytest.raises(ConnectionError):  # the trial's own error, not a breaker error
        call()
    assert dep.calls == 2
    assert brace.breakers()["search"].state == "open"
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert dep.calls == 2


def test_the_tripping_call_raises_its_own_error_and_stops_retrying() -> None:
    brace.breaker("inventory", fail_max=2)
    dep = Dependency()
    call = brace.network(attempts=5, breaker="inventory")(dep)
    with capture_logs() as logs, pytest.raises(ConnectionError):
        call()
    assert dep.calls == 2  # attempt 2 tripped the breaker: no attempts 3-5
    assert [e["event"] for e in logs] == [
        "retry.scheduled", "breaker.state_changed", "retry.gave_up"]
    assert logs[-1]["reason"] == "breaker_open"


@pytest.mark.parametrize("error", [ValueError("bug"), KeyError("k"), PermissionError("no")])
def test_errors_the_policy_would_not_retry_never_trip(error: Exception) -> None:
    brace.breaker("users", fail_max=2)
    dep = Dependency()
    dep.error = error
    call = brace.network(breaker="users")(dep)
    for _ in range(5):
        with pytest.raises(type(error)):
            call()
    assert dep.calls == 5
    assert brace.breakers()["users"].state == "closed"
    assert brace.breakers()["users"].failures == 0


def test_retried_results_count_as_failures() -> None:
    brace.breaker("status", fail_max=3)
    calls = 0

    def returns_503() -> int:
        nonlocal calls
        calls += 1
        return 503

    policy = brace.network(attempts=1, breaker="status",
                           on=tenacity.retry_if_result(lambda r: r == 503))
    call = policy(returns_503)
    for _ in range(3):
        assert call() == 503
    assert brace.breakers()["status"].state == "open"
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert calls == 3


def test_opening_a_breaker_by_hand_stops_healthy_calls_at_once() -> None:
    # pybreaker's open() tells listeners before it writes its storage: the healthy path
    # must still see the breaker open on the very next call (sync and async).
    breaker = brace.breaker("by-hand", fail_max=5, reset_timeout=60)
    calls = 0

    @brace.network(breaker="by-hand")
    def fetch() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    @brace.network(breaker="by-hand")
    async def afetch() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    assert fetch() == "ok" and asyncio.run(afetch()) == "ok"
    breaker.open()
    with pytest.raises(brace.CircuitOpenError):
        fetch()
    with pytest.raises(brace.CircuitOpenError):
        asyncio.run(afetch())
    assert calls == 2
    breaker.close()
    assert fetch() == "ok" and asyncio.run(afetch()) == "ok"
    assert calls == 4


def test_named_breakers_are_shared_and_configured_once() -> None:
    cb = brace.breaker("orders", fail_max=3, reset_timeout=12)
    assert brace.breaker("orders") is cb
    assert brace.breaker("orders", fail_max=3) is cb
    assert isinstance(cb, pybreaker.CircuitBreaker)
    assert (cb.fail_max, cb.reset_timeout, cb.name) == (3, 12.0, "orders")
    with pytest.raises(ValueError, match="'orders' already exists with fail_max=3"):
        brace.breaker("orders", fail_max=4)
    # two policies naming it share its state
    a = brace.network(attempts=1, breaker="orders")(Dependency())
    b = brace.http(attempts=1, breaker="orders")(Dependency())
    for call in (a, b, a):
        with pytest.raises(ConnectionError):
            call()
    with pytest.raises(brace.CircuitOpenError):
        b()


def test_a_named_breaker_is_created_on_first_use() -> None:
    call = brace.network(attempts=1, breaker="lazy")(Dependency())
    assert "lazy" not in brace.breakers()
    with pytest.raises(ConnectionError):
        call()
    info = brace.breakers()["lazy"]
    assert (info.fail_max, info.reset_timeout, info.failures, info.storage) == (
        5, 30.0, 1, "memory")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"fail_max": 0}, "fail_max"), ({"fail_max": 1.5}, "fail_max"),
     ({"reset_timeout": 0}, "reset_timeout"), ({"reset_timeout": float("nan")}, "reset_timeout"),
     ({"success_threshold": 0}, "success_threshold"), ({"exclude": [3]}, "exclude"),
     ({"fallback_state": "half-open"}, "fallback_state")],
)
def test_bad_breaker_settings(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        brace.breaker("bad", **kwargs)
    assert "bad" not in brace.breakers()


def test_bad_breaker_argument_to_a_policy() -> None:
    with pytest.raises(TypeError, match="breaker="):
        brace.network(breaker=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="breaker="):
        brace.network(breaker="")


def test_a_pybreaker_object_works_and_its_trip_raises_the_real_error() -> None:
    # pybreaker's default throw_new_error_on_trip=True would raise CircuitBreakerError on
    # the tripping call; brace surfaces the real cause.
    cb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=30)
    dep = Dependency()
    call = brace.network(attempts=1, breaker=cb)(dep)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    assert cb.current_state == "open"
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert dep.calls == 2


def test_pybreaker_exclude_is_honoured() -> None:
    class Throttled(ConnectionError):
        pass

    brace.breaker("excl", fail_max=1, exclude=[Throttled])
    dep = Dependency()
    dep.error = Throttled("slow down")
    call = brace.network(attempts=1, breaker="excl")(dep)
    for _ in range(3):
        with pytest.raises(Throttled):
            call()
    assert brace.breakers()["excl"].state == "closed"


def test_closed_breaker_does_not_serialise_threads() -> None:
    # If the breaker held a lock around the call (pybreaker's `call`), at most one thread
    # could wait at the barrier and it would break instead of releasing all ten.
    brace.breaker("parallel", fail_max=5)
    barrier = threading.Barrier(10, timeout=5)

    @brace.network(breaker="parallel")
    def call() -> int:
        return barrier.wait()

    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sorted(results) == list(range(10))


def test_closed_breaker_does_not_serialise_tasks() -> None:
    brace.breaker("parallel-async", fail_max=5)

    async def main() -> list[str]:
        inside = 0
        all_inside = asyncio.Event()

        @brace.network(breaker="parallel-async")
        async def call() -> str:
            nonlocal inside
            inside += 1
            if inside == 100:
                all_inside.set()
            await asyncio.wait_for(all_inside.wait(), 5)
            return "ok"

        return await asyncio.gather(*(call() for _ in range(100)))

    assert asyncio.run(main()) == ["ok"] * 100


def trip(name: str, reset_timeout: float = 5) -> None:
    brace.breaker(name, fail_max=1, reset_timeout=reset_timeout)
    with pytest.raises(ConnectionError):
        brace.network(attempts=1, breaker=name)(Dependency())()


def test_half_open_admits_exactly_one_trial_across_threads(breaker_clock: Clock) -> None:
    trip("trial")
    breaker_clock.advance(6)
    release = threading.Event()
    trial_calls = 0

    @brace.network(attempts=1, breaker="trial")
    def call() -> str:
        nonlocal trial_calls
        trial_calls += 1
        release.wait(5)
        return "ok"

    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            result = call()
        except brace.CircuitOpenError:
            result = "rejected"
        with lock:
            outcomes.append(result)
            if outcomes.count("rejected") == 49:
                release.set()

    threads = [threading.Thread(target=worker) for _ in range(50)]
    with capture_logs() as logs:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert trial_calls == 1
    assert sorted(outcomes) == ["ok"] + ["rejected"] * 49
    assert brace.breakers()["trial"].state == "closed"
    rejected = [e for e in logs if e["event"] == "breaker.rejected"]
    assert len(rejected) == 49
    # Half-open with its trial running: no time left to wait, a reason to read instead.
    assert all(e["reason"] == "trial_in_progress" and "remaining_s" not in e for e in rejected)


def test_half_open_admits_exactly_one_trial_across_tasks(breaker_clock: Clock) -> None:
    trip("trial-async")
    breaker_clock.advance(6)

    async def main() -> list[str]:
        release = asyncio.Event()
        trial_calls = 0

        @brace.network(attempts=1, breaker="trial-async")
        async def call() -> str:
            nonlocal trial_calls
            trial_calls += 1
            await asyncio.wait_for(release.wait(), 5)
            return "ok"

        async def one() -> str:
            try:
                return await call()
            except brace.CircuitOpenError:
                return "rejected"

        tasks = [asyncio.ensure_future(one()) for _ in range(200)]
        for _ in range(10):  # let every task reach the gate
            await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks)
        assert trial_calls == 1
        return list(results)

    results = asyncio.run(main())
    assert sorted(results) == ["ok"] + ["rejected"] * 199


def test_cancelled_trial_frees_the_breaker_for_a_new_trial(breaker_clock: Clock) -> None:
    trip("cancel")
    breaker_clock.advance(6)

    async def main() -> str:
        started = asyncio.Event()

        @brace.network(attempts=3, breaker="cancel")
        async def hang() -> str:
            started.set()
            await asyncio.sleep(3600)
            return "never"

        task = asyncio.ensure_future(hang())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert brace.breakers()["cancel"].state == "half-open"

        @brace.network(attempts=1, breaker="cancel")
        async def healthy() -> str:
            return "ok"

        return await healthy()  # admitted as the new trial

    assert asyncio.run(main()) == "ok"
    assert brace.breakers()["cancel"].state == "closed"


def test_interrupted_trial_frees_the_breaker(breaker_clock: Clock) -> None:
    trip("interrupt")
    breaker_clock.advance(6)

    @brace.network(breaker="interrupt")
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert brace.breakers()["interrupt"].state == "half-open"
    assert brace.network(attempts=1, breaker="interrupt")(lambda: "ok")() == "ok"


def test_success_recorded_after_another_caller_reopened(breaker_clock: Clock) -> None:
    # A slow call admitted while closed ends after the breaker tripped: its success must
    # not raise a CircuitBreakerError from the recording step, nor close the breaker.
    cb = brace.breaker("race", fail_max=1, reset_timeout=30)
    in_call = threading.Event()
    tripped = threading.Event()

    @brace.network(attempts=1, breaker="race")
    def slow() -> str:
        in_call.set()
        tripped.wait(5)
        return "slow-ok"

    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(slow()))
    t.start()
    assert in_call.wait(5)
    with pytest.raises(ConnectionError):
        brace.network(attempts=1, breaker="race")(Dependency())()
    assert cb.current_state == "open"
    tripped.set()
    t.join(5)
    assert result == ["slow-ok"]
    assert cb.current_state == "open"


def test_reset_breakers_closes_and_forgets() -> None:
    trip("flaky")
    assert brace.breakers()["flaky"].state == "open"
    reset_breakers()
    assert "flaky" not in brace.breakers()
    cb = brace.breaker("flaky", fail_max=9)  # may be configured afresh
    assert cb.fail_max == 9 and cb.current_state == "closed"


# -- fallback --------------------------------------------------------------------------------


def test_fallback_when_retries_are_exhausted() -> None:
    dep = Dependency()
    call = brace.network(attempts=3, fallback="cached")(dep)
    with capture_logs() as logs:
        assert call() == "cached"
    assert dep.calls == 3
    degraded = [e for e in logs if e["event"] == "degraded"]
    assert len(degraded) == 1
    assert degraded[0]["reason"] == "retries_exhausted"
    assert degraded[0]["error"] == "ConnectionError: down"
    assert degraded[0]["preset"] == "network"


def test_fallback_when_the_breaker_is_open() -> None:
    trip("fb")
    dep = Dependency()
    call = brace.network(breaker="fb", fallback=lambda exc: f"fallback for {type(exc).__name__}")(
        dep)
    with capture_logs() as logs:
        assert call() == "fallback for CircuitOpenError"
    assert dep.calls == 0
    assert [e["reason"] for e in logs if e["event"] == "degraded"] == ["breaker_open"]


def test_fallback_none_is_a_value() -> None:
    assert brace.network(attempts=1, fallback=None)(Dependency())() is None


def test_fallback_never_swallows_bugs() -> None:
    dep = Dependency()
    dep.error = ValueError("bug")
    with capture_logs() as logs, pytest.raises(ValueError):
        brace.network(fallback="cached")(dep)()
    assert not [e for e in logs if e["event"] == "degraded"]


def test_async_fallback_and_breaker() -> None:
    brace.breaker("async-fb", fail_max=2)
    calls = 0

    @brace.http(attempts=2, breaker="async-fb", fallback={"items": []})
    async def list_items() -> dict[str, list[int]]:
        nonlocal calls
        calls += 1
        raise TimeoutError

    @brace.http(breaker="async-fb-2", fallback=0)
    async def bug() -> int:
        raise TypeError

    async def main() -> None:
        assert await list_items() == {"items": []}  # exhausted: 2 failures trip it
        assert await list_items() == {"items": []}  # open
        with pytest.raises(TypeError):
            await bug()

    asyncio.run(main())
    assert calls == 2
    assert list_items.statistics["attempt_number"] == 1


def test_fallback_wrapper_keeps_metadata_and_statistics() -> None:
    async def fetch(uid: int) -> str:
        """Fetch."""
        return str(uid)

    wrapped = brace.network(fallback="x")(fetch)
    import inspect

    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__doc__ == "Fetch." and wrapped.__wrapped__ is fetch
    assert asyncio.run(wrapped(3)) == "3"
    assert wrapped.statistics["attempt_number"] == 1


def test_policies_with_fallbacks_stay_hashable() -> None:
    policy = brace.network(fallback={"unhashable": []}, breaker="h")
    assert hash(policy) == hash(brace.network(fallback={"other": []}, breaker="h"))
    assert policy != brace.network(fallback={"other": []}, breaker="h")


# -- failure-ratio and slow-call breakers -------------------------------------------------------

SIXTY = [False, False, True, False, True]  # 60 % failures, never 5 in a row (True: success)
THIRTY = [False, True, True, False, True, True, True, False, True, True]


def run_pattern(name: str, pattern: list[bool], calls: int) -> tuple[int, str]:
    """Make ``calls`` calls failing as ``pattern`` says; return how many ran, and the state."""
    ran = 0
    outcomes = iter(pattern * (calls // len(pattern) + 1))

    @brace.network(attempts=1, breaker=name)
    def dependency() -> str:
        nonlocal ran
        ran += 1
        if not next(outcomes):
            raise ConnectionError("down")
        return "ok"

    for _ in range(calls):
        with contextlib.suppress(ConnectionError, brace.CircuitOpenError):
            dependency()
    return ran, brace.breakers()[name].state


@pytest.mark.parametrize(("pattern", "opens"), [(SIXTY, True), (THIRTY, False)],
                         ids=["60%", "30%"])
def test_a_failure_ratio_opens_without_consecutive_failures(
        pattern: list[bool], opens: bool, brace_reset_breakers: None) -> None:
    brace.breaker("ratio", failure_ratio=0.5, min_calls=20, window=30)  # fail_max stays 5
    ran, state = run_pattern("ratio", pattern, 60)
    assert state == ("open" if opens else "closed")
    # 60 %: it opens at the first failure once 20 calls were made (call 21), then rejects.
    assert ran == (21 if opens else 60)


def test_fewer_calls_than_min_calls_never_open_it(brace_reset_breakers: None) -> None:
    brace.breaker("few", failure_ratio=0.5, min_calls=20, window=30)
    ran, state = run_pattern("few", [False, False, True, False], 19)  # 75 %, 19 calls
    assert (ran, state) == (19, "closed")


def test_slow_calls_count_as_failures(clock: Any, brace_reset_breakers: None) -> None:
    brace.breaker("slow", fail_max=2, slow_call=2.0)
    ran = 0

    @brace.network(attempts=1, breaker="slow")
    def sluggish() -> str:
        nonlocal ran
        ran += 1
        clock.advance(3.0)  # answers, but after 3 s
        return "late"

    assert sluggish() == "late"  # a slow call still returns its value ...
    assert sluggish() == "late"
    with pytest.raises(brace.CircuitOpenError):  # ... and two of them opened the breaker
        sluggish()
    assert ran == 2


def test_ratio_settings_say_no_when_they_cannot_apply(brace_reset_breakers: None) -> None:
    with pytest.raises(TypeError, match="min_calls= and window= belong to a failure-ratio"):
        brace.breaker("lonely", min_calls=10)
    with pytest.raises(ValueError, match=r"failure_ratio must be a finite number in \(0, 1\]"):
        brace.breaker("zero", failure_ratio=0)
    with pytest.raises(ValueError, match="slow_call"):
        brace.breaker("never", slow_call=0)


def test_healthy_async_calls_and_requests_count_in_a_failure_ratio(
        brace_reset_breakers: None) -> None:
    # The healthy path skips the breaker's bookkeeping but still counts each call: 30
    # successes then 10 failures is 25 %, under the 50 % that opens it.
    import asyncio

    import httpx

    brace.breaker("ratio-async", failure_ratio=0.5, min_calls=5, window=30, fail_max=1000)
    brace.breaker("ratio-http", failure_ratio=0.5, min_calls=5, window=30, fail_max=1000)
    outcomes = iter([True] * 30 + [False] * 10)

    @brace.network(attempts=1, breaker="ratio-async")
    async def dependency() -> str:
        if next(outcomes):
            return "ok"
        raise ConnectionError("refused")

    statuses = iter([200] * 30 + [503] * 10)

    async def main() -> None:
        for _ in range(40):
            with contextlib.suppress(ConnectionError):
                await dependency()
        transport = httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
        async with brace.http(attempts=1).async_client(transport=transport,
                                                       breaker="ratio-http") as client:
            for _ in range(40):
                await client.get("http://127.0.0.1/item")

    asyncio.run(main())
    assert brace.breakers()["ratio-async"].state == "closed"
    assert brace.breakers()["ratio-http"].state == "closed"


@pytest.mark.parametrize("successes", [30, 0])
def test_healthy_sync_requests_count_in_a_failure_ratio(
        successes: int, brace_reset_breakers: None) -> None:
    # A sync request's first attempt takes the healthy path and still counts: 30 successes
    # then 10 failures (25 %) keep it closed; the 10 failures alone open it.
    import httpx

    brace.breaker("ratio-sync-http", failure_ratio=0.5, min_calls=5, window=30, fail_max=1000)
    statuses = iter([200] * successes + [503] * 10)
    transport = httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
    with brace.http(attempts=1).client(transport=transport,
                                       breaker="ratio-sync-http") as client:
        for _ in range(successes + 5):
            client.get("http://127.0.0.1/item")
    assert brace.breakers()["ratio-sync-http"].state == ("closed" if successes else "open")


@pytest.mark.parametrize("through", ["decorator", "client", "async client"])
def test_healthy_successes_leave_a_failure_ratio_window_when_their_own_bucket_does(
        through: str, clock: Any, brace_reset_breakers: None) -> None:
    # 10 successes, 20 s later 10 more, 12 s later failures: the first 10 have left the
    # 30 s window, the second 10 have not, so it takes 10 failures to reach 50 % (not the
    # 5 of min_calls, as if every success had been counted at the first one's time).
    import httpx

    brace.breaker("buckets", failure_ratio=0.5, min_calls=5, window=30, fail_max=1000)
    failing = False

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if failing else 200)

    transport = httpx.MockTransport(answer)
    policy = brace.http(attempts=1)

    @brace.http(attempts=1, breaker="buckets")
    def call() -> int:
        if failing:
            raise ConnectionError("refused")
        return 200

    def one() -> None:
        if through == "decorator":
            with contextlib.suppress(ConnectionError):
                call()
        elif through == "client":
            with policy.client(transport=transport, breaker="buckets") as client:
                client.get("http://127.0.0.1/item")
        else:
            async def get() -> None:
                async with policy.async_client(transport=transport,
                                               breaker="buckets") as client:
                    await client.get("http://127.0.0.1/item")

            asyncio.run(get())

    for _ in range(10):
        one()
    clock.advance(20.0)
    for _ in range(10):
        one()
    clock.advance(12.0)
    failing = True
    for _ in range(9):
        one()
    assert brace.breakers()["buckets"].state == "closed"  # 9 of 19: under 50 %
    one()
    assert brace.breakers()["buckets"].state == "open"  # 10 of 20


def test_an_interrupt_on_a_healthy_sync_request_counts_nothing_and_frees_the_slot(
        brace_reset_breakers: None) -> None:
    import httpx

    from brace import _breakers
    from brace._deadline import clock

    brace.bulkhead("interrupted-http", max_concurrent=1)
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if sent == 2:
            raise KeyboardInterrupt
        return httpx.Response(200)

    with brace.http(bulkhead="interrupted-http").client(
            transport=httpx.MockTransport(handler)) as client:
        client.get("http://127.0.0.1/item")  # the authority's breaker is made, one call
        with pytest.raises(KeyboardInterrupt):
            client.get("http://127.0.0.1/item")
        assert client.get("http://127.0.0.1/item").status_code == 200  # the slot came back
    window = _breakers.registry["http://127.0.0.1"]._ratio.window
    window.flush()
    assert window.totals(clock()) == (2, 0)  # two successes; the interrupt gave no verdict
    assert sent == 3
