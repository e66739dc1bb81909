"""What brace costs on requests and aiohttp calls to a local server, next to the plain client.

A requests call through ``brace.RetryAdapter`` (``brace.http.session()``: the http preset,
the per-authority breaker, events) against the same call on a plain ``requests.Session``;
an aiohttp call through ``brace.http.aiohttp_middleware()`` against a plain
``aiohttp.ClientSession``, and through the middleware without the deadline headers
(``propagate=None``), through a middleware that only calls the handler (aiohttp's own
cost of a middleware), and through one that sets the same two headers brace's sends, then
calls the handler (aiohttp's own cost of what brace's middleware sends by default). All
talk to one tiny keep-alive HTTP server in a child process (so it does not share this
process's GIL), answering ``200 ok`` at once: the cost of the call itself, not of the
network. The sides run interleaved in batches (in reverse order every
other batch), and each side's number is the median over the batches, so a machine that
slows down for a while slows all of them. Goal: each ratio of the default set-ups <= 1.1x.

Each side is timed twice: on the wall clock, and in this process's CPU time. On a busy
machine the wall clock also counts the scheduler's choices (a client that wakes the server
process is often preempted in ``send``, the more so the more CPU it used before), which
inflates whichever side does more work per call; the CPU time is what the call costs.

    python benchmarks/clients.py            # or: make bench
    python benchmarks/clients.py --quick    # tiny counts: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import requests

import brace

GOAL = 1.1

# A keep-alive HTTP/1.1 server that answers every request with "200 ok" (requests without
# a body only, which is all this benchmark sends). It prints its port, then serves until
# its stdin closes.
SERVER = r"""
import asyncio, sys

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.pending = transport, b""

    def data_received(self, data):
        self.pending += data
        heads = self.pending.count(b"\r\n\r\n")
        if heads:
            self.pending = self.pending.rsplit(b"\r\n\r\n", 1)[1]
            self.transport.write(ANSWER * heads)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


Sample = tuple[float, float]  # ns per call: wall clock, this process's CPU time


def interleaved(sides: list[Callable[[int], Sample]], batch: int,
                rounds: int) -> list[Sample]:
    """Median ns per call of each side (wall, CPU), over ``rounds`` batches each.

    Every round runs each side once, in reverse order every other round.
    """
    runs: list[list[Sample]] = [[] for _ in sides]
    order = list(range(len(sides)))
    for index in range(rounds):
        for side in (order[::-1] if index % 2 else order):
            runs[side].append(sides[side](batch))
    return [medians(each) for each in runs]


def medians(runs: list[Sample]) -> Sample:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def timed(call: Callable[[], Any]) -> Callable[[int], Sample]:
    """A batch runner: ns per call over ``n`` calls, wall clock and CPU time."""
    def batch(n: int) -> Sample:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(n):
            call()
        return (time.perf_counter_ns() - wall) / n, (time.process_time_ns() - cpu) / n

    return batch


def bench_requests(url: str, batch: int, rounds: int) -> tuple[Sample, Sample]:
    with requests.Session() as plain, brace.http.session() as braced:
        plain.trust_env = braced.trust_env = False  # a local server: no proxy look-ups

        def get_plain() -> None:
            assert plain.get(url, timeout=5).content == b"ok"

        def get_braced() -> None:
            assert braced.get(url, timeout=5).content == b"ok"

        for _ in range(50):  # warm up: connections made, call paths built
            get_plain()
            get_braced()
        plain_sample, braced_sample = interleaved([timed(get_plain), timed(get_braced)],
                                                  batch, rounds)
        return plain_sample, braced_sample


async def _passing(request: aiohttp.ClientRequest,
                   handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    # A middleware that does nothing: what aiohttp itself spends on having one.
    return await handler(request)


async def _headed(request: aiohttp.ClientRequest,
                  handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    # A middleware that sets brace's two deadline headers (fixed values), without brace.
    request.headers["Brace-Deadline-Ms"] = "29999"
    request.headers["Brace-Attempt"] = "1"
    return await handler(request)


def bench_aiohttp(url: str, batch: int, rounds: int) -> list[Sample]:
    """Plain aiohttp, brace's middleware, brace's middleware with ``propagate=None``, a
    middleware that only calls the handler, and one that sets the same two headers."""
    async def main() -> list[Sample]:
        async with aiohttp.ClientSession() as plain, brace.http.aiohttp_session() as braced, \
                brace.http.aiohttp_session(propagate=None) as quiet, \
                aiohttp.ClientSession(middlewares=(_passing,)) as passing, \
                aiohttp.ClientSession(middlewares=(_headed,)) as headed:

            def batch_of(session: aiohttp.ClientSession) -> Callable[[int], Awaitable[Sample]]:
                async def run(n: int) -> Sample:
                    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
                    for _ in range(n):
                        async with session.get(url) as response:
                            assert await response.read() == b"ok"
                    return ((time.perf_counter_ns() - wall) / n,
                            (time.process_time_ns() - cpu) / n)

                return run

            sides = [batch_of(plain), batch_of(braced), batch_of(quiet), batch_of(passing),
                     batch_of(headed)]
            for side in sides:
                await side(50)  # warm up
            runs: list[list[Sample]] = [[] for _ in sides]
            order = list(range(len(sides)))
            for index in range(rounds):
                for each in (order[::-1] if index % 2 else order):
                    runs[each].append(await sides[each](batch))
            return [medians(each) for each in runs]

    return asyncio.run(main())


def rows(name: str, plain: Sample, braced: Sample, goal: bool = True) -> list[str]:
    """One line per clock: both sides' us per call, their ratio and, if ``goal``, the verdict."""
    out = []
    for index, clock in enumerate(("wall", "CPU")):
        ratio = braced[index] / plain[index]
        verdict = "ok" if ratio <= GOAL else "over the goal"
        out.append(f"{name + ', ' + clock:<50} {plain[index] / 1000:>9.1f} us "
                   f"{braced[index] / 1000:>9.1f} us {ratio:>6.3f}x"
                   + (f"  (goal <= {GOAL}x: {verdict})" if goal else ""))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves it runs")
    quick = parser.parse_args().quick
    batch, rounds = (20, 3) if quick else (200, 31)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/"
        print(f"{'per call, median of batches':<50} {'plain':>12} {'brace':>12} {'ratio':>7}")
        plain, braced, quiet, passing, headed = bench_aiohttp(url, batch, rounds)
        for line in (rows("requests: brace.http.session() vs Session",
                          *bench_requests(url, batch, rounds))
                     + rows("aiohttp: brace middleware vs ClientSession", plain, braced)
                     + rows("aiohttp: propagate=None vs ClientSession", plain, quiet,
                            goal=False)
                     + rows("aiohttp: no-op middleware vs ClientSession", plain,
                            passing, goal=False)
                     + rows("aiohttp: same two headers vs ClientSession", plain, headed,
                            goal=False)
                     + rows("aiohttp: brace middleware vs same two headers", headed,
                            braced, goal=False)):
            print(line)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
