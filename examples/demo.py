"""`make demo`: a faulty local HTTP service called through `brace.http.client()`.

A small server on 127.0.0.1 (a free port) misbehaves on purpose, one path per scenario:
503s, a 429 with Retry-After, a connection reset, POSTs with and without an
Idempotency-Key, and an outage behind a circuit breaker. Every brace event is printed as
it happens; a summary compares the calls made with the requests the server received.

Needs only brace's runtime dependencies (httpx, structlog, tenacity, pybreaker).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import structlog

import brace

# Short waits keep the demo quick.
FAST = {"initial": 0.05, "max_wait": 0.2}
# A server's Retry-After is honoured in full, whatever max_wait says (it caps the backoff).
PATIENT = {"initial": 0.05, "max_wait": 0.2}
BREAKER = "demo-inventory"
RESET_TIMEOUT = 0.5  # how long the open breaker refuses calls before one trial

events: Counter[str] = Counter()
service_address = "127.0.0.1:0"  # set once the server listens


@brace.observe
def count_event(event: str, fields: dict[str, Any]) -> None:
    """Count brace's events as they happen (an observer; not by reading the output)."""
    events[event] += 1


def render(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """`  event  key=value ...`, fields sorted; the service's random port printed as <port>."""
    name = event_dict.pop("event")
    parts = []
    for key, value in sorted(event_dict.items()):
        text = str(value).replace(service_address, "127.0.0.1:<port>")
        parts.append(f"{key}={text!r}" if " " in text else f"{key}={text}")
    return f"  {name:<22} {' '.join(parts)}"


structlog.configure(processors=[render], logger_factory=structlog.PrintLoggerFactory(sys.stdout))


class Service(BaseHTTPRequestHandler):
    """Scripted answers per path: request n gets the script's n-th answer, the last repeats."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    scripts: ClassVar[dict[str, list[int | str]]] = {
        "/flaky": [503, 503, 200],
        "/limited": [429, 200],
        "/reset": ["reset", 200],
        "/orders": [503],
        "/payments": [503, 200],
        "/inventory": [503],
    }
    requests: ClassVar[Counter[str]] = Counter()  # "METHOD /path" -> requests received
    keyless_posts: ClassVar[Counter[str]] = Counter()  # path -> POSTs without Idempotency-Key
    arrivals: ClassVar[dict[str, list[float]]] = {}  # path -> monotonic arrival times

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.requests[f"{self.command} {self.path}"] += 1
            if self.command == "POST" and "Idempotency-Key" not in self.headers:
                self.keyless_posts[self.path] += 1
            times = self.arrivals.setdefault(self.path, [])
            times.append(time.monotonic())
            script = self.scripts.get(self.path, [404])
            answer = script[min(len(times), len(script)) - 1]
        if answer == "reset":
            # Not a byte of response: the client sees the connection drop.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        status = int(answer)
        body = b"ok" if status == 200 else b"try later"
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Keep the output to brace's events and the scenarios' lines."""


class Demo:
    """The scenarios, their checks, and per-scenario counts for the summary."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.calls = 0
        self.failures: list[str] = []
        self.columns: list[tuple[str, dict[str, int]]] = []

    def client(self, policy: brace.Policy) -> httpx.Client:
        # trust_env=False: no proxy from the environment between us and 127.0.0.1.
        return policy.client(base_url=self.base_url, timeout=2, trust_env=False)

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok' if ok else 'FAILED'}: {what}")
        if not ok:
            self.failures.append(what)

    def call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        self.calls += 1
        return send()

    def counts(self) -> dict[str, int]:
        return {
            "calls made": self.calls,
            "requests the server received": sum(Service.requests.values()),
            "retries (retry.scheduled)": events["retry.scheduled"],
            # a POST without a key must reach the server once, whatever happened
            "duplicates (keyless POSTs resent)": sum(n - 1 for n in
                                                     Service.keyless_posts.values()),
            "breaker transitions": events["breaker.state_changed"],
        }

    def scenario(self, column: str, title: str, run: Callable[[], None]) -> None:
        print(f"\n{column}) {title}")
        before = self.counts()
        run()
        after = self.counts()
        self.columns.append((column, {key: after[key] - before[key] for key in after}))

    def run(self) -> None:
        with self.client(brace.http(**FAST)) as client, \
                self.client(brace.http(**PATIENT)) as patient:
            self.scenario("a", "GET /flaky answers 503, 503, then 200",
                          lambda: self.retried_503(client))
            self.scenario("b", "GET /limited answers 429 with Retry-After: 1, then 200",
                          lambda: self.retry_after(patient))
            self.scenario("c", "GET /reset drops the connection without answering, then 200",
                          lambda: self.connection_reset(client))
            self.scenario("d", "POST /orders (no Idempotency-Key) and POST /payments "
                               "(with one) answer 503", lambda: self.posts(client))
        self.scenario("e", f"GET /inventory is down (always 503), behind breaker {BREAKER!r}",
                      self.outage)

    def retried_503(self, client: httpx.Client) -> None:
        r = self.call(lambda: client.get("/flaky"))
        seen = Service.requests["GET /flaky"]
        print(f"  GET /flaky -> {r.status_code} after {seen} requests")
        self.check(r.status_code == 200 and seen == 3, "one call, three requests, 200")

    def retry_after(self, client: httpx.Client) -> None:
        r = self.call(lambda: client.get("/limited"))
        first, second = Service.arrivals["/limited"][:2]
        print(f"  GET /limited -> {r.status_code}; the retry reached the server "
              f"{second - first:.2f} s after the first request")
        self.check(r.status_code == 200 and second - first >= 1.0,
                   "the retry waited for the server's Retry-After: 1")

    def connection_reset(self, client: httpx.Client) -> None:
        r = self.call(lambda: client.get("/reset"))
        seen = Service.requests["GET /reset"]
        print(f"  GET /reset -> {r.status_code} after {seen} requests")
        self.check(r.status_code == 200 and seen == 2, "the dropped connection was retried")

    def posts(self, client: httpx.Client) -> None:
        r = self.call(lambda: client.post("/orders", json={"sku": 42}))
        seen = Service.requests["POST /orders"]
        print(f"  POST /orders without a key -> {r.status_code}; the server saw {seen} POST")
        self.check(r.status_code == 503 and seen == 1,
                   "not resent: it may have been processed; the caller gets the 503")
        r = self.call(lambda: client.post("/payments", json={"cents": 100},
                                          headers={"Idempotency-Key": "order-42"}))
        seen = Service.requests["POST /payments"]
        print(f"  POST /payments with a key -> {r.status_code}; the server saw {seen} POSTs")
        self.check(r.status_code == 200 and seen == 2,
                   "resent: the key lets the server drop a duplicate")

    def outage(self) -> None:
        # The breaker is configured once, by name; the policy refers to it by that name.
        brace.breaker(BREAKER, fail_max=3, reset_timeout=RESET_TIMEOUT)
        calls, outcomes = 4, []
        with self.client(brace.http(breaker=BREAKER, attempts=2, **FAST)) as client:
            for n in range(1, calls + 1):
                try:
                    outcome = str(self.call(lambda: client.get("/inventory")).status_code)
                except brace.CircuitOpenError as exc:
                    outcome = type(exc).__name__
                outcomes.append(outcome)
                print(f"  call {n}: {outcome}")
            seen = Service.requests["GET /inventory"]
            print(f"  {calls} calls, {seen} requests reached the server; "
                  f"breaker {BREAKER}: {brace.breakers()[BREAKER].state}")
            self.check(outcomes[-2:] == ["CircuitOpenError"] * 2 and seen == 3,
                       "the breaker opened; later calls failed fast, sending nothing")

            Service.scripts["/inventory"] = [200]
            time.sleep(RESET_TIMEOUT + 0.05)
            r = self.call(lambda: client.get("/inventory"))
            print(f"  the service is back; after {RESET_TIMEOUT} s one trial call -> "
                  f"{r.status_code}; breaker {BREAKER}: {brace.breakers()[BREAKER].state}")
            self.check(r.status_code == 200 and brace.breakers()[BREAKER].state == "closed",
                       "the trial call succeeded and closed the breaker")

    def summary(self) -> None:
        total = self.counts()
        header = ["", *(column for column, _ in self.columns), "total"]
        rows = [[key, *(str(counts[key]) for _, counts in self.columns), str(total[key])]
                for key in total]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        print("\nsummary")
        for row in (header, *rows):
            cells = [row[0].ljust(widths[0])] + [cell.rjust(max(widths[i], 2))
                                                 for i, cell in enumerate(row) if i]
            print("  " + "  ".join(cells).rstrip())
        self.check(total["duplicates (keyless POSTs resent)"] == 0,
                   "no POST without an Idempotency-Key was sent twice")


def main() -> int:
    global service_address
    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service_address = f"127.0.0.1:{server.server_address[1]}"
    demo = Demo(f"http://{service_address}")
    started = time.monotonic()
    try:
        demo.run()
        demo.summary()
    finally:
        server.shutdown()
        server.server_close()
    print(f"\ndone in {time.monotonic() - started:.1f} s")
    if demo.failures:
        print(f"demo FAILED: {'; '.join(demo.failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
