"""The one switch (brace.set_active, BRACE_ACTIVE, the plugin that restores it), and
brace.forget, which releases what was made by name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _breakers, _budget, _limits
from brace.testing import no_waits


def test_inactive_means_one_plain_attempt_sync_and_async() -> None:
    calls = 0

    @brace.background  # would sleep for minutes if it retried
    def sync_job() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    @brace.background
    async def async_job() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    brace.set_active(False)
    assert not brace.is_active()
    started = time.monotonic()
    with capture_logs() as logs:
        with pytest.raises(ConnectionError):
            sync_job()
        with pytest.raises(ConnectionError):
            asyncio.run(async_job())
        with pytest.raises(ConnectionError):
            for attempt in brace.background.retrying():
                with attempt:
                    calls += 1
                    raise ConnectionError("down")
    assert calls == 3
    assert time.monotonic() - started < 1
    assert logs == []

    brace.set_active(True)
    calls = 0
    with no_waits(), pytest.raises(ConnectionError):
        sync_job()
    assert calls == brace.background.attempts


def test_inactive_keeps_breakers_in_force() -> None:
    from brace.testing import reset_breakers

    reset_breakers()
    try:
        brace.breaker("switch", fail_max=2)
        brace.set_active(False)
        calls = 0

        @brace.network(breaker="switch")
        def call() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError

        for _ in range(2):
            with pytest.raises(ConnectionError):
                call()
        with pytest.raises(brace.CircuitOpenError):
            call()
        assert calls == 2
    finally:
        reset_breakers()


def test_set_active_takes_a_bool() -> None:
    with pytest.raises(TypeError, match="bool"):
        brace.set_active("no")  # type: ignore[arg-type]


def test_the_plugin_restored_the_switch() -> None:
    # Runs after tests that switched brace off: the plugin's autouse fixture restored it.
    assert brace.is_active()


@pytest.mark.parametrize(("value", "expected"), [("0", "False"), ("off", "False"),
                                                 ("1", "True"), ("", "")])
def test_environment_variable(value: str, expected: str) -> None:
    env = {**os.environ, "BRACE_ACTIVE": value} if value else {
        k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
    proc = subprocess.run(
        [sys.executable, "-c", "import brace; print(brace.is_active())"],
        capture_output=True, text=True, env=env, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (expected or "True")


def test_environment_variable_garbage_is_an_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import brace"], capture_output=True, text=True,
        env={**os.environ, "BRACE_ACTIVE": "maybe"}, timeout=30, check=False)
    assert proc.returncode != 0
    assert "BRACE_ACTIVE must be one of" in proc.stderr


# -- brace.forget: releasing what was made by name ---------------------------------------------


def test_forget_releases_every_object_of_the_name() -> None:
    cb = brace.breaker("tenant-7", fail_max=2)
    budget = brace.budget("tenant-7", ratio=0.5)
    bulkhead = brace.bulkhead("tenant-7", max_concurrent=2)
    rate = brace.rate_limit("tenant-7", per_s=5)
    brace.breaker("tenant-8")

    assert brace.forget("tenant-7") is True
    assert "tenant-7" not in brace.breakers()
    assert "tenant-8" in brace.breakers()  # other names stay
    # The next use creates afresh: new settings are no conflict, or the defaults come back.
    again = brace.breaker("tenant-7", fail_max=9)
    assert again is not cb and again.fail_max == 9
    assert brace.budget("tenant-7") is not budget
    assert brace.budget("tenant-7").ratio == 0.2
    assert brace.bulkhead("tenant-7", max_concurrent=5) is not bulkhead
    assert brace.rate_limit("tenant-7").per_s == 10.0
    assert brace.rate_limit("tenant-7") is not rate


@pytest.mark.parametrize("make", [brace.breaker, brace.budget, brace.bulkhead,
                                  brace.rate_limit],
                         ids=["breaker", "budget", "bulkhead", "rate_limit"])
def test_forget_says_whether_anything_was_forgotten(make: Any) -> None:
    assert brace.forget("alone") is False
    make("alone")
    assert brace.forget("alone") is True
    assert brace.forget("alone") is False


@pytest.mark.parametrize("name", ["", None, 5, b"x", ["x"], 10**5000],
                         ids=["empty", "None", "int", "bytes", "list", "huge-int"])
def test_forget_takes_a_name(name: Any) -> None:
    with pytest.raises(TypeError, match=r"^forget\(\) takes a name \(non-empty str\), got "):
        brace.forget(name)


def test_a_forgotten_open_breaker_comes_back_closed() -> None:
    brace.breaker("flaky-dep", fail_max=1).open()
    ping = brace.network(attempts=1, breaker="flaky-dep")(lambda: "pong")
    with pytest.raises(brace.CircuitOpenError):
        ping()
    assert brace.forget("flaky-dep")
    assert ping() == "pong"  # the name refers to a new breaker, closed
    assert brace.breakers()["flaky-dep"].state == "closed"


def test_a_call_holding_a_forgotten_breaker_finishes_with_it() -> None:
    old = brace.breaker("held", fail_max=5)
    calls = 0

    @brace.network(attempts=2, breaker="held")
    def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert brace.forget("held")  # while this attempt holds the breaker
            raise ConnectionError("down")
        return "ok"

    with no_waits():
        assert call() == "ok"
    new = brace.breaker("held")
    assert new is not old
    assert old.fail_counter == 1  # the attempt that held the old breaker was counted there
    assert (new.fail_counter, new.current_state) == (0, "closed")


def test_an_async_call_and_a_trial_holding_a_forgotten_breaker_finish_with_it() -> None:
    old = brace.breaker("trial", fail_max=1)
    old.open()
    gate = _breakers.find("trial")
    assert gate is not None
    gate.storage.opened_at -= timedelta(hours=1)  # long open: the next call is the trial

    @brace.network(attempts=1, breaker="trial")
    async def probe() -> str:
        assert old.current_state == "half-open"
        assert brace.forget("trial")
        return "ok"

    assert asyncio.run(probe()) == "ok"
    assert old.current_state == "closed"  # the trial's success closed the breaker it held
    assert "trial" not in brace.breakers()


def test_a_breaker_forgotten_between_its_making_and_its_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Another thread's brace.forget in the window between a call making a breaker by name
    # and using it: the call goes on with the breaker it made.
    make = _breakers.breaker

    def made_then_forgotten(name: str, **settings: Any) -> Any:
        cb = make(name, **settings)
        _breakers.forget(name)
        return cb

    monkeypatch.setattr(_breakers, "breaker", made_then_forgotten)
    assert brace.network(attempts=1, breaker="fleeting")(lambda: "ok")() == "ok"


def test_a_slot_held_when_its_bulkhead_is_forgotten_goes_back_to_the_old_one() -> None:
    old = brace.bulkhead("pool", max_concurrent=1)

    @brace.network(bulkhead="pool", rate_limit="pool")
    def call() -> str:
        assert old.in_use == 1
        assert brace.forget("pool")
        new = brace.bulkhead("pool", max_concurrent=1)
        assert new is not old and new.in_use == 0  # a new bulkhead starts empty
        return "ok"

    assert call() == "ok"
    assert old.in_use == 0  # the slot went back where it came from
    assert brace.bulkhead("pool").in_use == 0


def test_forget_races_calls_and_creation_in_threads() -> None:
    # Each registry under its own lock: threads making, using and forgetting the same names
    # never see an error, and nothing is left behind.
    errors: list[BaseException] = []
    names = [f"race-{i}" for i in range(4)]

    def churn(worker: int) -> None:
        try:
            for i in range(150):
                name = names[(worker + i) % len(names)]
                if i % 3 == 0:
                    brace.forget(name)
                else:
                    guarded = brace.network(attempts=1, breaker=name, budget=name,
                                            bulkhead=name, rate_limit=name)
                    # A full bulkhead or an empty bucket is a refusal, not an error.
                    with contextlib.suppress(brace.BraceError):
                        guarded(lambda: None)()
        except BaseException as exc:  # any error fails the test
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(4)]
    with no_waits():  # a rate limit's token wait is skipped, not slept
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    for name in names:
        brace.forget(name)
    assert not brace.breakers()
    assert not any(_budget.find(n) or _limits.find_bulkhead_if(n)
                   or _limits.find_rate_limit_if(n) for n in names)
