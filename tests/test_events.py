"""structlog events: names, fields, levels, and nothing secret."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
import tenacity
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits

pytestmark = pytest.mark.no_waits


def make_flaky(failures: int, exc: Exception) -> Any:
    state = {"calls": 0}

    def fetch_invoice(invoice_id: str, token: str) -> str:
        state["calls"] += 1
        if state["calls"] <= failures:
            raise exc
        return "paid"

    return fetch_invoice


def test_scheduled_then_succeeded() -> None:
    fn = brace.http(make_flaky(2, ConnectionResetError("reset by peer")))
    with capture_logs() as logs:
        assert fn("inv-1", token="s3cr3t-token") == "paid"
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]
    first, second, done = logs
    qualname = f"{__name__}.make_flaky.<locals>.fetch_invoice"
    assert first["callable"] == qualname and first["preset"] == "http"
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["error"] == "ConnectionResetError: reset by peer"
    assert first["log_level"] == "warning"
    assert 0 <= first["wait_s"] <= 0.2  # http: first window is initial=0.2
    assert 0 <= second["wait_s"] <= 0.4
    assert done["attempts"] == 3 and done["log_level"] == "info"
    assert done["elapsed_s"] >= 0 and done["callable"] == qualname
    # call arguments are never logged
    assert "s3cr3t-token" not in repr(logs) and "inv-1" not in repr(logs)


def test_gave_up_after_attempts() -> None:
    fn = brace.network(attempts=3)(make_flaky(10, TimeoutError("read timed out")))
    with capture_logs() as logs, pytest.raises(TimeoutError):
        fn("inv-1", token="x")
    assert [e["event"] for e in logs] == ["retry.scheduled"] * 2 + ["retry.gave_up"]
    gave_up = logs[-1]
    assert gave_up["attempts"] == 3 and gave_up["reason"] == "attempts"
    assert gave_up["preset"] == "network" and gave_up["log_level"] == "error"
    assert gave_up["error"] == "TimeoutError: read timed out"
    assert {"callable", "elapsed_s"} <= set(gave_up)


def test_gave_up_on_deadline(clock: Any) -> None:
    # Each call takes 4 virtual seconds; deadline 10 leaves room for two calls only.
    def slow() -> None:
        clock.advance(4)
        raise ConnectionError("down")

    fn = brace.network(attempts=10, deadline=10, initial=0.1, max_wait=0.1)(slow)
    with capture_logs() as logs, pytest.raises(ConnectionError):
        fn()
    assert logs[-1]["event"] == "retry.gave_up"
    assert logs[-1]["reason"] == "deadline"
    assert logs[-1]["attempts"] == fn.statistics["attempt_number"] == 3


def test_non_retryable_error_after_retries_is_reported() -> None:
    errors = iter([ConnectionError("down"), ValueError("bad payload")])

    @brace.network
    def call() -> None:
        raise next(errors)

    with capture_logs() as logs, pytest.raises(ValueError):
        call()
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.gave_up"]
    assert logs[-1]["reason"] == "not_retryable" and logs[-1]["attempts"] == 2


def test_no_events_on_first_try_success_or_plain_bug() -> None:
    @brace.network
    def ok() -> int:
        return 1

    @brace.network
    def bug() -> None:
        raise KeyError("k")

    with capture_logs() as logs:
        ok()
        with pytest.raises(KeyError):
            bug()
    assert logs == []


def test_async_events_match_sync() -> None:
    state = {"calls": 0}

    @brace.network
    async def fetch() -> str:
        state["calls"] += 1
        if state["calls"] < 3:
            raise ConnectionRefusedError("refused")
        return "ok"

    with capture_logs() as logs:
        assert asyncio.run(fetch()) == "ok"
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]
    assert logs[0]["callable"].endswith("test_async_events_match_sync.<locals>.fetch")


def test_events_from_tenacity_kwargs_and_retrying_blocks() -> None:
    policy = brace.network(attempts=2)
    with capture_logs() as logs:
        fn = tenacity.retry(**policy.tenacity_kwargs())(make_flaky(5, ConnectionError("x")))
        with pytest.raises(ConnectionError):
            fn("a", token="b")
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.gave_up"]

    with capture_logs() as logs, pytest.raises(ConnectionError):
        for attempt in policy.retrying(name="sync-orders"):
            with attempt:
                raise ConnectionError("x")
    assert [e["callable"] for e in logs] == ["sync-orders", "sync-orders"]


def test_retried_results_are_named_not_repr_d() -> None:
    class Response:
        status_code = 503

        def __repr__(self) -> str:
            return "<Response secret-body>"

    policy = brace.network(attempts=2, on=tenacity.retry_if_result(
        lambda r: getattr(r, "status_code", 0) == 503))
    with capture_logs() as logs:
        policy(lambda: Response())()
    assert logs[0]["error"] == "result Response status 503"
    assert "secret-body" not in repr(logs)


# -- observers ---------------------------------------------------------------------------------


@pytest.fixture
def observed() -> Any:
    seen: list[tuple[str, dict[str, Any]]] = []

    def observer(event: str, fields: dict[str, Any]) -> None:
        seen.append((event, fields))

    brace.observe(observer)
    try:
        yield seen
    finally:
        brace.unobserve(observer)


def test_observers_get_every_event_with_the_fields_structlog_gets(observed: Any) -> None:
    fn = brace.http(make_flaky(2, ConnectionResetError("reset by peer")))
    with no_waits(), capture_logs() as logs:
        fn("inv-1", token="t")
    assert [event for event, _ in observed] == [e["event"] for e in logs]
    for (_, fields), logged in zip(observed, logs, strict=True):
        assert fields == {k: v for k, v in logged.items() if k not in ("event", "log_level")}


def test_an_observer_that_raises_never_breaks_the_call(observed: Any) -> None:
    def broken(event: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("observer bug")

    brace.observe(broken)
    try:
        fn = brace.network(make_flaky(3, ConnectionError("x")))
        with no_waits(), capture_logs() as logs:
            assert fn("inv", token="t") == "paid"
            assert fn.__wrapped__("inv", token="t") == "paid"  # type: ignore[attr-defined]
    finally:
        brace.unobserve(broken)
    failures = [e for e in logs if e["event"] == "observer.failed"]
    assert len(failures) == 1  # reported once, not per event
    assert "observer bug" in failures[0]["error"]
    assert [event for event, _ in observed].count("retry.scheduled") == 3  # others still fed


def test_observe_says_no_to_what_cannot_observe() -> None:
    with pytest.raises(TypeError, match="observe"):
        brace.observe("not callable")  # type: ignore[arg-type]


def test_nothing_is_built_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import structlog

    from brace import _events

    built = 0
    describe = _events.describe_error

    def counting(exc: BaseException) -> str:
        nonlocal built
        built += 1
        return describe(exc)

    monkeypatch.setattr(_events, "describe_error", counting)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        with no_waits(), pytest.raises(ConnectionError):
            brace.network(attempts=4)(make_flaky(9, ConnectionError("x")))("i", token="t")
    finally:
        structlog.reset_defaults()
    assert built == 0


# -- fields an on-call engineer can act on ------------------------------------------------------


def _response(status: int, method: str = "GET", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request(method, "http://a.test/"))


def test_scheduled_carries_status_and_where_the_wait_came_from(observed: Any) -> None:
    answers = iter([_response(503), _response(429, **{"Retry-After": "3"}), _response(200)])

    @brace.http
    def fetch() -> httpx.Response:
        return next(answers)

    with no_waits():
        assert fetch().status_code == 200
    scheduled = [fields for event, fields in observed if event == "retry.scheduled"]
    assert [(f["status"], f["wait_source"], f["error_type"]) for f in scheduled] == [
        (503, "backoff", "HTTP 503"), (429, "retry_after", "HTTP 429")]
    # The server's 3 s is a floor; the jitter above it is one backoff step at most.
    step = min(brace.http().max_wait, brace.http().initial * 2)
    assert 3 <= scheduled[1]["wait_s"] <= 3 + step


def test_a_post_not_resent_says_why(observed: Any) -> None:
    @brace.http
    def create() -> httpx.Response:
        return _response(503, method="POST")

    assert create().status_code == 503
    assert [(event, fields["reason"], fields["status"]) for event, fields in observed] == [
        ("retry.skipped", "not_idempotent", 503)]


def test_breaker_events_say_what_tripped_it_and_why_a_call_was_refused(
        observed: Any, brace_reset_breakers: None) -> None:
    brace.breaker("ev-dep", fail_max=1, reset_timeout=30)

    @brace.network(attempts=1, breaker="ev-dep")
    def dependency() -> None:
        raise ConnectionRefusedError("refused by db-7")

    with pytest.raises(ConnectionRefusedError):
        dependency()
    with pytest.raises(brace.CircuitOpenError):
        dependency()
    [opened] = [f for e, f in observed if e == "breaker.state_changed" and f["new"] == "open"]
    assert opened["error"] == "ConnectionRefusedError: refused by db-7"
    assert opened["callable"].endswith("dependency")
    [rejected] = [f for e, f in observed if e == "breaker.rejected"]
    assert rejected["reason"] == "open" and 0 < rejected["remaining_s"] <= 30


# -- where events go: the application's logging -------------------------------------------------

_FLAKY_SCRIPT = """
import logging, sys
import brace
from brace.testing import no_waits
{setup}
calls = 0

