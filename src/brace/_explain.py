"""A policy's schedule and rules as data, and as the text ``python -m brace`` prints.

``Policy.explain()`` and the CLI both call ``explain``; rendering lives here too, so the
CLI only parses arguments and prints.
"""

from __future__ import annotations

import functools
import math
import sys
import textwrap
import types
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pybreaker
import tenacity

from brace import _breakers, _config, _limits, predicates, waits
from brace import _budget as _budget_module
from brace._config import NO_FALLBACK
from brace._deadline import past

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["backoff_caps", "explain", "preset_lines", "reach_probability", "render_chart",
           "render_text", "ride_out_s"]

_CHART_WIDTH = 50
_WIDTH = 92  # text output wraps here
_NOTE = ("worst-case elapsed sums the longest possible waits; "
         "time spent inside the calls is not included")
CONFIDENCE = 0.99
"""The probability with which a preset's promise holds (DESIGN rule 26)."""
_RIDE_OUT_RESOLUTION_S = 0.001


# -- what a schedule rides out ---------------------------------------------------------------
# With full jitter the wait after failure n is uniform(0, c_n), c_n = min(max_wait,
# initial * 2**(n-1)), all independent. A call whose first attempt meets an outage of T
# seconds (calls failing instantly, the worst case) succeeds when an attempt starts at T or
# later before the deadline: the attempts start at the partial sums S_k of the waits, so it
# succeeds iff S_(attempts-1) >= T, provided T + max_wait <= deadline (the first partial sum
# past T is then below the deadline, and brace only refuses sleeps that end past it).
# P(S >= T) for a sum of independent uniforms has an exact form (inclusion-exclusion over the
# caps; Irwin-Hall when they are equal): computed here in rationals, with equal caps grouped
# so the largest preset needs about a thousand terms.


def backoff_caps(policy: Policy) -> list[float]:
    """The upper bound of each of ``policy``'s waits (uniform from 0 to it), in order."""
    return [min(policy.max_wait, policy.initial * 2 ** (n - 1))
            for n in range(1, policy.attempts)]


#: Waits summed exactly (by inclusion-exclusion); a policy with more (up to 1,000
#: attempts) is summed by the normal approximation, which the sum of that many independent
#: uniform waits follows closely, so explain() stays quick whatever the setting.
EXACT_WAITS = 24
#: The most inclusion-exclusion terms (subsets of distinct caps) summed exactly: their
#: number doubles with each distinct cap, so waits with many distinct caps (a tiny
#: ``initial`` under a huge ``max_wait``) take the normal approximation too. Every preset
#: needs at most 1,152.
EXACT_TERMS = 4096


def _normal_reach(caps: Sequence[float], seconds: float) -> float:
    # P(S >= seconds) for S a sum of uniform(0, cap): mean sum/2, variance sum(cap^2)/12.
    mean = sum(caps) / 2
    spread = math.sqrt(sum(cap * cap for cap in caps) / 12)
    if spread == 0:
        return 1.0 if seconds <= mean else 0.0
    return 0.5 * math.erfc((seconds - mean) / (spread * math.sqrt(2)))


