"""The fault matrix: what each preset rides out, computed and measured against real servers.

For every preset, the faults it exists for, run with the preset's DEFAULT settings (real
sleeps, full jitter seeded per run) against real components on 127.0.0.1:

    network      connections refused for 5 s, then a listener           (socket)
    interactive  connections refused for 0.2 s, then a listener; and a dependency that never
                 comes back: it gives up within 1 s
    http         a server answering 503 for 10 s, then 200               (brace.http.client())
    database     PostgreSQL `pg_ctl restart -m fast`; PostgreSQL stopped for 5 s, then started
                 (a failover's length), while @brace.database runs transactions
    redis        redis-server stopped for 5 s, then started             (network preset)
    llm          a 429/529 storm of 60 s; a 429 with Retry-After: 20    (--long)
    background   an outage of 5 min                                      (--long)

Each row says how likely the preset is to ride the fault out, computed two ways from the
wait distribution: exactly (brace._explain.reach_probability, inclusion-exclusion over the
uniform waits) and by Monte Carlo over the policy's own wait object (fixed seed). Then the
measured runs: how many succeeded, how long the call took, how many attempts it made.

Writes the table between the markers of docs/rides-out.md and the chart (attempts over time
per preset; needs matplotlib, the `dev` extra) to docs/rides-out.png.

    make faults                           # or: python benchmarks/faults.py
    python benchmarks/faults.py --quick   # one run each, shortest faults, no files written
    python benchmarks/faults.py --long    # adds llm (60 s storm) and background (5 min)
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity
from structlog.testing import capture_logs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fault_server and the integration servers

import brace  # noqa: E402
from brace._deadline import past  # noqa: E402
from brace._explain import CONFIDENCE, backoff_caps, reach_probability  # noqa: E402

DOCS = ROOT / "docs"
PAGE = DOCS / "rides-out.md"
CHART = DOCS / "rides-out.png"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
MONTE_CARLO_SAMPLES = 20_000
MONTE_CARLO_SEED = 26


# -- the computation ----------------------------------------------------------------------


def monte_carlo(policy: brace.Policy, outage_s: float, samples: int = MONTE_CARLO_SAMPLES,
                seed: int = MONTE_CARLO_SEED) -> float:
    """P(success) for an outage failing every attempt at once, by sampling ``policy.wait``.

    Follows brace's stop rules: at most ``attempts``; a sleep that would end at or past the
    deadline is never begun. The policy's own wait object draws the waits (tenacity's
    full jitter, through brace's Retry-After wait), from ``random`` seeded here.
    """
    state = random.getstate()
    random.seed(seed)
    retrying = tenacity.Retrying()
    calls = []
    for attempt in range(1, policy.attempts):
        call = tenacity.RetryCallState(retrying, None, (), {})
        call.attempt_number = attempt
        calls.append(call)
    wins = 0
    try:
        for _ in range(samples):
            elapsed = 0.0
            for call in calls:
                wait = float(policy.wait(call))
                if past(elapsed, wait, policy.deadline):
                    break
                elapsed += wait
                if elapsed >= outage_s:
                    wins += 1
                    break
    finally:
        random.setstate(state)
    return wins / samples


# -- the runs -----------------------------------------------------------------------------


@dataclass
class Run:
    """One call under a fault: when each attempt started, relative to the fault's start."""

    attempts: list[float] = field(default_factory=list)
    succeeded: bool = False
    elapsed_s: float = 0.0
    error: str = ""