@brace.network(attempts=2)
def fetch():
    global calls
    calls += 1
    if calls == 1:
        raise ConnectionError("refused")
    return "ok"

with no_waits():
    assert fetch() == "ok"
"""


def _run(setup: str) -> subprocess.CompletedProcess[str]:
    script = _FLAKY_SCRIPT.format(setup=textwrap.dedent(setup))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)


def test_without_structlog_configured_events_go_to_stdlib_logging_and_nothing_to_stdout() -> None:
    bare = _run("")
    assert bare.stdout == ""  # a library never prints
    # Python's last-resort handler shows the warning on stderr, as for any library.
    assert "retry.scheduled" in bare.stderr
    handled = _run("""
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)
        logging.getLogger("brace").addHandler(Keep())
        logging.getLogger("brace").setLevel(logging.INFO)
        import atexit
        atexit.register(lambda: print([(r.levelname, r.getMessage(), r.brace_event,
                                        r.brace_fields["attempt" if r.brace_event ==
                                        "retry.scheduled" else "attempts"])
                                       for r in records]))
    """)
    assert handled.stderr == ""
    assert handled.stdout.strip() == str([
        ("WARNING", "retry.scheduled callable=__main__.fetch preset=network attempt=1 "
         "wait_s=" + handled.stdout.split("wait_s=")[1].split()[0] + " wait_source=backoff "
         "error='ConnectionError: refused' error_type=ConnectionError", "retry.scheduled", 1),
        ("INFO", "retry.succeeded callable=__main__.fetch preset=network attempts=2 "
         "elapsed_s=" + handled.stdout.split("elapsed_s=")[1].split("'")[0],
         "retry.succeeded", 2)])


def test_once_structlog_is_configured_events_go_through_structlog() -> None:
    configured = _run("""
        import structlog
        structlog.configure(processors=[structlog.processors.add_log_level,
                                        structlog.processors.JSONRenderer()])
    """)
    lines = [json.loads(line) for line in configured.stdout.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("retry.scheduled", "warning"), ("retry.succeeded", "info")]
    assert configured.stderr == ""  # not also through stdlib logging


def test_events_follow_structlog_when_it_is_configured_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    import structlog

    first, second = io.StringIO(), io.StringIO()

    def failing(*args: Any, **kwargs: Any) -> None:  # fails once, then succeeds
        brace.network(attempts=2)(make_flaky(1, ConnectionError("x")))(*args, **kwargs)

    try:
        with no_waits():
            structlog.configure(processors=[structlog.processors.JSONRenderer()],
                                logger_factory=structlog.PrintLoggerFactory(file=first))
            failing("i", token="t")
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=second))
            failing("i", token="t")
            # A processor added in place, as structlog.testing.capture_logs does.
            structlog.get_config()["processors"].insert(0, _tagged)
            failing("i", token="t")
            # structlog's print logger takes sys.stdout when it is made (pytest swaps it).
            structlog.configure(logger_factory=structlog.PrintLoggerFactory())
            capsys.readouterr()
            failing("i", token="t")
            printed = capsys.readouterr().out
    finally:
        structlog.reset_defaults()
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == [
        "retry.scheduled", "retry.succeeded"]
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [(line["event"], line.get("tag")) for line in lines] == [
        ("retry.scheduled", None), ("retry.succeeded", None),
        ("retry.scheduled", "added"), ("retry.succeeded", "added")]
    assert [json.loads(line)["event"] for line in printed.splitlines()] == [
        "retry.scheduled", "retry.succeeded"]


def _tagged(logger: Any, name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {**event_dict, "tag": "added"}


def test_a_failing_observer_is_reported_on_stdlib_logging_when_structlog_is_not_set_up(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    def broken(event: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("observer bug")

    structlog.reset_defaults()
    brace.observe(broken)
    try:
        with no_waits(), caplog.at_level("INFO", logger="brace"):
            brace.network(make_flaky(1, ConnectionError("x")))("i", token="t")
    finally:
        brace.unobserve(broken)
    failed = [r for r in caplog.records if getattr(r, "brace_event", None) == "observer.failed"]
    assert len(failed) == 1 and failed[0].levelname == "ERROR"
    assert "observer bug" in failed[0].brace_fields["error"]
    assert capsys.readouterr().out == ""  # never on stdout


def test_an_http_status_error_is_described_on_one_line() -> None:
    request = httpx.Request("GET", "http://user:secret@127.0.0.1:9/items?token=abc&page=2")
    response = httpx.Response(503, request=request)
    error = httpx.HTTPStatusError("Server error '503 Service Unavailable'\nFor more "
                                  "information check: https://developer.mozilla.org/x",
                                  request=request, response=response)
    described = brace._events.describe_error(error)
    assert "\n" not in described and "mozilla" not in described
    assert described.startswith("HTTPStatusError: 503 Service Unavailable for GET http://")
    assert "secret" not in described and "abc" not in described and "page=2" in described


def test_a_multi_line_message_becomes_one_line_after_redaction() -> None:
    error = RuntimeError("first line\nDETAIL:  Key (email)=(alice@example.com) exists.\n"
                         "HINT:  try again")
    described = brace._events.describe_error(error)
    assert "\n" not in described and "alice" not in described
    assert described.startswith("RuntimeError: first line DETAIL: ***") and "HINT" in described


def test_throttling_answers_are_marked_in_events() -> None:
    import httpx

    from brace.testing import capture_events, no_waits

    answers = iter([429, 503, 200])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers)))
    with no_waits(), capture_events() as events, \
            brace.http(attempts=3).client(transport=transport) as client:
        client.get("http://127.0.0.1/item")
    scheduled = [fields for event, fields in events if event == "retry.scheduled"]
    assert [(f["status"], f.get("error_kind")) for f in scheduled] == [(429, "throttling"),
                                                                        (503, None)]
