"""How soon a waiting attempt runs once a full bulkhead frees its slot.

One slot; a holder takes it, a waiter queues for it, the holder releases it. Measures the
time from the release to the waiter's attempt starting, for a waiting thread, asyncio task
and trio task, next to ``asyncio.Semaphore`` / ``trio.Semaphore`` / ``threading.Semaphore``
hand-offs, which wake their waiter the same way (and serve one library each).

    python benchmarks/bulkhead_handoff.py            # or: --quick (tiny counts)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable

import trio

import brace
from brace.testing import reset_limits


def _report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:38} {statistics.median(samples) * 1e6:10.1f} {p99 * 1e6:10.1f}")


def threads(rounds: int) -> tuple[list[float], list[float]]:
    def run(acquire: Callable[[], None], release: Callable[[], None]) -> list[float]:
        samples = []
        for _ in range(rounds):
            acquire()
            started = threading.Event()
            woke: list[float] = []

            def waiter(started: threading.Event = started, woke: list[float] = woke) -> None:
                started.set()
                acquire()
                woke.append(time.perf_counter())
                release()

            thread = threading.Thread(target=waiter)
            thread.start()
            started.wait()
            time.sleep(0.001)  # let the waiter queue
            released = time.perf_counter()
            release()
            thread.join()
            samples.append(woke[0] - released)
        return samples

    reset_limits()
    slots = brace.bulkhead("handoff", max_concurrent=1, queue_timeout=5)
    semaphore = threading.Semaphore(1)
    return (run(lambda: slots.acquire("bench", 5), slots.release),
            run(semaphore.acquire, semaphore.release))


async def _asyncio_rounds(rounds: int) -> tuple[list[float], list[float]]:
    async def run(acquire: Callable[[], object], release: Callable[[], None]) -> list[float]:
        samples = []
        for _ in range(rounds):
            await acquire()  # type: ignore[misc]
            woke: list[float] = []

            async def waiter(woke: list[float] = woke) -> None:
                await acquire()  # type: ignore[misc]
                woke.append(time.perf_counter())
                release()

            task = asyncio.create_task(waiter())
            await asyncio.sleep(0.0005)  # let the waiter queue
            released = time.perf_counter()
            release()
            await task
            samples.append(woke[0] - released)
        return samples

    reset_limits()
    slots = brace.bulkhead("handoff", max_concurrent=1, queue_timeout=5)
    semaphore = asyncio.Semaphore(1)
    return (await run(lambda: slots.aacquire("bench", 5), slots.release),
            await run(semaphore.acquire, semaphore.release))


async def _trio_rounds(rounds: int) -> tuple[list[float], list[float]]:
    async def run(acquire: Callable[[], object], release: Callable[[], None]) -> list[float]:
        samples = []
        for _ in range(rounds):
            await acquire()  # type: ignore[misc]
            woke: list[float] = []

            async def waiter(woke: list[float] = woke) -> None:
                await acquire()  # type: ignore[misc]
                woke.append(time.perf_counter())
                release()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.sleep(0.0005)
                released = time.perf_counter()
                release()
            samples.append(woke[0] - released)
        return samples

    reset_limits()
    slots = brace.bulkhead("handoff", max_concurrent=1, queue_timeout=5)
    semaphore = trio.Semaphore(1)
    return (await run(lambda: slots.aacquire("bench", 5), slots.release),
            await run(semaphore.acquire, semaphore.release))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves it runs")
    rounds = 5 if parser.parse_args().quick else 300
    print(f"slot hand-off, release -> waiter running ({rounds} rounds)")
    print(f"{'':38} {'median us':>10} {'p99 us':>10}")
    for library, (braced, plain) in (("thread", threads(rounds)),
                                     ("asyncio", asyncio.run(_asyncio_rounds(rounds))),
                                     ("trio", trio.run(_trio_rounds, rounds))):
        _report(f"brace.bulkhead, {library}", braced)
        _report(f"{library} Semaphore", plain)


if __name__ == "__main__":
    main()
