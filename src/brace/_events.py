"""Every event brace emits, named in one place, and the one place that emits them.

Each event goes where the application's logs go, and to every observer installed with
``brace.observe``, with the same fields: through structlog (logger ``brace``) once the
application configured structlog, otherwise through the standard library's ``logging``
logger ``brace`` (a library never prints on its own; stamina does the same). Events carry
names, numbers and a redacted one-line description of the error; call arguments, headers
and results are never logged (a ``repr(args)`` leaks secrets), and every text passes
through ``brace._redact``. An event is built only when someone listens: an observer, or
the logger at that level.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from brace import predicates
from brace._outcome import is_throttling
from brace._redact import clean as _clean
from brace._redact import redact

if TYPE_CHECKING:
    from tenacity import Future

__all__ = [
    "BREAKER_REJECTED",
    "BREAKER_STATE_CHANGED",
    "BREAKER_STORAGE_ERROR",
    "BREAKER_STORAGE_RECOVERED",
    "BULKHEAD_LIMIT_CHANGED",
    "BULKHEAD_REJECTED",
    "DEADLINE_MALFORMED",
    "DEGRADED",
    "HEDGE_STARTED",
    "OBSERVER_FAILED",
    "RATE_LIMIT_RATE_CHANGED",
    "RATE_LIMIT_REJECTED",
    "RETRY_AFTER_IGNORED",
    "RETRY_BUDGET_EXHAUSTED",
    "RETRY_GAVE_UP",
    "RETRY_LAYERED",
    "RETRY_SCHEDULED",
    "RETRY_SKIPPED",
    "RETRY_SUCCEEDED",
    "THROTTLE_REJECTED",
    "Observer",
    "breaker_rejected",
    "breaker_state_changed",
    "breaker_storage_error",
    "breaker_storage_recovered",
    "bulkhead_limit_changed",
    "bulkhead_rejected",
    "deadline_malformed",
    "degraded",
    "describe_error",
    "describe_result",
    "hedge_started",
    "observe",
    "rate_limit_rate_changed",
    "rate_limit_rejected",
    "redact",
    "retry_after_ignored",
    "retry_budget_exhausted",
    "retry_gave_up",
    "retry_layered",
    "retry_scheduled",
    "retry_skipped",
    "retry_succeeded",
    "seconds",
    "throttle_rejected",
    "unobserve",
]

RETRY_SCHEDULED = "retry.scheduled"
RETRY_SKIPPED = "retry.skipped"
RETRY_AFTER_IGNORED = "retry_after.ignored"
RETRY_LAYERED = "retry.layered"
RETRY_GAVE_UP = "retry.gave_up"
RETRY_SUCCEEDED = "retry.succeeded"
RETRY_BUDGET_EXHAUSTED = "retry.budget_exhausted"
BREAKER_STATE_CHANGED = "breaker.state_changed"
BREAKER_REJECTED = "breaker.rejected"
BREAKER_STORAGE_ERROR = "breaker.storage_error"
BREAKER_STORAGE_RECOVERED = "breaker.storage_recovered"
DEGRADED = "degraded"
BULKHEAD_REJECTED = "bulkhead.rejected"
RATE_LIMIT_REJECTED = "rate_limit.rejected"
BULKHEAD_LIMIT_CHANGED = "bulkhead.limit_changed"
RATE_LIMIT_RATE_CHANGED = "rate_limit.rate_changed"
THROTTLE_REJECTED = "throttle.rejected"
HEDGE_STARTED = "hedge.started"
DEADLINE_MALFORMED = "deadline.malformed"
OBSERVER_FAILED = "observer.failed"

#: An observer: called with each event's name and fields.
Observer = Callable[[str, dict[str, Any]], object]

_log = structlog.get_logger("brace")
#: Where events go while the application has not configured structlog.
stdlib_logger = logging.getLogger("brace")
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
           logging.ERROR: "error"}
_observers: tuple[Observer, ...] = ()  # replaced whole, so emitting needs no lock
_failed: set[int] = set()  # observers whose failure was reported (once each)
_lock = threading.Lock()


def observe(callback: Observer) -> Observer:
    """Pass every brace event to ``callback(event, fields)``; return ``callback``.

    ``fields`` is a fresh dict with the fields structlog gets. An observer that raises is
    reported once (``observer.failed``) and never breaks the call. Observing twice is one
    observer. Usable as a decorator.

    Raises:
        TypeError: ``callback`` is not callable.
    """
    global _observers
    if not callable(callback):
        raise TypeError(f"observe() takes a callable(event, fields), got {callback!r}")
    with _lock:
        if callback not in _observers:
            _observers = (*_observers, callback)
    return callback


def unobserve(callback: Observer) -> None:
    """Stop passing events to ``callback`` (nothing happens if it was not observing)."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o != callback)
        _failed.discard(id(callback))


