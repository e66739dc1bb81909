"""Testing your own resilience: chaos on a policy, ChaosTransport, and capture_events().

Run it with `python examples/chaos_testing.py`. It plays the part of a test suite: a
healthy function meets injected connection errors (30 % of its attempts, seeded), an
httpx client meets injected 503s, and the checks read what brace did from its events.
Everything runs under `no_waits()`, so the retries take no time at all.
"""

from __future__ import annotations

import logging

import httpx

import brace
from brace.testing import (
    ChaosTransport,
    assert_not_retried,
    assert_retried,
    capture_events,
    chaos,
    is_injected,
    no_waits,
)

# What production runs: a quote service behind the application's policy.
QUOTES = brace.network(deadline=5)
quotes_served = 0


def get_quote() -> str:
    """The real call (here: always healthy)."""
    global quotes_served
    quotes_served += 1
    return "42"


fetch_quote = QUOTES(get_quote)


def test_fetch_quote_rides_out_refused_connections() -> None:
    """The test: the same function under the same policy, which also injects faults."""
    flaky = chaos(fault=ConnectionRefusedError("injected by chaos"), rate=0.3, seed=1)
    under_chaos = QUOTES.replace(chaos=flaky)(get_quote)
    with no_waits(), capture_events() as events:
        answers = [under_chaos() for _ in range(100)]
    retries = [fields for event, fields in events if event == "retry.scheduled"]
    attempts = len(answers) + len(retries)
    assert answers == ["42"] * 100  # every call rode out what was injected
    assert_retried(events, times=len(retries))
    print(f"fetch_quote() under chaos: 100 calls, all answered '42'; the function ran "
          f"{quotes_served} times")
    print(f"injected faults: {len(retries)} of {attempts} attempts "
          f"({100 * len(retries) / attempts:.0f} %), every one retried")
    print(f"first retry: {retries[0]['error']!r} at attempt {retries[0]['attempt']}")


def test_the_http_client_retries_injected_503s() -> None:
    """An httpx client whose transport answers 40 % of requests with a 503."""
    reached = 0

    def service(request: httpx.Request) -> httpx.Response:
        nonlocal reached
        reached += 1
        return httpx.Response(200, json={"rate": 1.1})

    chaotic = ChaosTransport(httpx.MockTransport(service), statuses=[503], rate=0.4, seed=2)
    with no_waits(), capture_events() as events, brace.http.client(transport=chaotic) as client:
        responses = [client.get("https://rates.example/eur") for _ in range(20)]
    assert [response.status_code for response in responses] == [200] * 20
    injected = [fields for event, fields in events if event == "retry.scheduled"]
    print(f"ChaosTransport: 20 requests -> all 200; chaos answered {len(injected)} attempts "
          f"with 503, the service saw {reached}")
    print(f"a retried answer: {injected[0]['error']} ({injected[0]['callable']})")

    # Without the policy, the same chaos reaches the caller: is_injected() tells it apart.
    bare = ChaosTransport(httpx.MockTransport(service), statuses=[503], rate=1)
    with httpx.Client(transport=bare) as client:
        response = client.get("https://rates.example/eur")
    print(f"without brace: {response.status_code}, injected={is_injected(response)}")


def test_a_bug_is_not_retried() -> None:
    """A programming error is never retried, chaos or not."""

    @brace.network
    def parse(text: str) -> int:
        return int(text)

    with no_waits(), capture_events() as events:
        try:
            parse("forty-two")
        except ValueError as exc:
            print(f"parse('forty-two') -> {type(exc).__name__} after "
                  f"{parse.statistics['attempt_number']} attempt")
    assert_not_retried(parse)
    assert_not_retried(events)
    print("assert_not_retried: ok")


if __name__ == "__main__":
    # The checks read brace's events through capture_events() (an observer sees every event
    # whatever logging keeps): the log shows only errors here, not each injected retry.
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.ERROR)
    test_fetch_quote_rides_out_refused_connections()
    test_the_http_client_retries_injected_503s()
    test_a_bug_is_not_retried()
