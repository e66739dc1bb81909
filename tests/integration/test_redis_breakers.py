"""Redis-backed breakers against a real redis-server: shared state, outages, recovery."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _breakers
from brace.testing import no_waits

WORKER = Path(__file__).with_name("breaker_worker.py")
#: Bound on one call while Redis is down (the client's timeouts are 0.25 s per operation).
CALL_BOUND_S = 2.0


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with no_waits():
        yield


def keys_of(client: Any, name: str) -> dict[str, bytes]:
    """Every Redis key of breaker ``name`` with its value (prefix stripped)."""
    prefix = f"brace:{name}:"
    return {key.decode()[len(prefix):]: client.get(key)
            for key in client.scan_iter(match=f"{prefix}*")}


def timed(fn: Callable[[], Any]) -> tuple[str, Any, float]:
    """Call ``fn``; return ("ok", result, seconds) or ("raised", exception, seconds)."""
    start = time.monotonic()
    try:
        result = fn()
    except Exception as exc:
        return "raised", exc, time.monotonic() - start
    return "ok", result, time.monotonic() - start


class Dependency:
    """The guarded function's body: counts calls and fails while ``down`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise ConnectionError("dependency is down")
        return "value"


def poll_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait, boundedly, until ``condition()`` holds (Redis may be picked up after a delay)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def storage_errors(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "breaker.storage_error" and e["breaker"] == name]


# -- 2. shared state across two OS processes -------------------------------------------------


def run_worker(url: str, name: str, mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
    proc = subprocess.run([sys.executable, str(WORKER), url, name, mode], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"worker {mode} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"worker {mode} printed nothing; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])


def test_breaker_tripped_in_one_process_fails_fast_in_another(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    a = run_worker(redis_server.url, breaker_name, "fail")
    # fail_max=3: the third failure trips the breaker and still surfaces as itself;
    # the fourth call is rejected without running the function.
    assert a["outcomes"] == ["ConnectionError"] * 3 + ["CircuitOpenError"], a
    assert a["body_calls"] == 3, a
    assert a["storage"] == "redis", a
    assert a["state"] == "open", a
    opened = [e for e in a["events"] if e["event"] == "breaker.state_changed"
              and e["new"] == "open"]
    assert len(opened) == 1, a["events"]
    assert {"breaker": breaker_name, "old": "closed",
            "log_level": "warning"}.items() <= opened[0].items(), opened
    assert opened[0]["callable"].endswith("failing"), opened  # what tripped it

    keys = keys_of(redis_client, breaker_name)
    assert {"pybreaker:state", "pybreaker:fail_counter", "pybreaker:opened_at"} <= set(keys), keys
    assert keys["pybreaker:state"] == b"open"
    assert abs(int(keys["pybreaker:opened_at"]) - time.time()) < 60
    assert redis_client.keys("pybreaker:*") == []  # nothing outside the brace:NAME: namespace

    b = run_worker(redis_server.url, breaker_name, "succeed")
    assert b["outcomes"] == ["CircuitOpenError"], b
    assert b["body_calls"] == 0, b  # the function that would have succeeded never ran
    assert b["state"] == "open", b
    assert 50 < b["remaining_s"] <= 60, b
    assert any(e["event"] == "breaker.rejected" and e["breaker"] == breaker_name
               for e in b["events"]), b["events"]

    # This (third) process sees the shared state too.
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60)
    info = brace.breakers()[breaker_name]
    assert (info.state, info.storage, info.fail_max) == ("open", "redis", 3)


# -- 3. Redis killed mid-run ------------------------------------------------------------------


def test_redis_killed_calls_proceed_bounded_then_recover_after_restart(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  fallback_state="closed")
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=3)(dep)
    assert call() == "value"
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"closed"

    redis_server.stop()
    with capture_logs() as logs:
        # A successful function still returns its value ...
        for _ in range(5):
            outcome, value, elapsed = timed(call)
            assert (outcome, value) == ("ok", "value")
            assert elapsed < CALL_BOUND_S, f"call took {elapsed:.2f} s with Redis down"
        # ... and the function's own error still surfaces, after every attempt: with the
        # shared counter unreachable the breaker cannot trip, so nothing is rejected.
        dep.down = True
        for _ in range(3):
            dep.calls = 0
            outcome, error, elapsed = timed(call)
            assert outcome == "raised"
            assert type(error) is ConnectionError, repr(error)
            assert str(error) == "dependency is down"
            assert dep.calls == 3
            assert elapsed < CALL_BOUND_S, f"call took {elapsed:.2f} s with Redis down"
    errors = storage_errors(logs, breaker_name)
    assert errors, [e["event"] for e in logs]
    assert all("ConnectionError" in e["error"] for e in errors), errors
    assert not [e for e in logs if e["event"] == "breaker.rejected"]

    redis_server.start()  # same port, empty database (no persistence)
    dep.down = False
    call_once = brace.network(breaker=breaker_name, attempts=1)(dep)
    poll_until(lambda: call_once() == "value"
               and keys_of(redis_client, breaker_name).get("pybreaker:state") == b"closed",
               "the breaker writes its shared state to the restarted Redis")
    dep.down = True
    dep.calls = 0
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(ConnectionError, match="dependency is down"):
                call_once()
        with pytest.raises(brace.CircuitOpenError) as rejected:
            call_once()
    assert dep.calls == 3  # the trip happened at the third failure; the fourth never ran
    assert rejected.value.breaker == breaker_name
    assert not storage_errors(logs, breaker_name), storage_errors(logs, breaker_name)
    keys = keys_of(redis_client, breaker_name)
    assert keys["pybreaker:state"] == b"open", keys
    assert "pybreaker:opened_at" in keys, keys
    assert brace.breakers()[breaker_name].state == "open"


