"""A fleet keeps its promises when things fail (DESIGN rule 27), against a real redis-server
and real worker processes (``fleet_worker.py``): bounded Redis waits whatever the client
(``redis_timeout``), never past the call's deadline (``remaining=``), one connection pool
per URL, one trial per half-open period fleet-wide, consecutive means consecutive,
``redis.asyncio`` refused, batched and fair rate limits, forced isolation."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import brace
from brace import _breakers, _redis
from brace.testing import no_waits, reset_budgets, reset_limits


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset_budgets()
    reset_limits()
    yield
    reset_budgets()
    reset_limits()


def user_client(server: Any) -> Any:
    """A client as users write it: redis-py's defaults (5 s socket timeout, retries)."""
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port)


def commands(client: Any) -> int:
    return int(client.info("stats")["total_commands_processed"])


# A call that must not wait on a frozen Redis ends within this: well under one
# redis_timeout (0.25 s), which is what waiting on Redis costs; the rest is the machine's
# scheduling slack (a loaded 2-core CI machine).
HURRIED_S = 0.15


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


def poll_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def brace_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
    return subprocess.run([sys.executable, "-m", "brace", *argv], capture_output=True,
                          text=True, timeout=30, env=env, check=False)


# -- bounded Redis waits, whatever the client ---------------------------------------------------


@pytest.mark.slow
def test_a_user_client_with_redis_py_defaults_never_stalls_a_call(
        redis_server: Any, breaker_name: str) -> None:
    user = user_client(redis_server)
    try:
        brace.breaker(breaker_name, redis=user, fail_max=3, reset_timeout=60)
        brace.budget(breaker_name, redis=user)
        brace.rate_limit(breaker_name, per_s=10_000, burst=100, redis=user)
        call = brace.network(attempts=1, breaker=breaker_name, budget=breaker_name,
                             rate_limit=breaker_name)(lambda: "value")
        healthy = max(timed(call)[1] for _ in range(200))
        slowest, outcomes = 0.0, set()
        redis_server.pause()
        try:
            started = time.monotonic()
            while time.monotonic() - started < 3.0:  # bounded: 3 s of calls, Redis frozen
                result, took = timed(call)
                outcomes.add(repr(result))
                slowest = max(slowest, took)
                time.sleep(0.005)
        finally:
            redis_server.resume()
    finally:
        user.close()
    assert outcomes == {"'value'"}
    # redis-py's defaults would stall each call 5 s (times its retries): brace's own
    # timeout (0.25 s), paid once per cool-down by the first object to ask.
    assert slowest <= healthy + 0.3, (slowest, healthy)


def test_a_policy_on_a_frozen_redis_keeps_its_deadline_and_still_retries(
        redis_server: Any, breaker_name: str) -> None:
    user = user_client(redis_server)
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first attempt fails")
        return "value"

    try:
        brace.breaker(breaker_name, redis=user, fail_max=3, reset_timeout=60)
        brace.budget(breaker_name, redis=user)
        brace.rate_limit(breaker_name, per_s=100, burst=10, redis=user)
        policy = brace.network(deadline=0.5, attempts=3, breaker=breaker_name,
                               budget=breaker_name, rate_limit=breaker_name)
        call = policy(flaky)
        redis_server.pause()
        try:
            with no_waits():
                result, took = timed(call)
        finally:
            redis_server.resume()
    finally:
        user.close()
    # Three shared objects, each with its own cool-down, paid three timeouts (0.75 s).
    assert (result, attempts) == ("value", 2)
    assert took < 0.5, took


