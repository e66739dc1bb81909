"""Prometheus and OpenTelemetry observers: dashboards and alerts from brace's events.

Each function installs an observer (``brace.observe``) that turns events into metrics;
``prometheus_client`` and ``opentelemetry`` are imported only when it is called
(``pip install 'brace[prometheus]'`` / ``'brace[otel]'``). Labels stay bounded: a
transport's ``callable`` is ``METHOD scheme://host[:port]``, never a path or query. Every
label and attribute passes through ``brace._redact`` (a breaker named after a DSN keeps
its password to itself).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from brace import _breakers
from brace import _events as ev
from brace._redact import redact

__all__ = ["opentelemetry", "prometheus"]

_lock = threading.Lock()
_prometheus: dict[int, tuple[Any, ev.Observer]] = {}  # registry id -> (registry, observer)


def _label(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return _redacted(text) if len(text) <= _CACHED_LABEL else redact(text)


_CACHED_LABEL = 256  # labels up to this long are redacted once each (1024 of them at most)


@functools.lru_cache(maxsize=1024)
def _redacted(text: str) -> str:
    # Labels repeat (a few callables, breakers, presets): each is redacted once.
    return redact(text)


def prometheus(registry: Any = None) -> ev.Observer:
    """Export brace's events as Prometheus metrics in ``registry`` (default: the global one).

    Metrics: ``brace_retries_total{preset,callable,error_type}``,
    ``brace_gave_up_total{preset,callable,reason}``,
    ``brace_recovered_total{preset,callable}``,
    ``brace_breaker_state{breaker,brace_breaker_state}`` (closed, half-open, open),
    ``brace_breaker_rejected_total{breaker}``, ``brace_budget_exhausted_total{budget}``,
    ``brace_fallbacks_total{preset,callable,reason}``, ``brace_hedges_total{preset,callable}``,
    ``brace_throttle_rejected_total{throttle}``, ``brace_bulkhead_limit{bulkhead}`` (an
    adaptive bulkhead's limit, as last reported). Installing twice on one registry
    returns the observer already installed. Returns the observer (``brace.unobserve`` it to
    stop).

    Raises:
        ImportError: prometheus_client is not installed.
    """
    try:
        import prometheus_client as prom
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("brace.metrics.prometheus() needs prometheus_client: "
                          "pip install 'brace[prometheus]'") from exc
    registry = prom.REGISTRY if registry is None else registry
    with _lock:
        known = _prometheus.get(id(registry))
        if known is not None and known[0] is registry:
            return ev.observe(known[1])  # installed again if it was unobserved
        options: dict[str, Any] = {"registry": registry}
        retries = prom.Counter("brace_retries", "Retries scheduled: an attempt failed and "
                               "another follows.", ["preset", "callable", "error_type"],
                               **options)
        gave_up = prom.Counter("brace_gave_up", "Calls that ended in failure after brace "
                               "stopped retrying, by reason.", ["preset", "callable", "reason"],
                               **options)
        recovered = prom.Counter("brace_recovered", "Calls that succeeded after at least one "
                                 "retry.", ["preset", "callable"], **options)
        state = prom.Enum("brace_breaker_state", "Each circuit breaker's state.", ["breaker"],
                          states=["closed", "half-open", "open"], **options)
        rejected = prom.Counter("brace_breaker_rejected", "Calls a circuit breaker refused "
                                "without running them.", ["breaker"], **options)
        budget = prom.Counter("brace_budget_exhausted", "Retries a retry budget refused.",
                              ["budget"], **options)
        fallbacks = prom.Counter("brace_fallbacks", "Fallback values returned instead of a "
                                 "call's result, by reason.", ["preset", "callable", "reason"],
                                 **options)
        hedges = prom.Counter("brace_hedges", "Hedges started: copies racing an attempt "
                              "that had not answered.", ["preset", "callable"], **options)
        throttled = prom.Counter("brace_throttle_rejected", "Attempts a throttle refused "
                                 "locally.", ["throttle"], **options)
        limit = prom.Gauge("brace_bulkhead_limit", "An adaptive bulkhead's learned limit.",
                           ["bulkhead"], **options)
        for name, info in _breakers.breakers().items():
            state.labels(_label(name)).state(info.state)

        def observer(event: str, fields: dict[str, Any]) -> None:
            get = fields.get
            if event == ev.RETRY_SCHEDULED:
                retries.labels(_label(get("preset")), _label(get("callable")),
                               _label(get("error_type"))).inc()
            elif event == ev.RETRY_GAVE_UP:
                gave_up.labels(_label(get("preset")), _label(get("callable")),
                               _label(get("reason"))).inc()
            elif event == ev.RETRY_SUCCEEDED:
                recovered.labels(_label(get("preset")), _label(get("callable"))).inc()
            elif event == ev.BREAKER_STATE_CHANGED:
                state.labels(_label(get("breaker"))).state(_label(get("new")))
            elif event == ev.BREAKER_REJECTED:
                rejected.labels(_label(get("breaker"))).inc()
            elif event == ev.RETRY_BUDGET_EXHAUSTED:
                budget.labels(_label(get("budget"))).inc()
            elif event == ev.DEGRADED:
                fallbacks.labels(_label(get("preset")), _label(get("callable")),
                                 _label(get("reason"))).inc()
            elif event == ev.HEDGE_STARTED:
                hedges.labels(_label(get("preset")), _label(get("callable"))).inc()
            elif event == ev.THROTTLE_REJECTED:
                throttled.labels(_label(get("throttle"))).inc()
            elif event == ev.BULKHEAD_LIMIT_CHANGED:
                limit.labels(_label(get("bulkhead"))).set(fields["new"])

        _prometheus[id(registry)] = (registry, observer)
    return ev.observe(observer)


# event -> (counter name, description, attribute keys)
_OTEL_COUNTERS = {
    ev.RETRY_SCHEDULED: ("brace.retries", "Retries scheduled",
                         ("preset", "callable", "error_type")),
    ev.RETRY_GAVE_UP: ("brace.gave_up", "Calls that ended in failure after brace stopped "
                       "retrying", ("preset", "callable", "reason")),
    ev.RETRY_SUCCEEDED: ("brace.recovered", "Calls that succeeded after a retry",
                         ("preset", "callable")),
    ev.BREAKER_REJECTED: ("brace.breaker.rejected", "Calls a circuit breaker refused",
                          ("breaker",)),
    ev.RETRY_BUDGET_EXHAUSTED: ("brace.budget.exhausted", "Retries a retry budget refused",
                                ("budget",)),
    ev.DEGRADED: ("brace.fallbacks", "Fallback values returned",
                  ("preset", "callable", "reason")),
    ev.HEDGE_STARTED: ("brace.hedges", "Hedges started", ("preset", "callable")),
    ev.THROTTLE_REJECTED: ("brace.throttle.rejected", "Attempts a throttle refused locally",
                           ("throttle",)),
}


def opentelemetry(meter_provider: Any = None, tracer_provider: Any = None) -> ev.Observer:
    """Export brace's events through OpenTelemetry: counters, and span events.

    Counters (meter ``brace``): ``brace.retries``, ``brace.gave_up``, ``brace.recovered``,
    ``brace.breaker.rejected``, ``brace.budget.exhausted``, ``brace.fallbacks``,
    ``brace.hedges``, ``brace.throttle.rejected``, with the
    Prometheus metrics' labels as attributes. Every event is also added as a span event to
    the current span when it is recording; with ``tracer_provider``, only to spans of that
    provider. Defaults are the global providers. Returns the observer.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("brace.metrics.opentelemetry() needs opentelemetry-api: "
                          "pip install 'brace[otel]'") from exc
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    meter = provider.get_meter("brace")
    counters = {event: (meter.create_counter(name, unit="1", description=description), keys)
                for event, (name, description, keys) in _OTEL_COUNTERS.items()}
    resource = getattr(tracer_provider, "resource", None)

    def observer(event: str, fields: dict[str, Any]) -> None:
        counted = counters.get(event)
        if counted is not None:
            counter, keys = counted
            counter.add(1, {key: _label(fields[key]) for key in keys
                            if fields.get(key) is not None})
        span = trace.get_current_span()
        if span.is_recording() and (tracer_provider is None
                                    or getattr(span, "resource", None) is resource):
            span.add_event(event, {key: _label(value) if isinstance(value, str) else value
                                   for key, value in fields.items()
                                   if isinstance(value, (str, bool, int, float))})

    return ev.observe(observer)
