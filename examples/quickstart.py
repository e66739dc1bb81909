"""brace in one minute: a flaky call retried, then a call that gives up.

Run it with `python examples/quickstart.py`. Every retry, success-after-retry and give-up is a
log event on the standard library's logger "brace" (structlog's, once an app configures it).
"""

from __future__ import annotations

import logging

import brace

calls = 0


@brace.network(initial=0.05, max_wait=0.2)
def fetch_quote() -> str:
    """Fail twice with a connection reset, then answer."""
    global calls
    calls += 1
    if calls < 3:
        raise ConnectionResetError(f"connection reset by peer (call {calls})")
    return "42"


@brace.interactive
def always_down() -> str:
    """A dependency that never answers: interactive gives up fast (6 attempts, within 1 s)."""
    raise TimeoutError("upstream did not answer")


def main() -> None:
    quote = fetch_quote()
    print(f"fetch_quote() -> {quote!r} after {fetch_quote.statistics['attempt_number']} attempts")
    try:
        always_down()
    except TimeoutError as exc:
        print(f"always_down() gave up with the real error: {exc!r}")


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    main()
