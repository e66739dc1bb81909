"""A separate OS process spending one Redis-shared retry budget; prints one JSON line.

Usage: ``python budget_worker.py REDIS_URL BUDGET_NAME RATIO CALLS``

It makes CALLS calls to a dependency that is always down, 3 attempts each, under
``brace.budget(name, ratio=RATIO, min_per_s=1, window=10, redis_url=...)`` (a floor of 10
retries per window, for the whole fleet), and prints how many calls and attempts it made.
"""

from __future__ import annotations

import contextlib
import json
import sys

import brace
from brace.testing import no_waits


def main(url: str, name: str, ratio: str, calls: str) -> dict[str, int]:
    brace.budget(name, ratio=float(ratio), min_per_s=1, window=10, redis_url=url)
    attempts = 0

    @brace.network(attempts=3, budget=name)
    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("dependency is down")

    with no_waits():
        for _ in range(int(calls)):
            with contextlib.suppress(ConnectionError):
                down()
    return {"calls": int(calls), "attempts": attempts}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])), flush=True)
