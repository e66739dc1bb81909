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
    code, out, _ = run(capsys, "explain", "background", "--attempts", "10", "--max-wait",
                       "60", "--deadline", "20", "--chart")
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




def test_errors_never_print_a_secret(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "leaky_settings.py").write_text(
        'raise RuntimeError("cannot reach postgresql://app:s3cr3t-pw@db/orders")\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "explain", "leaky_settings:policy")
    assert code == 2 and out == ""
    assert "s3cr3t-pw" not in err and "postgresql://***@db/orders" in err