def reach_probability(caps: Sequence[float], seconds: float) -> float:
    """P(the sum of independent uniform(0, cap) waits >= ``seconds``), computed exactly.

    P(S <= t) = sum over subsets J of the caps of (-1)^|J| (t - sum(J))_+^n / (n! prod caps);
    equal caps are grouped (a subset takes j of k equal ones in C(k, j) ways). Beyond
    ``EXACT_WAITS`` waits or ``EXACT_TERMS`` subsets, the normal approximation.
    """
    positive = [cap for cap in caps if cap > 0]
    groups = sorted(Counter(positive).items())
    if (len(positive) > EXACT_WAITS
            or math.prod(count + 1 for _, count in groups) > EXACT_TERMS):
        return _normal_reach(positive, seconds)
    n = len(positive)
    if seconds <= 0:
        return 1.0
    # Every float is an integer over a power of two: scaled by the largest denominator, the
    # caps and t are integers and the sum runs on ints, exactly, far faster than Fractions.
    ratios = [float(value).as_integer_ratio()
              for value in (seconds, *(cap for cap, _ in groups))]
    scale = max(denominator for _, denominator in ratios)
    t, *units = [numerator * (scale // denominator) for numerator, denominator in ratios]
    scaled = [(unit, count) for unit, (_, count) in zip(units, groups, strict=True)]
    if n == 0 or t >= sum(unit * count for unit, count in scaled):
        return 0.0
    # Subsets J as (sum(J), |J|, how many subsets share them); those with sum(J) >= t vanish.
    weighted: list[tuple[int, int, int]] = [(0, 0, 1)]
    for unit, count in scaled:
        weighted = [(acc + j * unit, size + j, mult * math.comb(count, j))
                    for acc, size, mult in weighted for j in range(count + 1)
                    if acc + j * unit < t]
    total: int = sum((-mult if size % 2 else mult) * (t - acc) ** n
                     for acc, size, mult in weighted)
    whole: int = math.factorial(n) * math.prod(unit ** count for unit, count in scaled)
    return (whole - total) / whole  # 1 - P(S <= t), rounded once (int / int rounds right)


def ride_out_s(policy: Policy, probability: float = CONFIDENCE) -> float:
    """The longest outage ``policy`` rides out with at least ``probability``, in seconds.

    Outages that fail each attempt at once (refused connections, 503s) are the worst case;
    the result never exceeds ``deadline - max_wait``, past which the deadline may cut the
    attempt that would have succeeded. Resolution 1 ms.
    """
    return _ride_out(tuple(backoff_caps(policy)),
                     max(0.0, policy.deadline - policy.max_wait), probability)


@functools.lru_cache(maxsize=64)  # explain() runs per CLI call and per test: bisection is ~0.1 s
def _ride_out(caps: tuple[float, ...], limit: float, probability: float) -> float:
    low, high = 0.0, min(sum(caps), limit)
    if reach_probability(caps, high) >= probability:
        return _seconds(high)
    while high - low > _RIDE_OUT_RESOLUTION_S:
        middle = (low + high) / 2
        if reach_probability(caps, middle) >= probability:
            low = middle
        else:
            high = middle
    return _seconds(math.floor(low / _RIDE_OUT_RESOLUTION_S) * _RIDE_OUT_RESOLUTION_S)


def _seconds(value: float) -> float:
    return round(value, 6)


def _name(item: object) -> str:
    """A class or function by its import name (``asyncio.CancelledError``), else its repr."""
    if isinstance(item, (type, types.FunctionType)):
        module = item.__module__
        parts = module.split(".")
        for size in range(1, len(parts)):  # the shortest package that exports it:
            package = ".".join(parts[:size])  # asyncio.CancelledError, not asyncio.exceptions
            if getattr(sys.modules.get(package), item.__qualname__, None) is item:
                module = package
                break
        return item.__qualname__ if module == "builtins" else f"{module}.{item.__qualname__}"
    return repr(item)


def _own_wait(wait: tenacity.wait.wait_base) -> tenacity.wait.wait_base:
    """The policy's own wait under the wait of its ``on=`` callables, if any.

    An ``on=`` callable's wait (``brace._policy._OnWait``, read by its ``inner`` since this
    module lies below ``_policy``) applies only to the errors it answers with seconds; the
    schedule is the wait beneath. Sampling the wrapper instead would cost 1,001 waits per
    attempt.
    """
    inner = getattr(wait, "inner", None)
    return inner if isinstance(inner, tenacity.wait.wait_base) else wait


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
    own = _own_wait(wait)
    if own is not wait:
        return f"{_wait_name(own)}, or the wait an on= callable returns"
    if isinstance(wait, waits.retry_after):
        return (f"brace.waits.retry_after(fallback={_wait_name(wait.fallback)}, "
                f"max_wait={wait.max_wait!r})")
    if isinstance(wait, tenacity.wait_random_exponential):
        return (f"tenacity.wait_random_exponential(multiplier={wait.multiplier!r}, "
                f"max={wait.max!r})")
    return f"{type(wait).__module__}.{type(wait).__qualname__}"


def _errors(policy: Policy) -> str:
    if policy.retry is predicates.transient:
        return ("transient errors: ConnectionError, TimeoutError, and httpx's connect/read/"
                "write/pool timeouts and connect, read, write and remote-protocol errors "
                "(also when raised from one)")
    if policy.retry is predicates.dbapi_transient:
        return ("transient errors, and what the database driver reports as transient: lost "
                "connections, serialization failures, deadlocks, lock timeouts, too many "
                "connections (PostgreSQL, SQLite, MySQL, SQLAlchemy)")
    return repr(policy.retry)


def _idempotency(policy: Policy) -> str:
    if policy.idempotent_only:
        return ("HTTP requests only when safe to resend: GET, HEAD, OPTIONS, PUT, DELETE, "
                "TRACE; POST and PATCH only with an Idempotency-Key header or when the "
                "request was never sent")
    return "HTTP requests of any method, POST and PATCH included"


def _is_http(policy: Policy) -> bool:
    """Whether HTTP's rules (statuses, idempotency, Retry-After) concern ``policy``."""
    return bool(policy.statuses)


def _never(policy: Policy) -> list[str]:
    unless = " (unless on= matches them)" if policy.on else ""
    never = [f"programming errors: ValueError, TypeError, KeyError, AttributeError, ...{unless}"]
    http = _is_http(policy)
    if http:
        others = [str(code) for code in (400, 401, 403, 404, 409, 422)
                  if code not in policy.statuses]
        never.append(f"HTTP statuses not listed above, such as {', '.join(others)}")
    auth = ["PermissionError"]
    if http:
        auth += [str(code) for code in (401, 403) if code not in policy.statuses]
    if policy.retry is predicates.dbapi_transient:
        auth.append("database authentication and missing databases, in any server language "
                    "(SQLSTATE class 28, 3D000; MySQL 1044, 1045, 1049)")
        never.append("database syntax, integrity and data errors "
                     "(SQLSTATE classes 42, 23, 22; MySQL 1064, 1062)")
    never.append(f"authentication and permission errors: {', '.join(auth)}{unless}")
    if http and policy.idempotent_only:
        never.append("a POST or PATCH without an Idempotency-Key header that may have reached "
                     "the server: it is sent once")
    exits = ", ".join(_name(cls) for cls in predicates.NEVER_RETRY)
    never.append(f"cancellation (of any async library) and exits: {exits}")
    never.append("an error or response an inner brace policy already gave up on: retries "
                 "happen at one layer only")
    if policy.breaker is not None:
        never.append("calls an open circuit breaker rejects (brace.CircuitOpenError): "
                     "no further attempts")
    return never


def _promise(policy: Policy) -> str | None:
    """The preset's promise, when ``policy`` keeps every setting the promise depends on."""
    preset = _config.presets.get(policy.preset or "")
    if preset is None:
        return None
    keys = ("attempts", "initial", "max_wait", "deadline", "retry", "statuses",
            "idempotent_only")
    if any(getattr(policy, key) != getattr(preset, key) for key in keys):
        return None
    promise = getattr(preset, "promise", None)
    return promise if isinstance(promise, str) else None


def _budget(spec: str | _budget_module.Budget | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    # Look only: explaining must not create the budget.
    found = spec if not isinstance(spec, str) else _budget_module.find(spec)
    if found is None:
        return {"name": spec, "configured": False, **_budget_module.DEFAULTS}
    return {"name": found.name, "configured": True, "ratio": found.ratio,
            "min_per_s": found.min_per_s, "window": found.window}


def _gate(name: str | None, find: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    # A throttle's, rate limit's or bulkhead's settings, looked up without creating it.
    if name is None:
        return None
    found = find(name)
    return {"name": name, **({} if found is None else {k: getattr(found, k) for k in keys})}


def _breaker(spec: str | pybreaker.CircuitBreaker | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    if isinstance(spec, pybreaker.CircuitBreaker):
        return {"name": spec.name, "configured": True, "fail_max": spec.fail_max,
                "reset_timeout": _seconds(spec.reset_timeout), "state": spec.current_state}
    gate = _breakers.find(spec)  # look only: explaining must not create the breaker
    if gate is None:
        return {"name": spec, "configured": False, "fail_max": _breakers.DEFAULTS["fail_max"],
                "reset_timeout": _breakers.DEFAULTS["reset_timeout"], "state": None}
    info = gate.info()
    return {"name": spec, "configured": True, "fail_max": info.fail_max,
            "reset_timeout": _seconds(info.reset_timeout), "state": info.state}


def _schedule(policy: Policy) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"attempt": 1, "wait_min_s": None, "wait_median_s": None,
                                   "wait_max_s": None, "elapsed_worst_s": 0.0, "cut": False}]
    elapsed = 0.0
    retrying = tenacity.Retrying()
    wait = _own_wait(policy.wait)
    for attempt in range(2, policy.attempts + 1):
        # The wait before attempt n is computed after attempt n - 1 failed.
        state = tenacity.RetryCallState(retrying, None, (), {})
        state.attempt_number = attempt - 1
        low, median, high = _wait_range(wait, state)
        elapsed += high
        rows.append({"attempt": attempt, "wait_min_s": _seconds(low),
                     "wait_median_s": _seconds(median), "wait_max_s": _seconds(high),
                     "elapsed_worst_s": _seconds(elapsed),
                     # The stop never begins a sleep that would end at or past the deadline.
                     "cut": past(elapsed - high, high, policy.deadline)})
    return rows


def explain(policy: Policy) -> dict[str, Any]:
    """Describe ``policy`` as plain data: what it retries, its schedule, breaker and fallback.

    The waits come from the policy's own wait object (``policy.wait``), evaluated for each
    attempt. ``elapsed_worst_s`` is when an attempt starts at the latest, summing the
    longest waits and leaving out the time spent inside calls. A row is ``cut`` when that
    start would fall at or past the deadline: the policy never begins such a sleep, so the
    attempt may not happen. The result is JSON-serialisable; its keys are stable.

    Raises:
        TypeError: ``policy`` is not a ``brace.Policy``.
    """
    if isinstance(policy, type) or not hasattr(policy, "tenacity_kwargs"):
        raise TypeError(f"explain() takes a brace.Policy, got {policy!r}")
    schedule = _schedule(policy)
    cut = [row["attempt"] for row in schedule if row["cut"]]
    wait = _own_wait(policy.wait)
    http = _is_http(policy)
    retry_after = None
    if http and isinstance(wait, waits.retry_after):
        if wait.max_wait is None:
            retry_after = (f"a server's Retry-After or retry-after-ms replaces the backoff and "
                           f"is honoured in full, so a wait may stretch up to the deadline "
                           f"({policy.deadline:g} s); one that does not fit in what is left "
                           "of it gives up at once with the server's answer")
        else:
            retry_after = (f"a server's Retry-After or retry-after-ms replaces the backoff, "
                           f"capped at {wait.max_wait:g} s; a wait past the deadline gives up at "
                           "once")
    if callable(policy.fallback):
        fallback: str | None = "callable"
    else:
        fallback = None if policy.fallback is NO_FALLBACK else "value"
    return {
        "preset": policy.preset,
        # What this schedule rides out: the preset's words while its settings are kept, and
        # the outage computed from this policy's own waits (CONFIDENCE, worst case).
        "promise": _promise(policy),
        "rides_out_s": ride_out_s(policy),
        "confidence": CONFIDENCE,
        "attempts": policy.attempts,
        "initial_s": _seconds(policy.initial),
        "max_wait_s": _seconds(policy.max_wait),
        "deadline_s": _seconds(policy.deadline),
        "retried": {
            "errors": _errors(policy),
            "statuses": list(policy.statuses),
            "idempotency": _idempotency(policy) if http else None,
            "on": [_name(item) for item in policy.on],  # type: ignore[union-attr]
        },
        "never_retried": _never(policy),
        "wait": _wait_name(policy.wait),
        "retry_after": retry_after,
        "schedule": schedule,
        "worst_case_s": max((row["elapsed_worst_s"] for row in schedule if not row["cut"]),
                            default=0.0),
        "deadline_cuts_from": cut[0] if cut else None,
        # A server's Retry-After is honoured in full: with one, the worst case is the deadline.
        "worst_case_with_retry_after_s": (
            _seconds(policy.deadline)
            if http and isinstance(wait, waits.retry_after) and wait.max_wait is None
            else None),
        "note": _NOTE,
        "breaker": _breaker(policy.breaker),
        "budget": _budget(policy.budget),
        "attempt_timeout_s": policy.attempt_timeout,
        "throttle": _gate(policy.throttle, _limits.find_throttle_if,
                          ("k", "window", "probability")),
        "rate_limit": _gate(policy.rate_limit, _limits.find_rate_limit_if,
                            ("per_s", "burst", "adaptive", "rate")),
        "bulkhead": _gate(policy.bulkhead, _limits.find_bulkhead_if,
                          ("max_concurrent", "queue_timeout", "adaptive", "limit")),
        "hedging": None if policy.hedge_after is None else {
            "after_s": policy.hedge_after, "hedges": policy.hedges or 1,
            "applies_to": "async calls; on the async transport, idempotent requests or "
                          "those with an Idempotency-Key"},
        "fallback": fallback,
        "chaos": None if policy.chaos is None else repr(policy.chaos),
    }


# -- rendering ----------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def _item(text: str) -> str:
    return textwrap.fill(text, width=_WIDTH, initial_indent="  - ", subsequent_indent="    ")


def render_text(data: dict[str, Any]) -> list[str]:
    lines = [f"{data['preset']}: up to {data['attempts']} attempts, full-jitter backoff "
             f"{_s(data['initial_s'])} -> {_s(data['max_wait_s'])}, "
             f"deadline {_s(data['deadline_s'])}", ""]
    confidence = f"{data['confidence']:.0%}"
    if data["promise"]:
        lines.append(textwrap.fill(f"Promise: {data['promise']} ({confidence} of schedules; "
                                   "see docs/rides-out.md).", width=_WIDTH,
                                   subsequent_indent="  "))
    lines.append(textwrap.fill(
        f"Rides out: an outage of up to {_s(data['rides_out_s'])} in which every attempt fails "
        f"at once, with {confidence} probability (computed from the jittered waits).",
        width=_WIDTH, subsequent_indent="  "))
    lines += ["", "Retried:"]
    retried = data["retried"]
    lines.append(_item(retried["errors"]))
    if retried["statuses"]:
        lines.append(_item(f"HTTP statuses {', '.join(map(str, retried['statuses']))}"))
    lines.extend(_item(f"on=: {item}") for item in retried["on"])
    if retried["idempotency"]:
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
        deadline = (f"the worst case of the backoff ({_s(data['worst_case_s'])}) stays "
                    "within it.")
    else:
        deadline = (f"in the worst case it cuts the schedule off from attempt "
                    f"{data['deadline_cuts_from']}: a sleep that would end at or past the "
                    "deadline is not begun.")
    if data["worst_case_with_retry_after_s"] is not None:
        deadline += (" A server's Retry-After may stretch the call up to the deadline "
                     f"({_s(data['worst_case_with_retry_after_s'])}).")
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
                     f"{budget['window']:g} s")
    timeout = data["attempt_timeout_s"]
    for title, key in (("Throttle", "throttle"), ("Rate limit", "rate_limit"),
                       ("Bulkhead", "bulkhead")):
        gate = data[key]
        if gate is not None:
            shown = ", ".join(f"{k}={v}" if isinstance(v, bool) else f"{k}={v:g}"
                              for k, v in gate.items() if k != "name")
            shown = shown or "created with defaults on first use"
            lines.append(f"{title}: {gate['name']!r}, {shown}")
    hedging = data["hedging"]
    if hedging is not None:
        lines.append(textwrap.fill(
            f"Hedging: a copy races an attempt unanswered after {_s(hedging['after_s'])}, "
            f"at most {hedging['hedges']} per attempt, each one an attempt; "
            f"{hedging['applies_to']}", width=_WIDTH, subsequent_indent="  "))
    lines.append(f"Attempt timeout: {'none' if timeout is None else _s(timeout)}")
    lines.append(f"Fallback: {data['fallback'] or 'none'}")
    if data["chaos"] is not None:
        lines.append(textwrap.fill(f"Chaos (faults injected into attempts): {data['chaos']}",
                                   width=_WIDTH, subsequent_indent="  "))
    return lines


def render_chart(data: dict[str, Any]) -> list[str]:
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


def preset_lines(presets: Iterable[Any]) -> list[str]:
    """One line per preset: attempts, backoff, deadline and what it is for."""
    lines = []
    for preset in presets:
        name = preset.preset
        lines.append(f"{name:<12} {preset.attempts:>2} attempts, backoff "
                     f"{_s(preset.initial)} -> {_s(preset.max_wait)}, "
                     f"deadline {_s(preset.deadline)}: {preset.summary}")
    return lines
