"""Policy.explain() / brace._explain: a policy's rules and schedule as data."""

from __future__ import annotations

from pathlib import Path

import pytest

import brace
from brace._explain import explain, render_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", brace.presets.names())
def test_explain_schedule_follows_the_policys_own_wait(name: str) -> None:
    policy = brace.presets.get(name)
    data = explain(policy)
    rows = data["schedule"]
    assert len(rows) == policy.attempts
    assert [row["attempt"] for row in rows] == list(range(1, policy.attempts + 1))
    first = rows[0]
    assert (first["wait_min_s"], first["wait_median_s"], first["wait_max_s"]) == (None,) * 3
    assert first["elapsed_worst_s"] == 0
    elapsed = 0.0
    for row in rows[1:]:
        n = row["attempt"]
        assert 0 <= row["wait_min_s"] <= row["wait_median_s"] <= row["wait_max_s"]
        assert row["wait_max_s"] == pytest.approx(
            min(policy.max_wait, policy.initial * 2 ** (n - 2)))
        assert row["wait_median_s"] == pytest.approx(row["wait_max_s"] / 2)
        elapsed += row["wait_max_s"]
        assert row["elapsed_worst_s"] == pytest.approx(elapsed)
    # The deadline, not the attempt count, bounds a preset's worst case: rows are cut exactly
    # where their worst-case start reaches it, never before the promised outage is over.
    cut = [row for row in rows if row["cut"]]
    assert all(row["elapsed_worst_s"] - row["wait_max_s"] >= policy.deadline - 1e-9
               or row["elapsed_worst_s"] >= policy.deadline for row in cut)
    assert all(row["elapsed_worst_s"] >= policy.rides_out_s for row in cut)
    kept = [row["elapsed_worst_s"] for row in rows if not row["cut"]]
    assert data["worst_case_s"] == pytest.approx(max(kept))


def test_explain_waits_lie_within_what_the_wait_object_draws() -> None:
    import tenacity

    policy = brace.http(initial=0.5, max_wait=3)
    rows = explain(policy)["schedule"]
    for row in rows[1:]:
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = row["attempt"] - 1
        for _ in range(200):
            assert row["wait_min_s"] <= policy.wait(state) <= row["wait_max_s"]


def test_the_deadline_cuts_the_schedule_where_the_worst_case_start_reaches_it() -> None:
    data = explain(brace.background(deadline=20, attempts=10, max_wait=60))
    rows = data["schedule"]
    assert [row["elapsed_worst_s"] for row in rows] == [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]
    assert [row["cut"] for row in rows] == [False] * 5 + [True] * 5
    assert data["deadline_cuts_from"] == 6
    assert data["worst_case_s"] == 15
    # At the deadline exactly is cut too, as brace.stops.deadline never begins that sleep.
    assert explain(brace.background(deadline=15, attempts=10, max_wait=60))[
        "deadline_cuts_from"] == 5


def test_explain_describes_retries_breaker_timeout_and_fallback() -> None:
    class FlakyError(Exception):
        pass

    policy = brace.llm(on=FlakyError, breaker="cli-unused", attempt_timeout=5,
                       fallback=lambda exc: None)
    data = explain(policy)
    assert data["retried"]["statuses"] == [408, 429, 500, 502, 503, 504, 529]
    assert data["retried"]["on"] == [f"{__name__}.{FlakyError.__qualname__}"]
    assert "POST and PATCH included" in data["retried"]["idempotency"]
    assert "transient" in data["retried"]["errors"]
    never = " ".join(data["never_retried"])
    assert "ValueError" in never and "400" in never and "asyncio.CancelledError" in never
    assert "429" not in never
    assert data["breaker"] == {"name": "cli-unused", "configured": False, "fail_max": 5,
                               "reset_timeout": 30, "state": None}
    assert "cli-unused" not in brace.breakers()  # explaining does not create it
    assert data["attempt_timeout_s"] == 5
    assert data["fallback"] == "callable"
    assert explain(brace.network)["breaker"] is None
    assert explain(brace.network)["fallback"] is None
    assert explain(brace.network(fallback=None))["fallback"] == "value"


