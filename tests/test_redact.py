"""Nothing secret leaves the process: redaction of URLs, errors and database text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from structlog.testing import capture_logs

import brace
from brace import _redact
from brace.testing import no_waits
from tests.secret_shapes import HARMLESS, SHAPES, Shape, leaked
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
# The shapes live in one table, tests/secret_shapes.py (add a row there); tests/test_secrets.py
# sends every row through every channel.

LEAKS = [(shape.text, shape.secret) for shape in SHAPES]


@pytest.mark.parametrize(("raw", "secret"), LEAKS, ids=[shape.id for shape in SHAPES])
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
        assert not leaked(secret, text)


# -- the table, by structure -------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.id for shape in SHAPES])
def test_every_shape_is_redacted_and_its_context_kept(shape: Shape) -> None:
    redacted = _redact.redact(shape.text)
    assert not leaked(shape.secret, redacted), redacted
    assert shape.keep in redacted, redacted
    assert _redact.redact(redacted) == redacted  # what left once may be redacted again


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.id for shape in SHAPES])
def test_every_shape_is_redacted_when_joined_into_one_line(shape: Shape) -> None:
    # Events are one line each: a multi-line message may be joined before it is redacted.
    assert not leaked(shape.secret, _redact.redact(" ".join(shape.text.split())))


def test_the_table_holds_at_least_60_shapes_with_unique_ids() -> None:
    assert len(SHAPES) >= 60
    assert len({shape.id for shape in SHAPES}) == len(SHAPES)
    for shape in SHAPES:
        assert shape.secret in shape.text and shape.keep in shape.text, shape.id


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_errors_come_out_unchanged(text: str) -> None:
    assert _redact.redact(text) == text


def test_a_text_with_nothing_to_redact_is_returned_as_is() -> None:
    text = "ConnectionError: [Errno 111] Connection refused"
    assert _redact.redact(text) is text


@pytest.mark.parametrize(("raw", "redacted"), [
    ('{"credentials": {"private_key": "k", "user": "u"}, "region": "eu"}',
     '{"credentials": ***, "region": "eu"}'),
    ('{"tokens": ["a1", "b2"], "n": 2}', '{"tokens": ***, "n": 2}'),
    ('[{"name": "X-Api-Key", "value": "k1"}]', '[{"name": "X-Api-Key", "value": "***"}]'),
    ("[('Authorization', 'Bearer x1'), ('Accept', '*/*')]",
     "[('Authorization', '***'), ('Accept', '*/*')]"),
    ("redis://:pa ss'w@cache:6379/0 refused", "redis://***@cache:6379/0 refused"),
    ("next=%2Fcb%3Faccess_token%3Dat1%26state%3Dok",
     "next=%2Fcb%3Faccess_token%3D***%26state%3Dok"),
    ("pg_dump --password pw1 --host db", "pg_dump --password *** --host db"),
    ("<password>pw1</password><user>u</user>", "<password>***</password><user>u</user>"),
    ("ALTER ROLE app PASSWORD 'p''w'", "ALTER ROLE app PASSWORD '***'"),
    ("sent Basic dXNlcjpwYXNz", "sent Basic ***"),
    ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
     "-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----"),
    ("POST https://hooks.slack.com/services/T0/B0/XxYyZz1234567890AbCdEfGh",
     "POST https://hooks.slack.com/services/T0/B0/***"),
    ("private_key: -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
     "private_key: ******-----END PRIVATE KEY-----"),
])
def test_what_redaction_leaves(raw: str, redacted: str) -> None:
    assert _redact.redact(raw) == redacted


@pytest.mark.parametrize(("url", "error"), [
    ("redis://app:pa/ss9@h:6379/0", "Port could not be cast to integer value as 'pa'"),
    ("redis://app:open sesame@h:6379/0", "bad password 'open sesame' for user app"),
    ("redis://app:p%40ss%20w0rd@h:6379/0", "AUTH p@ss w0rd failed"),
])
def test_an_error_about_a_known_url_loses_every_piece_of_its_password(url: str,
                                                                      error: str) -> None:
    redacted = _redact.redact_url_error(f"Redis at {url}: {error}", url)
    assert redacted.startswith("Redis at redis://***@h:6379/0: ")
    for piece in ("pa", "ss9", "open", "sesame", "p@ss", "w0rd"):
        assert re.search(rf"(?<!\w){re.escape(piece)}(?!\w)", redacted) is None, redacted


# -- bounded input --------------------------------------------------------------------------------


def test_a_long_text_is_cut_with_a_marker() -> None:
    text = "x" * (_redact.MAX_CHARS + 10)
    cut = " [... 10 more characters cut by brace]"
    assert _redact.redact(text) == "x" * _redact.MAX_CHARS + cut


@pytest.mark.parametrize(("shape", "secret"), [
    ("GET https://app:hunter2-long-secret@h.example/x", "hunter2-long-secret"),
    ("token=tk-cut-across-the-edge-1", "tk-cut-across-the-edge-1"),
    ("Authorization: Bearer tk-cut-across-the-edge-2", "tk-cut-across-the-edge-2"),
    ('{"password": "pw-cut-across-the-edge"}', "pw-cut-across-the-edge"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEcutacrosstheedge\n-----END PRIVATE KEY-----",
     "MIIEcutacrosstheedge")])
def test_a_secret_cut_at_the_limit_leaves_no_piece(shape: str, secret: str) -> None:
    starts = shape.index(secret)
    for cut in range(starts + 4, starts + len(secret)):  # 4 or more of its characters kept
        text = "x" * (_redact.MAX_CHARS - cut - 1) + " " + shape + " and more"
        redacted = _redact.redact(text)
        assert redacted.endswith("more characters cut by brace]")
        assert secret[:4] not in redacted, (cut, redacted[-100:])


# -- linear time --------------------------------------------------------------------------------
# The worst shapes the fault campaign of issue 23 found (quadratic before: a 121 KB URL-encoded
# body took 5.1 s, a 20 KB padded header line 7.1 s), and the densest shapes of every kind of
# place redaction looks at. Each builds a text of n characters.


def _fill(unit: str, n: int, head: str = "", tail: str = "") -> str:
    body = unit * ((n - len(head) - len(tail)) // len(unit) + 1)
    return (head + body)[:n - len(tail)] + tail


WORST = {
    "url-encoded body": lambda n: _fill("x%3Dkey%26tok%3Daccess_token%2526", n,
                                        "HTTPStatusError: 400 body=b'"),
    "padded header line": lambda n: _fill(" ", n, "X-Api-Key: a", "b"),
    "padded authorization": lambda n: _fill(" \t", n, "Authorization: Bearer", "x, y: z"),
    "deep json under a secret": lambda n: _fill('{"password": [', n),
    "deep json": lambda n: _fill('{"a": [', n),
    "many key= pairs": lambda n: _fill("token=tk-123456 ", n),
    "many query pairs": lambda n: _fill("&api_key=k-1234", n, "GET http://h/x?"),
    "run of spaces": lambda n: _fill(" ", n, "token"),
    "run of double quotes": lambda n: _fill('"', n, "password"),
    "run of single quotes": lambda n: _fill("'", n, "'password':"),
    "one long name": lambda n: _fill("keykey", n),
}
# Denser still: every few characters is a place to look at. Linear too (measured at 25 KB
# and 100 KB); their cost is the number of places times a few microseconds.
DENSE = {
    "key=1 pairs": lambda n: _fill("key=1 ", n),
    "many @": lambda n: _fill("@a", n, "redis://u:"),
    "many ://": lambda n: _fill("://", n, "http"),
    "eyJ run": lambda n: _fill("eyJ", n),
    "xml tags": lambda n: _fill("<password>", n),
    "sql strings": lambda n: _fill("PASSWORD '", n),
    "flags": lambda n: _fill("--password ", n),
    "bearer words": lambda n: _fill("Bearer ", n),
    "detail lines": lambda n: _fill("DETAIL: x\n", n),
    "path segments": lambda n: _fill("/aB3dE5gH7jK9mN1pQ3sT5vX7z", n, "https://h.example"),
    "pem blocks": lambda n: _fill("-----BEGIN PRIVATE KEY-----", n),
    "parameters": lambda n: _fill("[parameters: ", n),
    "url after url": lambda n: _fill("://a/b", n, "http://a/b"),
    "header values holding urls": lambda n: _fill("://auth: x", n, "auth: x"),
    "pairs opening lists": lambda n: _fill('("token", [', n),
    "pem blocks after a name": lambda n: _fill("-----BEGIN PRIVATE KEY----- ", n, "key: "),
    "urls inside a value": lambda n: _fill("a://u:p@h/", n, "token="),
    "har entries": lambda n: _fill('{"name": "X-Api-Key", ', n),
    "har entries reversed": lambda n: _fill('{"value": 1, "name": "token"}', n),
    "quoted names": lambda n: _fill('"token" ', n),
    "escaped quotes": lambda n: _fill('\\"password\\": \\"', n),
    "encoded names": lambda n: _fill("%3Ftoken%3D", n),
    "backslashes": lambda n: _fill("\\", n, "password="),
    "namespaced xml": lambda n: _fill("<a:token b='1'>", n),
    "statement lines": lambda n: _fill("\nLINE 1: '", n),
    "statement lines without literals": lambda n: _fill("LINE 1: x ", n),
}
KB = 1024


def _small_and_large(build: Any, size: int) -> tuple[float, float]:
    """The fastest redaction of ``size`` characters and of 4 x ``size``, in seconds.

    Rounds alternate the two sizes, so a burst of load on a busy machine slows both alike,
    and the fastest round of each counts, in CPU time (``time.process_time``: another
    process on the core does not stretch it); the garbage collector waits, as in timeit.
    Redaction itself is timed: no cut at MAX_CHARS.
    """
    import gc
    import time

    texts = (build(size), build(4 * size))
    best = [float("inf"), float("inf")]
    enabled = gc.isenabled()
    gc.disable()
    try:
        spent = 0.0
        for round_ in range(15):
            for i, text in enumerate(texts):
                started = time.process_time()
                _redact._redact(text, truncated=False)
                took = time.process_time() - started
                best[i] = min(best[i], took)
                spent += took
            if round_ >= 2 and spent > 0.8:
                break
    finally:
        if enabled:
            gc.enable()
    return best[0], best[1]


def assert_linear(build: Any, size: int, *, limit: float, ratio: float) -> None:
    """Redacting ``size`` characters takes under ``limit`` seconds, 4 x ``size`` under
    ``ratio`` times as long. A busy machine may spoil one measurement, not three in a row:
    quadratic time fails every one of them (16 x, not 4 x)."""
    for _ in range(3):
        small, large = _small_and_large(build, size)
        if small < limit and large < ratio * small + 0.001:
            return
    raise AssertionError(f"{size // KB} KB: {small * 1000:.1f} ms (limit "
                         f"{limit * 1000:.0f} ms), {4 * size // KB} KB: {large * 1000:.1f} ms "
                         f"(limit {ratio} x)")


@pytest.mark.parametrize("name", WORST)
def test_redaction_time_of_the_worst_shapes(name: str) -> None:
    assert_linear(WORST[name], 100 * KB, limit=0.050, ratio=6)


@pytest.mark.parametrize("name", DENSE)
def test_redaction_time_of_dense_shapes_is_linear(name: str) -> None:
    # 25 KB and 100 KB keep the test short; 100 ms per 25 KB flags a pathological constant,
    # the ratio (quadratic time gives 16) a pathological shape.
    assert_linear(DENSE[name], 25 * KB, limit=0.100, ratio=8)


def test_redact_reads_at_most_max_chars() -> None:
    text = WORST["many key= pairs"](400 * KB)
    redacted = _redact.redact(text)
    assert redacted.endswith(f" [... {400 * KB - _redact.MAX_CHARS} more characters cut by brace]")
    assert "tk-123456" not in redacted
