"""A circuit breaker with a fallback: when a dependency is down, stop hammering it.

Four requests reach a rates service that refuses every connection. The breaker opens
after three failures, so the service sees three calls, not eight; every request still
gets an answer (a stale default), and each degraded answer is a `degraded` event.
"""

from __future__ import annotations

import logging
from typing import Any

import brace

brace.breaker("exchange-rates", fail_max=3, reset_timeout=30)
calls = 0


def stale_rates(exc: BaseException) -> dict[str, Any]:
    """What users get while the rates service is down."""
    return {"EUR": 1.0, "stale": True}


@brace.network(attempts=2, initial=0.01, max_wait=0.05, breaker="exchange-rates",
               fallback=stale_rates)
def rates() -> dict[str, Any]:
    """Ask the rates service (here: always refused)."""
    global calls
    calls += 1
    raise ConnectionRefusedError("rates service refused the connection")


def main() -> None:
    for request in range(1, 5):
        print(f"request {request}: {rates()}")
    print(f"the rates service saw {calls} calls for 4 requests")
    info = brace.breakers()["exchange-rates"]
    print(f"breaker {info.name}: {info.state}, {info.failures} failures")


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    main()