def test_objects_built_with_one_url_share_one_connection_pool(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    for i in range(10):
        brace.breaker(f"{breaker_name}-{i}", redis_url=redis_server.url, fail_max=3)
        brace.budget(f"{breaker_name}-{i}", redis_url=redis_server.url)
        brace.rate_limit(f"{breaker_name}-{i}", per_s=1000, burst=10,
                         redis_url=redis_server.url)
        call = brace.network(attempts=2, breaker=f"{breaker_name}-{i}",
                             budget=f"{breaker_name}-{i}", rate_limit=f"{breaker_name}-{i}")
        assert call(lambda: "value")() == "value"
    mine = redis_client.client_id()
    others = [c for c in redis_client.client_list() if int(c["id"]) != mine]
    assert 1 <= len(others) <= 3, others  # 30 objects, one pool (one thread: one connection)


def _one_round_trip(kind: str, name: str, **shared: Any) -> Callable[[], Any]:
    """Build the shared ``kind`` called ``name``; return an operation that asks Redis once."""
    if kind == "breaker":
        brace.breaker(name, **shared)
        gate = _breakers.find(name)
        assert gate is not None

        def refresh() -> Any:
            gate.storage.expire()  # type: ignore[attr-defined]  # the copy is due: one read
            return gate.enter("refresh")
        return refresh
    if kind == "budget":
        return brace.budget(name, **shared).try_spend
    limit = brace.rate_limit(name, per_s=1, burst=1, **shared)
    limit.reserve("first", 10.0)  # the one token of the next second is leased now ...
    return lambda: limit.reserve("second", 10.0)  # ... so this one asks Redis


@pytest.mark.parametrize("kind", ["breaker", "budget", "rate_limit"])
def test_redis_timeout_bounds_each_wait_whatever_the_client(
        redis_server: Any, breaker_name: str, kind: str) -> None:
    user = user_client(redis_server)  # redis-py's defaults: 5 s socket timeout, retries
    try:
        ask = _one_round_trip(kind, breaker_name, redis=user,
                              redis_timeout=timedelta(milliseconds=50))
        redis_server.pause()
        try:
            result, took = timed(ask)
        finally:
            redis_server.resume()
    finally:
        user.close()
    assert not isinstance(result, Exception), result  # decided locally, no error
    # It waited for Redis (the operation was made), for its own 50 ms, not the default
    # 0.25 s nor the client's 5 s.
    assert 0.045 <= took < 0.2, took


def test_objects_with_different_redis_timeouts_share_one_cool_down(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    url = redis_server.url
    before = {int(c["id"]) for c in redis_client.client_list()}
    short = brace.budget(f"{breaker_name}-short", redis_url=url, redis_timeout=0.05)
    longer = brace.budget(f"{breaker_name}-long", redis_url=url)
    assert (short.redis_timeout, longer.redis_timeout) == (0.05, 0.25)
    for i in range(10):  # 20 more objects on two timeouts
        for timeout in (0.05, 0.25):
            brace.breaker(f"{breaker_name}-{timeout}-{i}", redis_url=url,
                          redis_timeout=timeout)
            brace.rate_limit(f"{breaker_name}-{timeout}-{i}", per_s=1000, redis_url=url,
                             redis_timeout=timeout)
            assert brace.network(attempts=1, rate_limit=f"{breaker_name}-{timeout}-{i}")(
                lambda: "ok")() == "ok"
    assert short.try_spend() and longer.try_spend()
    # A socket's timeout is its connection's: one pool per URL and timeout ...
    assert (_redis.client_for(redis_url=url, timeout=0.05)[0]
            is not _redis.client_for(redis_url=url)[0])
    assert _redis.client_for(redis_url=url)[0] is _redis.client_for(redis_url=url)[0]
    opened = {int(c["id"]) for c in redis_client.client_list()} - before
    assert len(opened) <= 2, opened  # 22 objects, one thread: a connection per timeout
    # ... and one server, one cool-down: an outage costs the process one timeout per
    # window, whichever object meets it first.
    redis_server.pause()
    try:
        _, first = timed(short.try_spend)
        _, then = timed(longer.try_spend)
    finally:
        redis_server.resume()
    assert 0.045 <= first < 0.2, first  # its own 50 ms
    assert then < 0.1, then  # the server cools down: not asked (it would take 0.25 s)


# -- never past the call's deadline ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["breaker", "budget", "rate_limit"])
def test_a_gate_with_less_time_left_than_redis_timeout_never_asks_a_frozen_redis(
        redis_server: Any, breaker_name: str, kind: str) -> None:
    url = redis_server.url
    check: Callable[[float], Any]
    if kind == "breaker":
        brace.breaker(breaker_name, redis_url=url, fail_max=3)
        gate = _breakers.find(breaker_name)
        assert gate is not None

        def check(remaining: float) -> Any:
            gate.storage.expire()  # type: ignore[attr-defined]  # the copy is due
            return gate.enter("c", remaining=remaining)
        expected: Any = False  # admitted: closed, as the local copy says
    elif kind == "budget":
        budget = brace.budget(breaker_name, redis_url=url, ratio=0, min_per_s=1, window=10)

        def check(remaining: float) -> Any:
            return budget.try_spend(remaining=remaining)
        expected = True  # this process's own counts: within its floor of 10 retries
    else:
        limit = brace.rate_limit(breaker_name, per_s=100, redis_url=url)

        def check(remaining: float) -> Any:
            return limit.reserve("c", remaining)
        expected = brace.RateLimitedError  # nothing leased, and no time to lease
    redis_server.pause()
    try:
        hurried, took = timed(lambda: check(0.05))
        # With time to spare the same gate asks Redis, and waits its 0.25 s: it is frozen.
        _, unhurried = timed(lambda: check(1.0))
    finally:
        redis_server.resume()
    assert (type(hurried) if isinstance(hurried, Exception) else hurried) == expected, hurried
    assert took <= HURRIED_S, took
    assert unhurried >= 0.2, unhurried


def test_a_policy_with_a_short_deadline_is_not_held_by_a_frozen_redis(
        redis_server: Any, breaker_name: str) -> None:
    # The rate limit is handed the call's remaining time on the call path.
    brace.rate_limit(breaker_name, per_s=100, burst=1, redis_url=redis_server.url)
    call = brace.network(attempts=1, deadline=0.05, rate_limit=breaker_name)(lambda: "ok")
    redis_server.pause()
    try:
        result, took = timed(call)
    finally:
        redis_server.resume()
    assert isinstance(result, brace.RateLimitedError), result
    assert took <= HURRIED_S, took


def test_the_call_path_hands_its_remaining_time_to_a_shared_budget(
        redis_server: Any, breaker_name: str) -> None:
    # A call with less time left than redis_timeout spends its retries locally: the stop
    # and a hedge pass the call's remaining time to the budget.
    brace.budget(breaker_name, redis_url=redis_server.url)
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("refused")
        return "value"

    call = brace.network(deadline=0.2, attempts=3, initial=0.001, max_wait=0.001,
                         budget=breaker_name)(flaky)
    redis_server.pause()
    try:
        with no_waits():
            result, took = timed(call)
    finally:
        redis_server.resume()
    assert (result, attempts) == ("value", 3)
    assert took < 0.2, took  # never one redis_timeout (0.25 s) on the frozen server


def test_an_outcome_is_written_to_redis_only_with_time_to_spare(
        redis_server: Any, breaker_name: str) -> None:
    # A failure after the attempt is counted in the local copy alone when the call has
    # less than redis_timeout left: the write never holds the call past its deadline.
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=100)

    def failing() -> str:
        raise ConnectionError("refused")

    hurried = brace.network(attempts=1, deadline=0.05, breaker=breaker_name)(failing)
    unhurried = brace.network(attempts=1, deadline=10, breaker=breaker_name)(failing)
    gate = _breakers.find(breaker_name)
    assert gate is not None
    redis_server.pause()
    try:
        result, took = timed(hurried)
        counted = gate.storage.counter
        # With time to spare the same failure is written, and waits its 0.25 s.
        _, then = timed(unhurried)
    finally:
        redis_server.resume()
    assert isinstance(result, ConnectionError), result
    assert counted == 1  # the local copy counted it
    assert took <= HURRIED_S, took
    assert then >= 0.2, then


@pytest.mark.parametrize("kind", ["budget", "failure_ratio"])
def test_a_batch_of_calls_goes_to_redis_only_with_time_to_spare(
        redis_server: Any, breaker_name: str, kind: str) -> None:
    # A shared budget takes its calls to Redis every 256 calls, a shared failure-ratio
    # window every 32: the call that fills a batch with less than redis_timeout left
    # leaves it pending, for a call with time to spare.
    url = redis_server.url
    if kind == "budget":
        brace.budget(breaker_name, redis_url=url)
        batch, setting = 256, {"budget": breaker_name}
    else:
        brace.breaker(breaker_name, redis_url=url, failure_ratio=0.5, min_calls=10)
        batch, setting = 32, {"breaker": breaker_name}
    hurried = brace.network(attempts=1, deadline=0.05, **setting)(lambda: "ok")
    unhurried = brace.network(attempts=1, deadline=10, **setting)(lambda: "ok")
    for _ in range(batch - 1):  # bounded: one batch short of full
        assert hurried() == "ok"
    redis_server.pause()
    try:
        result, took = timed(hurried)  # fills the batch
        _, again = timed(hurried)
        # With time to spare the pending batch goes to Redis, and waits its 0.25 s.
        _, then = timed(unhurried)
    finally:
        redis_server.resume()
    assert result == "ok"
    assert took <= HURRIED_S, took
    assert again <= HURRIED_S, again
    assert then >= 0.2, then


def test_a_trial_is_refused_without_time_to_take_it_in_redis(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    brace.breaker(breaker_name, redis_url=redis_server.url, fail_max=1, reset_timeout=60)
    gate = _breakers.find(breaker_name)
    assert gate is not None
    _open(redis_client, breaker_name, ago=120)  # due for a trial
    gate.storage.expire()  # type: ignore[attr-defined]
    assert gate.is_open()  # the local copy knows
    with pytest.raises(brace.CircuitOpenError) as info:
        gate.enter("c", remaining=0.05)
    assert info.value.remaining_s == 0
    trial = f"brace:{{{breaker_name}}}:trial"
    assert not redis_client.exists(trial)  # the fleet's trial is still free
    assert gate.enter("c", remaining=1.0) is True  # with time: the fleet's one trial
    assert redis_client.exists(trial)
    gate.release()


def test_callers_without_time_for_redis_take_tokens_leased_in_the_background(
        redis_server: Any, breaker_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    askers: list[str] = []
    ask = _redis.SharedRateLimit._ask

    def recorded(self: Any, *args: Any) -> Any:
        askers.append(threading.current_thread().name)
        return ask(self, *args)

    monkeypatch.setattr(_redis.SharedRateLimit, "_ask", recorded)
    brace.rate_limit(breaker_name, per_s=1000, burst=10, redis_url=redis_server.url)
    # 10 ms left: less than redis_timeout (0.25 s), so no caller may wait on Redis.
    call = brace.network(attempts=1, deadline=0.01, rate_limit=breaker_name)(lambda: "ok")
    first = timed(call)[0]
    assert isinstance(first, brace.RateLimitedError), first  # nothing leased yet
    poll_until(lambda: timed(call)[0] == "ok", "a token of the lease taken meanwhile")
    calls = admitted = 0
    stop = time.monotonic() + 0.5
    while time.monotonic() < stop:  # bounded: 0.5 s of calls, about one a ms (the limit)
        calls += 1
        admitted += timed(call)[0] == "ok"
        time.sleep(0.001)
    # Every lease was taken on brace's background thread, ahead of the callers: only a
    # caller that finds the lease just used up is refused.
    assert askers and set(askers) == {"brace-redis-behind"}, askers
    assert admitted >= 0.8 * calls, (admitted, calls)


@pytest.mark.parametrize("kind", ["breaker", "budget", "rate_limit"])
def test_a_redis_asyncio_client_is_refused_when_built(redis_server: Any, breaker_name: str,
                                                       kind: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port)
    build = {"breaker": lambda: brace.breaker(breaker_name, redis=client),
             "budget": lambda: brace.budget(breaker_name, redis=client),
             "rate_limit": lambda: brace.rate_limit(breaker_name, per_s=10, redis=client)}
    with pytest.raises(TypeError, match=r"redis= must be a synchronous client .*redis_url="):
        build[kind]()
    # Nothing half-built is left behind under the name.
    assert breaker_name not in brace.breakers()


# -- one trial per half-open period, fleet-wide ----------------------------------------------------


def _open(client: Any, name: str, ago: float) -> None:
    client.hset(f"brace:{{{name}}}:state",
                mapping={"state": "open", "failures": 1, "opened_at": time.time() - ago})


@pytest.mark.slow
def test_four_processes_a_failing_dependency_one_trial_per_half_open_period(
        fleet: Any, redis_client: Any, breaker_name: str) -> None:
    reset_timeout = 0.3
    _open(redis_client, breaker_name, ago=10)
    results = fleet.run("trials", [{"name": breaker_name, "reset_timeout": reset_timeout,
                                    "seconds": 1.6}] * 4)
    starts = sorted(t for r in results for t in r["starts"])
    # The first period is due at once; then one per reset_timeout, each trial failing.
    assert len(starts) >= 4, starts
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= reset_timeout - 0.02, gaps  # never two trials in one period
    assert sum(1 for r in results if r["starts"]) >= 1


@pytest.mark.slow
def test_a_trial_longer_than_its_lease_still_admits_nobody_else(
        fleet: Any, redis_client: Any, breaker_name: str) -> None:
    _open(redis_client, breaker_name, ago=10)
    results = fleet.run("long_trial", [{"name": breaker_name, "lease": 0.2, "trial_s": 1.0,
                                        "seconds": 1.4}] * 4)
    bodies = sorted((s, e) for r in results for s, e in zip(r["starts"], r["ends"], strict=True))
    first_start, first_end = bodies[0]
    during = [s for s, _ in bodies if first_start <= s < first_end]
    assert during == [first_start], bodies  # 5 leases long, and still the only one


def test_a_name_never_reaches_another_breakers_keys(
        redis_server: Any, redis_client: Any, breaker_name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # "pay:trial" used to write the key of pay's trial lease: pay then never recovered.
    names = [breaker_name, f"{breaker_name}:trial", f"{breaker_name}:window"]
    calls = {}
    for name in names:
        brace.breaker(name, redis_url=redis_server.url, fail_max=1, reset_timeout=0.2,
                      sync_interval=0.05)
        calls[name] = brace.network(attempts=1, breaker=name)
        with contextlib.suppress(ConnectionError):
            calls[name](lambda: (_ for _ in ()).throw(ConnectionError("down")))()
        assert brace.breakers()[name].state == "open"
    for name in names:
        poll_until(lambda name=name: timed(calls[name](lambda: "ok"))[0] == "ok",
                   f"{name} recovers", timeout=3)
        assert brace.breakers()[name].state == "closed"
    keys = sorted(k.decode() for k in redis_client.keys("brace:*"))
    assert all(k.startswith("brace:{") for k in keys), keys


# -- consecutive means consecutive ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("error_rate", "opens"), [(0.1, False), (1.0, True)])
def test_a_shared_fail_max_counts_consecutive_failures_fleet_wide(
        fleet: Any, redis_client: Any, breaker_name: str, error_rate: float,
        opens: bool) -> None:
    results = fleet.run("consecutive", [
        {"name": breaker_name, "error_rate": error_rate, "seed": seed, "seconds": 3.0,
         "pace": 0.002, "reset_timeout": 0.05} for seed in range(4)])
    calls = sum(r["calls"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    share = rejected / calls
    print(f"error rate {error_rate}: {calls} calls, {share:.2%} rejected")
    if opens:
        assert share > 0.5, results
    else:
        # Per-process breakers reject 0 %; lazily shared counts rejected 40.8 %.
        assert share < 0.02, results


# -- batched shared rate limits -----------------------------------------------------------------


def test_a_shared_rate_limit_makes_at_most_a_tenth_of_a_command_per_healthy_call(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    # A limit these calls stay under (a healthy call): tokens come in leases.
    brace.rate_limit(breaker_name, per_s=10**7, burst=100, redis_url=redis_server.url)
    call = brace.network(attempts=1, rate_limit=breaker_name)(lambda: "value")
    assert call() == "value"
    before = commands(redis_client)
    for _ in range(5000):
        assert call() == "value"
    used = commands(redis_client) - before - 1  # our own INFO
    assert used <= 0.1 * 5000, used


def test_an_adaptive_shared_rate_limit_asks_the_fleets_bucket_at_its_learned_rate(
        redis_server: Any, breaker_name: str) -> None:
    limit = brace.rate_limit(breaker_name, per_s=1000, burst=1, adaptive=True,
                             redis_url=redis_server.url)
    for _ in range(20):  # bounded: 20 answers accepted within the last second
        limit.learn(False)
    limit.learn(True)  # a throttling answer: 0.7 x the 20 a second accepted
    assert limit.rate == pytest.approx(14)
    # Tokens reserved one after another (not waited for): how many fall within a second.
    waits = [limit.reserve("c", 5.0) for _ in range(30)]  # bounded
    admitted = sum(wait < 1.0 for wait in waits)
    # The fleet's bucket at 14 a second (and its burst), not at the 1,000 configured.
    assert 10 <= admitted <= 17, admitted


@pytest.mark.slow
def test_eight_processes_share_one_rate_limit_within_its_bounds(
        fleet: Any, breaker_name: str) -> None:
    per_s, burst, seconds = 100, 10, 5.0
    results = fleet.run("rate", [{"name": breaker_name, "per_s": per_s, "burst": burst,
                                  "processes": 8, "seconds": seconds}] * 8)
    admitted = sorted(t for r in results for t in r["admitted"])
    span = admitted[-1] - admitted[0]
    shares = [len(r["admitted"]) for r in results]
    print(f"{len(admitted)} admitted in {span:.2f} s; per process {shares}")
    assert len(admitted) <= (per_s * span + burst) * 1.05, len(admitted)
    assert len(admitted) >= 0.85 * (per_s * seconds), len(admitted)
    # No process starves: all ask equally, so each gets at least half of a fair share.
    assert min(shares) >= 0.5 * len(admitted) / len(results), shares
    # Over any 1 s window, too.
    j = 0
    for i, start in enumerate(admitted):
        while j < len(admitted) and admitted[j] < start + 1.0:
            j += 1
        assert j - i <= (per_s + burst) * 1.05, (start, j - i)


@pytest.mark.slow
def test_after_a_freeze_admission_ramps_back_within_the_limit(
        fleet: Any, breaker_name: str) -> None:
    per_s, burst = 100, 10
    marks: dict[str, float] = {}

    def freeze() -> None:
        time.sleep(1.0)
        fleet.server.pause()
        marks["frozen"] = time.time()
        try:
            time.sleep(3.0)
        finally:
            fleet.server.resume()
        marks["resumed"] = time.time()

    results = fleet.run("rate", [{"name": breaker_name, "per_s": per_s, "burst": burst,
                                  "processes": 4, "seconds": 6.0}] * 4, during=freeze)
    admitted = sorted(t for r in results for t in r["admitted"])
    after = [t for t in admitted if marks["resumed"] <= t < marks["resumed"] + 1.0]
    print(f"second after the freeze: {len(after)} admitted")
    assert len(after) <= per_s + burst, len(after)


# -- forced isolation ---------------------------------------------------------------------------


@pytest.mark.slow
def test_forced_open_holds_in_every_process_until_closed(
        fleet: Any, redis_client: Any, breaker_name: str) -> None:
    sync, reset_timeout = 0.1, 0.3
    url = fleet.server.url
    marks: dict[str, float] = {}

    def operate() -> None:
        time.sleep(0.5)
        opened = brace_cli("breakers", "open", breaker_name, "--redis-url", url)
        assert opened.returncode == 0, opened.stderr
        marks["opened"] = time.time()
        time.sleep(reset_timeout * 4)  # several reset_timeouts: no trial, no recovery
        listed = brace_cli("breakers", "--redis-url", url, "--format", "json")
        marks["row"] = next(r for r in json.loads(listed.stdout) if r["name"] == breaker_name)
        marks["closing"] = time.time()
        closed = brace_cli("breakers", "close", breaker_name, "--redis-url", url)
        assert closed.returncode == 0, closed.stderr
        marks["closed"] = time.time()
        time.sleep(0.5)
        redis_client.set(f"{breaker_name}:stop", 1)

    # The workers stop at NAME:stop; `seconds` only bounds them should the test fail (the
    # CLI runs three times meanwhile, seconds each on a loaded machine).
    results = fleet.run("forced", [{"name": breaker_name, "reset_timeout": reset_timeout,
                                    "sync_interval": sync, "seconds": 40}] * 3,
                        during=operate)
    slack = sync + 0.05
    for result in results:
        log = result["log"]
        held = [o for t, o in log if marks["opened"] + slack <= t < marks["closing"]]
        assert held and set(held) == {"rejected"}, held
        back = [o for t, o in log if t >= marks["closed"] + slack]
        assert back and set(back) == {"ok"}, back
    row = marks["row"]
    assert (row["state"], row["forced"], row["next_trial_s"]) == ("open", True, None), row
    assert row["opened_at"] and {"name", "failures", "fail_max", "reset_timeout",
                                 "ratio"} <= set(row), row


def test_the_cli_refuses_a_name_nobody_created_unless_told_to(
        redis_server: Any, redis_client: Any, breaker_name: str) -> None:
    misspelled = brace_cli("breakers", "open", "paymnets", "--redis-url", redis_server.url)
    assert misspelled.returncode == 2
    assert misspelled.stderr.count("\n") == 1 and "'paymnets'" in misspelled.stderr
    assert redis_client.keys("brace:*") == []  # no phantom breaker
    created = brace_cli("breakers", "open", breaker_name, "--create",
                        "--redis-url", redis_server.url)
    assert created.returncode == 0, created.stderr
    brace.breaker(breaker_name, redis_url=redis_server.url)
    assert brace.breakers()[breaker_name].forced
    with pytest.raises(brace.CircuitOpenError):
        brace.network(attempts=1, breaker=breaker_name)(lambda: "ok")()


def test_force_open_in_process_holds_past_reset_timeout_until_close(
        redis_server: Any, breaker_name: str) -> None:
    for name, shared in ((f"{breaker_name}-mem", {}),
                         (breaker_name, {"redis_url": redis_server.url})):
        cb = brace.breaker(name, reset_timeout=0.05, **shared)  # type: ignore[arg-type]
        call = brace.network(attempts=1, breaker=name)(lambda: "ok")
        cb.force_open()
        time.sleep(0.1)  # past reset_timeout: an ordinary open would admit a trial now
        for _ in range(3):
            with pytest.raises(brace.CircuitOpenError):
                call()
        assert brace.breakers()[name].forced
        cb.close()
        assert call() == "ok" and not brace.breakers()[name].forced


# -- Redis Cluster ------------------------------------------------------------------------------


def test_a_redis_cluster_shares_breakers_budgets_rate_limits_and_forcing(
        redis_cluster: Any, breaker_name: str) -> None:
    from redis.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    names = [f"{breaker_name}-{i}" for i in range(6)]  # spread over the nodes' slots
    try:
        for name in names:
            brace.breaker(name, redis=client, fail_max=1, reset_timeout=60)
            brace.budget(name, redis=client, ratio=0, min_per_s=0.1, window=10)
            brace.rate_limit(name, per_s=100, redis=client)
            call = brace.network(attempts=2, breaker=name, budget=name, rate_limit=name)
            assert call(lambda: "ok")() == "ok"
            with no_waits(), pytest.raises(ConnectionError):
                call(lambda: (_ for _ in ()).throw(ConnectionError("down")))()
            assert brace.breakers()[name].state == "open"
        # Forcing is one script on one slot: atomic on a cluster too.
        brace.breaker(names[0]).force_open()
        assert brace.breakers()[names[0]].forced
        opened = brace_cli("breakers", "open", names[1], "--cluster",
                           "--redis-url", f"redis://127.0.0.1:{redis_cluster.nodes[1].port}")
        assert opened.returncode == 0, opened.stderr
        listed = brace_cli("breakers", "--redis-url", redis_cluster.url, "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = {r["name"]: r for r in json.loads(listed.stdout) if r["name"] in names}
        assert set(rows) == set(names)  # every node's breakers
        assert [rows[n]["forced"] for n in names] == [True, True] + [False] * 4
        brace.breaker(names[0]).close()
        assert brace.network(attempts=1, breaker=names[0])(lambda: "ok")() == "ok"
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                brace.breaker(name).close()
        brace.testing.reset_breakers()
        client.close()
