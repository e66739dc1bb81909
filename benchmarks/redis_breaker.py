"""A healthy call through a breaker, a retry budget and a rate limit shared on Redis, each
next to its in-memory twin (and the breaker next to pybreaker's own CircuitRedisStorage),
against a real redis-server on 127.0.0.1.

    python benchmarks/redis_breaker.py            # needs redis-server on PATH
    python benchmarks/redis_breaker.py --quick    # tiny counts: proves it runs
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import subprocess
import tempfile
import time

import pybreaker
import redis
import structlog
from overhead import measure  # the same timing loop as the overhead benchmark

import brace
from brace.testing import reset_breakers, reset_budgets, reset_limits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    number, repeat = (200, 2) if parser.parse_args().quick else (20_000, 5)
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", directory],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            for _ in range(500):  # bounded: 5 s for the server to answer
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            run(client, port, number, repeat)
        finally:
            server.terminate()
            server.wait(10)


def run(client: redis.Redis, port: int, number: int, repeat: int) -> None:
    reset_breakers()
    reset_budgets()
    reset_limits()
    url = f"redis://127.0.0.1:{port}/0"
    brace.breaker("bench-memory", fail_max=10**9)
    brace.breaker("bench-redis", fail_max=10**9, redis_url=url)
    brace.budget("bench-memory")
    brace.budget("bench-redis", redis_url=url)
    # A limit the healthy calls stay under: each process leases tokens in batches.
    brace.rate_limit("bench-memory", per_s=10**7, burst=1000)
    brace.rate_limit("bench-redis", per_s=10**7, burst=1000, redis_url=url)
    shared = pybreaker.CircuitBreaker(fail_max=10**9, state_storage=pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, redis.Redis(host="127.0.0.1", port=port), namespace="bench"))
    # (name, its in-memory twin)
    contenders = {
        "brace.network(breaker=in-memory)": (brace.network(breaker="bench-memory")(lambda: 1),
                                             None),
        "brace.network(breaker=redis)": (brace.network(breaker="bench-redis")(lambda: 1),
                                         "brace.network(breaker=in-memory)"),
        "pybreaker + CircuitRedisStorage": (shared(lambda: 1),
                                            "brace.network(breaker=in-memory)"),
        "brace.network(budget=in-memory)": (brace.network(budget="bench-memory")(lambda: 1),
                                            None),
        "brace.network(budget=redis)": (brace.network(budget="bench-redis")(lambda: 1),
                                        "brace.network(budget=in-memory)"),
        "brace.network(rate_limit=in-memory)": (
            brace.network(rate_limit="bench-memory")(lambda: 1), None),
        "brace.network(rate_limit=redis)": (brace.network(rate_limit="bench-redis")(lambda: 1),
                                            "brace.network(rate_limit=in-memory)"),
    }
    print(f"{'healthy call':36} {'ns/call':>10} {'x in-memory':>12} {'Redis cmds/call':>16}")
    results = {}
    for name, (call, twin) in contenders.items():
        call()
        before = int(client.info("stats")["total_commands_processed"])
        results[name] = measure(call, number, repeat)
        used = int(client.info("stats")["total_commands_processed"]) - before - 1
        per_call = used / (number * repeat)
        reference = results[twin or name]
        print(f"{name:36} {results[name]:10.0f} {results[name] / reference:12.2f} "
              f"{per_call:16.3f}")
    reset_breakers()
    reset_budgets()
    reset_limits()


if __name__ == "__main__":
    main()
