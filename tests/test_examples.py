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
}


def test_every_example_has_expectations() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for needle in EXPECTED[path.name]:
        assert needle in output, f"{needle!r} missing from {path.name} output:\n{output}"
