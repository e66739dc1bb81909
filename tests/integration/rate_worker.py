"""A separate OS process calling through a Redis-shared rate limit for 2 s; prints one JSON
line with how many calls got through.

It prints ``ready`` once set up and starts when a line arrives on stdin, so that every
worker's 2 s are the same 2 s.

Usage: ``python rate_worker.py REDIS_URL NAME``
"""

from __future__ import annotations

import json
import sys
import time

import brace


def main(url: str, name: str) -> dict[str, int]:
    brace.rate_limit(name, per_s=20, burst=1, redis_url=url)
    limited = brace.network(attempts=1, deadline=5, rate_limit=name)(lambda: "ok")
    print("ready", flush=True)
    sys.stdin.readline()
    calls = 0
    started = time.monotonic()
    while time.monotonic() - started < 2.0:  # bounded: 2 s of calls
        limited()
        calls += 1
    return {"calls": calls}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])), flush=True)
