"""Redis-backed breakers against a real redis-server: shared state, outages, recovery."""

from __future__ import annotations

import asyncio
import contextlib
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


def shared(client: Any, name: str) -> dict[str, str]:
    """The shared state of breaker ``name`` in Redis (one hash), decoded."""
    return {key.decode(): value.decode()
            for key, value in client.hgetall(f"brace:{{{name}}}:state").items()}


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


def run_workers(script: str, argvs: list[list[str]],
                started: Callable[[], None] | None = None,
                together: bool = False) -> list[dict[str, Any]]:
    """Run one worker process per argv at once; return each one's JSON line.

    With ``together``, each worker prints ``ready`` once set up and waits for a line on
    stdin; all are released at once, so their measured intervals coincide.
    """
    env = {k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
    workers = [subprocess.Popen([sys.executable, str(WORKER.with_name(script)), *argv],
                                stdin=subprocess.PIPE if together else None,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for argv in argvs]
    try:
        if together:
            for worker in workers:
                assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
        if started is not None:
            started()
        return [json.loads(worker.communicate(timeout=60)[0].strip().splitlines()[-1])
                for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(5)


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

    state = shared(redis_client, breaker_name)
    assert {"state", "failures", "opened_at"} <= set(state), state
    assert state["state"] == "open"
    assert abs(float(state["opened_at"]) - time.time()) < 60
    assert redis_client.keys("pybreaker:*") == []  # nothing outside brace's namespace

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


def test_redis_killed_the_breaker_goes_on_locally_then_shares_again(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  fallback_state="closed", sync_interval=0.2)
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=3)(dep)
    assert call() == "value"
    assert shared(redis_client, breaker_name).get("state", "closed") == "closed"

    redis_server.stop()
    started = time.monotonic()
    with capture_logs() as logs:
        # A successful function still returns its value ...
        for _ in range(5):
            outcome, value, elapsed = timed(call)
            assert (outcome, value) == ("ok", "value")
            assert elapsed < CALL_BOUND_S, f"call took {elapsed:.2f} s with Redis down"
        # ... and a failing dependency still opens the breaker, locally: the third failure
        # trips it (and surfaces as itself), the next call is rejected without running.
        dep.down = True
        dep.calls = 0
        outcome, error, elapsed = timed(call)
        assert (outcome, type(error), dep.calls) == ("raised", ConnectionError, 3)
        outcome, error, elapsed = timed(call)
        assert outcome == "raised" and isinstance(error, brace.CircuitOpenError), repr(error)
        assert dep.calls == 3
        while time.monotonic() - started < 1.0:  # an outage that goes on, calls keep coming
            timed(call)
    # Reported once when Redis was lost, not once per call.
    assert len(storage_errors(logs, breaker_name)) == 1, storage_errors(logs, breaker_name)

    redis_server.start()  # same port, empty database (no persistence)
    # What this process learned alone (the dependency is down) is shared once Redis answers.
    poll_until(lambda: (timed(call), shared(redis_client, breaker_name).get("state"))[1]
               == "open", "the local open state is written to the restarted Redis")
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
        # The loss is noticed at the next refresh of the local copy (within sync_interval) ...
        poll_until(lambda: isinstance(timed(call)[1], brace.CircuitOpenError),
                   "calls fail fast once the breaker notices Redis is gone")
        dep.calls = 0
        for _ in range(3):  # ... and from then on every call fails fast
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
    redis_client.hset(f"brace:{{{breaker_name}}}:state", mapping={"state": "closed",
                                                                "failures": 0})
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
    poll_until(lambda: call() == "value" and not storage_errors([], breaker_name)
               and redis_client.ping(), "Redis answers again")


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
    poll_until(lambda: call() == "value" and redis_client.ping()
               and brace.breakers()[breaker_name].state != "open",
               "the breaker shares its state once Redis is up")
    dep.down = True
    dep.calls = 0
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert dep.calls == 2
    # Shared within sync_interval of Redis answering again.
    poll_until(lambda: (brace.breakers(), shared(redis_client, breaker_name))[1].get("state")
               == "open", "the open state is shared")
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
    assert shared(redis_client, breaker_name).get("state", "closed") == "closed"


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
    assert shared(redis_client, breaker_name)["state"] == "open"

    # Past reset_timeout (kept to the microsecond in Redis), a trial is admitted.
    later = datetime.now(timezone.utc) + timedelta(seconds=5.01)
    monkeypatch.setattr(_breakers, "_utcnow", lambda: later)
    down = False
    assert asyncio.run(fetch()) == "value"
    assert calls == 3
    assert shared(redis_client, breaker_name)["state"] == "closed"
    assert brace.breakers()[breaker_name].state == "closed"


# -- 7. fleet scale: no round trip per healthy call, state shared within sync_interval -------


def test_a_healthy_call_makes_no_redis_round_trip(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, sync_interval=1.0)
    call = brace.network(breaker=breaker_name)(lambda: "value")
    assert call() == "value"

    def commands() -> int:
        return int(redis_client.info("stats")["total_commands_processed"])

    before = commands()
    started = time.monotonic()
    for _ in range(1000):
        assert call() == "value"
    elapsed = time.monotonic() - started
    # One INFO call of ours, and one refresh of the local copy per sync_interval.
    used = commands() - before - 1
    assert used <= 0.1 * 1000, used
    assert used <= 1 + elapsed / 1.0 + 1, (used, elapsed)


def test_a_trip_in_another_process_is_seen_within_sync_interval(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  sync_interval=0.5)
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=1)(dep)
    assert call() == "value"
    a = run_worker(redis_server.url, breaker_name, "fail")  # trips it, in another process
    assert a["state"] == "open", a
    tripped = time.monotonic()
    dep.calls = 0
    poll_until(lambda: isinstance(timed(call)[1], brace.CircuitOpenError),
               "this process rejects calls", timeout=0.5 + 0.5 + 1)
    assert time.monotonic() - tripped <= 0.5 + 0.5
    calls_before = dep.calls
    with pytest.raises(brace.CircuitOpenError):
        call()
    assert dep.calls == calls_before  # rejected without calling the function


def test_half_open_admits_one_trial_across_the_fleet(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    # The breaker is open, and its reset_timeout (0.2 s) has passed: the next call anywhere
    # is the trial, and the trial takes 0.5 s while 31 other calls arrive.
    redis_client.hset(f"brace:{{{breaker_name}}}:state",
                      mapping={"state": "open", "failures": 1, "opened_at": time.time() - 5})
    def start() -> None:
        poll_until(lambda: all(redis_client.get(f"{breaker_name}:ready:{i}")
                               for i in range(4)), "every worker is ready", timeout=20)
        redis_client.set(f"{breaker_name}:go", 1)

    results = run_workers("trial_worker.py", [[redis_server.url, breaker_name, str(i)]
                                               for i in range(4)], start)
    outcomes = sorted(o for result in results for o in result["outcomes"])
    assert int(redis_client.get(f"{breaker_name}:calls") or 0) == 1  # the dependency saw one
    assert outcomes == ["ok"] + ["rejected"] * 31, outcomes


@pytest.mark.parametrize("fault", ["frozen", "killed"])
def test_a_redis_outage_under_load_costs_at_most_one_timeout_per_window(
        redis_server: Any, redis_client: Any, breaker_name: str, fault: str) -> None:
    """3 s of Redis frozen (SIGSTOP) or killed and restarted, under a steady load of calls:
    no call waits more than the Redis timeout + 50 ms, every call returns its value, the
    loss is reported once, and sharing resumes once Redis answers."""
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  sync_interval=0.5)
    call = brace.network(breaker=breaker_name, attempts=1)(lambda: "value")
    assert call() == "value"
    slowest, outcomes = 0.0, set()
    with capture_logs() as logs:
        started = time.monotonic()
        broken = restored = False
        while time.monotonic() - started < 4.0:  # bounded: 4 s of calls
            elapsed = time.monotonic() - started
            if not broken and elapsed >= 0.5:
                redis_server.pause() if fault == "frozen" else redis_server.stop()
                broken = True
            if broken and not restored and elapsed >= 3.5:
                redis_server.resume() if fault == "frozen" else redis_server.start()
                restored = True
            outcome, value, took = timed(call)
            outcomes.add((outcome, value if outcome == "ok" else type(value)))
            slowest = max(slowest, took)
            time.sleep(0.01)
    assert outcomes == {("ok", "value")}, outcomes
    assert slowest <= 0.25 + 0.05, slowest
    assert len(storage_errors(logs, breaker_name)) == 1, storage_errors(logs, breaker_name)
    # Sharing resumes: a state another process writes is seen again.
    redis_client.hset(f"brace:{{{breaker_name}}}:state",
                      mapping={"state": "open", "opened_at": time.time()})
    poll_until(lambda: isinstance(timed(call)[1], brace.CircuitOpenError),
               "the shared state is read again", timeout=3)


def brace_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
    return subprocess.run([sys.executable, "-m", "brace", *argv], capture_output=True,
                          text=True, timeout=30, env=env, check=False)


def test_operators_see_and_steer_shared_breakers_from_the_cli(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=3, reset_timeout=60,
                  sync_interval=0.2)
    dep = Dependency()
    call = brace.network(breaker=breaker_name, attempts=1)(dep)
    assert call() == "value"

    # Another process trips it; this one rejects within sync_interval.
    assert run_worker(redis_server.url, breaker_name, "fail")["state"] == "open"
    poll_until(lambda: isinstance(timed(call)[1], brace.CircuitOpenError), "rejected here",
               timeout=0.2 + 0.5)
    listed = brace_cli("breakers", "--redis-url", redis_server.url, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == breaker_name]
    assert (row["state"], row["fail_max"], row["reset_timeout"]) == ("open", 3, 60.0)
    assert 50 < row["next_trial_s"] <= 60
    table = brace_cli("breakers", "--redis-url", redis_server.url)
    assert table.stdout.splitlines()[0].split()[:3] == ["name", "state", "failures"]

    # An operator restores it: both processes let calls through again.
    closed = brace_cli("breakers", "close", breaker_name, "--redis-url", redis_server.url)
    assert closed.returncode == 0 and "forced close" in closed.stdout, closed.stderr
    poll_until(lambda: timed(call)[1] == "value", "admitted here again", timeout=0.2 + 0.5)
    assert run_worker(redis_server.url, breaker_name, "succeed")["outcomes"] == ["ok"]

    # ... and can isolate it again, everywhere.
    assert brace_cli("breakers", "open", breaker_name,
                     "--redis-url", redis_server.url).returncode == 0
    poll_until(lambda: isinstance(timed(call)[1], brace.CircuitOpenError), "isolated",
               timeout=0.2 + 0.5)


def test_the_cli_says_no_in_one_line(redis_server: Any, breaker_name: str) -> None:
    missing_name = brace_cli("breakers", "open", "--redis-url", redis_server.url)
    dead_port = redis_server.url.rsplit(":", 1)[0] + ":1/0"
    unreachable = brace_cli("breakers", "--redis-url", dead_port)
    for result in (missing_name, unreachable):
        assert result.returncode == 2
        assert result.stderr.startswith("brace: error: ") and result.stderr.count("\n") == 1
    assert "needs a breaker NAME" in missing_name.stderr
    assert "Redis at" in unreachable.stderr


# -- 8. one retry budget for the fleet --------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.2])
def test_a_shared_budget_bounds_the_fleets_retries(redis_server: Any, breaker_name: str,
                                                   ratio: float) -> None:
    # A total outage, 3 processes, 100 calls each: per-process budgets would let each
    # process retry its own floor (10) plus its share.
    results = run_workers("budget_worker.py",
                          [[redis_server.url, breaker_name, str(ratio), "100"]] * 3)
    calls = sum(r["calls"] for r in results)
    retries = sum(r["attempts"] - r["calls"] for r in results)
    assert calls == 300
    assert retries <= ratio * calls + 10, (retries, results)
    assert retries >= 10  # the floor is the fleet's, and it is spent


def test_a_shared_budget_counts_locally_while_redis_is_down(redis_server: Any,
                                                            breaker_name: str) -> None:
    brace.budget(breaker_name, ratio=0, min_per_s=0.2, window=10,  # 2 retries
                 redis_url=redis_server.url)
    redis_server.stop()
    attempts = 0

    @brace.network(attempts=3, budget=breaker_name)
    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("dependency is down")

    with capture_logs() as logs:
        for _ in range(5):
            outcome, error, elapsed = timed(down)
            assert outcome == "raised" and type(error) is ConnectionError
            assert elapsed < CALL_BOUND_S
    assert attempts == 5 + 2  # the local budget's floor: 2 retries
    assert len([e for e in logs if e["event"] == "breaker.storage_error"]) == 1


# -- 9. failure-ratio breakers shared on Redis --------------------------------------------------


@pytest.mark.parametrize(("pattern", "opens"), [
    ([False, False, True, False, True], True),  # 60 %, never 5 failures in a row
    ([False, True, True, False, True, True, True, False, True, True], False),  # 30 %
], ids=["60%", "30%"])
def test_a_shared_failure_ratio_opens_the_fleets_breaker(
        redis_server: Any, redis_client: Any, breaker_name: str, pattern: list[bool],
        opens: bool) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, failure_ratio=0.5, min_calls=20,
                  window=30, sync_interval=0.1)
    outcomes = iter(pattern * 20)
    ran = 0

    @brace.network(attempts=1, breaker=breaker_name)
    def dependency() -> str:
        nonlocal ran
        ran += 1
        if not next(outcomes):
            raise ConnectionError("down")
        return "ok"

    for _ in range(60):
        with contextlib.suppress(ConnectionError, brace.CircuitOpenError):
            dependency()
    assert ran == (21 if opens else 60)
    assert shared(redis_client, breaker_name).get("state", "closed") == (
        "open" if opens else "closed")
    # The window is the fleet's: its counts live in Redis.
    window = {k.decode(): v for k, v in redis_client.hgetall(
        f"brace:{{{breaker_name}}}:window").items()}
    calls = sum(int(v) for k, v in window.items() if k.startswith("c:"))
    assert calls >= 21 - 1  # successes are added in batches, failures at once


