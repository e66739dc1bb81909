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