def test_redis_killed_with_open_fallback_fails_fast(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  fallback_state="open")
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=3)(dep)
    assert call() == "value"
    dep.calls = 0

    redis_server.stop()
    with capture_logs() as logs:
        for _ in range(3):
            outcome, error, elapsed = timed(call)
            assert elapsed < CALL_BOUND_S, f"call took {elapsed:.2f} s with Redis down"
            # README: fallback_state="open" means calls fail fast while Redis is unreachable.
            assert outcome == "raised", f"the call ran and returned {error!r} with Redis down"
            assert isinstance(error, brace.CircuitOpenError), repr(error)
            assert error.breaker == breaker_name
    assert dep.calls == 0, f"the function ran {dep.calls} times while Redis was down"
    assert storage_errors(logs, breaker_name)

    # Redis returns with the shared state it had (closed, as a persistent Redis would keep
    # it): the breaker picks it up again and admits calls.
    redis_server.start()
    for key, value in {"state": "closed", "fail_counter": 0, "success_counter": 0}.items():
        redis_client.set(f"brace:{breaker_name}:pybreaker:{key}", value)
    call_once = brace.network(breaker=breaker_name, attempts=1)(dep)

    def admitted() -> bool:
        try:
            return call_once() == "value"
        except brace.CircuitOpenError:
            return False

    poll_until(admitted, "the breaker admits calls once Redis is back and closed")
    assert dep.calls == 1


def test_frozen_redis_costs_a_call_bounded_time(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    """An unresponsive Redis (accepts, never answers) must not multiply the client timeout."""
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60)
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=2)(dep)
    assert call() == "value"

    redis_server.pause()
    try:
        with capture_logs() as logs:
            outcome, value, ok_elapsed = timed(call)
            assert (outcome, value) == ("ok", "value")
            dep.down = True
            outcome, error, fail_elapsed = timed(call)
            assert type(error) is ConnectionError, repr(error)
    finally:
        redis_server.resume()
    assert any("Timeout" in e["error"] for e in storage_errors(logs, breaker_name)), logs
    # README: "an unreachable Redis costs a call milliseconds, never a hang".
    assert ok_elapsed < CALL_BOUND_S and fail_elapsed < CALL_BOUND_S, (
        f"with Redis frozen a successful call took {ok_elapsed:.2f} s and a failing call "
        f"(2 attempts) {fail_elapsed:.2f} s: every Redis operation waits its own 0.25 s")

    dep.down = False
    assert call() == "value"  # Redis answers again
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"closed"


# -- 4. created while Redis is down -----------------------------------------------------------


def test_breaker_created_while_redis_down_recovers_when_redis_starts(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    redis_server.stop()
    with capture_logs() as logs:
        start = time.monotonic()
        cb = brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=2,
                           reset_timeout=60)
        assert time.monotonic() - start < CALL_BOUND_S
        dep = Dependency()
        call = brace.network(breaker=breaker_name, attempts=1)(dep)
        assert call() == "value"  # fallback "closed": calls proceed
    assert storage_errors(logs, breaker_name), [e["event"] for e in logs]
    assert brace.breakers()[breaker_name].storage == "redis"

    redis_server.start()
    poll_until(lambda: call() == "value"
               and keys_of(redis_client, breaker_name).get("pybreaker:state") == b"closed",
               "the breaker initialises its shared state once Redis is up")
    dep.down = True
    dep.calls = 0
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert dep.calls == 2
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"open"
    assert cb.current_state == "open"


# -- 5. conflicting settings ------------------------------------------------------------------


def test_conflicting_settings_raise_and_bare_lookup_returns_same_breaker(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    cb = brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3)
    with pytest.raises(ValueError, match="fail_max=3"):
        brace.breaker(breaker_name, fail_max=4)
    with pytest.raises(ValueError, match="redis_url"):
        brace.breaker(breaker_name, redis_url=redis_server.url.replace("/0", "/1"))
    assert brace.breaker(breaker_name) is cb
    assert brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3) is cb
    assert cb.fail_max == 3
    info = brace.breakers()[breaker_name]
    assert (info.storage, info.fail_max, info.state) == ("redis", 3, "closed")
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"closed"


# -- 6. async on plain asyncio ----------------------------------------------------------------


def test_async_function_trips_fails_fast_and_recovers(
        redis_server: Any, redis_client: Any, breaker_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=2, reset_timeout=5)
    calls = 0
    down = True

    @brace.network(breaker=breaker_name, attempts=3)
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if down:
            raise ConnectionError("dependency is down")
        return "value"

    async def scenario() -> list[str]:
        seen = []
        for _ in range(2):
            try:
                await fetch()
            except brace.CircuitOpenError:
                seen.append("CircuitOpenError")
            except ConnectionError:
                seen.append("ConnectionError")
        return seen

    # First call: attempt 1 fails, attempt 2 fails and trips the breaker (its own error
    # surfaces, no third attempt); second call is rejected without running.
    assert asyncio.run(scenario()) == ["ConnectionError", "CircuitOpenError"]
    assert calls == 2
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"open"

    # Past reset_timeout (whole seconds in Redis: allow one more), a trial is admitted.
    later = datetime.now(timezone.utc) + timedelta(seconds=5 + 2)
    monkeypatch.setattr(_breakers, "_utcnow", lambda: later)
    down = False
    assert asyncio.run(fetch()) == "value"
    assert calls == 3
    assert keys_of(redis_client, breaker_name)["pybreaker:state"] == b"closed"
    assert brace.breakers()[breaker_name].state == "closed"