def test_slow_calls_count_against_a_shared_breaker(
        redis_server: Any, redis_client: Any, breaker_name: str, clock: Any) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=2, slow_call=1.0)

    @brace.network(attempts=1, breaker=breaker_name)
    def sluggish() -> str:
        clock.advance(1.5)  # answers, but after 1.5 s
        return "late"

    assert sluggish() == "late"
    assert sluggish() == "late"
    assert shared(redis_client, breaker_name)["state"] == "open"  # two slow calls opened it
    with pytest.raises(brace.CircuitOpenError):
        sluggish()


def test_the_cli_shows_a_ratio_breakers_current_ratio(
        redis_server: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, failure_ratio=0.9, min_calls=50)

    @brace.network(attempts=1, breaker=breaker_name)
    def half() -> None:
        raise ConnectionError("down")

    for _ in range(4):
        with contextlib.suppress(ConnectionError):
            half()
    listed = brace_cli("breakers", "--redis-url", redis_server.url, "--format", "json")
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == breaker_name]
    assert row["ratio"] == 1.0 and row["state"] == "closed"  # 4 of 4 failed, too few calls


# -- 10. one rate limit for the fleet -----------------------------------------------------------


def test_two_processes_share_one_rate_limit(redis_server: Any, breaker_name: str) -> None:
    results = run_workers("rate_worker.py", [[redis_server.url, breaker_name]] * 2,
                          together=True)
    total = sum(r["calls"] for r in results)
    # 20 a second for 2 s between them (plus the one a call may be waiting for at the end),
    # within 10 %; per-process limits would have let through twice as many.
    assert total <= (20 * 2 + 2) * 1.1, results
    assert total >= 20 * 2 * 0.8, results
    assert all(r["calls"] >= 10 for r in results), results  # both got a share


def test_a_shared_rate_limit_applies_its_share_while_redis_is_down(
        redis_server: Any, breaker_name: str) -> None:
    from brace import _config

    brace.rate_limit(breaker_name, per_s=20, burst=1, processes=2, redis_url=redis_server.url)
    redis_server.stop()
    # This process's share is 20 / 2 = 10 a second: tokens 0.1 s apart. Inside no_waits()
    # the token waits are skipped, yet they pass as time for the bucket, as in a real run.
    limited = brace.network(attempts=1, deadline=0.5, rate_limit=breaker_name)(lambda: "ok")
    skipped = _config.state.skipped
    with capture_logs() as logs:
        for _ in range(10):
            assert limited() == "ok"
    waited = _config.state.skipped - skipped
    assert 0.85 <= waited <= 0.95  # 9 waits of 0.1 s: the share, not the fleet's 20 a second
    assert len([e for e in logs if e["event"] == "breaker.storage_error"]) == 1