# The level below which each of structlog's filtering loggers drops events: fixed per class.
_floors: dict[Any, int] = {}
_STANDARD_LEVELS = frozenset((logging.NOTSET, *_LEVELS, logging.CRITICAL))


def _structlog_keeps(level: int, wrapper: Any) -> bool:
    """Whether structlog's configured ``wrapper`` class keeps events of ``level``."""
    floor = _floors.get(wrapper)
    if floor is not None:
        return level >= floor
    # With a filtering logger structlog may drop the level.
    effective = getattr(wrapper, "get_effective_level", None)
    if effective is None:
        return True
    try:
        # The filtering loggers' level is fixed per class (make_filtering_bound_logger).
        floor = effective(None)
        kept = bool(level >= floor)
    except Exception:  # a wrapper class whose level lives on its instances: keep the event
        return True
    # Remembered for structlog's own classes only: another class's level may change.
    if isinstance(floor, int) and floor in _STANDARD_LEVELS and wrapper is _filtering_class(floor):
        _floors[wrapper] = floor
    return kept


def _filtering_class(level: int) -> Any:
    try:
        return structlog.make_filtering_bound_logger(level)
    except Exception:  # an older structlog, or one that refuses the level: nothing to remember
        return None


# The structlog logger last assembled for brace's events, and what it was assembled from:
# (wrapper class, logger factory, processors, context class, sys.stdout, sys.stderr).
_assembled: list[tuple[tuple[Any, ...], Any] | None] = [None]


def _structlog_logger(config: dict[str, Any]) -> Any:
    """The ``brace`` logger structlog's ``config`` (``structlog.get_config()``) makes.

    Assembled once and kept while the configuration is the same objects (an in-place change
    to its processors list is seen by the kept logger too) and sys.stdout and sys.stderr
    are the same streams (structlog's print and write loggers take theirs when made):
    assembling a logger per event costs about as much as rendering the event.
    """
    wrapper, factory = config["wrapper_class"], config["logger_factory"]
    processors, context = config["processors"], config["context_class"]
    kept = _assembled[0]
    if kept is not None:
        made, logger = kept
        if (made[0] is wrapper and made[1] is factory and made[2] is processors
                and made[3] is context and made[4] is sys.stdout and made[5] is sys.stderr):
            return logger
    logger = _log.bind()  # the lazy proxy assembles a logger from the configuration now
    _assembled[0] = ((wrapper, factory, processors, context, sys.stdout, sys.stderr), logger)
    return logger


def _destination(level: int) -> tuple[dict[str, Any] | None, bool]:
    # structlog's configuration once the application configured it (else None: stdlib
    # logging), and whether that keeps an event of ``level``.
    config = structlog.get_config() if structlog.is_configured() else None
    logged = (_structlog_keeps(level, config["wrapper_class"]) if config is not None
              else stdlib_logger.isEnabledFor(level))
    return config, logged


def _emit(level: int, event: str, build: Callable[[], dict[str, Any]]) -> None:
    # The one place events leave brace: built only when someone listens.
    observers = _observers
    config, logged = _destination(level)
    if not observers and not logged:
        return
    fields = build()
    if logged:
        _log_event(level, event, fields, config)
    for observer in observers:
        try:
            observer(event, dict(fields))
        except Exception as exc:  # an observer's bug must never break the call
            if id(observer) not in _failed:
                _failed.add(id(observer))
                # To the logs only: the observers are what failed.
                config, logged = _destination(logging.ERROR)
                if logged:
                    _log_event(logging.ERROR, OBSERVER_FAILED, {
                        "observer": redact(repr(observer)), "event_name": event,
                        "error": describe_error(exc)}, config)


