"""Nothing secret leaves the process: redaction of URLs, errors and database text."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

import brace
from brace import _redact
from tests.test_events import make_flaky


def test_redaction_keeps_harmless_query_values() -> None:
    redacted = _redact.redact("GET http://127.0.0.1/x?token=abc&api_key=k1&page=2&sort=name")
    assert redacted == "GET http://127.0.0.1/x?token=***&api_key=***&page=2&sort=name"


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("GET https://alice:hunter2@api.example.com/v1", "hunter2"),
        ("GET https://api.example.com/v1?user=1&token=abc123&x=2", "abc123"),
        ("GET https://api.example.com/v1?api_key=K-999", "K-999"),
        ("GET https://api.example.com/v1?signature=deadbeef", "deadbeef"),
        ("connection to host=db user=app password=pa55word failed", "pa55word"),
        ("host=db password=ab&cd,ef user=x", "&cd,ef"),
        ("postgresql://app:pa55word@db:5432/orders refused", "pa55word"),
        ("Authorization: Bearer eyJhbGciOi.secret", "eyJhbGciOi"),
    ],
)
def test_redaction(raw: str, secret: str) -> None:
    redacted = _redact.redact(raw)
    assert secret not in redacted
    assert "***" in redacted


def test_error_descriptions_are_redacted_in_events() -> None:
    fn = brace.network(attempts=2)(
        make_flaky(5, ConnectionError("GET https://u:p4ss@h.example/x?token=t0k failed")))
    with capture_logs() as logs, pytest.raises(ConnectionError):
        fn("a", token="b")
    text = repr(logs)
    assert "p4ss" not in text and "t0k" not in text
    assert "h.example" in text  # the host stays: it is what an operator needs
