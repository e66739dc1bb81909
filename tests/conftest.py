"""Shared fixtures: a virtual clock for tenacity and brace, and seeded randomness; helpers.

brace's own pytest plugin (``brace.testing``) adds ``brace_events`` (every event of a test)
and ``brace_no_waits``; ``named`` and ``fields`` read what ``brace_events`` captured.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from brace.testing import Event, no_waits, reset_breakers, reset_budgets, reset_limits
from tests.clocks import VirtualClock
from tests.fault_server import fault_server  # noqa: F401  (fixture)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """Virtual time for tenacity and brace's deadlines (both read `time.monotonic` through a
    module attribute named `time`); its `run_*` methods run async code on it too."""
    vc = VirtualClock()
    vc.patch(monkeypatch)
    return vc


@pytest.fixture
def virtual_sleeps(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The `clock`, with brace's sync sleeps (backoffs, rate-limit waits) recorded in
    `clock.sleeps` and advancing it instead of waiting: sync timings become exact."""
    clock.patch(monkeypatch, sleeps=True)
    return clock


@pytest.fixture(autouse=True)
def _fresh_brace() -> Iterator[None]:
    """Every test configures its breakers, budgets, bulkheads and rate limits afresh."""
    reset_breakers()
    reset_budgets()
    reset_limits()
    yield
    reset_breakers()
    reset_budgets()
    reset_limits()


@pytest.fixture(autouse=True)
def _quick(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``no_waits`` (a module's ``pytestmark``) retry without sleeping."""
    if request.node.get_closest_marker("no_waits") is None:
        yield
        return
    with no_waits():
        yield


@pytest.fixture(autouse=True)
def _seeded_random() -> Iterator[None]:
    # Jittered waits draw from `random`; a fixed seed keeps every run identical.
    state = random.getstate()
    random.seed(1234)
    yield
    random.setstate(state)


def require(module: str) -> Any:
    """Import a test dependency; without it skip locally, but fail on CI (CI=true).

    The drivers are test dependencies that `make test` installs: on CI a missing one is a
    broken install, never a reason to skip the database tests quietly.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed: `make test` installs the test "
                        f"dependencies ({exc})", pytrace=False)
        pytest.skip(f"{module} is not installed", allow_module_level=True)


#: What the ``brace_events`` fixture captures: every event of a test, as (name, fields).
Events = list[Event]


def named(events: Events, prefix: str = "retry.") -> list[str]:
    """The names of the captured events that start with ``prefix``, in order."""
    return [name for name, _ in events if name.startswith(prefix)]


def fields(events: Events, name: str) -> list[dict[str, Any]]:
    """The fields of every captured event called ``name``, in order."""
    return [f for n, f in events if n == name]
