"""Every script in examples/ runs and shows what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
EXPECTED = {
    "quickstart.py": ["retry.scheduled", "retry.succeeded", "retry.gave_up",
                      "fetch_quote() -> '42' after 3 attempts", "gave up with the real error"],
    "breaker_fallback.py": ["breaker.state_changed", "breaker.rejected", "degraded",
                            "request 4: {'EUR': 1.0, 'stale': True}",
                            "the rates service saw 3 calls for 4 requests",
                            "breaker exchange-rates: open"],
    "http_client.py": ["GET /greeting -> 200 'hello'", "POST /orders without a key -> 503",
                       "POST /payments with a key -> 200",
                       "'GET /greeting': 3, 'POST /orders': 1, 'POST /payments': 3",
                       "retry.succeeded"],
    "requests_session.py": ["GET /greeting -> 200 'hello' after 3 attempts",
                            "POST /orders without a key -> 503 (sent once)",
                            "POST /payments with a key -> 200 'hello'",
                            "'GET /greeting': 3, 'POST /orders': 1, 'POST /payments': 3",
                            "retry.skipped", "reason=not_idempotent", "retry.succeeded"],
    "hedged_reads.py": ["hedge.started",
                        "GET /profiles/1 -> '/profiles/1 v2' before the slow replica, "
                        "attempts=2", "GET /profiles/3 -> '/profiles/3 v2' before the slow replica",
                        "POST /orders without a key -> 200 after the slow 0.5 s (sent once)",
                        "hedges started: 3", "'POST /orders': 1",
                        "slow requests cancelled by the client: ['GET /profiles/1', "
                        "'GET /profiles/2', 'GET /profiles/3']"],
    "llm_openai.py": ["retry.scheduled", "RateLimitError", "wait_source=retry_after",
                      "answer: 'Hello from the stand-in!'", "provider saw 2 requests"],
    "database_transaction.py": ["retry.scheduled", "db_code=SQLITE_BUSY",
                                "error='OperationalError: database is locked'",
                                "transfer(alice -> bob, 30) committed after 2 attempts",
                                "balances: alice=70 bob=30 (the transfer was applied once)",
                                "ledger: ['nightly report', 'alice -> bob: 30']",
                                "a bug is not retried: OperationalError('no such table: "
                                "acounts') after 1 attempt"],
    "chaos_testing.py": ["fetch_quote() under chaos: 100 calls, all answered '42'; the "
                         "function ran 100 times",
                         "injected faults: 43 of 143 attempts (30 %), every one retried",
                         "first retry: 'ConnectionRefusedError: injected by chaos' at attempt 1",
                         "ChaosTransport: 20 requests -> all 200; chaos answered 14 attempts "
                         "with 503, the service saw 20",
                         "a retried answer: result Response status 503 "
                         "(GET https://rates.example)",
                         "without brace: 503, injected=True",
                         "parse('forty-two') -> ValueError after 1 attempt",
                         "assert_not_retried: ok"],
    "demo.py": ["retry.scheduled", "retry.succeeded", "retry.gave_up", "breaker.state_changed",
                "breaker.rejected", "GET /flaky -> 200 after 3 requests",
                "ok: the retry waited for the server's Retry-After: 1",
                "GET /reset -> 200 after 2 requests",
                "POST /orders without a key -> 503; the server saw 1 POST",
                "POST /payments with a key -> 200; the server saw 2 POSTs",
                "call 3: CircuitOpenError", "4 calls, 3 requests reached the server",
                "duplicates (keyless POSTs resent)   0   0   0   0   0      0",
                "breaker transitions                 0   0   0   0   3      3"],
}


def test_every_example_has_expectations() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    # Examples talk to servers they start on 127.0.0.1: never through a proxy.
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for needle in EXPECTED[path.name]:
        assert needle in output, f"{needle!r} missing from {path.name} output:\n{output}"