def _log_event(level: int, event: str, fields: dict[str, Any],
               config: dict[str, Any] | None) -> None:
    # Through structlog once the application configured it (``config``), else stdlib.
    if config is not None:
        getattr(_structlog_logger(config), _LEVELS[level])(event, **fields)
    else:
        # One line for any handler and format; the fields also ride on the record
        # (``record.brace_event``, ``record.brace_fields``) for structured handlers.
        stdlib_logger.log(level, "%s %s", event, _Line(fields),
                          extra={"brace_event": event, "brace_fields": fields})


class _Line:
    """``key=value`` pairs, formatted only if the record is emitted."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        # As structlog's console renders them: a text is quoted only when it must be.
        return " ".join(f"{key}={value}" if _bare(value) else f"{key}={value!r}"
                        for key, value in self.fields.items())


def _bare(value: object) -> bool:
    if not isinstance(value, str):
        return not isinstance(value, bytes)
    return bool(value) and not any(c.isspace() or c in "'\"=" for c in value)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, redacted.

    An HTTP status error says its status, reason and target (``HTTPStatusError: 503
    Service Unavailable for GET http://host/path``), not httpx's two-line message with its
    documentation link.
    """
    name = type(exc).__qualname__
    message = None
    if name == "HTTPStatusError":  # by name: httpx is not imported here
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        reason = getattr(response, "reason_phrase", None)
        if isinstance(status, int) and isinstance(reason, str):
            request = predicates.request_of(exc)
            target = "" if request is None else f" for {request.method} {request.url}"
            message = f"{status} {reason}{target}"
    if message is None:
        message = str(exc)
    text = redact(f"{name}: {message}" if message else name)  # line by line, then joined
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def seconds(value: float) -> float:
    """``round(value, 6)``, without its trip through decimal text (an event's costliest step).

    The same float, but for a value within a rounding error of a half-microsecond boundary.
    """
    try:
        return round(value * 1_000_000) / 1_000_000
    except (OverflowError, ValueError):  # inf, nan: as round() leaves them
        return value


def describe_result(result: object) -> str:
    """A retried result (e.g. a 503 response) by type and status: named, never repr'd."""
    status = getattr(result, "status_code", None)
    kind = type(result).__name__
    return f"result {kind}" + (f" status {status}" if isinstance(status, int) else "")


