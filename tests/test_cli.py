"""`python -m brace` and the `brace` console script: explain(), text, chart, JSON, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import brace
from brace.__main__ import explain, main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
    assert data["deadline_cuts_from"] is None  # no preset's worst case reaches its deadline
    assert not any(row["cut"] for row in rows)
    assert data["worst_case_s"] == pytest.approx(elapsed)


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
    data = explain(brace.background(deadline=20))
    rows = data["schedule"]
    assert [row["elapsed_worst_s"] for row in rows] == [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]
    assert [row["cut"] for row in rows] == [False] * 5 + [True] * 5
    assert data["deadline_cuts_from"] == 6
    assert data["worst_case_s"] == 15
    # At the deadline exactly is cut too, as brace.stops.deadline never begins that sleep.
    assert explain(brace.background(deadline=15))["deadline_cuts_from"] == 5


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


def test_text_output_shows_the_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "explain", "http", "--attempts", "6", "--deadline", "10",
                         "--initial", "0.5", "--max-wait", "8")
    assert (code, err) == (0, "")
    assert "http: up to 6 attempts, full-jitter backoff 0.5 s -> 8 s, deadline 10 s" in out
    assert "408, 429, 500, 502, 503, 504" in out
    assert "Never retried:" in out and "ValueError" in out
    lines = [line.split() for line in out.splitlines()]
    rows = {int(parts[0]): parts for parts in lines if parts and parts[0].isdigit()}
    assert rows[1][:4] == ["1", "-", "-", "-"]
    assert rows[2][:7] == ["2", "0", "s", "0.25", "s", "0.5", "s"]
    assert rows[5][5:9] == ["4", "s", "7.5", "s"]  # max 4 s, worst case 0.5+1+2+4
    assert rows[6][5:9] == ["8", "s", "15.5", "s"] and "cut" in rows[6]
    assert "cut" not in rows[5]
    assert "cuts the schedule off from attempt 6" in out
    assert "Breaker: none" in out and "Fallback: none" in out
    assert "\u2591" not in out


def test_chart(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "background", "--deadline", "20", "--chart")
    assert code == 0
    chart = out[out.index("Wait before each attempt"):].splitlines()[1:]
    assert len(chart) == 9  # one bar per retry
    assert all("\u2588" in line and line.count("|") == 2 for line in chart)
    assert "\u2591" in out
    assert "cut" in chart[-1] and "cut" not in chart[0]


def test_json_equals_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "database", "--attempts", "3", "--format", "json")
    assert code == 0
    expected = json.loads(json.dumps(explain(brace.database(attempts=3))))
    assert json.loads(out) == expected


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "presets")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(brace.presets.names())
    assert len(brace.presets.names()) == 6
    for line, name in zip(lines, brace.presets.names(), strict=True):
        preset = brace.presets.get(name)
        assert preset.summary in line and f"{preset.attempts} attempts" in line
        assert f"deadline {preset.deadline:g} s" in line


def test_a_teams_policy_by_import_path(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_team_policy import payments

    code, out, _ = run(capsys, "explain", "tests.cli_team_policy:payments", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data == json.loads(json.dumps(explain(payments)))
    assert len(data["schedule"]) == 3 and data["deadline_s"] == 10
    assert data["breaker"]["name"] == "payments"
    code, out, _ = run(capsys, "explain", "tests.cli_team_policy:payments")
    assert code == 0 and "Breaker: 'payments', created with defaults on first use" in out


@pytest.mark.parametrize("argv", [
    ["explain", "nope"],
    ["explain", "http", "--attempts", "0"],
    ["explain", "http", "--attempts", "two"],
    ["explain", "http", "--deadline", "-1"],
    ["explain", "http", "--max-wait", "0.01"],  # below initial
    ["explain", "http", "--initial", "nan"],
    ["explain", "http", "--format", "yaml"],
    ["explain", "no_such_module_xyz:policy"],
    ["explain", "tests.cli_team_policy:missing"],
    ["explain", "tests.cli_team_policy:not_a_policy"],
    ["explain", "tests.cli_team_policy:"],
    ["explain"],
    ["frobnicate"],
    [],
])
def test_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                        argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("brace: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_python_dash_m_brace() -> None:
    result = subprocess.run([sys.executable, "-m", "brace", "explain", "http"],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "0.8 s" in result.stdout and "1.4 s" in result.stdout
    assert result.stderr == ""


def test_console_script() -> None:
    script = Path(sys.executable).parent / ("brace.exe" if os.name == "nt" else "brace")
    ok = subprocess.run([str(script), "presets"], capture_output=True, text=True,
                        check=False, cwd=ROOT)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 6
    bad = subprocess.run([str(script), "explain", "nope"], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("brace: error: unknown preset 'nope'")
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_readme_shows_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    start = readme.index("$ python -m brace explain http --chart\n")
    shown = readme[start:readme.index("```", start)].split("\n", 1)[1]
    code, out, _ = run(capsys, "explain", "http", "--chart")
    assert code == 0
    assert shown == out


def test_explain_shows_a_retry_budget(capsys: pytest.CaptureFixture[str]) -> None:
    data = explain(brace.http(budget="never-created-budget"))
    assert data["budget"] == {"name": "never-created-budget", "configured": False,
                              "ratio": 0.2, "min_per_s": 10.0, "window_s": 10.0}
    assert brace._budget.find("never-created-budget") is None
    assert explain(brace.http())["budget"] is None
