"""The fault matrix as tests: each preset, DEFAULT settings, rides out its faults.

No ``no_waits``: real sleeps, full jitter seeded per run, real components on 127.0.0.1
(a PostgreSQL cluster restarted with ``pg_ctl``, a socket refused then listening, the local
fault server answering 503 then 200 through ``brace.http.client()``). One representative
run per preset stays in the default suite (a few seconds each); the promised outages,
repeated with several seeds, are marked ``slow`` (``make faults`` publishes the same
matrix: docs/rides-out.md). The runners come from benchmarks/faults.py, so the published
numbers and these tests exercise the same code.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from tests.conftest import require

psycopg = require("psycopg")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
try:
    import faults
finally:
    sys.path.pop(0)

WAIT_S = 60.0


def gave_up(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "retry.gave_up"]


# --- network: connections refused, then a listener -----------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_network_rides_out_refused_connections(seed: int) -> None:
    result = faults.refused_then_listening(brace.network, 1.0)(seed)
    assert result.succeeded, result
    assert result.attempts[-1] >= 1.0 and len(result.attempts) > 1
    assert result.elapsed_s < 1.0 + brace.network.max_wait


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_network_rides_out_its_promised_outage(seed: int) -> None:
    outage = brace.network.rides_out_s
    result = faults.refused_then_listening(brace.network, outage)(seed)
    assert result.succeeded, result
    assert result.elapsed_s < outage + brace.network.max_wait


def test_interactive_rides_out_a_blip_and_gives_up_within_its_deadline() -> None:
    for seed in range(3):
        result = faults.refused_then_listening(brace.interactive, 0.2)(seed)
        assert result.succeeded, (seed, result)
        never = faults.never_listening(brace.interactive)(seed)
        assert not never.succeeded and never.error == "ConnectionRefusedError"
        assert never.elapsed_s <= brace.interactive.deadline + 0.05


# --- http: 503 for a while, then 200, through brace.http.client() --------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_http_client_rides_out_a_503_blip(seed: int) -> None:
    result = faults.http_status_then_ok(brace.http, 1.0, 503)(seed)
    assert result.succeeded, result
    assert len(result.attempts) > 1 and result.attempts[-1] >= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_http_client_rides_out_its_promised_blip(seed: int) -> None:
    outage = brace.http.rides_out_s
    result = faults.http_status_then_ok(brace.http, outage, 503)(seed)
    assert result.succeeded, result
    assert result.elapsed_s < outage + brace.http.max_wait


# --- database: a real PostgreSQL restarted while a transaction runs ------------------------


def _restart_during_transaction(server: Any, seed: int, *, down_s: float | None) -> Any:
    """Run one transaction under default ``@brace.database`` while the server restarts.

    ``down_s=None``: ``pg_ctl restart -m fast``; else stopped, then started after ``down_s``.
    The held connection (as from a pool) meets the termination, then refusals, then
    "starting up", then succeeds. Returns (attempt count, elapsed, logs).
    """
    conn_holder: dict[str, Any] = {"conn": psycopg.connect(server.conninfo(), autocommit=True)}
    calls = 0

    @brace.database
    def transaction() -> int:
        nonlocal calls
        calls += 1
        if "conn" not in conn_holder:
            conn_holder["conn"] = psycopg.connect(server.conninfo(), autocommit=True)
        conn = conn_holder["conn"]
        try:
            with conn.transaction():
                return int(conn.execute("SELECT 1").fetchone()[0])
        except BaseException:
            conn_holder.pop("conn").close()
            raise

    errors: list[BaseException] = []

    def guarded(action: Any) -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    start = time.monotonic()
    if down_s is None:
        worker = threading.Thread(target=guarded, args=(server.restart,))
        worker.start()
        faults._wait_until_down(server, psycopg)
    else:
        server.stop()
        worker = threading.Timer(down_s, guarded, args=(server.start,))
        worker.start()
    random.seed(seed)
    try:
        with capture_logs() as logs:
            assert transaction() == 1
    finally:
        worker.join(WAIT_S)
        server.wait_ready()
        if "conn" in conn_holder:
            conn_holder["conn"].close()
    assert not worker.is_alive() and not errors, errors
    return calls, time.monotonic() - start, logs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_database_rides_out_a_restart(postgres_localized: Any, seed: int) -> None:
    calls, elapsed, logs = _restart_during_transaction(postgres_localized, seed, down_s=None)
    assert calls > 1, "the restart did not reach the transaction"
    assert not gave_up(logs)
    assert elapsed < brace.database.deadline


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_database_rides_out_its_promised_failover(postgres_localized: Any, seed: int) -> None:
    outage = brace.database.rides_out_s
    calls, elapsed, logs = _restart_during_transaction(postgres_localized, seed,
                                                       down_s=outage)
    assert calls > 1 and not gave_up(logs)
    assert outage <= elapsed < outage + brace.database.max_wait + 1.0  # + the start itself
