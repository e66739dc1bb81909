"""``python -m brace``: see what a policy does before you adopt it.

::

    python -m brace explain http --chart           # a preset, as a schedule table and chart
    python -m brace explain http --attempts 6 --deadline 10 --format json
    python -m brace explain mypkg.resilience:payments   # a team's own Policy, by import path
    python -m brace presets                         # every preset, one line each

The ``brace`` console script is the same program. :func:`explain` builds the data the
command prints (``Policy.explain()`` returns it too).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
import types
from typing import Any, NoReturn

import pybreaker
import tenacity

import brace
from brace import predicates, presets, waits

__all__ = ["cli", "explain", "main"]

# The defaults a named breaker gets when a policy uses it before brace.breaker() configured it.
_BREAKER_DEFAULTS = {"fail_max": 5, "reset_timeout": 30.0}
_CHART_WIDTH = 50
_WIDTH = 92  # text output wraps here
_NOTE = ("worst-case elapsed sums the longest possible waits; "
         "time spent inside the calls is not included")


def _seconds(value: float) -> float:
    return round(value, 6)


def _name(item: object) -> str:
    """A class or function by its import name (``asyncio.CancelledError``), else its repr."""
    if isinstance(item, (type, types.FunctionType)):
        module = item.__module__
        top = module.split(".")[0]
        if getattr(sys.modules.get(top), item.__qualname__, None) is item:
            module = top  # asyncio.CancelledError, not asyncio.exceptions.CancelledError
        return item.__qualname__ if module == "builtins" else f"{module}.{item.__qualname__}"
    return repr(item)


def _wait_range(wait: tenacity.wait.wait_base,
                state: tenacity.RetryCallState) -> tuple[float, float, float]:
    """Min, median and max of the wait ``wait`` computes for ``state``, read from ``wait``."""
    if isinstance(wait, waits.retry_after):
        # Without a server's Retry-After the fallback decides the wait.
        wait = wait.fallback
    if isinstance(wait, tenacity.wait_random_exponential):
        # uniform(wait.min, high), where high is what its parent class computes.
        high = float(tenacity.wait_exponential.__call__(wait, state))
        low = min(float(wait.min), high)
        return low, (low + high) / 2, high
    # Any other wait: sample it (a deterministic wait gives the same value each time).
    samples = sorted(float(wait(state)) for _ in range(1001))
    return samples[0], samples[len(samples) // 2], samples[-1]


def _wait_name(wait: tenacity.wait.wait_base) -> str:
    """A stable description of a wait (tenacity's own reprs carry memory addresses)."""
    if isinstance(wait, waits.retry_after):
        return f"brace.waits.retry_after(fallback={_wait_name(wait.fallback)}, max={wait.max!r})"
    if isinstance(wait, tenacity.wait_random_exponential):
        return (f"tenacity.wait_random_exponential(multiplier={wait.multiplier!r}, "
                f"max={wait.max!r})")
    return f"{type(wait).__module__}.{type(wait).__qualname__}"


def _errors(policy: brace.Policy) -> str:
    if policy.retry is predicates.transient:
        return ("transient errors: ConnectionError, TimeoutError, and httpx's connect/read/"
                "write/pool timeouts and connect, read, write and remote-protocol errors "
                "(also when raised from one)")
    if policy.retry is predicates.dbapi_transient:
        return ("transient errors, and what the database driver reports as transient: lost "
                "connections, serialization failures, deadlocks, lock timeouts, too many "
                "connections (PostgreSQL, SQLite, MySQL, SQLAlchemy)")
    return repr(policy.retry)


def _idempotency(policy: brace.Policy) -> str:
    if policy.idempotent_only:
        return ("HTTP requests only when safe to resend: GET, HEAD, OPTIONS, PUT, DELETE, "
                "TRACE; POST and PATCH only with an Idempotency-Key header or when the "
                "request was never sent")
    return "HTTP requests of any method, POST and PATCH included"


def _never(policy: brace.Policy) -> list[str]:
    unless = " (unless on= matches them)" if policy.on else ""
    never = [f"programming errors: ValueError, TypeError, KeyError, AttributeError, ...{unless}"]
    if policy.statuses:
        others = [str(code) for code in (400, 401, 403, 404, 409, 422)
                  if code not in policy.statuses]
        never.append(f"HTTP statuses not listed above, such as {', '.join(others)}")
    else:
        never.append("HTTP error statuses: this policy retries none")
    auth = ["PermissionError", *(str(code) for code in (401, 403) if code not in policy.statuses)]
    if policy.retry is predicates.dbapi_transient:
        auth.append("database authentication (SQLSTATE class 28, MySQL 1045)")
        never.append("database syntax, integrity and data errors "
                     "(SQLSTATE classes 42, 23, 22; MySQL 1064, 1062)")
    never.append(f"authentication and permission errors: {', '.join(auth)}{unless}")
    if policy.idempotent_only:
        never.append("a POST or PATCH without an Idempotency-Key header that may have reached "
                     "the server: it is sent once")
    exits = ", ".join(_name(cls) for cls in predicates.NEVER_RETRY)
    never.append(f"cancellation and exits, whatever on= says: {exits}")
    if policy.breaker is not None:
        never.append("calls an open circuit breaker rejects (brace.CircuitOpenError): "
                     "no further attempts")
    return never


def _budget(spec: str | brace.predicates.budget | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    # Look only: explaining must not create the budget.
    found = spec if not isinstance(spec, str) else brace.predicates.budget._registry.get(spec)
    if found is None:
        return {"name": spec, "configured": False, "ratio": 0.2, "min_per_s": 10.0,
                "window_s": 10.0}
    return {"name": found.name, "configured": True, "ratio": found.ratio,
            "min_per_s": found.min_per_s, "window_s": found.window_s}


def _breaker(spec: str | pybreaker.CircuitBreaker | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    if isinstance(spec, pybreaker.CircuitBreaker):
        return {"name": spec.name, "configured": True, "fail_max": spec.fail_max,
                "reset_timeout": _seconds(spec.reset_timeout), "state": spec.current_state}
    info = brace.breakers().get(spec)  # look only: explaining must not create the breaker
    if info is None:
        return {"name": spec, "configured": False, "fail_max": _BREAKER_DEFAULTS["fail_max"],
                "reset_timeout": _BREAKER_DEFAULTS["reset_timeout"], "state": None}
    return {"name": spec, "configured": True, "fail_max": info.fail_max,
            "reset_timeout": _seconds(info.reset_timeout), "state": info.state}


def _schedule(policy: brace.Policy) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"attempt": 1, "wait_min_s": None, "wait_median_s": None,
                                   "wait_max_s": None, "elapsed_worst_s": 0.0, "cut": False}]
    elapsed = 0.0
    retrying = tenacity.Retrying()
    for attempt in range(2, policy.attempts + 1):
        # The wait before attempt n is computed after attempt n - 1 failed.
        state = tenacity.RetryCallState(retrying, None, (), {})
        state.attempt_number = attempt - 1
        low, median, high = _wait_range(policy.wait, state)
        elapsed += high
        rows.append({"attempt": attempt, "wait_min_s": _seconds(low),
                     "wait_median_s": _seconds(median), "wait_max_s": _seconds(high),
                     "elapsed_worst_s": _seconds(elapsed),
                     # brace.stops.deadline never begins a sleep that would end at or past it.
                     "cut": elapsed >= policy.deadline})
    return rows


def explain(policy: brace.Policy) -> dict[str, Any]:
    """Describe ``policy`` as plain data: what it retries, its schedule, breaker and fallback.

    The waits come from the policy's own wait object (``policy.wait``), evaluated for each
    attempt. ``elapsed_worst_s`` is when an attempt starts at the latest, summing the
    longest waits and leaving out the time spent inside calls. A row is ``cut`` when that
    start would fall at or past the deadline: the policy never begins such a sleep, so the
    attempt may not happen. The result is JSON-serialisable; its keys are stable.

    Raises:
        TypeError: ``policy`` is not a :class:`brace.Policy`.
    """
    if not isinstance(policy, brace.Policy):
        raise TypeError(f"explain() takes a brace.Policy, got {policy!r}")
    schedule = _schedule(policy)
    cut = [row["attempt"] for row in schedule if row["cut"]]
    wait = policy.wait
    retry_after = None
    if isinstance(wait, waits.retry_after):
        cap = "" if wait.max is None else f", capped at {wait.max:g} s"
        retry_after = (f"a server's Retry-After or retry-after-ms replaces the backoff{cap}; "
                       "a wait past the deadline gives up at once")
    if callable(policy.fallback):
        fallback: str | None = "callable"
    else:
        fallback = None if policy.fallback is brace.NO_FALLBACK else "value"
    return {
        "preset": policy.preset,
        "attempts": policy.attempts,
        "initial_s": _seconds(policy.initial),
        "max_wait_s": _seconds(policy.max_wait),
        "deadline_s": _seconds(policy.deadline),
        "retried": {
            "errors": _errors(policy),
            "statuses": list(policy.statuses),
            "idempotency": _idempotency(policy),
            "on": [_name(item) for item in policy.on],  # type: ignore[union-attr]
        },
        "never_retried": _never(policy),
        "wait": _wait_name(wait),
        "retry_after": retry_after,
        "schedule": schedule,
        "worst_case_s": max((row["elapsed_worst_s"] for row in schedule if not row["cut"]),
                            default=0.0),
        "deadline_cuts_from": cut[0] if cut else None,
        "note": _NOTE,
        "breaker": _breaker(policy.breaker),
        "budget": _budget(policy.budget),
        "attempt_timeout_s": policy.attempt_timeout,
        "fallback": fallback,
    }


# -- rendering ----------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def _item(text: str) -> str:
    return textwrap.fill(text, width=_WIDTH, initial_indent="  - ", subsequent_indent="    ")


def _text(data: dict[str, Any]) -> list[str]:
    lines = [f"{data['preset']}: up to {data['attempts']} attempts, full-jitter backoff "
             f"{_s(data['initial_s'])} -> {_s(data['max_wait_s'])}, "
             f"deadline {_s(data['deadline_s'])}", "", "Retried:"]
    retried = data["retried"]
    lines.append(_item(retried["errors"]))
    if retried["statuses"]:
        lines.append(_item(f"HTTP statuses {', '.join(map(str, retried['statuses']))}"))
    lines.extend(_item(f"on=: {item}") for item in retried["on"])
    lines.append(_item(retried["idempotency"]))
    if data["retry_after"]:
        lines.append(_item(f"waits: {data['retry_after']}"))
    lines += ["", "Never retried:"]
    lines.extend(_item(item) for item in data["never_retried"])
    lines += ["", "Schedule (each wait is uniform between min and max):",
              f"  {'attempt':>7}  {'wait min':>9}  {'median':>9}  {'max':>9}  "
              f"{'worst-case elapsed':>18}"]
    for row in data["schedule"]:
        mark = "  cut by the deadline (worst case)" if row["cut"] else ""
        lines.append(f"  {row['attempt']:>7}  {_s(row['wait_min_s']):>9}  "
                     f"{_s(row['wait_median_s']):>9}  {_s(row['wait_max_s']):>9}  "
                     f"{_s(row['elapsed_worst_s']):>18}{mark}")
    lines.append(textwrap.fill(f"({data['note']})", width=_WIDTH, initial_indent="  ",
                               subsequent_indent="   "))
    if data["deadline_cuts_from"] is None:
        deadline = (f"the worst case ({_s(data['worst_case_s'])}) stays within it.")
    else:
        deadline = (f"in the worst case it cuts the schedule off from attempt "
                    f"{data['deadline_cuts_from']}: a sleep that would end at or past the "
                    "deadline is not begun.")
    lines.append(textwrap.fill(f"Deadline {_s(data['deadline_s'])}: {deadline}", width=_WIDTH,
                               subsequent_indent="  "))
    lines.append("")
    breaker = data["breaker"]
    if breaker is None:
        lines.append("Breaker: none")
    elif breaker["configured"]:
        lines.append(f"Breaker: {breaker['name']!r}, fail_max={breaker['fail_max']}, "
                     f"reset_timeout={breaker['reset_timeout']:g}, state {breaker['state']}")
    else:
        lines.append(f"Breaker: {breaker['name']!r}, created with defaults on first use: "
                     f"fail_max={breaker['fail_max']}, "
                     f"reset_timeout={breaker['reset_timeout']:g}")
    budget = data["budget"]
    if budget is not None:
        how = "" if budget["configured"] else ", created with defaults on first use"
        lines.append(f"Retry budget: {budget['name']!r}{how}: retries under "
                     f"{budget['ratio']:g} x calls + {budget['min_per_s']:g}/s over "
                     f"{budget['window_s']:g} s")
    timeout = data["attempt_timeout_s"]
    lines.append(f"Attempt timeout: {'none' if timeout is None else _s(timeout)}")
    lines.append(f"Fallback: {data['fallback'] or 'none'}")
    return lines


def _chart(data: dict[str, Any]) -> list[str]:
    retries = [row for row in data["schedule"] if row["wait_max_s"] is not None]
    if not retries:
        return ["No waits: a single attempt."]
    top = max(row["wait_max_s"] for row in retries) or 1.0
    lines = [f"Wait before each attempt (0 to {_s(top)}; \u2591 possible wait, "
             "\u2588 median):"]
    for row in retries:
        low = round(row["wait_min_s"] / top * _CHART_WIDTH)
        high = max(low + 1, round(row["wait_max_s"] / top * _CHART_WIDTH))
        median = min(high - 1, max(low, int(row["wait_median_s"] / top * _CHART_WIDTH)))
        bar = [" "] * _CHART_WIDTH
        for col in range(low, high):
            bar[col] = "\u2591"
        bar[median] = "\u2588"
        mark = "  cut (worst case)" if row["cut"] else ""
        lines.append(f"  {row['attempt']:>3} |{''.join(bar)}| "
                     f"{row['wait_min_s']:g}-{_s(row['wait_max_s'])}{mark}")
    return lines


def _presets() -> list[str]:
    lines = []
    for name in presets.names():
        preset = presets.get(name)
        lines.append(f"{name:<12} {preset.attempts:>2} attempts, backoff "
                     f"{_s(preset.initial)} -> {_s(preset.max_wait)}, "
                     f"deadline {_s(preset.deadline)}: {preset.summary}")
    return lines


# -- command line -------------------------------------------------------------------------


class _Error(Exception):
    """A usage problem: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Error(message)


def _load(target: str) -> brace.Policy:
    if ":" not in target:
        return presets.get(target)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _Error(f"{target!r}: write an import path as module:attribute")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise _Error(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    value: object = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise _Error(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, brace.Policy):
        raise _Error(f"{target} is {type(value).__name__} {value!r}, not a brace.Policy")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brace", description="See what brace's policies do.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    ex = commands.add_parser("explain", help="explain a preset or a Policy (module:attr)")
    ex.add_argument("target", metavar="PRESET",
                    help=f"a preset ({', '.join(presets.names())}) or module:attr of a Policy")
    ex.add_argument("--attempts", type=int, help="override attempts")
    ex.add_argument("--deadline", type=float, help="override deadline (seconds)")
    ex.add_argument("--initial", type=float, help="override initial wait (seconds)")
    ex.add_argument("--max-wait", type=float, help="override max wait (seconds)")
    ex.add_argument("--chart", action="store_true", help="add a chart of the waits")
    ex.add_argument("--format", choices=("text", "json"), default="text")
    commands.add_parser("presets", help="list every preset with a one-line summary")
    return parser


def _run(argv: list[str] | None) -> list[str]:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        return _presets()
    try:
        policy = _load(args.target)
        overrides = {key: value for key, value in (
            ("attempts", args.attempts), ("deadline", args.deadline),
            ("initial", args.initial), ("max_wait", args.max_wait)) if value is not None}
        if overrides:
            policy = policy.replace(**overrides)
    except (ValueError, TypeError) as exc:
        raise _Error(str(exc)) from None
    data = explain(policy)
    if args.format == "json":
        return [json.dumps(data, indent=2)]
    lines = _text(data)
    if args.chart:
        lines += ["", *_chart(data)]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Errors (an unknown preset, a bad override, an unimportable path) print one line,
    ``brace: error: ...``, on stderr and return 2.
    """
    try:
        lines = _run(argv)
    except _Error as exc:
        print(f"brace: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    try:
        print("\n".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:  # `brace presets | head -1`: the reader left, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cli() -> None:
    """Entry point of the ``brace`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
