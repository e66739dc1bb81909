"""Every secret shape of tests/secret_shapes.py, through every channel text leaves by.

A function under ``brace.network()`` raises an error whose message is the shape (framed by
seeded, harmless context), inside ``brace.testing.no_waits()``: ``retry.scheduled`` and
``retry.gave_up`` carry it. The same shape names a ``retrying()`` block, so it is also the
``callable`` metric label. What leaves is then read where an operator would read it:

(a) structlog configured with ``JSONRenderer`` into a buffer (and, without structlog
configured, the standard library's logger ``brace``); (b) a ``brace.observe``
observer; (c) the Prometheus exposition served by prometheus_client on 127.0.0.1, scraped
over HTTP; (d) the OpenTelemetry SDK's in-memory span exporter and metric reader; (e) the
CLI's stdout and stderr, with the shape's secret as the password of ``--redis-url``.

A channel that only carries names still gets the shapes through the names it carries:
``callable`` labels, breaker names, and hosts (a ``raise_for_status()`` URL).
"""

from __future__ import annotations

import io
import json
import logging
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

import brace
from brace.__main__ import main
from brace.testing import no_waits
from tests.fault_server import FaultServer, reply
from tests.secret_shapes import SHAPES, Shape, leaked

ROOT = Path(__file__).resolve().parent.parent
SEED = 23
# Harmless context around each shape, chosen by a seeded draw: a shape must be found
# wherever it sits in a message.
FRAMES = [("", ""), ("upstream said: ", ""), ("", " (attempt 2 of 2)"),
          ("RuntimeError: ", "\nsee the server log")]
_draw = random.Random(SEED)
FRAMED = [(shape, *_draw.choice(FRAMES)) for shape in SHAPES]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class Exposition:
    """prometheus_client's WSGI app on 127.0.0.1, serving whichever registry is current."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            return make_wsgi_app(self.registry)(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        return httpx.get(url, trust_env=False).text

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def exposition() -> Iterator[Exposition]:
    served = Exposition()
    try:
        yield served
    finally:
        served.close()


class Channels:
    """Every channel, listening: call ``texts()`` for what each one let out."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition
        exposition.registry = CollectorRegistry()
        self.log = io.StringIO()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.observers = [
            brace.observe(lambda event, fields: self.seen.append((event, fields))),
            brace.metrics.prometheus(registry=exposition.registry),
            brace.metrics.opentelemetry(meter_provider=self.meters,
                                        tracer_provider=self.tracers)]

    def close(self) -> None:
        for observer in self.observers:
            brace.unobserve(observer)
        self.meters.shutdown()
        self.tracers.shutdown()

    def texts(self) -> dict[str, list[str]]:
        """Each channel's output, raw and decoded (JSON, label and attribute values)."""
        log = self.log.getvalue()
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]
        scraped = self.exposition.scrape()
        labels = [value for family in text_string_to_metric_families(scraped)
                  for sample in family.samples for value in sample.labels.values()]
        spans = [str(value) for span in self.spans.get_finished_spans()
                 for event in span.events for value in (event.attributes or {}).values()]
        points = [str(value)
                  for resource in self.reader.get_metrics_data().resource_metrics
                  for scope in resource.scope_metrics for metric in scope.metrics
                  for point in metric.data.data_points for value in point.attributes.values()]
        return {
            "structlog": [log, *(str(v) for line in lines for v in line.values())],
            "observer": [repr(self.seen), *(str(v) for _, f in self.seen for v in f.values())],
            "prometheus": [scraped, *labels],
            "opentelemetry": [*spans, *points],
        }


@pytest.fixture
def channels(exposition: Exposition) -> Iterator[Channels]:
    configured, config = structlog.is_configured(), structlog.get_config()
    listening = Channels(exposition)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=listening.log),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False)
    try:
        yield listening
    finally:
        if configured:
            structlog.configure(**config)
        else:  # as found: events go to the stdlib logger while nobody configured structlog
            structlog.reset_defaults()
        listening.close()


def assert_nothing_leaked(outputs: dict[str, list[str]], secret: str) -> None:
    for channel, texts in outputs.items():
        for text in texts:
            assert not leaked(secret, text), f"{channel} let out {leaked(secret, text)}"


def fail_with(message: str) -> Any:
    def call_upstream() -> None:
        raise ConnectionError(message)

    return call_upstream


@pytest.mark.parametrize(("shape", "before", "after"), FRAMED,
                         ids=[shape.id for shape, _, _ in FRAMED])
def test_no_shape_leaves_through_any_channel(channels: Channels, shape: Shape, before: str,
                                             after: str) -> None:
    text = f"{before}{shape.text}{after}"
    fn = brace.network(attempts=2)(fail_with(text))
    with channels.tracers.get_tracer("test").start_as_current_span("request"), no_waits():
        with pytest.raises(ConnectionError):
            fn()
        with pytest.raises(ConnectionError):  # the shape as the callable's name (a label)
            for attempt in brace.network(attempts=2).retrying(name=text):
                with attempt:
                    raise ConnectionError("down")
    assert [event for event, _ in channels.seen] == [
        "retry.scheduled", "retry.gave_up", "retry.scheduled", "retry.gave_up"]
    outputs = channels.texts()
    assert_nothing_leaked(outputs, shape.secret)
    # The context survives where the error and the callable name are carried.
    for channel in ("structlog", "observer", "opentelemetry", "prometheus"):
        assert any(shape.keep in t for t in outputs[channel]), (channel, shape.keep)


@pytest.mark.parametrize(("shape", "before", "after"), FRAMED,
                         ids=[shape.id for shape, _, _ in FRAMED])