@dataclass
class Scenario:
    """One row of the matrix."""

    preset: str
    fault: str
    outage_s: float  # the fault's length the promise covers (what the call must outlast)
    run: Callable[[int], Run]  # seed -> one measured call
    policy: brace.Policy
    long: bool = False
    expect_success: bool = True
    runs: list[Run] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Listener:
    """A TCP listener on ``port`` that accepts (and closes) connections until stopped."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()


def _timed(policy: brace.Policy | None, attempt: Callable[[], object], start: float,
           seed: int) -> Run:
    """Call ``attempt`` under ``policy`` (seeded jitter), recording each attempt's start.

    Without a policy, ``attempt`` retries by itself (a brace client) and records its own.
    """
    record = Run()

    def call() -> object:
        record.attempts.append(time.monotonic() - start)
        return attempt()

    call = policy(call) if policy is not None else attempt

    random.seed(seed)
    try:
        with capture_logs():  # the events are not the point here; keep the output a table
            call()
        record.succeeded = True
    except Exception as exc:
        record.error = type(exc).__name__
    record.elapsed_s = time.monotonic() - start
    return record


def refused_then_listening(policy: brace.Policy, outage_s: float) -> Callable[[int], Run]:
    def run(seed: int) -> Run:
        port = _free_port()  # nothing listens there: refused until the listener comes
        start = time.monotonic()
        opened: list[Listener] = []
        timer = threading.Timer(outage_s, lambda: opened.append(Listener(port)))
        timer.start()
        try:
            return _timed(policy, lambda: socket.create_connection(
                ("127.0.0.1", port), timeout=1).close(), start, seed)
        finally:
            timer.cancel()
            timer.join()
            for listener in opened:
                listener.close()

    return run


def never_listening(policy: brace.Policy) -> Callable[[int], Run]:
    def run(seed: int) -> Run:
        port = _free_port()
        return _timed(policy, lambda: socket.create_connection(
            ("127.0.0.1", port), timeout=1).close(), time.monotonic(), seed)

    return run


def http_status_then_ok(policy: Any, outage_s: float, status: int | tuple[int, ...],
                        headers: dict[str, str] | None = None) -> Callable[[int], Run]:
    from tests.fault_server import Action, FaultServer

    statuses = status if isinstance(status, tuple) else (status,)

    class UntilThenOk(Action):
        """``status`` (cycling through several) until ``until``, then 200; records arrivals."""

        def __init__(self, until: float) -> None:
            self.until = until
            self.arrivals: list[float] = []

        def run(self, handler: Any) -> None:
            now = time.monotonic()
            self.arrivals.append(now)
            if now < self.until:
                code = statuses[len(self.arrivals) % len(statuses)]
                handler.send_complete(code, b"busy", headers)
            else:
                handler.send_complete(200, b"ok", None)

    def run(seed: int) -> Run:
        with FaultServer() as server, policy.client(base_url=server.url) as client:
            start = time.monotonic()
            action = UntilThenOk(start + outage_s)
            server.script("/fault", action)

            def get() -> None:
                client.get("/fault").raise_for_status()

            # The client's transport retries: each request that reached the server is an
            # attempt.
            record = _timed(None, get, start, seed)
            record.attempts = [arrival - start for arrival in action.arrivals]
            return record

    return run


def _wait_until_down(server: Any, psycopg: Any, limit_s: float = 10.0) -> None:
    """Poll (bounded) until the server refuses new sessions: the restart has begun."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            psycopg.connect(server.conninfo(), connect_timeout=1).close()
        except psycopg.OperationalError:
            return
        time.sleep(0.005)
    raise RuntimeError(f"PostgreSQL did not go down within {limit_s} s")


