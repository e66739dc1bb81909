"""Overload: goodput and latency of a queueing dependency behind no bulkhead, a fixed one and
an adaptive one, as the offered load rises; and what an adaptive bulkhead costs per call.

The dependency serves 8 requests at once in 20 ms each (400 a second) and queues the rest,
first come first served, as a server's accept queue does. Callers call it in a closed loop
(each sends its next request when its last one ends; a refused caller comes back 20 ms
later): 8 callers are 1x its capacity, 24 are 3x, 40 are 5x. Each run lasts ``--seconds``
(real time, on asyncio), its first fifth left out of the figures. Reported per run: goodput
(calls completed per second), the p99 latency of the calls the bulkhead admitted (what the
dependency made them wait) as a multiple of the unloaded 20 ms, and the adaptive
bulkhead's limit at the end. Goals at 5x: goodput >= 80 % of capacity and p99 <= 3x.

``--plot`` also runs the load rising 1x -> 3x -> 5x in one run per setting and writes
latency and goodput over time to docs/overload.png (needs matplotlib, the ``dev`` extra).

The per-call cost row times a healthy sync call through ``brace.network(bulkhead=)``, the
bulkhead fixed and adaptive, in turn in one process, and prints the ratio (goal <= 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from pathlib import Path
from typing import Any

import brace
from brace.testing import reset_limits

CAPACITY = 8
SERVICE_S = 0.02
LOADS = (1, 3, 5)  # offered load, x the dependency's capacity
SETTINGS = ("none", "static", "adaptive")  # no bulkhead; max_concurrent=64; adaptive
PNG = Path(__file__).resolve().parent.parent / "docs" / "overload.png"


class Dependency:
    """Serves ``CAPACITY`` requests at once in ``SERVICE_S`` each; queues the others."""

    def __init__(self) -> None:
        self.serving = asyncio.Semaphore(CAPACITY)

    async def serve(self) -> None:
        async with self.serving:
            await asyncio.sleep(SERVICE_S)


def _bulkhead(setting: str) -> brace.Bulkhead | None:
    reset_limits()
    if setting == "none":
        return None
    return brace.bulkhead("dependency", max_concurrent=64, queue_timeout=1.0,
                          adaptive=setting == "adaptive")


async def run(setting: str, callers_at: list[tuple[float, int]], seconds: float,
              ) -> dict[str, Any]:
    """One run: ``callers_at`` says how many callers call from which second on."""
    bulkhead = _bulkhead(setting)
    dependency = Dependency()
    start = time.monotonic()
    ended: list[tuple[float, float]] = []  # (when, latency) of each admitted call

    async def call() -> None:
        began = time.monotonic()
        await dependency.serve()
        ended.append((time.monotonic() - start, time.monotonic() - began))

    decorated = call if bulkhead is None else brace.network(
        attempts=1, bulkhead=bulkhead.name)(call)

    async def caller(since: float) -> None:
        await asyncio.sleep(since)
        while time.monotonic() - start < seconds:  # bounded by the run's length
            try:
                await decorated()
            except brace.BulkheadFullError:
                await asyncio.sleep(SERVICE_S)

    tasks = [caller(since) for since, count in callers_at for _ in range(count)]
    await asyncio.gather(*tasks)
    return {"ended": ended, "limit": None if bulkhead is None else bulkhead.limit}


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def steady(seconds: float) -> dict[tuple[str, int], tuple[float, float, int | None]]:
    """Goodput and p99 (x unloaded) per setting and load, its first fifth left out."""
    rows = {}
    for load in LOADS:
        for setting in SETTINGS:
            result = asyncio.run(run(setting, [(0.0, CAPACITY * load)], seconds))
            warm = seconds / 5
            kept = [latency for at, latency in result["ended"] if at - latency >= warm]
            rows[(setting, load)] = (len(kept) / (seconds - warm), p99(kept) / SERVICE_S,
                                     result["limit"])
    return rows


def per_call_cost(number: int, repeat: int) -> tuple[float, float]:
    """ns per healthy sync call through a fixed and an adaptive bulkhead, in turn."""
    reset_limits()
    brace.bulkhead("fixed", max_concurrent=64)
    brace.bulkhead("learning", max_concurrent=64, adaptive=True)
    fixed = brace.network(bulkhead="fixed")(lambda: None)
    learning = brace.network(bulkhead="learning")(lambda: None)
    runs: dict[str, list[float]] = {"fixed": [], "learning": []}
    for _ in range(repeat):
        for name, fn in (("fixed", fixed), ("learning", learning)):
            started = time.perf_counter_ns()
            for _ in range(number):
                fn()
            runs[name].append((time.perf_counter_ns() - started) / number)
    return min(runs["fixed"]), min(runs["learning"])


def plot(seconds: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no chart")
        return
    third = seconds / 3
    rising = [(0.0, CAPACITY), (third, 2 * CAPACITY), (2 * third, 2 * CAPACITY)]  # 1x, 3x, 5x
    figure, (latency_axis, goodput_axis) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for setting in SETTINGS:
        ended = asyncio.run(run(setting, rising, seconds))["ended"]
        buckets: dict[int, list[float]] = {}
        for at, latency in ended:
            buckets.setdefault(int(at / 0.25), []).append(latency)
        full = [bucket for bucket in sorted(buckets) if (bucket + 1) * 0.25 <= seconds]
        times = [(bucket + 0.5) * 0.25 for bucket in full]
        latency_axis.plot(times, [p99(buckets[b]) * 1000 for b in full], label=setting)
        goodput_axis.plot(times, [len(buckets[b]) / 0.25 for b in full], label=setting)
    latency_axis.set_ylabel("p99 latency of admitted calls (ms)")
    latency_axis.axhline(3 * SERVICE_S * 1000, color="grey", linestyle=":", label="3x unloaded")
    goodput_axis.set_ylabel("calls completed per second")
    goodput_axis.axhline(CAPACITY / SERVICE_S, color="grey", linestyle=":", label="capacity")
    goodput_axis.set_xlabel("seconds (offered load 1x, then 3x, then 5x capacity)")
    latency_axis.legend()
    goodput_axis.legend()
    figure.tight_layout()
    figure.savefig(PNG, dpi=100)
    print(f"wrote {PNG}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: proves it works")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--plot", action="store_true", help="write docs/overload.png")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else args.seconds
    print(f"overload: a dependency serving {CAPACITY} at once in {SERVICE_S * 1000:g} ms "
          f"({CAPACITY / SERVICE_S:g}/s); runs of {seconds:g} s")
    print(f"{'setting':10} {'load':>5} {'goodput/s':>10} {'x capacity':>11} "
          f"{'p99 x unloaded':>15} {'limit':>6}")
    rows = steady(seconds)
    for (setting, load), (goodput, latency, limit) in rows.items():
        print(f"{setting:10} {load:>4}x {goodput:10.0f} {goodput * SERVICE_S / CAPACITY:11.2f} "
              f"{latency:15.2f} {'-' if limit is None else limit:>6}")
    goodput, latency, _ = rows[("adaptive", 5)]
    print(f"goal at 5x, adaptive: goodput {goodput * SERVICE_S / CAPACITY:.2f} >= 0.8 x capacity "
          f"{'ok' if goodput * SERVICE_S / CAPACITY >= 0.8 else 'MISSED'}; p99 {latency:.2f} "
          f"<= 3x unloaded {'ok' if latency <= 3 else 'MISSED'}")
    number, repeat = (2_000, 3) if args.quick else (100_000, 7)
    fixed, learning = per_call_cost(number, repeat)
    print(f"\nper healthy call: brace.network(bulkhead=) fixed {fixed:.0f} ns, adaptive "
          f"{learning:.0f} ns: {learning / fixed:.2f}x (goal <= 1.5x) "
          f"{'ok' if learning / fixed <= 1.5 else 'MISSED'}")
    if args.plot:
        plot(max(seconds, 3.0) * 2)


if __name__ == "__main__":
    main()
