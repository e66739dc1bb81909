"""Retry budgets: retries stay under a share of calls, shared by name, thread- and task-safe."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import tenacity
from structlog.testing import capture_logs

import brace

pytestmark = pytest.mark.no_waits


def always_down() -> Any:
    def call() -> None:
        call.calls += 1  # type: ignore[attr-defined]
        raise ConnectionError("down")

    call.calls = 0  # type: ignore[attr-defined]
    return call


def test_retries_stay_under_the_ratio_of_calls(clock: Any) -> None:
    brace.budget("orders", ratio=0.1, min_per_s=0, window=10)
    dep = always_down()
    call = brace.network(attempts=5, budget="orders")(dep)
    with capture_logs() as logs:
        for _ in range(50):
            with pytest.raises(ConnectionError):
                call()
    # 50 calls allow 5 retries: 55 attempts instead of 250
    assert dep.calls == 55
    exhausted = [e for e in logs if e["event"] == "retry.budget_exhausted"]
    assert len(exhausted) == 50  # every call ended on a refusal, some after one retry
    assert exhausted[0]["budget"] == "orders" and exhausted[0]["preset"] == "network"
    gave_up = [e for e in logs if e["event"] == "retry.gave_up"]
    assert len(gave_up) == 50 and {e["reason"] for e in gave_up} == {"budget_exhausted"}


def test_the_floor_lets_a_quiet_service_retry(clock: Any) -> None:
    brace.budget("quiet", ratio=0.0, min_per_s=0.3, window=10)  # 3 retries
    dep = always_down()
    call = brace.network(attempts=3, budget="quiet")(dep)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            call()
    assert dep.calls == 4 + 3


def test_the_window_slides(clock: Any) -> None:
    brace.budget("slide", ratio=0.0, min_per_s=0.2, window=10)  # 2 per window
    dep = always_down()
    call = brace.network(attempts=2, budget="slide")(dep)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            call()
    assert dep.calls == 5 + 2
    clock.advance(10.5)  # the old retries leave the window
    for _ in range(5):
        with pytest.raises(ConnectionError):
            call()
    assert dep.calls == 7 + 5 + 2


def test_successful_calls_refill_it(clock: Any) -> None:
    brace.budget("refill", ratio=0.5, min_per_s=0, window=10)
    healthy = brace.network(budget="refill")(lambda: "ok")
    for _ in range(10):
        assert healthy() == "ok"  # fast path: counted without tenacity
    dep = always_down()
    failing = brace.network(attempts=2, budget="refill")(dep)
    for _ in range(10):
        with pytest.raises(ConnectionError):
            failing()
    # 20 calls in the window at ratio 0.5: 10 retries
    assert dep.calls == 10 + 10


def test_shared_by_name_across_policies(clock: Any) -> None:
    shared = brace.budget("shared", ratio=0.0, min_per_s=0.1, window=10)  # 1
    assert brace.budget("shared") is shared
    a, b = always_down(), always_down()
    with pytest.raises(ConnectionError):
        brace.network(attempts=3, budget="shared")(a)()
    with pytest.raises(ConnectionError):
        brace.http(attempts=3, budget=shared)(b)()
    assert a.calls + b.calls == 2 + 1


def test_threads_never_overspend(clock: Any) -> None:
    budget = brace.budget("threads", ratio=0.0, min_per_s=2.5, window=10)  # 25
    dep = always_down()
    lock = threading.Lock()
    calls = 0

    def counted() -> None:
        nonlocal calls
        with lock:
            calls += 1
        raise ConnectionError

    call = brace.network(attempts=10, budget=budget)(counted)

    def worker() -> None:
        for _ in range(20):
            with pytest.raises(ConnectionError):
                call()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == 8 * 20 + 25
    assert dep.calls == 0


def test_threads_counting_across_buckets_never_count_a_call_twice() -> None:
    # 8 threads count 2,000 calls each while the window's buckets turn under them (each
    # call made 1 ms after the thread's last, buckets 10 ms wide): every call reaches a
    # bucket once (a count lost to a race between threads is allowed, one made twice never).
    from brace._budget import Window

    class Counting(Window):
        added = 0  # every call put in a bucket (flushes run under the window's lock)

        def take_pending(self) -> int:
            pending = super().take_pending()
            self.added += pending
            return pending

    window = Counting(0.1)
    threads, each = 8, 2_000
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait(5)
        for index in range(each):
            window.call(now=1000.0 + index * 0.001)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    window.flush()
    assert threads * each - threads <= window.added <= threads * each
    assert window.tally[0] == 0


def test_asyncio_tasks_share_it(clock: Any) -> None:
    brace.budget("tasks", ratio=0.0, min_per_s=1.0, window=10)  # 10
    calls = 0

    @brace.network(attempts=4, budget="tasks")
    async def call() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise TimeoutError

    async def main() -> None:
        results = await asyncio.gather(*(call() for _ in range(30)), return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)

    asyncio.run(main())
    assert calls == 30 + 10


def test_in_plain_tenacity_code(clock: Any) -> None:
    budget = brace.budget("raw", ratio=0.0, min_per_s=0.2, window=10)  # 2
    attempts = 0
    for _ in range(3):
        retrying = tenacity.Retrying(retry=brace.predicates.transient & budget,
                                     before=budget.before, stop=tenacity.stop_after_attempt(4),
                                     sleep=lambda s: None, reraise=True)
        with pytest.raises(ConnectionError):
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    raise ConnectionError
    assert attempts == 3 + 2


def test_retrying_blocks_count_calls(clock: Any) -> None:
    brace.budget("blocks", ratio=0.5, min_per_s=0, window=10)
    policy = brace.network(attempts=3, budget="blocks")
    for _ in range(4):
        for attempt in policy.retrying():
            with attempt:
                pass  # four healthy calls: two retries to spend
    attempts = 0
    with pytest.raises(ConnectionError):
        for attempt in policy.retrying():
            with attempt:
                attempts += 1
                raise ConnectionError
    assert attempts == 3  # (5 calls * 0.5 = 2.5) allows both retries


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"ratio": -0.1}, "ratio"), ({"ratio": 1.5}, "ratio"), ({"ratio": float("nan")}, "ratio"),
    ({"min_per_s": -1}, "min_per_s"), ({"window": 0}, "window"),
    ({"window": float("inf")}, "window")])
def test_bad_settings(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        brace.budget("bad", **kwargs)
    with pytest.raises(TypeError, match="name"):
        brace.budget("")


def test_messages_name_the_parameter_and_its_unit() -> None:
    with pytest.raises(TypeError, match=r"ratio must be a finite number in \[0, 1\], got 'a'"):
        brace.budget("units", ratio="a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"window must be a finite number of seconds in "
                                         r"\[0.01, 1e\+07\]"):
        brace.budget("units", window=-1)
    with pytest.raises(ValueError, match=r"min_per_s must be a finite number of retries per "
                                         r"second in \[0, 1e\+09\]"):
        brace.budget("units", min_per_s=-1)
    with pytest.raises(ValueError, match=r"min_per_s .* in \[0, 1e\+09\], got 1e\+308"):
        brace.budget("units", min_per_s=1e308)  # a rate times a window stays finite


def test_conflicting_settings_for_a_name() -> None:
    brace.budget("conf", ratio=0.2)
    with pytest.raises(ValueError, match=r"'conf' already exists with ratio=0\.2"):
        brace.budget("conf", ratio=0.3)
    with pytest.raises(TypeError, match="budget="):
        brace.network(budget=3)  # type: ignore[arg-type]


def test_named_budget_is_created_with_defaults_on_first_use(clock: Any) -> None:
    brace.network(budget="lazy")(lambda: 1)()
    budget = brace.budget("lazy")
    assert (budget.ratio, budget.min_per_s, budget.window) == (0.2, 10.0, 10.0)
    assert repr(budget) == ("brace.budget('lazy', ratio=0.2, min_per_s=10.0, "
                            "window=10.0)")


def test_a_shared_budget_named_again_with_its_client_is_the_same_budget() -> None:
    class FakeRedis:  # enough for brace.budget(redis=...) to be built; never called here
        def register_script(self, script: str) -> Any:
            return lambda **kwargs: 1

    client = FakeRedis()
    shared = brace.budget("named-again", window=10, redis=client)
    assert brace.budget("named-again", window=10, redis=client) is shared
