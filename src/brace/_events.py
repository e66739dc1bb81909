"""Every event brace emits, named in one place, and the one place that emits them.

Events carry names, numbers and a redacted one-line description of the error. Call
arguments, headers and results are never logged (a ``repr(args)`` leaks secrets); URLs
lose their userinfo and sensitive query values (``brace._redact``). An event is built
only when structlog keeps its level: describing an error costs more than retrying it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from brace import predicates
from brace._redact import redact

if TYPE_CHECKING:
    from tenacity import Future

__all__ = [
    "BREAKER_REJECTED",
    "BREAKER_STATE_CHANGED",
    "BREAKER_STORAGE_ERROR",
    "DEGRADED",
    "RETRY_BUDGET_EXHAUSTED",
    "RETRY_GAVE_UP",
    "RETRY_SCHEDULED",
    "RETRY_SUCCEEDED",
    "breaker_rejected",
    "breaker_state_changed",
    "breaker_storage_error",
    "db_fields",
    "degraded",
    "describe",
    "describe_error",
    "describe_result",
    "redact",
    "retry_budget_exhausted",
    "retry_gave_up",
    "retry_scheduled",
    "retry_succeeded",
]

RETRY_SCHEDULED = "retry.scheduled"
RETRY_GAVE_UP = "retry.gave_up"
RETRY_SUCCEEDED = "retry.succeeded"
RETRY_BUDGET_EXHAUSTED = "retry.budget_exhausted"

_log = structlog.get_logger("brace")


def _wanted(level: int) -> bool:
    """Whether structlog keeps events of ``level`` (with a filtering logger, it may not)."""
    effective = getattr(structlog.get_config()["wrapper_class"], "get_effective_level", None)
    if effective is None:
        return True
    try:
        # The filtering loggers' level is fixed per class (make_filtering_bound_logger).
        return bool(level >= effective(None))
    except Exception:  # a wrapper class whose level lives on its instances: keep the event
        return True

def describe(outcome: Future | None) -> str:
    """One redacted line for an attempt's outcome: ``Type: message``, or the result's type."""
    if outcome is None:
        return "none"
    exc = outcome.exception()
    return describe_result(outcome.result()) if exc is None else describe_error(exc)


def describe_error(exc: BaseException) -> str:
    """``Type: message``, redacted."""
    message = str(exc)
    name = type(exc).__qualname__
    return redact(f"{name}: {message}" if message else name)


def describe_result(result: object) -> str:
    """A retried result (e.g. a 503 response) by type and status: named, never repr'd."""
    status = getattr(result, "status_code", None)
    kind = type(result).__name__
    return f"result {kind}" + (f" status {status}" if isinstance(status, int) else "")


def db_fields(outcome: Future | None) -> dict[str, str]:
    """``{"db_code": "40001"}`` when the outcome's error carries a database code, else ``{}``.

    The code is ``brace.predicates.db_code``'s: a SQLSTATE, a SQLite error name or a
    MySQL error number.
    """
    exc = None if outcome is None else outcome.exception()
    code = None if exc is None else predicates.db_code(exc)
    return {} if code is None else {"db_code": code}


def _name(callable_name: str | Callable[[], str]) -> str:
    return callable_name if isinstance(callable_name, str) else callable_name()


def retry_scheduled(
    callable_name: str | Callable[[], str], preset: str, attempt: int, wait_s: float,
    outcome: Future | None, **extra: Any,
) -> None:
    """Attempt ``attempt`` failed and another follows after ``wait_s`` seconds.

    Carries ``db_code`` when the error is a database error with a code.
    """
    if not _wanted(logging.WARNING):
        return
    _log.warning(RETRY_SCHEDULED, callable=_name(callable_name), preset=preset, attempt=attempt,
                 wait_s=round(wait_s, 6), error=describe(outcome), **db_fields(outcome),
                 **extra)


def retry_gave_up(
    callable_name: str | Callable[[], str], preset: str, attempts: int, elapsed_s: float,
    outcome: Future | None, reason: str, **extra: Any,
) -> None:
    """The policy stopped retrying after ``attempts`` attempts; ``reason`` says why.

    Carries ``db_code`` when the error is a database error with a code.
    """
    if not _wanted(logging.ERROR):
        return
    _log.error(RETRY_GAVE_UP, callable=_name(callable_name), preset=preset, attempts=attempts,
               elapsed_s=round(elapsed_s, 6), error=describe(outcome), reason=reason,
               **db_fields(outcome), **extra)


def retry_budget_exhausted(callable_name: str, preset: str | None, budget: str,
                           attempt: int) -> None:
    """A retry was wanted but the retry budget ``budget`` refused it: the call gives up."""
    _log.warning(RETRY_BUDGET_EXHAUSTED, callable=callable_name, preset=preset, budget=budget,
                 attempt=attempt)


def retry_succeeded(callable_name: str | Callable[[], str], preset: str, attempts: int,
                    elapsed_s: float) -> None:
    """A call succeeded after at least one retry."""
    if not _wanted(logging.INFO):
        return
    _log.info(RETRY_SUCCEEDED, callable=_name(callable_name), preset=preset, attempts=attempts,
              elapsed_s=round(elapsed_s, 6))


BREAKER_STATE_CHANGED = "breaker.state_changed"
BREAKER_REJECTED = "breaker.rejected"
BREAKER_STORAGE_ERROR = "breaker.storage_error"
DEGRADED = "degraded"


def breaker_state_changed(breaker: str, old: str | None, new: str) -> None:
    """A circuit breaker moved from ``old`` to ``new`` (closed, open, half-open)."""
    level = _log.warning if new == "open" else _log.info
    level(BREAKER_STATE_CHANGED, breaker=breaker, old=old, new=new)


def breaker_rejected(breaker: str, callable_name: str, remaining_s: float) -> None:
    """An open (or busy half-open) breaker refused a call without running it."""
    _log.warning(BREAKER_REJECTED, breaker=breaker, callable=callable_name,
                 remaining_s=round(remaining_s, 3))


def breaker_storage_error(breaker: str, message: str, error: BaseException | None) -> None:
    """The breaker's shared storage (Redis) failed; the breaker used its fallback state."""
    described = "none" if error is None else describe_error(error)
    _log.error(BREAKER_STORAGE_ERROR, breaker=breaker, message=message, error=described)


def degraded(callable_name: str, preset: str, reason: str, error: BaseException) -> None:
    """A fallback value was returned instead of the call's result; ``reason`` says why."""
    if not _wanted(logging.WARNING):
        return
    _log.warning(DEGRADED, callable=callable_name, preset=preset, reason=reason,
                 error=describe_error(error))
