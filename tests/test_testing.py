"""brace.testing: no_waits() and the pytest plugin's fixture."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits

pytest_plugins = ["pytester"]


def test_no_waits_skips_sleeping_but_keeps_attempts_and_events() -> None:
    calls = 0

    @brace.background  # 10 attempts, waits up to 60 s: minutes of sleeping for real
    def job() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    started = time.monotonic()
    with no_waits(), capture_logs() as logs, pytest.raises(ConnectionError):
        job()
    assert time.monotonic() - started < 5
    assert calls == job.statistics["attempt_number"]
    assert [e["event"] for e in logs][-1] == "retry.gave_up"
    scheduled = [e for e in logs if e["event"] == "retry.scheduled"]
    assert len(scheduled) == calls - 1
    assert any(e["wait_s"] > 1 for e in scheduled)  # planned waits are reported unchanged
    # skipped sleeps still count against the 600 s deadline
    assert sum(e["wait_s"] for e in scheduled) < 600


def test_no_waits_async() -> None:
    calls = 0

    @brace.llm  # waits of up to 30 s between 5 attempts
    async def complete() -> str:
        nonlocal calls
        calls += 1
        if calls < 5:
            raise TimeoutError
        return "done"

    started = time.monotonic()
    with no_waits():
        assert asyncio.run(complete()) == "done"
    assert time.monotonic() - started < 5
    assert calls == 5


def test_no_waits_gives_the_same_attempts_as_real_waits(clock: Any) -> None:
    """Deadline arithmetic under no_waits equals a run whose sleeps really pass."""
    policy = brace.network(attempts=50, initial=1, max_wait=3, deadline=8)

    def attempts_with(sleep: object) -> int:
        count = 0
        with pytest.raises(ConnectionError):
            for attempt in policy.retrying(sleep=sleep):
                with attempt:
                    count += 1
                    raise ConnectionError
        return count

    import random

    random.seed(7)
    real = attempts_with(clock.sleep)  # virtual time passes during sleeps
    random.seed(7)
    with no_waits():
        skipped = attempts_with(lambda s: None)  # nothing passes: idle time is counted
    assert real == skipped
    assert 1 < real < 50


def test_nested_no_waits_restores() -> None:
    from brace import waits

    assert not waits.waits_disabled()
    with no_waits():
        with no_waits():
            assert waits.waits_disabled()
        assert waits.waits_disabled()
    assert not waits.waits_disabled()


def test_plugin_fixture_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        import pytest

        import brace

        def test_user_code(brace_no_waits):
            calls = []

            @brace.background
            def sync_inventory():
                calls.append(1)
                raise ConnectionError("down")

            started = time.monotonic()
            try:
                sync_inventory()
            except ConnectionError:
                pass
            assert len(calls) > 3
            assert time.monotonic() - started < 5

        # Parametrized indirectly, the fixture also caps every policy's attempts.
        @pytest.mark.parametrize("brace_no_waits", [2], indirect=True)
        def test_user_code_with_a_cap(brace_no_waits):
            calls = []

            @brace.background
            def sync_inventory():
                calls.append(1)
                raise ConnectionError("down")

            with pytest.raises(ConnectionError):
                sync_inventory()
            assert len(calls) == 2
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("kind", ["sync", "async", "retrying", "hedged"])
def test_no_waits_can_cap_every_policys_attempts(kind: str) -> None:
    calls = 0

    def fail() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def afail() -> None:
        fail()

    policy = brace.background  # 16 attempts of its own
    with no_waits(attempts=3), pytest.raises(ConnectionError):
        if kind == "sync":
            policy(fail)()
        elif kind == "async":
            asyncio.run(policy(afail)())
        elif kind == "hedged":
            asyncio.run(policy(hedge_after=0.001, hedges=2)(afail)())
        else:
            for attempt in policy().retrying():
                with attempt:
                    fail()
    assert calls == 3


def test_attempt_caps_nest_and_are_restored() -> None:
    from brace import _config

    with no_waits(attempts=4):
        with no_waits(attempts=2):
            assert _config.state.attempts == 2
        with no_waits():
            assert _config.state.attempts == 4  # a block without a cap keeps the outer one
        assert _config.state.attempts == 4
    assert _config.state.attempts is None


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_a_bad_attempts_cap_is_refused_naming_attempts(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="attempts"), no_waits(attempts=bad):
        pass


# --- capture_events(), the brace_events fixture, assert_retried / assert_not_retried ----------


def _fails_twice_per_key() -> Any:
    # A dependency whose every key (one per call) fails twice, then answers.
    import threading

    failures: dict[int, int] = {}
    lock = threading.Lock()

    def read(key: int) -> int:
        with lock:
            failures[key] = failures.get(key, 0) + 1
            failing = failures[key] <= 2
        if failing:
            raise ConnectionError(f"key {key} not yet")
        return key

    return read


def test_capture_events_sees_every_retry_across_threads() -> None:
    import threading

    from brace.testing import capture_events

    read = brace.network(_fails_twice_per_key())

    def worker(first: int) -> None:
        for key in range(first, first + 5):
            assert read(key) == key

    with no_waits(), capture_events() as events:
        threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    scheduled = [fields for event, fields in events if event == "retry.scheduled"]
    assert len(scheduled) == 8 * 5 * 2
    assert sorted(fields["attempt"] for fields in scheduled) == [1] * 40 + [2] * 40
    assert [event for event, _ in events].count("retry.succeeded") == 40


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_capture_events_sees_every_retry_across_tasks(library: str) -> None:
    import trio

    from brace.testing import capture_events

    sync_read = _fails_twice_per_key()

    @brace.network
    async def read(key: int) -> int:
        await (asyncio.sleep(0) if library == "asyncio" else trio.sleep(0))  # interleave
        return sync_read(key)  # type: ignore[no-any-return]

    async def on_asyncio() -> None:
        assert await asyncio.gather(*(read(key) for key in range(20))) == list(range(20))

    async def on_trio() -> None:
        async with trio.open_nursery() as nursery:
            for key in range(20):
                nursery.start_soon(read, key)

    with no_waits(), capture_events() as events:
        if library == "asyncio":
            asyncio.run(on_asyncio())
        else:
            trio.run(on_trio)
    assert [event for event, _ in events].count("retry.scheduled") == 40


def test_capture_events_nest_and_stop_at_the_end_of_the_block() -> None:
    from brace.testing import capture_events

    read = brace.network(_fails_twice_per_key())
    with no_waits(), capture_events() as outer:
        read(1)
        with capture_events() as inner:
            read(2)
    read_after = brace.network(_fails_twice_per_key())
    with no_waits():
        read_after(3)
    assert len([e for e in outer if e[0] == "retry.scheduled"]) == 4
    assert len([e for e in inner if e[0] == "retry.scheduled"]) == 2
    assert all(isinstance(fields, dict) for _, fields in outer)


def test_the_brace_events_fixture_captures_the_tests_events(
        brace_events: list[tuple[str, dict[str, Any]]]) -> None:
    from brace.testing import assert_retried

    read = brace.network(_fails_twice_per_key())
    with no_waits():
        read(1)
    assert [event for event, _ in brace_events] == [
        "retry.scheduled", "retry.scheduled", "retry.succeeded"]
    assert_retried(brace_events, times=2)


def test_assert_retried_reads_a_decorated_functions_latest_call() -> None:
    from brace.testing import assert_not_retried, assert_retried

    read = brace.network(_fails_twice_per_key())
    with no_waits():
        read(1)
    assert_retried(read)
    assert_retried(read, times=2)
    with pytest.raises(AssertionError) as info:
        assert_retried(read, times=1)
    assert str(info.value) == (
        "expected 1 retry, but the latest call of _fails_twice_per_key.<locals>.read "
        "(3 attempts) had 2 retries")
    with pytest.raises(AssertionError, match=r"expected no retry, but the latest call of "
                       r".*read \(3 attempts\) had 2 retries"):
        assert_not_retried(read)

    healthy = brace.network(lambda: "ok")
    healthy()
    assert_not_retried(healthy)
    assert_retried(healthy, times=0)
    with pytest.raises(AssertionError, match=r"expected at least 1 retry, but the latest "
                       r"call of .*<lambda> \(1 attempt\) had 0 retries"):
        assert_retried(healthy)


def test_assert_helpers_on_captured_events_list_what_was_retried() -> None:
    from brace.testing import assert_not_retried, assert_retried, capture_events

    read = brace.network(_fails_twice_per_key())
    with no_waits(), capture_events() as events:
        for key in range(4):
            read(key)
    assert_retried(events, times=8)
    with pytest.raises(AssertionError) as info:
        assert_not_retried(events)
    lines = str(info.value).splitlines()
    assert lines[0] == "expected no retry, but the captured events had 8 retries"
    assert lines[1].startswith("  retry.scheduled callable=")
    assert lines[1].endswith("test_testing._fails_twice_per_key.<locals>.read attempt=1 "
                             "error='ConnectionError: key 0 not yet'")
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "  ... and 3 more"
    with pytest.raises(AssertionError, match="expected 2 retries, but the captured events had "
                       "8 retries"):
        assert_retried(events, times=2)
    assert_not_retried([])


def test_assert_helpers_refuse_what_they_cannot_read() -> None:
    from brace.testing import assert_not_retried, assert_retried

    never = brace.network(lambda: "ok")
    with pytest.raises(AssertionError, match="was never called under its policy"):
        assert_retried(never)
    with pytest.raises(TypeError, match="takes a function decorated by a policy"):
        assert_not_retried("retry.scheduled")
    with pytest.raises(TypeError, match="takes a function decorated by a policy"):
        assert_retried(lambda: None)
    with pytest.raises(ValueError, match="times must be an int >= 0"):
        assert_retried([], times=-1)
    with pytest.raises(TypeError, match="times must be an int >= 0"):
        assert_retried([], times=True)
