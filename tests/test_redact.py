"""Nothing secret leaves the process: redaction of URLs, errors and database text."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _redact
from brace.testing import no_waits
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


# -- every shape that leaked, in every place text leaves the process ----------------------------

LEAKS = [
    ("GET https://api.example.com/x?client_secret=sk-live-51Hq&page=2", "sk-live-51Hq"),
    ("GET https://h.example/x?auth=AUTH-7f&page=2", "AUTH-7f"),
    ("GET https://h.example/x?private_token=PT-19a", "PT-19a"),
    ("aws_secret_access_key=AKIA5SECRET more text", "AKIA5SECRET"),
    ("PGPASSWORD=pg-pw-881 psql -h db", "pg-pw-881"),
    ("db_password=dbpw-55 host=db", "dbpw-55"),
    ("settings {'password': 'py-dict-pw', 'user': 'app'}", "py-dict-pw"),
    ('payload {"password": "json-pw-3", "user": "app"}', "json-pw-3"),
    ("password: yaml-pw-4", "yaml-pw-4"),
    ("Authorization: Basic c3ZjOmh1bnRlcjI=", "c3ZjOmh1bnRlcjI="),
    ("Authorization: Token tok-999", "tok-999"),
    ("Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc="),
    ("X-Api-Key: xak-0042", "xak-0042"),
    ('password="my secret phrase"', "secret phrase"),
    ("redis://:p@ss-word@cache:6379/0", "ss-word"),
    ("postgresql://u:pa/ss@db/orders", "pa/ss"),
    ("GET https://h.example/x?api%5Fkey=pct-key-1&page=2", "pct-key-1"),
    ("GET https://s3.example/o?Signature=sig-abc&X-Amz-Date=20260101&page=2", "sig-abc"),
    ("GET https://s3.example/o?X-Amz-Credential=AKIA-cred&page=2", "AKIA-cred"),
    ("id_token=idt-1 refresh_token=rft-2", "rft-2"),
    ("private_key=pk-77", "pk-77"),
    ("sessionid=sid-31 cookie", "sid-31"),
    ("Cookie: theme=dark; session=ck-8", "ck-8"),
    ("Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
    ('duplicate key value violates unique constraint "users_email_key"\n'
     "DETAIL:  Key (email)=(alice@example.com) already exists.", "alice@example.com"),
]


@pytest.mark.parametrize(("raw", "secret"), LEAKS, ids=[secret for _, secret in LEAKS])
def test_no_secret_leaves_through_events_observers_or_metric_labels(raw: str,
                                                                    secret: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    seen: list[tuple[str, dict[str, Any]]] = []
    registry = CollectorRegistry()
    metrics_observer = brace.metrics.prometheus(registry=registry)
    observer = brace.observe(lambda event, fields: seen.append((event, fields)))
    try:
        fn = brace.network(attempts=2)(make_flaky(5, ConnectionError(raw)))
        with no_waits(), capture_logs() as logs, pytest.raises(ConnectionError):
            fn("inv", token="t")
        with no_waits(), capture_logs() as block_logs, pytest.raises(ConnectionError):
            for attempt in brace.network(attempts=2).retrying(name=f"job {raw}"):
                with attempt:
                    raise ConnectionError("down")
    finally:
        brace.unobserve(observer)
        brace.unobserve(metrics_observer)
    assert len(logs) == 2 and len(block_logs) == 2 and len(seen) == 4
    for text in (repr(logs), repr(block_logs), repr(seen), generate_latest(registry).decode()):
        assert secret not in text