def test_no_shape_leaves_through_the_stdlib_logger(shape: Shape, before: str,
                                                   after: str) -> None:
    # Without structlog configured, events go to the standard library's logger "brace".
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    records: list[logging.LogRecord] = []
    handler.addFilter(lambda record: records.append(record) or True)
    logger = logging.getLogger("brace")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    configured, config = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    try:
        with no_waits(), pytest.raises(ConnectionError):
            brace.network(attempts=2)(fail_with(f"{before}{shape.text}{after}"))()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        if configured:
            structlog.configure(**config)
    fields = [str(value) for record in records
              for value in getattr(record, "brace_fields", {}).values()]
    assert len(records) == 2 and fields
    assert_nothing_leaked({"logging": [buffer.getvalue(), *fields]}, shape.secret)
    assert shape.keep in buffer.getvalue()


# -- channels that carry names ---------------------------------------------------------------

NAMED = [shape for shape in SHAPES if "\n" not in shape.text][::4]


@pytest.mark.parametrize("shape", NAMED, ids=[shape.id for shape in NAMED])
def test_no_shape_leaves_through_a_breaker_name(channels: Channels, shape: Shape) -> None:
    name = f"db {shape.text}"
    fn = brace.network(attempts=1, breaker=name)(fail_with("down"))
    brace.breaker(name, fail_max=1)
    with channels.tracers.get_tracer("test").start_as_current_span("request"), no_waits():
        for _ in range(2):
            with pytest.raises((ConnectionError, brace.CircuitOpenError)):
                fn()
    assert "breaker.state_changed" in [event for event, _ in channels.seen]
    assert_nothing_leaked(channels.texts(), shape.secret)


@pytest.mark.parametrize("shape", NAMED, ids=[shape.id for shape in NAMED])
def test_breaker_names_are_redacted_in_metric_labels(exposition: Exposition,
                                                     shape: Shape) -> None:
    name = f"db {shape.text}"
    registry = exposition.registry = CollectorRegistry()
    brace.breaker(name, fail_max=1)  # known before the observer: its state is a label at once
    observer = brace.metrics.prometheus(registry=registry)
    try:
        fn = brace.network(attempts=1, breaker=name)(fail_with("down"))
        with no_waits():
            for _ in range(2):
                with pytest.raises((ConnectionError, brace.CircuitOpenError)):
                    fn()
    finally:
        brace.unobserve(observer)
    scraped = exposition.scrape()
    assert 'brace_breaker_state{brace_breaker_state="open",breaker="db ' in scraped
    assert not leaked(shape.secret, scraped)


def test_urls_of_raise_for_status_leave_without_their_secrets(channels: Channels,
                                                              fault_server: FaultServer) -> None:
    # httpx quotes the whole URL in HTTPStatusError; brace's transport names the request by
    # METHOD scheme://host:port only. Both are read, with userinfo, a token in the query, a
    # webhook secret in the path.
    secrets = ["hunter2 pw", "tk-query-91", "Zq8WmX2vK7pL4nR9sT1uY6bC"]
    fault_server.script("/hooks/Zq8WmX2vK7pL4nR9sT1uY6bC", reply(503))
    url = (f"http://app:hunter2 pw@127.0.0.1:{fault_server.port}/hooks/"
           f"Zq8WmX2vK7pL4nR9sT1uY6bC?token=tk-query-91&page=2")

    @brace.http(attempts=2)
    def notify() -> None:
        httpx.get(url, trust_env=False).raise_for_status()

    with channels.tracers.get_tracer("test").start_as_current_span("request"), no_waits():
        with pytest.raises(httpx.HTTPStatusError):
            notify()
        with brace.http(attempts=2).client(trust_env=False) as client:
            assert client.get(url).status_code == 503
    outputs = channels.texts()
    for secret in secrets:
        assert_nothing_leaked(outputs, secret)
    assert any(f"127.0.0.1:{fault_server.port}/hooks/***?token=***&page=2" in text
               for text in outputs["observer"])
    assert f'callable="GET http://127.0.0.1:{fault_server.port}"' in outputs["prometheus"][0]


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.id for shape in SHAPES])
def test_cli_never_prints_a_password_of_its_redis_url(capsys: pytest.CaptureFixture[str],
                                                      closed_port: int, shape: Shape) -> None:
    url = f"redis://app:{shape.secret}@127.0.0.1:{closed_port}/0"
    for argv in (["breakers", "--redis-url", url],
                 ["breakers", "open", "payments", "--redis-url", url, "--format", "json"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("brace: error: Redis at redis://***@127.0.0.1:")
        assert not leaked(shape.secret, out + err), (out, err)


# Passwords drawn from the characters that broke URL parsing: quotes, space, <, @, /, #...
_NASTY = "'\" <>@/#?:%&=;,\\" + "abcXYZ019-_.~"
PASSWORDS = ["".join(random.Random(SEED + i).choices(_NASTY, k=14)) + f"Pw{i}x"
             for i in range(6)]


@pytest.mark.parametrize("password", PASSWORDS)
def test_python_dash_m_brace_never_prints_a_password(closed_port: int, password: str) -> None:
    url = f"redis://app:{password}@127.0.0.1:{closed_port}/0"
    result = subprocess.run([sys.executable, "-m", "brace", "breakers", "--redis-url", url],
                            capture_output=True, text=True, check=False, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("brace: error: Redis at redis://***@")
    assert not leaked(password, result.stdout + result.stderr), result.stderr
    assert f"Pw{PASSWORDS.index(password)}x" not in result.stderr
