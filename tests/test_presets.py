"""Every preset: its defaults, what it retries, how many times, how long it waits."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

import brace
from brace.testing import no_waits

DESIGN_TABLE = {
    # name: (attempts, initial, max_wait, deadline), calibrated against the fault matrix
    # (issue 21; docs/rides-out.md): see the promise tests below
    "network": (10, 0.2, 5.0, 20.0),
    "http": (11, 0.2, 10.0, 30.0),
    "database": (12, 0.1, 3.0, 10.0),
    "llm": (13, 1.0, 30.0, 300.0),
    "interactive": (6, 0.1, 0.25, 1.0),
    "background": (16, 1.0, 120.0, 600.0),
}
# name: the outage (s) each preset promises to ride out with >= 99 % probability
RIDES_OUT = {"network": 5.0, "http": 10.0, "database": 5.0, "llm": 60.0, "interactive": 0.2,
             "background": 300.0}
NAMES = list(DESIGN_TABLE)
REQUEST = httpx.Request("GET", "http://127.0.0.1/")


class AuthenticationError(Exception):
    """Shaped like an SDK's auth error: a 401 carried on the exception."""

    status_code = 401


RETRIED = [
    ConnectionError("x"), ConnectionResetError("x"), ConnectionRefusedError("x"),
    BrokenPipeError("x"), TimeoutError("x"), socket.timeout("x"),  # noqa: UP041  (the 3.10 alias)
    httpx.ConnectError("x", request=REQUEST), httpx.ReadTimeout("x", request=REQUEST),
    httpx.RemoteProtocolError("x", request=REQUEST), httpx.PoolTimeout("x", request=REQUEST),
]
NEVER = [
    ValueError("x"), TypeError("x"), KeyError("x"), PermissionError("x"), AuthenticationError("x"),
    AttributeError("x"), ZeroDivisionError("x"), FileNotFoundError("x"),
    httpx.UnsupportedProtocol("x", request=REQUEST),
]


def test_names_and_lookup() -> None:
    assert brace.presets.names() == tuple(NAMES)
    for name in NAMES:
        preset = brace.presets.get(name)
        assert preset is getattr(brace, name) is getattr(brace.presets, name)
        assert preset.preset == name
        assert preset.summary
    with pytest.raises(ValueError, match=r"unknown preset 'htp'.*http"):
        brace.presets.get("htp")


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_the_design_table(name: str) -> None:
    preset = brace.presets.get(name)
    assert (preset.attempts, preset.initial, preset.max_wait, preset.deadline) == DESIGN_TABLE[name]
    policy = preset(attempts=2, initial=0.01, max_wait=0.5, deadline=3)
    assert (policy.attempts, policy.initial, policy.max_wait, policy.deadline) == (2, 0.01, 0.5, 3)
    assert policy.preset == name


def counting(exc: BaseException) -> Any:
    def fn() -> None:
        fn.calls += 1  # type: ignore[attr-defined]
        raise exc

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("exc", RETRIED, ids=lambda e: type(e).__name__)
def test_retries_transient_errors_up_to_the_cap(name: str, exc: BaseException,
                                                clock: Any) -> None:
    preset = brace.presets.get(name)
    fn = counting(exc)
    with no_waits(), pytest.raises(type(exc)):
        preset(fn)()
    assert fn.calls == preset.attempts


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("exc", NEVER, ids=lambda e: type(e).__name__)
def test_never_retries_bugs_and_auth(name: str, exc: BaseException) -> None:
    fn = counting(exc)
    with no_waits(), pytest.raises(type(exc)):
        brace.presets.get(name)(fn)()
    assert fn.calls == 1


@pytest.mark.parametrize("name", NAMES)
def test_async_parity(name: str) -> None:
    preset = brace.presets.get(name)
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError

    with no_waits(), pytest.raises(TimeoutError):
        asyncio.run(preset(fn)())
    assert calls == preset.attempts

    calls = 0

    async def bug() -> None:
        nonlocal calls
        calls += 1
        raise ValueError

    with no_waits(), pytest.raises(ValueError):
        asyncio.run(preset(bug)())
    assert calls == 1


@pytest.mark.parametrize("name", NAMES)
def test_waits_are_full_jitter_within_bounds(name: str, clock: Any) -> None:
    preset = brace.presets.get(name).replace(deadline=1e6)  # attempts, not deadline, bind
    for _ in range(30):
        with pytest.raises(ConnectionError):
            for attempt in preset.retrying(sleep=clock.sleep):
                with attempt:
                    raise ConnectionError
    assert len(clock.sleeps) == 30 * (preset.attempts - 1)
    assert all(0 <= s <= preset.max_wait for s in clock.sleeps)
    # full jitter: the first wait is drawn from [0, initial], and not always the same
    firsts = clock.sleeps[:: preset.attempts - 1]
    assert all(s <= preset.initial for s in firsts)
    assert len(set(firsts)) > 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("call_s", [0.0, 0.3])
