"""What a resilience wrapper costs per call, side by side, in one process.

Healthy calls (the function returns at once) and recovering calls (two transient failures,
then success; no sleeping), sync and async, for a bare call, tenacity, stamina, backoff,
pybreaker, tenacity + pybreaker composed by hand, and brace presets. Prints ns per call and
the ratio to tenacity (sync) / tenacity.AsyncRetrying (async). The recovering call is also
measured with brace's events rendered as JSON by structlog, next to the same events logged
with structlog directly. A healthy GET through brace's httpx transports is measured next to
plain httpx, both over ``httpx.MockTransport``, and next to plain httpx setting the two
deadline headers brace's clients send by default (httpx's own cost of two more headers).

    make bench                                  # or: python benchmarks/overhead.py
    python benchmarks/overhead.py --quick       # tiny counts: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import httpx
import pybreaker
import stamina
import structlog
import tenacity
import trio

import brace
from brace.testing import no_waits, reset_breakers, reset_budgets, reset_limits


def measure(call: Callable[[], Any], number: int, repeat: int) -> float:
    """Median ns per call over `repeat` runs of `number` calls."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        for _ in range(number):
            call()
        runs.append((time.perf_counter_ns() - started) / number)
    return statistics.median(runs)


def _asyncio_run(main: Callable[[], Awaitable[float]]) -> float:
    return asyncio.run(main())  # type: ignore[arg-type]


def measure_async(make: Callable[[], Awaitable[Any]], number: int, repeat: int,
                  run: Callable[[Callable[[], Awaitable[float]]], float] = _asyncio_run
                  ) -> float:
    """Median ns per awaited call, in the event loop ``run`` starts (asyncio or trio)."""

    async def loop() -> float:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter_ns()
            for _ in range(number):
                await make()
            runs.append((time.perf_counter_ns() - started) / number)
        return statistics.median(runs)

    return run(loop)


def flaky() -> Callable[[], int]:
    """Fails twice with ConnectionError, then succeeds, over and over."""
    count = 0

    def call() -> int:
        nonlocal count
        count += 1
        if count % 3:
            raise ConnectionError
        return 1

    return call


def sync_contenders(healthy: bool) -> dict[str, Callable[[], Any]]:
    def make() -> Callable[[], int]:
        if healthy:
            return lambda: 1
        return flaky()

    no_sleep = tenacity.retry(stop=tenacity.stop_after_attempt(5), sleep=lambda s: None,
                              retry=tenacity.retry_if_exception_type(ConnectionError))
    breaker = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=30)
    composed_breaker = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=30)
    brace.breaker("bench", fail_max=10**9)
    brace.budget("bench", min_per_s=10**9)  # never refuses: the cost of counting is measured
    brace.bulkhead("bench", max_concurrent=10**6)  # never full: the cost of a slot
    brace.rate_limit("bench", per_s=1e9, burst=10**6)  # never waits: the cost of a token
    out: dict[str, Callable[[], Any]] = {
        "bare call": make() if healthy else lambda: 1,
        "tenacity.retry": no_sleep(make()),
        "stamina.retry": stamina.retry(on=ConnectionError, attempts=5)(make()),
        "backoff.on_exception": backoff.on_exception(
            backoff.expo, ConnectionError, max_tries=5, jitter=None, factor=0)(make()),
        "tenacity + pybreaker": no_sleep(composed_breaker(make())),
        "brace.network()": brace.network()(make()),
        "brace.http()": brace.http()(make()),
        "brace.http(breaker=)": brace.http(breaker="bench")(make()),
        "brace.http(breaker=, budget=)": brace.http(breaker="bench", budget="bench")(make()),
        "brace.network(bulkhead=)": brace.network(bulkhead="bench")(make()),
        "brace.network(rate_limit=)": brace.network(rate_limit="bench")(make()),
    }
    if healthy:
        out["pybreaker"] = breaker(make())
    return out


async def _one() -> int:
    return 1