def _outcome_fields(outcome: Future | None,
                    fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add an outcome's ``error`` and ``error_type`` to ``fields``; return ``fields``.

    Also ``db_code`` and ``status`` when the outcome has them. In place: an event's fields
    are built as one dict (a new one when ``fields`` is None).
    """
    if fields is None:
        fields = {}
    if outcome is None:
        fields["error"] = fields["error_type"] = "none"
        return fields
    exc = outcome.exception()
    value: object = exc if exc is not None else outcome.result()
    status = predicates.status_of(value)
    if exc is not None:
        fields["error"] = describe_error(exc)
        fields["error_type"] = type(exc).__name__
        code = predicates.db_code(exc)
        if code is not None:
            fields["db_code"] = code
    else:
        fields["error"] = describe_result(value)
        fields["error_type"] = f"HTTP {status}" if status is not None else type(value).__name__
    if status is not None:
        fields["status"] = status
    if (status is not None or type(value).__module__ != "builtins") and is_throttling(value):
        fields["error_kind"] = "throttling"  # a 429, RESOURCE_EXHAUSTED, SlowDown ...
    chaos = sys.modules.get("brace._chaos")  # loaded once a chaos setting exists: no cycle
    if chaos is not None and chaos.is_injected(value):
        fields["injected"] = True  # brace.testing.chaos made this outcome
    return fields


def _name(callable_name: str | Callable[[], str] | None) -> str | None:
    if callable_name is None:
        return None
    name = callable_name if isinstance(callable_name, str) else callable_name()
    # Names repeat (one per function, host or preset): redaction remembers the clean ones,
    # and a name found there is returned without a call.
    return name if type(name) is str and name in _clean else redact(name)


def retry_scheduled(callable_name: str | Callable[[], str], preset: str, attempt: int,
                    wait_s: float, outcome: Future | None,
                    wait_source: str | Callable[[], str]) -> None:
    """Attempt ``attempt`` failed and another follows after ``wait_s`` seconds.

    ``wait_source`` says where the wait came from: ``backoff`` or ``retry_after``.
    """
    _emit(logging.WARNING, RETRY_SCHEDULED, lambda: _outcome_fields(outcome, {
        "callable": _name(callable_name), "preset": _name(preset), "attempt": attempt,
        "wait_s": seconds(wait_s), "wait_source": _name(wait_source)}))


def retry_skipped(callable_name: str | Callable[[], str], preset: str, attempt: int,
                  outcome: Future | None, reason: str) -> None:
    """A failure the policy would retry was not resent, and ``reason`` says why.

    ``not_idempotent``: a POST without an Idempotency-Key; ``streamed_body``: a request body
    that cannot be replayed.
    """
    _emit(logging.INFO, RETRY_SKIPPED, lambda: _outcome_fields(outcome, {
        "callable": _name(callable_name), "preset": _name(preset), "attempt": attempt,
        "reason": reason}))


def retry_after_ignored(callable_name: str | Callable[[], str], header: str) -> None:
    """A server's Retry-After (or retry-after-ms) was not a valid value: backoff applies.

    Reported once per policy (so once per client), with the header as sent (redacted, at
    most 100 characters).
    """
    _emit(logging.WARNING, RETRY_AFTER_IGNORED, lambda: {
        "callable": _name(callable_name), "header": redact(header[:100])})


def deadline_malformed(header: str, value: str) -> None:
    """An inbound request's deadline header was not a valid value: no deadline from it.

    Reported once per header name per process (``brace.web``), with the value as sent
    (redacted, at most 100 characters).
    """
    _emit(logging.WARNING, DEADLINE_MALFORMED, lambda: {
        "header": header, "value": redact(value[:100])})


def retry_layered(callable_name: str | Callable[[], str], preset: str, retried: str,
                  setting: str) -> None:
    """The client library under a policy retries too: attempts multiply.

    ``retried`` says how it was seen (``x-stainless-retry-count=2``: an OpenAI or Anthropic
    SDK resent a request), ``setting`` what to change so one layer retries. Reported once
    per client (or decorated function).
    """
    _emit(logging.WARNING, RETRY_LAYERED, lambda: {
        "callable": _name(callable_name), "preset": _name(preset), "retried": retried,
        "setting": setting})


def retry_gave_up(callable_name: str | Callable[[], str], preset: str, attempts: int,
                  elapsed_s: float, outcome: Future | None, reason: str) -> None:
    """The policy stopped retrying after ``attempts`` attempts; ``reason`` says why."""
    _emit(logging.ERROR, RETRY_GAVE_UP, lambda: _outcome_fields(outcome, {
        "callable": _name(callable_name), "preset": _name(preset), "attempts": attempts,
        "elapsed_s": seconds(elapsed_s), "reason": reason}))


def retry_succeeded(callable_name: str | Callable[[], str], preset: str, attempts: int,
                    elapsed_s: float) -> None:
    """A call succeeded after at least one retry."""
    _emit(logging.INFO, RETRY_SUCCEEDED, lambda: {
        "callable": _name(callable_name), "preset": _name(preset), "attempts": attempts,
        "elapsed_s": seconds(elapsed_s)})


def retry_budget_exhausted(callable_name: str | Callable[[], str], preset: str | None,
                           budget: str, attempt: int) -> None:
    """A retry was wanted but the retry budget ``budget`` refused it: the call gives up."""
    _emit(logging.WARNING, RETRY_BUDGET_EXHAUSTED, lambda: {
        "callable": _name(callable_name), "preset": _name(preset), "budget": _name(budget),
        "attempt": attempt})


def breaker_state_changed(breaker: str, old: str | None, new: str,
                          tripped_by: tuple[str, BaseException] | None = None) -> None:
    """A circuit breaker moved from ``old`` to ``new`` (closed, open, half-open).

    On opening, ``callable`` and ``error`` say which call's failure tripped it.
    """
    def build() -> dict[str, Any]:
        fields: dict[str, Any] = {"breaker": _name(breaker), "old": old, "new": new}
        if tripped_by is not None:
            fields["callable"] = _name(tripped_by[0])
            fields["error"] = describe_error(tripped_by[1])
        return fields

    _emit(logging.WARNING if new == "open" else logging.INFO, BREAKER_STATE_CHANGED, build)


def breaker_rejected(breaker: str, callable_name: str, remaining_s: float | None) -> None:
    """A breaker refused a call: ``reason=open`` or ``trial_in_progress``.

    Open: ``remaining_s`` until it admits a trial; half-open: its one trial still runs.
    """
    def build() -> dict[str, Any]:
        fields: dict[str, Any] = {"breaker": _name(breaker), "callable": _name(callable_name),
                                  "reason": "open" if remaining_s else "trial_in_progress"}
        if remaining_s:
            fields["remaining_s"] = round(remaining_s, 3)
        return fields

    _emit(logging.WARNING, BREAKER_REJECTED, build)


def breaker_storage_error(breaker: str, message: str, error: BaseException | None) -> None:
    """The breaker's shared storage (Redis) failed; the breaker used its fallback state."""
    _emit(logging.ERROR, BREAKER_STORAGE_ERROR, lambda: {
        "breaker": _name(breaker), "message": redact(message),
        "error": "none" if error is None else describe_error(error)})


def breaker_storage_recovered(breaker: str) -> None:
    """The breaker's shared storage (Redis) answers again: sharing resumes."""
    _emit(logging.INFO, BREAKER_STORAGE_RECOVERED, lambda: {"breaker": _name(breaker)})


def bulkhead_rejected(bulkhead: str, callable_name: str, max_concurrent: int,
                      waited_s: float) -> None:
    """A full bulkhead refused an attempt after waiting ``waited_s``."""
    _emit(logging.WARNING, BULKHEAD_REJECTED, lambda: {
        "bulkhead": _name(bulkhead), "callable": _name(callable_name),
        "max_concurrent": max_concurrent, "waited_s": round(waited_s, 3)})


def rate_limit_rejected(rate_limit: str, callable_name: str, wait_s: float) -> None:
    """A rate limit refused an attempt: its next token (``wait_s`` away) is past the deadline."""
    _emit(logging.WARNING, RATE_LIMIT_REJECTED, lambda: {
        "rate_limit": _name(rate_limit), "callable": _name(callable_name),
        "wait_s": round(wait_s, 3)})


def bulkhead_limit_changed(bulkhead: str, old: int, new: int,
                           unloaded_rtt_s: float | None) -> None:
    """An adaptive bulkhead's limit went from ``old`` to ``new`` (at most one a second).

    ``unloaded_rtt_s``: the lowest latency it has seen, which its limit keeps latency near.
    """
    _emit(logging.INFO, BULKHEAD_LIMIT_CHANGED, lambda: {
        "bulkhead": _name(bulkhead), "old": old, "new": new,
        "unloaded_rtt_s": None if unloaded_rtt_s is None else seconds(unloaded_rtt_s)})


def rate_limit_rate_changed(rate_limit: str, old: float, new: float, throttled: bool) -> None:
    """An adaptive rate limit's rate went from ``old`` to ``new`` a second.

    At most once a second: cut after a throttling answer, or grown back (probing).
    """
    _emit(logging.INFO, RATE_LIMIT_RATE_CHANGED, lambda: {
        "rate_limit": _name(rate_limit), "old_per_s": round(old, 3),
        "new_per_s": round(new, 3), "reason": "throttled" if throttled else "probing"})


def throttle_rejected(throttle: str, callable_name: str, probability: float) -> None:
    """A throttle refused an attempt locally, refusing ``probability`` of attempts."""
    _emit(logging.WARNING, THROTTLE_REJECTED, lambda: {
        "throttle": _name(throttle), "callable": _name(callable_name),
        "probability": round(probability, 3)})


def hedge_started(callable_name: str, preset: str, attempt: int, after_s: float) -> None:
    """Attempt ``attempt`` started as a hedge: the ones before had not answered in ``after_s``."""
    _emit(logging.INFO, HEDGE_STARTED, lambda: {
        "callable": _name(callable_name), "preset": _name(preset), "attempt": attempt,
        "after_s": seconds(after_s)})


def degraded(callable_name: str, preset: str, reason: str, error: BaseException) -> None:
    """A fallback value was returned instead of the call's result; ``reason`` says why."""
    _emit(logging.WARNING, DEGRADED, lambda: {
        "callable": _name(callable_name), "preset": _name(preset), "reason": reason,
        "error": describe_error(error)})