def test_explain_reports_a_configured_breaker(brace_reset_breakers: None) -> None:
    brace.breaker("cli-configured", fail_max=2, reset_timeout=7)
    data = explain(brace.http(breaker="cli-configured"))
    assert data["breaker"] == {"name": "cli-configured", "configured": True, "fail_max": 2,
                               "reset_timeout": 7, "state": "closed"}
    import pybreaker

    own = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=9, name="own")
    assert explain(brace.http(breaker=own))["breaker"] == {
        "name": "own", "configured": True, "fail_max": 3, "reset_timeout": 9,
        "state": "closed"}


def test_explain_rejects_what_is_not_a_policy() -> None:
    with pytest.raises(TypeError, match=r"brace\.Policy"):
        explain("http")  # type: ignore[arg-type]


def test_explain_shows_a_retry_budget(capsys: pytest.CaptureFixture[str]) -> None:
    data = explain(brace.http(budget="never-created-budget"))
    assert data["budget"] == {"name": "never-created-budget", "configured": False,
                              "ratio": 0.2, "min_per_s": 10.0, "window": 10.0}
    assert brace._budget.find("never-created-budget") is None
    assert explain(brace.http())["budget"] is None


# --- each preset's promise and its own rules only (issue 21) -------------------------------


@pytest.mark.parametrize("name", brace.presets.names())
def test_explain_shows_the_presets_promise(name: str) -> None:
    preset = brace.presets.get(name)
    data = explain(preset)
    assert data["promise"] == preset.promise
    assert data["confidence"] == 0.99
    assert data["rides_out_s"] >= preset.rides_out_s
    text = "\n".join(render_text(data))
    assert "Promise: " + preset.promise.split()[0] in text
    assert "Rides out: an outage of up to" in text


def test_a_derived_policy_has_no_promise_but_its_own_ride_out() -> None:
    short = explain(brace.database(attempts=3))
    assert short["promise"] is None
    assert short["rides_out_s"] < brace.database.rides_out_s
    assert "Promise:" not in "\n".join(render_text(short))
    # settings the schedule does not depend on keep the promise
    assert explain(brace.database(breaker="explain-db"))["promise"] == brace.database.promise


@pytest.mark.parametrize("name", ["database", "network", "interactive", "background"])
def test_explain_lists_only_the_presets_own_rules(name: str) -> None:
    data = explain(brace.presets.get(name))
    text = "\n".join(render_text(data))
    assert data["retried"]["idempotency"] is None and data["retry_after"] is None
    assert data["worst_case_with_retry_after_s"] is None
    for http_only in ("Idempotency-Key", "Retry-After", "HTTP", "401", "POST"):
        assert http_only not in text, http_only


def test_explain_database_names_refusals_in_any_language() -> None:
    never = " ".join(explain(brace.database)["never_retried"])
    assert "3D000" in never and "any server language" in never


@pytest.mark.parametrize("name", ["http", "llm"])
def test_http_presets_keep_their_http_rules(name: str) -> None:
    data = explain(brace.presets.get(name))
    assert data["retried"]["idempotency"] and data["retry_after"]
    assert data["worst_case_with_retry_after_s"] == brace.presets.get(name).deadline


def test_explain_shows_chaos() -> None:
    from brace.testing import chaos

    policy = brace.network(chaos=chaos(fault=ConnectionError("injected"), rate=0.3, seed=1))
    data = explain(policy)
    assert data["chaos"] == repr(policy.chaos)
    assert "rate=0.3" in data["chaos"]
    assert any(line.startswith("Chaos (faults injected") for line in render_text(data))
    assert explain(brace.network())["chaos"] is None