def async_contenders(healthy: bool) -> dict[str, Callable[[], Awaitable[Any]]]:
    def make() -> Callable[[], Awaitable[int]]:
        failing = flaky()

        async def fn() -> int:
            return 1 if healthy else failing()

        return fn

    no_sleep = tenacity.retry(stop=tenacity.stop_after_attempt(5),
                              sleep=tenacity.asyncio._portable_async_sleep,
                              wait=tenacity.wait_none(),
                              retry=tenacity.retry_if_exception_type(ConnectionError))
    breaker = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=30)

    def with_pybreaker(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        # pybreaker's own async support needs tornado; count the outcome through it.
        async def guarded() -> int:
            try:
                result = await fn()
            except BaseException as exc:
                error = exc

                def fail() -> None:
                    raise error

                with contextlib.suppress(BaseException):
                    breaker.call(fail)
                raise
            breaker.call(lambda: None)
            return result

        return guarded

    def task_found(fn: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        # What any wrapper that cancels its caller at a deadline does first: find the running
        # loop and its task through asyncio's API (on 3.11, get_running_loop makes a getpid
        # system call; 3.12 keeps the loop in the thread state).
        running_loop, current_task = asyncio.get_running_loop, asyncio.current_task

        async def wrapper() -> int:
            current_task(running_loop())
            return await fn()

        return wrapper

    found = {"asyncio: the loop and task found": task_found(make())} if healthy else {}
    return {
        "bare call": make() if healthy else _one,
        **found,
        "tenacity.AsyncRetrying": no_sleep(make()),
        "stamina.retry": stamina.retry(on=ConnectionError, attempts=5)(make()),
        "tenacity + pybreaker": no_sleep(with_pybreaker(make())),
        "brace.network()": brace.network()(make()),
        "brace.network(attempt_timeout=)": brace.network(attempt_timeout=5)(make()),
        # Answered before hedge_after: what a hedged call costs when no hedge is needed.
        "brace.network(hedge_after=)": brace.network(hedge_after=5)(make()),
        "brace.http(breaker=)": brace.http(breaker="bench-async")(make()),
        "brace.http(breaker=, budget=)": brace.http(breaker="bench-async",
                                                   budget="bench")(make()),
    }


def trio_contenders() -> dict[str, Callable[[], Awaitable[Any]]]:
    """Healthy calls under trio: the deadline is an anyio cancel scope there."""
    plain = tenacity.retry(stop=tenacity.stop_after_attempt(5),
                           retry=tenacity.retry_if_exception_type(ConnectionError))
    return {
        "bare call": _one,
        "tenacity.AsyncRetrying": plain(_one),
        "brace.network()": brace.network()(_one),
        "brace.network(attempt_timeout=)": brace.network(attempt_timeout=5)(_one),
    }


def table(title: str, results: dict[str, float], reference: str) -> None:
    composed = "tenacity + pybreaker"
    if composed not in results:
        composed = reference
    print(f"\n{title}")
    print(f"{'':34} {'ns/call':>10} {'x ' + reference:>24} {'x ' + composed:>24}")
    for name, ns in results.items():
        print(f"{name:34} {ns:10.0f} {ns / results[reference]:24.3f} "
              f"{ns / results[composed]:24.3f}")


def observed(number: int, repeat: int) -> None:
    """What the Prometheus observer adds: nothing on a healthy call, one count per event."""
    from prometheus_client import CollectorRegistry

    rows = {}
    with no_waits():
        for healthy in (True, False):
            label = "healthy" if healthy else "2 failures, then success"
            count = number if healthy else number // 10
            fn = brace.network()((lambda: 1) if healthy else flaky())
            rows[f"brace.network(), {label}"] = measure(fn, count, repeat)
            observer = brace.metrics.prometheus(registry=CollectorRegistry())
            try:
                rows[f"  + prometheus observer, {label}"] = measure(fn, count, repeat)
            finally:
                brace.unobserve(observer)
    print("\nsync, with brace.metrics.prometheus() installed")
    for name, ns in rows.items():
        print(f"{name:50} {ns:10.0f} ns")


#: The JSON-events tables' titles (also rows of the goals).
JSON_SYNC = "sync: 2 failures, then success, events as JSON"
JSON_ASYNC = "async: 2 failures, then success, events as JSON"
JSON_EVENT = "one event as JSON"
#: Its row of the same events logged with structlog after each call (events dropped).
IN_CONTEXT = "structlog, same fields, after each call"


def json_events(number: int, repeat: int) -> dict[str, dict[str, float]]:
    """The recovering call with brace's events rendered as JSON by structlog.

    structlog is set up as an application would log JSON (``JSONRenderer`` to a stream,
    here one that is emptied after each run). tenacity logs nothing, so its rows are the
    same as without events. ``one event``: what a brace event costs (the call with JSON
    events, less the call with events dropped, per event) next to logging the same events
    (names, levels and fields captured from a call) with structlog directly: in a loop of
    their own, and after each call whose own events are dropped (so they run amid the
    same call path as brace's: the call less the call alone, per event). The rows are
    measured in turn, run by run, so a change in the machine's load touches them alike.
    """
    sink = io.StringIO()
    count = max(1, number // 10)

    def as_json() -> None:
        structlog.reset_defaults()
        structlog.configure(processors=[structlog.processors.JSONRenderer()],
                            logger_factory=structlog.PrintLoggerFactory(file=sink))

    def emptied(ns: float) -> float:
        sink.seek(0)
        sink.truncate()
        return ns

    def async_flaky() -> Callable[[], Awaitable[int]]:
        failing = flaky()

        async def fn() -> int:
            return failing()

        return fn

    sync_fn = brace.network()(flaky())
    async_fn = brace.network()(async_flaky())
    tenacity_sync = tenacity.retry(stop=tenacity.stop_after_attempt(5), sleep=lambda s: None,
                                   retry=tenacity.retry_if_exception_type(ConnectionError)
                                   )(flaky())
    tenacity_async = tenacity.retry(stop=tenacity.stop_after_attempt(5),
                                    sleep=tenacity.asyncio._portable_async_sleep,
                                    wait=tenacity.wait_none(),
                                    retry=tenacity.retry_if_exception_type(ConnectionError)
                                    )(async_flaky())
    dropped, brace_json = "brace.network(), events dropped", "brace.network()"
    sync: dict[str, list[float]] = {"tenacity.retry": [], dropped: [], brace_json: []}
    asynchronous: dict[str, list[float]] = {"tenacity.AsyncRetrying": [], dropped: [],
                                            brace_json: []}
    bare_runs: list[float] = []
    in_context_runs: list[float] = []
    with no_waits():
        as_json()
        with structlog.testing.capture_logs() as captured:  # the events of one call
            sync_fn()
        events = [(entry.pop("log_level"), entry.pop("event"), entry) for entry in captured]
        logger = structlog.get_logger("brace")

        def bare() -> None:  # the same events, logged with structlog directly
            for level, event, fields in events:
                getattr(logger, level)(event, **fields)

        def dropped_then_bare() -> None:
            # The call, its events dropped (below CRITICAL), then the same events logged
            # with structlog directly, at CRITICAL so they pass: as costly as at their level.
            sync_fn()
            for _, event, fields in events:
                logger.critical(event, **fields)

        for _ in range(repeat):
            quiet_events()
            sync[dropped].append(measure(sync_fn, count, 1))
            in_context_runs.append(emptied(measure(dropped_then_bare, count, 1)))
            as_json()
            sync["tenacity.retry"].append(emptied(measure(tenacity_sync, count, 1)))
            sync[brace_json].append(emptied(measure(sync_fn, count, 1)))
            bare_runs.append(emptied(measure(bare, count, 1)))

        async def async_runs() -> float:  # the rows in turn, in one event loop
            for _ in range(repeat):
                for name, fn, logged in (("tenacity.AsyncRetrying", tenacity_async, True),
                                         (dropped, async_fn, False),
                                         (brace_json, async_fn, True)):
                    if logged:
                        as_json()
                    else:
                        quiet_events()
                    started = time.perf_counter_ns()
                    for _ in range(count):
                        await fn()
                    asynchronous[name].append(emptied((time.perf_counter_ns() - started)
                                                      / count))
            return 0.0

        _asyncio_run(async_runs)
    quiet_events()
    per_call = max(1, len(events))
    one = {"structlog, same fields": statistics.median(bare_runs) / per_call,
           IN_CONTEXT: statistics.median(
               [(both - quiet) / per_call
                for both, quiet in zip(in_context_runs, sync[dropped], strict=True)]),
           "brace": statistics.median(
               [(logged - quiet) / per_call
                for logged, quiet in zip(sync[brace_json], sync[dropped], strict=True)])}
    sync_ns = {name: statistics.median(runs) for name, runs in sync.items()}
    async_ns = {name: statistics.median(runs) for name, runs in asynchronous.items()}
    table(JSON_SYNC, sync_ns, "tenacity.retry")
    table(JSON_ASYNC, async_ns, "tenacity.AsyncRetrying")
    print(f"\n{JSON_EVENT} ({len(events)} events per sync call: "
          f"{', '.join(event for _, event, _ in events)})")
    print(f"{'':40} {'ns/event':>10} {'x structlog, same fields':>26} {'x after each call':>18}")
    for name, ns in one.items():
        print(f"{name:40} {ns:10.0f} {ns / one['structlog, same fields']:26.3f} "
              f"{ns / one[IN_CONTEXT]:18.3f}")
    return {JSON_SYNC: sync_ns, JSON_ASYNC: async_ns, JSON_EVENT: one}


#: The transport tables' titles (also rows of the goals), and the row that is the
#: per-authority breaker's added cost (ns, not a ratio).
TRANSPORT_SYNC = "sync: healthy GET, MockTransport"
TRANSPORT_ASYNC = "async: healthy GET, MockTransport"
AUTHORITY_ADDED = "per-authority breaker, added"


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


#: The reference rows that send what brace's clients send by default: the two deadline
#: headers, set on each request in a transport (httpx's own work on two more headers).
SAME_HEADERS_SYNC = "httpx.Client, the same two headers"
SAME_HEADERS_ASYNC = "httpx.AsyncClient, the same two headers"


def _with_headers(request: httpx.Request) -> None:
    request.headers["Brace-Deadline-Ms"] = "29999"
    request.headers["Brace-Attempt"] = "1"


class _Headed(httpx.BaseTransport):
    """Sets brace's two deadline headers on each request, then sends it (no brace)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _with_headers(request)
        return self.inner.handle_request(request)


class _AsyncHeaded(httpx.AsyncBaseTransport):
    """``_Headed`` for httpx.AsyncClient."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _with_headers(request)
        return await self.inner.handle_async_request(request)


def transport_overhead(number: int, repeat: int) -> dict[str, dict[str, float]]:
    """A healthy GET through brace's httpx transports, next to plain httpx.

    Every client sends to ``httpx.MockTransport`` (no network: what is measured is what
    each layer adds to a request). ``RetryTransport(breaker=None)`` is the policy alone;
    ``RetryTransport()`` and ``brace.http.client()`` add the per-authority breaker brace's
    clients open by default, whose cost is its own row (``authority_added``). The rows are
    measured in turn, in many short rounds, and each ratio is the median of its
    round-by-round ratios: a change in the machine's load touches a round's rows alike (the
    ns column is the plain median).
    """
    url = "http://api.example.com/items"
    policy = brace.http()
    mock = httpx.MockTransport
    count = max(1, number // 200)
    rounds = repeat * 10
    sync_clients = {
        "httpx.Client": httpx.Client(transport=mock(_ok)),
        SAME_HEADERS_SYNC: httpx.Client(transport=_Headed(mock(_ok))),
        "brace.RetryTransport(breaker=None)": httpx.Client(
            transport=brace.RetryTransport(policy, mock(_ok), breaker=None)),
        "brace.RetryTransport()": httpx.Client(
            transport=brace.RetryTransport(policy, mock(_ok))),
        "brace.http.client()": brace.http.client(transport=mock(_ok)),
    }
    async_clients = {
        "httpx.AsyncClient": httpx.AsyncClient(transport=mock(_ok)),
        SAME_HEADERS_ASYNC: httpx.AsyncClient(transport=_AsyncHeaded(mock(_ok))),
        "brace.AsyncRetryTransport(breaker=None)": httpx.AsyncClient(
            transport=brace.AsyncRetryTransport(policy, mock(_ok), breaker=None)),
        "brace.AsyncRetryTransport()": httpx.AsyncClient(
            transport=brace.AsyncRetryTransport(policy, mock(_ok))),
        "brace.http.async_client()": brace.http.async_client(transport=mock(_ok)),
    }
    sync: dict[str, list[float]] = {name: [] for name in sync_clients}
    for client in sync_clients.values():  # first requests build call paths and breakers
        measure(lambda c=client: c.get(url), 20, 1)
    for _ in range(rounds):
        for name, client in sync_clients.items():
            sync[name].append(measure(lambda c=client: c.get(url), count, 1))
    asynchronous: dict[str, list[float]] = {name: [] for name in async_clients}

    async def async_runs() -> float:
        for client in async_clients.values():
            for _ in range(20):
                await client.get(url)
        for _ in range(rounds):
            for name, client in async_clients.items():
                started = time.perf_counter_ns()
                for _ in range(count):
                    await client.get(url)
                asynchronous[name].append((time.perf_counter_ns() - started) / count)
        for client in async_clients.values():
            await client.aclose()
        return 0.0

    _asyncio_run(async_runs)
    for client in sync_clients.values():
        client.close()
    tables = {}
    for title, runs in ((TRANSPORT_SYNC, sync), (TRANSPORT_ASYNC, asynchronous)):
        reference = next(iter(runs))
        ratio = {name: statistics.median([a / b for a, b in zip(each, runs[reference],
                                                                strict=True)])
                 for name, each in runs.items()}
        print(f"\n{title}")
        print(f"{'':40} {'ns/request':>10} {'x ' + reference:>24}")
        for name, each in runs.items():
            print(f"{name:40} {statistics.median(each):10.0f} {ratio[name]:24.3f}")
        added = authority_added(title is TRANSPORT_ASYNC, rounds, count)
        print(f"{AUTHORITY_ADDED:40} {added:10.0f} ns/request (the transport called "
              "directly, median of round-by-round differences)")
        # For the goals: the reference's median, and each row at its median ratio to it.
        base = statistics.median(runs[reference])
        tables[title] = {**{name: base * ratio[name] for name in runs}, AUTHORITY_ADDED: added}
    return tables


def authority_added(asynchronous: bool, rounds: int, count: int) -> float:
    """What the per-authority breaker adds to a healthy request, in ns.

    The transport's ``handle_request`` is called directly, with and without the breaker,
    in alternating rounds: without httpx.Client's own 60 µs around each request, a
    difference of a few hundred ns stands out of the machine's noise.
    """
    policy = brace.http()
    inner = httpx.MockTransport(_ok)
    transports: dict[bool, Any] = {
        breaker: (brace.AsyncRetryTransport if asynchronous else brace.RetryTransport)(
            policy, inner, **({} if breaker else {"breaker": None}))
        for breaker in (False, True)}
    request = httpx.Request("GET", "http://api.example.com/items")
    runs: dict[bool, list[float]] = {False: [], True: []}

    async def async_rounds() -> float:
        for _ in range(rounds * 4):
            for breaker, transport in transports.items():
                started = time.perf_counter_ns()
                for _ in range(count):
                    await transport.handle_async_request(request)
                runs[breaker].append((time.perf_counter_ns() - started) / count)
        return 0.0

    if asynchronous:
        _asyncio_run(async_rounds)
    else:
        for _ in range(rounds * 4):
            for breaker, transport in transports.items():
                runs[breaker].append(measure(
                    lambda t=transport: t.handle_request(request), count, 1))
    return statistics.median([b - a for a, b in zip(runs[False], runs[True], strict=True)])


#: The goals: (table, row, reference row, largest ratio); a reference of None: the row is
#: in ns and the goal a number of ns.
GOALS: list[tuple[str, str, str | None, float]] = [
    ("sync: healthy call", "brace.network()", "tenacity.retry", 0.03),
    ("sync: healthy call", "brace.http(breaker=, budget=)", "tenacity + pybreaker", 0.03),
    ("async: healthy call", "brace.network()", "tenacity.AsyncRetrying", 0.03),
    ("async: healthy call", "brace.network(hedge_after=)", "tenacity.AsyncRetrying", 0.2),
    ("sync: 2 failures, then success", "brace.network()", "tenacity.retry", 0.5),
    ("async: 2 failures, then success", "brace.network()", "tenacity.AsyncRetrying", 0.5),
    (JSON_SYNC, "brace.network()", "tenacity.retry", 0.3),
    (JSON_ASYNC, "brace.network()", "tenacity.AsyncRetrying", 0.3),
    (JSON_EVENT, "brace", "structlog, same fields", 1.5),
    (JSON_EVENT, "brace", IN_CONTEXT, 1.5),
    (TRANSPORT_SYNC, "brace.http.client()", "httpx.Client", 1.05),
    (TRANSPORT_ASYNC, "brace.http.async_client()", "httpx.AsyncClient", 1.05),
    (TRANSPORT_SYNC, "brace.http.client()", SAME_HEADERS_SYNC, 1.05),
    (TRANSPORT_ASYNC, "brace.http.async_client()", SAME_HEADERS_ASYNC, 1.05),
    (TRANSPORT_SYNC, AUTHORITY_ADDED, None, 200.0),
    (TRANSPORT_ASYNC, AUTHORITY_ADDED, None, 200.0),
]


def goals(tables: dict[str, dict[str, float]]) -> None:
    """Each goal's ratio (or ns), measured in this run."""
    print("\ngoals (ratio, or ns, in this run <= goal)")
    for title, row, reference, goal in GOALS:
        value = tables[title][row]
        if reference is not None:
            value /= tables[title][reference]
        mark = "ok" if value <= goal else "MISSED"
        shown, digits = ("x " + reference, 3) if reference is not None else ("ns", 0)
        print(f"  {title + ': ' + row:64} {shown:42} {value:6.{digits}f} <= {goal:<5g} {mark}")


def import_times(runs_each: int) -> None:
    """`import brace` next to importing what it wraps, each in a fresh interpreter."""
    statements = {
        "import tenacity, pybreaker, structlog": "import tenacity, pybreaker, structlog",
        "import brace": "import brace",
        "import brace (is httpx loaded?)": "import brace, sys; assert 'httpx' not in sys.modules",
        "import httpx": "import httpx",
    }
    print(f"\nimport time (median of {runs_each} fresh interpreters)")
    for label, statement in statements.items():
        runs = []
        for _ in range(runs_each):
            code = f"import time; t = time.perf_counter(); {statement}; " \
                   "print(time.perf_counter() - t)"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            runs.append(float(out.stdout))
        print(f"{label:40} {statistics.median(runs) * 1000:8.1f} ms")


def quiet_events() -> None:
    """Drop brace's events below CRITICAL: the benchmark measures retrying, not printing."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    args = parser.parse_args()
    number, repeat = (50, 2) if args.quick else (20_000, 7)
    quiet_events()
    stamina.set_testing(True, attempts=5)  # stamina: no sleeping, same attempts
    reset_breakers()
    tables: dict[str, dict[str, float]] = {}
    with no_waits():
        for healthy in (True, False):
            label = "healthy call" if healthy else "2 failures, then success"
            sync = {name: measure(call, number if healthy else number // 10, repeat)
                    for name, call in sync_contenders(healthy).items()}
            table(f"sync: {label}", sync, "tenacity.retry")
            asynchronous = {name: measure_async(call, number if healthy else number // 10,
                                                repeat)
                            for name, call in async_contenders(healthy).items()}
            table(f"async: {label}", asynchronous, "tenacity.AsyncRetrying")
            tables[f"sync: {label}"], tables[f"async: {label}"] = sync, asynchronous
        trio_healthy = {name: measure_async(call, number // 4, repeat, trio.run)
                        for name, call in trio_contenders().items()}
    table("trio: healthy call", trio_healthy, "tenacity.AsyncRetrying")
    observed(number, repeat)
    tables.update(json_events(number, repeat))
    tables.update(transport_overhead(number, repeat))
    goals(tables)
    stamina.set_testing(False)
    reset_breakers()
    reset_budgets()
    reset_limits()
    import_times(1 if args.quick else 5)


if __name__ == "__main__":
    main()
