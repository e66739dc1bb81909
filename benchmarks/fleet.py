"""Redis commands per healthy call of a fleet sharing a breaker, a retry budget and a rate
limit on one redis-server (127.0.0.1), with 1, 2 and 4 worker processes, and the paper
estimate of how many such processes one Redis core serves.

    python benchmarks/fleet.py            # needs redis-server on PATH
    python benchmarks/fleet.py --quick    # tiny counts: proves it runs

Commands are Redis's own count (``INFO stats``), which includes the commands a Lua script
runs: an upper bound on round trips.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time

import redis
import structlog

#: Simple commands one Redis core executes per second (redis-benchmark on loopback is in the
#: 100k-200k range; the lower end, for a paper estimate that errs on the safe side).
CORE_COMMANDS_PER_S = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker(url: str, kind: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import brace

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    settings = {}
    if kind == "breaker":
        brace.breaker("fleet", redis_url=url, fail_max=5)
        settings = {"breaker": "fleet"}
    elif kind == "budget":
        brace.budget("fleet", redis_url=url)
        settings = {"budget": "fleet"}
    else:
        brace.rate_limit("fleet", per_s=10**7, burst=1000, redis_url=url)
        settings = {"rate_limit": "fleet"}
    call = brace.network(**settings)(lambda: 1)  # type: ignore[arg-type]
    calls = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        for _ in range(100):
            call()
        calls += 100
    out.put(calls)


def run(url: str, client: redis.Redis, kind: str, processes: int,
        seconds: float) -> tuple[int, int]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=worker, args=(url, kind, seconds, out))
               for _ in range(processes)]
    before = int(client.info("stats")["total_commands_processed"])
    for process in workers:
        process.start()
    calls = sum(out.get(timeout=seconds + 60) for _ in workers)
    for process in workers:
        process.join(30)
    used = int(client.info("stats")["total_commands_processed"]) - before - 1
    return calls, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    seconds = 0.3 if parser.parse_args().quick else 3.0
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", directory],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            for _ in range(500):  # bounded: 5 s for the server to answer
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            print(f"{'shared object':14} {'processes':>9} {'calls/s':>10} {'cmds/call':>10} "
                  f"{'cmds/s/process':>15} {'processes/core @1k calls/s':>27}")
            for kind in ("breaker", "budget", "rate_limit"):
                for processes in (1, 2, 4):
                    client.flushdb()
                    calls, used = run(url, client, kind, processes, seconds)
                    per_call = used / calls
                    per_process = used / seconds / processes
                    # A process making 1,000 healthy calls a second, on paper: its commands
                    # per call times that, plus the breaker's refresh (1 per sync_interval).
                    paper = per_call * 1000 + (1.0 if kind == "breaker" else 0.0)
                    print(f"{kind:14} {processes:9d} {calls / seconds:10.0f} {per_call:10.4f} "
                          f"{per_process:15.1f} {CORE_COMMANDS_PER_S / paper:27.0f}")
        finally:
            client.close()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
