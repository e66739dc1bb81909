"""Retry storms, simulated: what each policy does to a dependency that goes down.

A deterministic simulation on a virtual clock (no real sleeping, seeded randomness): 50
concurrent clients make 1,000 logical calls, one every second each. Scenario "outage": the
dependency refuses every connection from t=5 s to t=15 s, then recovers. Scenario "flaky":
10 % of attempts fail at random. The libraries run unmodified; only their clocks and
asyncio's sleep are virtual.

Reported per policy: attempts that reached the dependency per logical call started during
the outage, time from recovery to the first success, and the success rate of the flaky run.

    make bench                        # or: python benchmarks/storm.py
    python benchmarks/storm.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import random
import types
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker
import stamina
import structlog
import tenacity

import brace
from brace import _breakers, _deadline
from brace.testing import reset_breakers, reset_budgets

OUTAGE = (5.0, 15.0)
CLIENTS = 50
THINK_S = 1.0
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_real_sleep = asyncio.sleep


class Simulation:
    """A virtual clock and the sleepers waiting on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.order = itertools.count()

    async def sleep(self, seconds: float, result: Any = None) -> Any:
        if seconds <= 0:
            await _real_sleep(0)
            return result
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.now + seconds, next(self.order), future))
        await future
        return result

    def monotonic(self) -> float:
        return self.now

    def utcnow(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        sim = self

        class VirtualDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return sim.utcnow()

        saved = (tenacity.time, _deadline.time, pybreaker.datetime, _breakers._utcnow,
                 asyncio.sleep)
        virtual = types.SimpleNamespace(monotonic=self.monotonic)
        tenacity.time = virtual  # type: ignore[attr-defined]
        _deadline.time = virtual  # type: ignore[assignment]
        pybreaker.datetime = VirtualDatetime  # type: ignore[misc]
        _breakers._utcnow = self.utcnow
        asyncio.sleep = self.sleep  # type: ignore[assignment]
        try:
            yield
        finally:
            (tenacity.time, _deadline.time, pybreaker.datetime,  # type: ignore[attr-defined]
             _breakers._utcnow, asyncio.sleep) = saved  # type: ignore[misc]

    async def run(self, tasks: list[asyncio.Task[None]]) -> None:
        """Advance virtual time whenever every live task waits on it."""
        for _ in range(10_000_000):  # bounded: each turn moves time or ends a task
            live = [t for t in tasks if not t.done()]
            if not live:
                return
            for _ in range(200):  # let runnable tasks reach their next virtual sleep
                if sum(1 for _, _, f in self.sleepers if not f.done()) >= len(live):
                    break
                await _real_sleep(0)
            if not self.sleepers:
                await _real_sleep(0)
                continue
            wake, _, future = heapq.heappop(self.sleepers)
            self.now = max(self.now, wake)
            if not future.done():
                future.set_result(None)
        raise RuntimeError("simulation did not finish")


current_call: contextvars.ContextVar[int] = contextvars.ContextVar("current_call")


class Dependency:
    """Counts attempts per logical call; fails as the scenario says."""

    def __init__(self, sim: Simulation, scenario: str, rng: random.Random) -> None:
        self.sim, self.scenario, self.rng = sim, scenario, rng
        self.attempts: dict[int, int] = {}
        self.first_success_after_recovery: float | None = None

    def __call__(self) -> str:
        call = current_call.get()
        self.attempts[call] = self.attempts.get(call, 0) + 1
        now = self.sim.now
        if self.scenario == "outage":
            if OUTAGE[0] <= now < OUTAGE[1]:
                raise ConnectionRefusedError("dependency down")
            if now >= OUTAGE[1] and self.first_success_after_recovery is None:
                self.first_success_after_recovery = now
        elif self.rng.random() < 0.10:
            raise ConnectionResetError("flaky")
        return "ok"


Policy = Callable[[Callable[[], str]], Callable[[], Awaitable[str]]]


def contenders() -> dict[str, Policy]:
    def naive_tenacity(dep: Callable[[], str]) -> Callable[[], Awaitable[str]]:
        @tenacity.retry(stop=tenacity.stop_after_attempt(5), reraise=True,
                        wait=tenacity.wait_exponential(multiplier=0.1, max=5))
        async def call() -> str:
            return dep()

        return call

    def stamina_defaults(dep: Callable[[], str]) -> Callable[[], Awaitable[str]]:
        @stamina.retry(on=ConnectionError)
        async def call() -> str:
            return dep()

        return call

    def brace_policy(**kwargs: Any) -> Policy:
        def make(dep: Callable[[], str]) -> Callable[[], Awaitable[str]]:
            @brace.http(**kwargs)
            async def call() -> str:
                return dep()

            return call

        return make

    return {
        "tenacity, 5 attempts, exp. backoff": naive_tenacity,
        "stamina defaults": stamina_defaults,
        "brace http": brace_policy(),
        "brace http + budget": brace_policy(budget="storm"),
        "brace http + breaker": brace_policy(breaker="storm"),
        "brace http + breaker + budget": brace_policy(breaker="storm", budget="storm"),
    }


async def scenario(make: Policy, kind: str, calls: int, clients: int) -> dict[str, Any]:
    sim = Simulation()
    rng = random.Random(7)
    random.seed(11)  # the jitter of every library draws from `random`
    reset_breakers()
    reset_budgets()
    brace.breaker("storm", fail_max=5, reset_timeout=5)
    dep = Dependency(sim, kind, rng)
    outcomes: dict[int, tuple[float, bool]] = {}
    ids = itertools.count()
    with sim.installed():
        call = make(dep)

        async def client() -> None:
            while True:
                number = next(ids)
                if number >= calls:
                    return
                current_call.set(number)
                started = sim.now
                try:
                    await call()
                    outcomes[number] = (started, True)
                except Exception:
                    outcomes[number] = (started, False)
                await sim.sleep(THINK_S)

        tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
        await sim.run(tasks)
    in_outage = [n for n, (started, _) in outcomes.items() if OUTAGE[0] <= started < OUTAGE[1]]
    per_call = (sum(dep.attempts.get(n, 0) for n in in_outage) / len(in_outage)
                if in_outage else float("nan"))
    recovery = (dep.first_success_after_recovery - OUTAGE[1]
                if dep.first_success_after_recovery is not None else float("nan"))
    success = sum(ok for _, ok in outcomes.values()) / len(outcomes)
    return {"attempts_per_call_in_outage": per_call, "recovery_s": recovery,
            "success": success, "calls": len(outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (smoke test)")
    args = parser.parse_args()
    # --quick: fewer clients over the same 20 s, so the outage and recovery still happen.
    calls, clients = (400, 20) if args.quick else (1000, CLIENTS)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(f"{calls} logical calls, {clients} clients, one call per client per {THINK_S:g} s;"
          f" outage {OUTAGE[0]:g}-{OUTAGE[1]:g} s; breaker fail_max=5 reset_timeout=5 s")
    print(f"{'policy':36} {'attempts/call (outage)':>23} {'recovery -> success':>20} "
          f"{'success (10% flaky)':>20}")
    for name, make in contenders().items():
        outage = asyncio.run(scenario(make, "outage", calls, clients))
        flaky = asyncio.run(scenario(make, "flaky", calls, clients))
        print(f"{name:36} {outage['attempts_per_call_in_outage']:23.2f} "
              f"{outage['recovery_s']:18.2f} s {flaky['success'] * 100:19.2f}%")
    reset_breakers()


if __name__ == "__main__":
    main()
