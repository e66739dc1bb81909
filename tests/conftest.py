"""Shared fixtures: a virtual clock for tenacity and brace, and seeded randomness."""

from __future__ import annotations

import importlib
import os
import random
import types
from collections.abc import Iterator
from typing import Any

import pytest
import tenacity

import brace._deadline
from brace.testing import no_waits, reset_breakers, reset_budgets, reset_limits
from tests.fault_server import fault_server  # noqa: F401  (fixture)


class VirtualClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """A tenacity `sleep=` hook that records and advances virtual time."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """Virtual time for tenacity and brace's deadlines (both read `time.monotonic` through a
    module attribute named `time`)."""
    vc = VirtualClock()
    virtual = types.SimpleNamespace(monotonic=vc.monotonic)
    monkeypatch.setattr(tenacity, "time", virtual)
    monkeypatch.setattr(brace._deadline, "time", virtual)
    return vc


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