def postgres_scenarios(stack: contextlib.ExitStack, quick: bool) -> list[Scenario]:
    """PostgreSQL restarted and stopped for a failover's length under @brace.database."""
    try:
        import psycopg

        from tests.integration.conftest import _postgres_cluster
    except ImportError as exc:
        print(f"skipping PostgreSQL: {exc}", file=sys.stderr)
        return []
    try:
        server = stack.enter_context(_postgres_cluster())
    except BaseException as exc:  # pytest.skip outside pytest: no PostgreSQL binaries
        print(f"skipping PostgreSQL: {exc}", file=sys.stderr)
        return []
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS entries (id int PRIMARY KEY)")

    def fault(kind: str, outage_s: float) -> Callable[[int], Run]:
        def run(seed: int) -> Run:
            holder: dict[str, Any] = {"conn": psycopg.connect(server.conninfo(),
                                                              autocommit=True)}

            def transaction() -> None:
                if "conn" not in holder:
                    holder["conn"] = psycopg.connect(server.conninfo(), autocommit=True)
                conn = holder["conn"]
                try:
                    with conn.transaction():
                        conn.execute("INSERT INTO entries VALUES (%s) ON CONFLICT DO NOTHING",
                                     (seed,))
                except BaseException:
                    holder.pop("conn").close()  # a pool would replace a broken connection
                    raise

            start = time.monotonic()
            if kind == "restart":
                restarter = threading.Thread(target=server.restart)
                restarter.start()
                _wait_until_down(server, psycopg)
            else:
                server.stop()
                restarter = threading.Timer(max(0.0, outage_s - (time.monotonic() - start)),
                                            server.start)
                restarter.start()
            try:
                return _timed(brace.database, transaction, start, seed)
            finally:
                restarter.join(60)
                server.wait_ready()
                with contextlib.suppress(Exception):
                    holder["conn"].close()

        return run

    outage = 1.0 if quick else brace.database.rides_out_s
    return [
        Scenario("database", "PostgreSQL `pg_ctl restart -m fast`", 1.0,
                 fault("restart", 0.0), brace.database),
        Scenario("database", f"PostgreSQL stopped for {outage:g} s, then started", outage,
                 fault("stop", outage), brace.database),
    ]


def redis_scenario(stack: contextlib.ExitStack, quick: bool) -> list[Scenario]:
    try:
        import redis

        from tests.integration.conftest import RedisServer
    except ImportError as exc:
        print(f"skipping redis: {exc}", file=sys.stderr)
        return []
    import shutil
    import tempfile

    executable = shutil.which("redis-server")
    if executable is None:
        print("skipping redis: redis-server is not on PATH", file=sys.stderr)
        return []
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-redis-")))
    server = RedisServer(executable, directory, _free_port())
    server.start()
    stack.callback(server.stop)
    # redis-py's errors are not builtin ConnectionErrors: named with on= (see the docs page).
    policy = brace.network(on=(redis.ConnectionError, redis.TimeoutError))
    outage = 1.0 if quick else brace.network.rides_out_s

    def run(seed: int) -> Run:
        # redis-py retries by itself by default: one layer only, brace's.
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=1,
                             socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        client.ping()
        start = time.monotonic()
        server.stop()
        timer = threading.Timer(outage, server.start)
        timer.start()
        try:
            return _timed(policy, client.ping, start, seed)
        finally:
            timer.join(60)
            server.start()
            client.close()

    return [Scenario("network (redis)", f"redis-server stopped for {outage:g} s, then started",
                     outage, run, policy)]


def scenarios(stack: contextlib.ExitStack, quick: bool, long: bool) -> list[Scenario]:
    def outage(preset: Any, short: float) -> float:
        return short if quick else float(preset.rides_out_s)

    net = outage(brace.network, 1.0)
    http = outage(brace.http, 2.0)
    rows = [
        Scenario("network", f"connections refused for {net:g} s, then a listener", net,
                 refused_then_listening(brace.network, net), brace.network),
        Scenario("interactive", "connections refused for 0.2 s, then a listener", 0.2,
                 refused_then_listening(brace.interactive, 0.2), brace.interactive),
        Scenario("interactive", "connections refused for good: gives up within 1 s", 0.0,
                 never_listening(brace.interactive), brace.interactive,
                 expect_success=False),
        Scenario("http", f"503 for {http:g} s, then 200 (brace.http.client())", http,
                 http_status_then_ok(brace.http, http, 503), brace.http),
        *postgres_scenarios(stack, quick),
        *redis_scenario(stack, quick),
        Scenario("llm", "a 429/529 storm of 60 s, then 200 (brace.llm.client())", 60.0,
                 http_status_then_ok(brace.llm, 60.0, (429, 529)), brace.llm, long=True),
        Scenario("llm", "429 with Retry-After: 20 for 20 s, then 200", 20.0,
                 http_status_then_ok(brace.llm, 20.0, 429, {"Retry-After": "20"}),
                 brace.llm, long=True),
        Scenario("background", "connections refused for 5 min, then a listener", 300.0,
                 refused_then_listening(brace.background, 300.0), brace.background,
                 long=True),
    ]
    return [row for row in rows if long or not row.long]


