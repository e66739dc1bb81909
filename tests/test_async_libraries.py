"""Async functions under every async library users run: asyncio, trio, and anyio on either
backend. Sleeps use the running library; the deadline and attempt_timeout cut an attempt off
in flight (an asyncio watchdog, anyio cancel scopes on trio); a caller's cancellation wins.

Every test but the one against a real server runs in virtual time (``tests.clocks``), so its
timings are exact; that one waits on a socket, which virtual time cannot do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio
from structlog.testing import capture_logs

import brace
from tests.clocks import VirtualClock, exactly
from tests.fault_server import FaultServer, reply

LIBRARIES = ["trio", "anyio-trio", "anyio-asyncio"]
# On the real clock: for the test that waits on a real socket.
RUNNERS: dict[str, Callable[[Callable[[], Awaitable[Any]]], Any]] = {
    "trio": trio.run,
    "anyio-trio": lambda main: anyio.run(main, backend="trio"),
    "anyio-asyncio": lambda main: anyio.run(main, backend="asyncio"),
}
runners = pytest.mark.parametrize("run", LIBRARIES, indirect=True)
real_runners = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))


@pytest.fixture
def run(request: pytest.FixtureRequest, clock: VirtualClock) -> Callable[..., Any]:
    """The parametrized library's runner, in the test's virtual time."""
    return clock.runner(request.param)


@runners
def test_a_failing_call_is_retried(run: Callable[..., Any], clock: VirtualClock) -> None:
    calls = 0

    @brace.network(initial=0.01, max_wait=0.02)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)
        if calls < 3:
            raise ConnectionResetError("reset")
        return "ok"

    async def main() -> float:
        started = clock.now
        assert await flaky() == "ok"
        return clock.now - started

    with capture_logs() as logs:
        elapsed = run(main)
    assert calls == 3
    assert flaky.statistics["attempt_number"] == 3
    waits = [log["wait_s"] for log in logs if log["event"] == "retry.scheduled"]
    assert len(waits) == 2 and 0 <= waits[0] <= 0.01 and 0 <= waits[1] <= 0.02  # full jitter
    assert sum(waits) > 0  # (seeded) so a sleep skipped would show
    # The backoffs were slept in the running library, each exactly as long as scheduled.
    assert elapsed == pytest.approx(sum(waits), abs=2e-6)  # wait_s is rounded to 1e-6 s


@runners
def test_the_deadline_cuts_a_hanging_attempt_off(run: Callable[..., Any],
                                                 clock: VirtualClock) -> None:
    @brace.network(deadline=0.3)
    async def hang() -> None:
        await anyio.sleep(30)

    async def main() -> float:
        started = clock.now
        with pytest.raises(TimeoutError, match=r"deadline of 0\.3 s reached"):
            await hang()
        return clock.now - started

    elapsed = run(main)
    assert elapsed == exactly(0.3)


@runners
def test_an_attempt_timeout_then_a_successful_retry(run: Callable[..., Any],
                                                    clock: VirtualClock) -> None:
    calls = 0

    @brace.network(attempt_timeout=0.1, initial=0, max_wait=0)
    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(30)
        return "second"

    async def main() -> float:
        started = clock.now
        assert await slow_then_fast() == "second"
        return clock.now - started

    elapsed = run(main)
    assert calls == 2
    assert elapsed == exactly(0.1)  # the attempt timeout, then no wait at all


@runners
def test_a_breaker_opens_and_rejects(run: Callable[..., Any],
                                     brace_reset_breakers: None) -> None:
    brace.breaker("async-libs", fail_max=2, reset_timeout=60)
    calls = 0

    @brace.network(attempts=1, breaker="async-libs")
    async def down() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)
        raise ConnectionRefusedError("down")

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                await down()
        with pytest.raises(brace.CircuitOpenError):
            await down()

    run(main)
    assert calls == 2
    assert brace.breakers()["async-libs"].state == "open"


@runners
def test_a_callers_cancellation_wins(run: Callable[..., Any], clock: VirtualClock) -> None:
    calls = 0

    @brace.network(attempt_timeout=0.1, deadline=5, initial=0, max_wait=0)
    async def hang() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(30)

    async def main() -> float:
        started = clock.now
        # Expires at the very moment of the first attempt timeout (virtual time: exactly).
        with anyio.move_on_after(0.1) as scope:
            await hang()
        assert scope.cancelled_caught  # cancelled, not turned into a TimeoutError
        return clock.now - started

    assert run(main) == exactly(0.1)
    assert calls == 1


@runners
def test_no_waits_under_every_library(run: Callable[..., Any], clock: VirtualClock) -> None:
    @brace.network(initial=5, max_wait=5)
    async def down() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        started = clock.now
        with brace.testing.no_waits(), pytest.raises(ConnectionError):
            await down()
        assert clock.now == started  # not one virtual moment slept

    run(main)
    # The preset's attempts or fewer: the deadline counts the sleeps no_waits() skipped.
    assert 2 <= down.statistics["attempt_number"] <= brace.network().attempts


@real_runners
def test_the_async_client_against_a_real_server(run: Callable[..., Any],
                                                fault_server: FaultServer) -> None:
    fault_server.script("/flaky", reply(503), reply(503), reply(200, b"fine"))

    async def main() -> None:
        policy = brace.http(initial=0.01, max_wait=0.02)
        async with policy.async_client(trust_env=False) as client:
            response = await client.get(fault_server.url_for("/flaky"))
        assert response.status_code == 200 and response.content == b"fine"
        assert response.extensions["brace"]["attempts"] == 3

    run(main)
    assert fault_server.count("/flaky", "GET") == 3
