"""The one switch: brace.set_active, BRACE_ACTIVE, and the plugin that restores it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from structlog.testing import capture_logs

import brace
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