# -- output -------------------------------------------------------------------------------


def _ok(row: Scenario, run: Run) -> bool:
    """Rode it out; or, for a fault that never ends, gave up by the deadline (+50 ms)."""
    if row.expect_success:
        return run.succeeded
    return not run.succeeded and run.elapsed_s <= row.policy.deadline + 0.05


def _fmt_p(p: float) -> str:
    return f"{p * 100:.2f} %"


def table(rows: list[Scenario]) -> str:
    lines = [
        "| preset | fault | outage | P exact | P Monte Carlo | runs ok | call took "
        "(median / max) | attempts (median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.expect_success:
            exact = _fmt_p(reach_probability(backoff_caps(row.policy), row.outage_s))
            sampled = _fmt_p(monte_carlo(row.policy, row.outage_s))
        else:
            exact = sampled = "-"
        ok = sum(_ok(row, run) for run in row.runs)
        took = [run.elapsed_s for run in row.runs]
        tries = [len(run.attempts) for run in row.runs]
        lines.append(
            f"| `{row.preset}` | {row.fault} | {row.outage_s:g} s | {exact} | {sampled} | "
            f"{ok}/{len(row.runs)} | {statistics.median(took):.2f} s / {max(took):.2f} s | "
            f"{statistics.median(tries):g} / {max(tries)} |")
    return "\n".join(lines)


def chart(rows: list[Scenario], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no chart",
              file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(rows) + 1.2))
    for y, row in enumerate(reversed(rows)):
        if row.outage_s:
            ax.barh(y, row.outage_s, height=0.6, color="#f3c4c4", zorder=1)
        for run_index, run in enumerate(row.runs):
            offset = (run_index - (len(row.runs) - 1) / 2) * 0.08
            times = run.attempts
            ax.scatter(times[:-1], [y + offset] * len(times[:-1]), marker="x", s=14,
                       color="#b03030", zorder=2, linewidths=1)
            if times:
                last_ok = run.succeeded
                ax.scatter(times[-1:], [y + offset], marker="o" if last_ok else "x", s=18,
                           color="#2a7f2a" if last_ok else "#b03030", zorder=3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.preset}: {r.fault}"[:70] for r in reversed(rows)], fontsize=7)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("seconds since the fault began (shaded: the fault; x failed attempt, "
                  "o success)")
    ax.set_title("What each preset rides out: attempts over time, default settings")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def publish(text: str) -> None:
    page = PAGE.read_text()
    before, _, rest = page.partition(BEGIN)
    _, _, after = rest.partition(END)
    PAGE.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured calls per fault")
    parser.add_argument("--quick", action="store_true",
                        help="one run each, short faults, nothing written")
    parser.add_argument("--long", action="store_true", help="add llm and background")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    failures = 0
    with contextlib.ExitStack() as stack:
        rows = scenarios(stack, args.quick, args.long)
        for row in rows:
            count = 1 if row.long else runs
            for seed in range(count):
                result = row.run(seed)
                row.runs.append(result)
                status = "ok" if _ok(row, result) else "FAILED"
                failures += status != "ok"
                print(f"{row.preset:<16} {row.fault:<58} run {seed}: {status}, "
                      f"{len(result.attempts)} attempts, {result.elapsed_s:.2f} s "
                      f"{result.error}", flush=True)
    text = table(rows)
    print()
    print(text)
    print(f"\n(P: probability that the preset's waits outlast the outage, at least "
          f"{CONFIDENCE:.0%} required; runs: real servers, default settings)")
    if not args.quick:
        publish(text)
        if chart(rows, CHART):
            print(f"wrote {CHART.relative_to(ROOT)}")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
