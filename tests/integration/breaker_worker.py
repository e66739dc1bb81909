"""A separate OS process using a Redis-backed brace breaker; prints one JSON line.

Usage: ``python breaker_worker.py REDIS_URL BREAKER_NAME fail|succeed``

- ``fail``: calls a function that always raises ConnectionError, one attempt per call,
  until the breaker rejects a call (at most 10 calls).
- ``succeed``: calls, once, a function that would return ``"ok"``.

The JSON line on stdout says what happened: each call's outcome (``"ok"`` or the
exception's type name), how often the function body ran, the breaker's state as this
process sees it, and the brace events this process emitted.
"""

from __future__ import annotations

import json
import sys

import structlog.testing

import brace

FAIL_MAX = 3
RESET_TIMEOUT = 60
MAX_CALLS = 10


def main(url: str, name: str, mode: str) -> dict[str, object]:
    brace.breaker(name, redis_url=url, fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT)
    body_calls = 0

    @brace.network(breaker=name, attempts=1)
    def failing() -> str:
        nonlocal body_calls
        body_calls += 1
        raise ConnectionError("dependency is down")

    @brace.network(breaker=name, attempts=1)
    def succeeding() -> str:
        nonlocal body_calls
        body_calls += 1
        return "ok"

    fn = {"fail": failing, "succeed": succeeding}[mode]
    outcomes: list[str] = []
    remaining_s = None
    with structlog.testing.capture_logs() as logs:
        for _ in range(MAX_CALLS if mode == "fail" else 1):
            try:
                outcomes.append(fn())
            except brace.CircuitOpenError as exc:
                outcomes.append(type(exc).__name__)
                remaining_s = exc.remaining_s
                break
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    info = brace.breakers()[name]
    return {
        "outcomes": outcomes,
        "body_calls": body_calls,
        "remaining_s": remaining_s,
        "state": info.state,
        "failures": info.failures,
        "storage": info.storage,
        "events": [{k: v for k, v in event.items() if k != "error"} for event in logs],
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
