"""brace.metrics: a real prometheus_client registry served over HTTP on 127.0.0.1 and
scraped, and the OpenTelemetry SDK with in-memory readers and exporters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

import brace
from brace.testing import no_waits
from tests.fault_server import FaultServer, reply


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class Scraper:
    """A registry served by prometheus_client's own HTTP server, scraped like Prometheus."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # prometheus_client's WSGI app in a stdlib server polling every 20 ms
        # (start_http_server's polls every 0.5 s, which every shutdown waits out).
        self.server = make_server("127.0.0.1", 0, make_wsgi_app(self.registry),
                                  handler_class=_QuietHandler)
        self.port = int(self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", trust_env=False).text
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name.startswith("brace_")}

    def value(self, name: str, **labels: str) -> float:
        return self.samples().get((name, tuple(sorted(labels.items()))), 0.0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def scraper(brace_reset_breakers: None, brace_reset_budgets: None) -> Iterator[Scraper]:
    scraper = Scraper()
    observer = brace.metrics.prometheus(registry=scraper.registry)
    try:
        with no_waits():
            yield scraper
    finally:
        brace.unobserve(observer)
        scraper.close()


def test_prometheus_counts_every_kind_of_event_exactly(scraper: Scraper) -> None:
    calls = 0

    @brace.network
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert flaky() == "ok"
    name = f"{flaky.__module__}.{flaky.__qualname__}"
    retries = {"preset": "network", "callable": name, "error_type": "ConnectionResetError"}
    assert scraper.value("brace_retries_total", **retries) == 2
    assert scraper.value("brace_recovered_total", preset="network", callable=name) == 1

    @brace.interactive
    def down() -> None:
        raise TimeoutError("no answer")

    with pytest.raises(TimeoutError):
        down()
    down_name = f"{down.__module__}.{down.__qualname__}"
    assert scraper.value("brace_gave_up_total", preset="interactive", callable=down_name,
                         reason="attempts") == 1

    brace.breaker("metrics-dep", fail_max=2, reset_timeout=60)

    @brace.network(attempts=1, breaker="metrics-dep")
    def dependency() -> None:
        raise ConnectionRefusedError("refused")

    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            dependency()
    assert scraper.value("brace_breaker_state", breaker="metrics-dep",
                         brace_breaker_state="open") == 1
    assert scraper.value("brace_breaker_state", breaker="metrics-dep",
                         brace_breaker_state="closed") == 0
    for _ in range(3):
        with pytest.raises(brace.CircuitOpenError):
            dependency()
    assert scraper.value("brace_breaker_rejected_total", breaker="metrics-dep") == 3

    brace.budget("metrics-budget", ratio=0, min_per_s=0.1, window=10)  # one retry

    @brace.network(budget="metrics-budget")
    def spending() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            spending()
    assert scraper.value("brace_budget_exhausted_total", budget="metrics-budget") == 2

    @brace.network(attempts=2, fallback="cached")
    def degraded() -> str:
        raise ConnectionError("down")

    assert degraded() == "cached"
    degraded_name = f"{degraded.__module__}.{degraded.__qualname__}"
    assert scraper.value("brace_fallbacks_total", preset="network", callable=degraded_name,
                         reason="retries_exhausted") == 1

    answered = asyncio.Event()

    @brace.network(hedge_after=0.01)
    async def hedged() -> str:
        if answered.is_set():
            return "hedge"
        answered.set()
        await asyncio.sleep(5)  # cancelled when the hedge answers
        return "slow"

    assert asyncio.run(hedged()) == "hedge"
    assert scraper.value("brace_hedges_total", preset="network",
                         callable=f"{hedged.__module__}.{hedged.__qualname__}") == 1

    # A throttle's refusals, and an adaptive bulkhead's limit as it learns.
    throttle = brace.throttle("metrics-throttle", window=60)
    for _ in range(1000):  # bounded: the dependency failed every attempt of the window
        throttle.record(False)
    refusals = 0
    for _ in range(20):  # bounded
        try:
            brace.network(attempts=1, throttle="metrics-throttle")(lambda: "ok")()
        except brace.ThrottledError:
            refusals += 1
    assert refusals >= 15
    assert scraper.value("brace_throttle_rejected_total", throttle="metrics-throttle") == refusals
    bulkhead = brace.bulkhead("metrics-bulkhead", adaptive=True, max_concurrent=64)
    for _ in range(4):  # one window at the first limit, with no queue: it grows
        assert bulkhead.try_acquire()
    for _ in range(4):
        bulkhead.release()
        bulkhead.sample(0.01, False)
    assert bulkhead.limit > 4
    assert scraper.value("brace_bulkhead_limit", bulkhead="metrics-bulkhead") == bulkhead.limit


def test_transport_labels_stay_bounded(scraper: Scraper, fault_server: FaultServer) -> None:
    for i in range(200):
        fault_server.script(f"/item/{i}", reply(503), reply(200))
    # Every request fails once: half the calls, which would open the per-authority breaker.
    with brace.http.client(trust_env=False, breaker=None) as client:
        for i in range(200):
            assert client.get(fault_server.url_for(f"/item/{i}?q={i}&token=t{i}")).is_success
    labels = {dict(labels)["callable"] for (name, labels) in scraper.samples()
              if name == "brace_retries_total"}
    assert labels == {f"GET http://127.0.0.1:{fault_server.port}"}
    assert scraper.value("brace_retries_total", preset="http", callable=labels.pop(),
                         error_type="HTTP 503") == 200


def test_installing_twice_on_one_registry_is_one_observer() -> None:
    registry = CollectorRegistry()
    first = brace.metrics.prometheus(registry=registry)
    try:
        assert brace.metrics.prometheus(registry=registry) is first
    finally:
        brace.unobserve(first)


def test_opentelemetry_counters_and_span_events(brace_reset_breakers: None) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    observer = brace.metrics.opentelemetry(meter_provider=meters, tracer_provider=tracers)
    calls = 0

    @brace.network
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset")
        return "ok"

    try:
        with no_waits(), tracers.get_tracer("test").start_as_current_span("checkout"):
            assert flaky() == "ok"
    finally:
        brace.unobserve(observer)
    counted: dict[str, Any] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    counted[metric.name] = (point.value, dict(point.attributes))
    name = f"{flaky.__module__}.{flaky.__qualname__}"
    assert counted["brace.retries"] == (2, {"preset": "network", "callable": name,
                                            "error_type": "ConnectionResetError"})
    assert counted["brace.recovered"] == (1, {"preset": "network", "callable": name})
    [span] = exporter.get_finished_spans()
    assert span.name == "checkout"
    assert [event.name for event in span.events] == [
        "retry.scheduled", "retry.scheduled", "retry.succeeded"]
    assert span.events[0].attributes["wait_source"] == "backoff"