def test_deadline_is_never_crossed_by_a_sleep(name: str, call_s: float, clock: Any) -> None:
    preset = brace.presets.get(name).replace(attempts=1000)  # the deadline binds
    start = clock.now
    starts: list[float] = []
    with pytest.raises(ConnectionError):
        for attempt in preset.retrying(sleep=clock.sleep):
            with attempt:
                starts.append(clock.now - start)
                clock.advance(call_s * preset.deadline)
                raise ConnectionError
    assert all(s < preset.deadline for s in starts)
    assert sum(clock.sleeps) <= preset.deadline
    assert len(starts) > 1


@pytest.mark.parametrize("name", NAMES)
def test_async_deadline_with_virtual_time(name: str, clock: Any) -> None:
    preset = brace.presets.get(name).replace(attempts=1000)

    async def main() -> int:
        count = 0
        with pytest.raises(TimeoutError):
            async for attempt in preset.async_retrying(sleep=clock.async_sleep):
                with attempt:
                    count += 1
                    raise TimeoutError
        return count

    count = asyncio.run(main())
    assert sum(clock.sleeps) <= preset.deadline
    assert 1 < count < 1000


def test_database_retries_driver_transients_only() -> None:
    import sqlite3

    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    missing = sqlite3.OperationalError("no such table: orders")
    missing.sqlite_errorcode = 1  # type: ignore[attr-defined]
    fn = counting(locked)
    with no_waits(), pytest.raises(sqlite3.OperationalError):
        brace.database(fn)()
    assert fn.calls == brace.database.attempts
    fn = counting(missing)
    with no_waits(), pytest.raises(sqlite3.OperationalError):
        brace.database(fn)()
    assert fn.calls == 1
    # other presets do not know about databases
    fn = counting(locked)
    with no_waits(), pytest.raises(sqlite3.OperationalError):
        brace.network(fn)()
    assert fn.calls == 1


# --- the promises (DESIGN rule 26) ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_promise_holds_with_99_percent(name: str) -> None:
    from brace._explain import backoff_caps, reach_probability, ride_out_s

    preset = brace.presets.get(name)
    assert preset.rides_out_s == RIDES_OUT[name]
    assert f"{preset.rides_out_s:g} s" in preset.promise or "5 min" in preset.promise
    assert reach_probability(backoff_caps(preset), preset.rides_out_s) >= 0.99
    # the deadline never cuts the attempt that comes after the outage
    assert preset.rides_out_s + preset.max_wait <= preset.deadline
    assert ride_out_s(preset) >= preset.rides_out_s
    # and the fewest attempts that keep it: one fewer breaks the promise
    fewer = preset.replace(attempts=preset.attempts - 1)
    assert reach_probability(backoff_caps(fewer), preset.rides_out_s) < 0.99


@pytest.mark.parametrize("name", NAMES)
def test_promise_by_monte_carlo_over_the_policys_own_waits(name: str) -> None:
    # The exact computation, checked against sampling the wait object the policy really uses
    # (tenacity's full jitter behind brace's Retry-After wait), with brace's deadline rule.
    import sys
    from pathlib import Path

    from brace._explain import backoff_caps, reach_probability

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import faults
    finally:
        sys.path.pop(0)
    preset = brace.presets.get(name)
    sampled = faults.monte_carlo(preset, preset.rides_out_s, samples=4000, seed=7)
    exact = reach_probability(backoff_caps(preset), preset.rides_out_s)
    assert sampled == pytest.approx(exact, abs=0.006)  # ~4 standard errors at 4,000 samples


def test_reach_probability_is_exact_on_known_cases() -> None:
    from brace._explain import reach_probability

    assert reach_probability([1.0], 0.25) == pytest.approx(0.75)
    assert reach_probability([1.0, 1.0], 1.0) == pytest.approx(0.5)  # triangle, symmetric
    assert reach_probability([1.0, 1.0], 1.5) == pytest.approx(0.125)
    assert reach_probability([1.0, 2.0], 2.5) == pytest.approx(0.0625)  # area 1/8 of 2
    assert reach_probability([1.0], 0.0) == 1.0
    assert reach_probability([1.0, 2.0], 3.0) == 0.0
    assert reach_probability([], 0.5) == 0.0
