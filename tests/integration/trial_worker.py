"""A separate OS process with 8 threads calling through a half-open Redis-shared breaker.

Usage: ``python trial_worker.py REDIS_URL BREAKER_NAME INDEX``

It says it is ready (``SET ready:INDEX``), waits for ``go``, then each thread makes one
call whose body counts itself in Redis (``INCR calls``) and takes 0.5 s. Prints one JSON
line: the outcomes of its 8 calls.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import redis

import brace


def main(url: str, name: str, index: str) -> dict[str, object]:
    client = redis.Redis.from_url(url)
    brace.breaker(name, redis_url=url, fail_max=1, reset_timeout=0.2, sync_interval=0.05)

    @brace.network(breaker=name, attempts=1)
    def trial() -> str:
        client.incr(f"{name}:calls")
        time.sleep(0.5)
        return "ok"

    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            result = trial()
        except brace.CircuitOpenError:
            result = "rejected"
        with lock:
            outcomes.append(result)

    client.set(f"{name}:ready:{index}", 1)
    for _ in range(500):  # bounded: at most 10 s
        if client.get(f"{name}:go"):
            break
        time.sleep(0.02)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return {"outcomes": sorted(outcomes)}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
