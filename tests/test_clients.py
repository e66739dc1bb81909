"""brace._clients: what each client library's errors mean, provoked for real.

Every row of the table is checked on the exception the real library raises against a local
fault: a refused port (bound, then closed), a port whose accept queue is full (connects time
out), the fault server hanging, resetting, or answering 503/429 or AWS-style XML and JSON
errors, an in-process grpc server aborting with a status, a stand-in Redis (RESP) or MongoDB
(wire protocol) server replying what the real one replies in a fault, a WebSocket server
closing abnormally. Nothing is constructed by hand that a library can be made to raise; the
rows nobody can provoke here are listed in ``NOT_PROVOKED`` with the reason, and
``test_every_row_is_provoked_or_says_why_not`` keeps that list honest. Only 127.0.0.1
traffic. The real redis-server cases (a wrong password against ``requirepass``, an ACL
refusal, a frozen server) are in tests/integration/test_clients_redis.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import re
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import botocore.session
import bson
import grpc
import grpc.aio
import httpx
import pymongo
import pytest
import redis
import redis.backoff
import redis.retry
import requests
import requests.adapters
import urllib3
import valkey
import valkey.backoff
import valkey.retry
import websockets
import websockets.sync.client
from botocore.config import Config
from botocore.credentials import CredentialResolver, EnvProvider

import brace
from brace import _clients
from brace._clients import NEVER, NO, RETRY, THROTTLING, Row
from brace._outcome import Kind, classify, is_safe_to_resend, is_throttling, status_of
from brace.predicates import is_transient
from brace.testing import no_waits
from tests.fault_server import FaultServer, hang, reply, reset_before_response, reset_mid_body

with warnings.catch_warnings():
    # google-api-core warns (at import, and again in from_grpc_error) when grpcio-status,
    # for richer error details, is missing: nothing these tests read.
    warnings.simplefilter("ignore", ImportWarning)
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry


def _from_grpc(rpc: BaseException) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        return gexc.from_grpc_error(rpc)

HOST = "127.0.0.1"
SHORT = 0.1  # seconds: connect and read timeouts against faults that never answer

# --------------------------------------------------------------------------- local faults


def _refused_port() -> int:
    # Bound, then closed: nothing listens there, so a connect is refused at once.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _unanswered_port() -> Iterator[int]:
    """A port whose connects time out: a listener that never accepts, its queue full.

    Linux drops a SYN to a listener whose accept queue is full, so the client's connect
    waits for its timeout: the loopback twin of a black-holed host.
    """
    listener = socket.socket()
    queued: list[socket.socket] = []
    try:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        while True:  # fill the queue; the first connect that times out proves it is full
            sock = socket.socket()
            queued.append(sock)
            sock.settimeout(0.05)
            try:
                sock.connect((HOST, port))
            except TimeoutError:
                break
            if len(queued) > 64:
                pytest.fail("the accept queue never filled: connects cannot be made to hang")
        yield port
    finally:
        for sock in queued:
            sock.close()
        listener.close()


class RawServer:
    """A TCP server on 127.0.0.1 running ``handler(conn)`` per connection, each in a thread.

    For faults the HTTP fault server cannot script: a WebSocket handshake, the Redis and
    MongoDB wire protocols, a proxy's refusal. Stopping shuts every socket down, so a
    handler blocked in ``recv`` returns at once.
    """

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://{HOST}:{self.port}"
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the listener was shut down
                return
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass  # the client went away, or stop() shut the socket down
        except Exception as exc:  # a broken stand-in must fail the test, not go quiet
            self.errors.append(exc)
        finally:
            conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in list(self.conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._accepting.join(2)
        for thread in self.threads:
            thread.join(2)
        assert not self.errors, self.errors

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def _until_closed(conn: socket.socket) -> None:
    while conn.recv(4096):
        pass


class Faults:
    """The faults one test uses, each made on first use and torn down after the test."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._server: FaultServer | None = None
        self.refused_port = _refused_port()
        self.refused_url = f"http://{HOST}:{self.refused_port}/"

    @property
    def server(self) -> FaultServer:
        """The HTTP fault server (tests/fault_server.py)."""
        if self._server is None:
            self._server = self._stack.enter_context(FaultServer())
        return self._server

    def url(self, path: str, *actions: Any) -> str:
        """The fault server's URL for ``path``, scripted with ``actions``."""
        if actions:
            self.server.script(path, *actions)
        return self.server.url_for(path)

    def unanswered_port(self) -> int:
        """A port whose connects time out."""
        return self._stack.enter_context(_unanswered_port())

    def raw(self, handler: Callable[[socket.socket], None]) -> RawServer:
        """A raw TCP server running ``handler`` per connection."""
        return self._stack.enter_context(RawServer(handler))


@pytest.fixture
def faults() -> Iterator[Faults]:
    with contextlib.ExitStack() as stack:
        yield Faults(stack)


def raised(provoke: Callable[[], object]) -> BaseException:
    """The exception ``provoke()`` raises (the test fails when it raises none)."""
    try:
        provoke()
    except Exception as exc:
        return exc
    pytest.fail("no exception was raised: the fault was not provoked")


# --------------------------------------------------------------------------- the check


def judge(exc: BaseException, library: str, error: str) -> Row:
    """Check that ``exc`` matches the row ``(library, error)`` and is treated as it says.

    The transient predicate, the throttling mark and the outcome classifier all agree
    with the row; a NEVER row holds even when a policy's ``on=`` names the class.
    """
    row = _clients.verdict(exc)
    assert row is not None, f"{type(exc).__module__}.{type(exc).__qualname__}: {exc!r} " \
                            f"matched no row"
    assert (row.library, row.error) == (library, error), f"{exc!r} matched {row!r}"
    assert is_transient(exc) is row.retried
    assert _clients.is_throttling(exc) is row.throttling
    outcome = classify(brace.network, exc, None)
    if row.retried:
        assert outcome.kind is Kind.RETRYABLE, outcome
        assert outcome.throttled is is_throttling(exc)
        if row.throttling:
            assert outcome.throttled
    else:
        assert outcome.kind is Kind.NOT_RETRIED, outcome
        assert not outcome.failure
    if row.never:  # whatever on= says
        told = brace.network(on=[type(exc)])
        assert classify(told, exc, None).kind is Kind.NOT_RETRIED
    return row


def row_ids(cases: dict[str, Any]) -> list[str]:
    return list(cases)


# Rows no local fault can make the library raise, and why. Each is still matched by the
# MRO (a subclass's row wins over a base's), so the base rows are reached by subclasses
# the table does not list.
NOT_PROVOKED: dict[tuple[str, str], str] = {
    ("requests", "Timeout"): "base class: requests raises ConnectTimeout or ReadTimeout",
    ("urllib3", "TimeoutError"): "base class: urllib3 raises ConnectTimeoutError or "
                                 "ReadTimeoutError",
    ("urllib3", "MaxRetryError"): "its reason's row answers (provoked below); this row is "
                                  "for a reason the table does not know",
    ("urllib3", "MaxRetryError, reason a builtin ConnectionError or TimeoutError"):
        "urllib3 wraps socket errors in its own before they become a reason",
    ("aiohttp", "ClientConnectionError"): "base class of the connection errors provoked "
                                          "below",
    ("aiohttp", "ServerTimeoutError"): "base class: aiohttp raises ConnectionTimeoutError "
                                       "or SocketTimeoutError",
    ("aiohttp", "ServerFingerprintMismatch"): "needs a TLS server and a pinned fingerprint",
    ("redis", "AuthorizationError"): "raised only by redis-py's OCSP stapling check, which "
                                     "needs a TLS OCSP responder",
    ("httpx", "WriteError"): "httpcore meets a failed write by reading the server's answer, "
                             "then raises RemoteProtocolError or ReadError (provoked below)",
    ("botocore", "UnauthorizedSSOTokenError"): "needs an AWS SSO login cache",
    ("botocore", "ConnectionError"): "base class of the connection errors provoked below",
    ("botocore", "HTTPClientError"): "base class of the socket errors provoked below",
    ("pymongo", "ConnectionFailure"): "base class: pymongo raises AutoReconnect and its "
                                      "subclasses",
    ("websockets", "InvalidStatusCode"): "websockets' legacy client (deprecated since 14): "
                                         "importing it warns",
}


def test_every_row_is_provoked_or_says_why_not() -> None:
    provoked = {(library, error) for library, cases in ALL_CASES for error in cases}
    provoked |= {("redis", error) for error in REDIS_INTEGRATION}
    table = {(row.library, row.error) for row in _clients.rows()}
    assert provoked.isdisjoint(NOT_PROVOKED)
    assert provoked | set(NOT_PROVOKED) == table, (
        f"rows never provoked: {sorted(table - provoked - set(NOT_PROVOKED))}; "
        f"cases for no row: {sorted((provoked | set(NOT_PROVOKED)) - table)}")


# The rows tests/integration/test_clients_redis.py provokes against a real redis-server.
REDIS_INTEGRATION = ("AuthenticationError", "NoPermissionError", "ConnectionError",
                     "TimeoutError", "WatchError", "ResponseError")


# --------------------------------------------------------------------------- the table


def test_each_row_is_one_library_one_error_with_a_reason() -> None:
    seen: set[tuple[str, str]] = set()
    for row in _clients.rows():
        assert row.library in _clients.LIBRARIES
        assert (row.library, row.error) not in seen, row
        seen.add((row.library, row.error))
        assert row.reason and "|" not in row.reason and "\n" not in row.reason, row
        assert row.verdict in (RETRY, THROTTLING, NO, NEVER)
        assert row.retried is (row.verdict in (RETRY, THROTTLING))
    assert {row.library for row in _clients.rows()} == set(_clients.LIBRARIES)


def test_auth_rows_of_every_library_say_never() -> None:
    # Authentication and permission are never retried (DESIGN rule 29), in every library.
    for row in _clients.rows():
        if re.search(r"auth|permission|credential|accessdenied|forbidden|401|403", row.error,
                     re.IGNORECASE) and "AuthenticationWrongNumberOfArgs" not in row.error:
            assert row.never, row


def test_the_docs_show_the_table_as_the_code_has_it() -> None:
    page = (Path(__file__).parents[1] / "docs" / "clients.md").read_text(encoding="utf-8")
    start, end = "<!-- clients-table:start -->\n", "<!-- clients-table:end -->"
    assert start in page and end in page
    shown = page.split(start, 1)[1].split(end, 1)[0]
    assert shown.strip() == _clients.table_markdown().strip(), (
        "docs/clients.md's table drifted from brace/_clients.py: paste "
        "`python -c 'from brace._clients import table_markdown; "
        "print(table_markdown())'` between its markers")
    assert "## requests and aiohttp" in page


def test_importing_brace_imports_no_client_library() -> None:
    # pybreaker imports redis when it is installed (for its Redis storage): what brace's
    # own dependencies import is not brace's doing, so it is the baseline.
    code = ("import sys\n"
            "libraries = {'requests', 'urllib3', 'aiohttp', 'redis', 'valkey', 'botocore', "
            "'grpc', 'google', 'pymongo', 'bson', 'websockets'}\n"
            "def loaded(): return {m for m in sys.modules if m.split('.')[0] in libraries}\n"
            "import pybreaker, structlog, tenacity\n"
            "before = loaded()\n"
            "import brace, brace.predicates\n"
            "print(sorted(loaded() - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


class _Unknown(Exception):
    """An exception class no table knows."""


def test_an_unknown_class_is_looked_up_once_then_read_from_the_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _clients._BY_CLASS.pop(_Unknown, None)
    assert _clients.verdict(_Unknown("first")) is None
    assert _Unknown in _clients._BY_CLASS and _clients._BY_CLASS[_Unknown] is None

    def walk(cls: type) -> None:
        raise AssertionError(f"{cls} walked again: the cache was not used")

    monkeypatch.setattr(_clients, "_learn", walk)
    assert _clients.verdict(_Unknown("second")) is None
    assert not is_transient(_Unknown("third"))


def test_a_known_class_is_cached_with_its_row(faults: Faults) -> None:
    exc = raised(lambda: requests.get(faults.refused_url, timeout=1))
    _clients._BY_CLASS.pop(type(exc), None)
    row = _clients.verdict(exc)
    assert _clients._BY_CLASS[type(exc)] is row


def test_builtin_errors_never_walk_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(cls: type) -> None:
        raise AssertionError(f"{cls} looked up")

    monkeypatch.setattr(_clients, "_learn", walk)
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError())
    assert classify(brace.network, ConnectionResetError(), None).kind is Kind.RETRYABLE
    assert status_of(ValueError()) is None and status_of({"status": 503}) is None


def test_the_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_clients, "CACHE_MAX", 3)
    monkeypatch.setattr(_clients, "_BY_CLASS", {})
    classes = [type(f"Made{i}", (Exception,), {}) for i in range(10)]
    for cls in classes:
        assert _clients.verdict(cls()) is None
        assert len(_clients._BY_CLASS) <= 3
    assert _clients.verdict(classes[0]()) is None  # looked up again after eviction


def test_brace_refusals_are_judged_by_brace_not_the_table() -> None:
    # A refusal may also be a library's error (out of a transport or an adapter).
    refusal = type("Refusal", (brace.CircuitOpenError, requests.ConnectionError), {})
    assert _clients.verdict(refusal.__new__(refusal)) is None


# --------------------------------------------------------------------------- requests


def _retrying_get(url: str) -> object:
    # requests' own retries (urllib3's Retry through max_retries=), without backoff.
    with requests.Session() as session:
        session.mount("http://", requests.adapters.HTTPAdapter(max_retries=urllib3.Retry(
            total=1, status_forcelist=[503], backoff_factor=0,
            respect_retry_after_header=False)))
        return session.get(url, timeout=2)


def _redirecting_get(url: str) -> object:
    with requests.Session() as session:
        session.max_redirects = 2
        return session.get(url, timeout=2)


REQUESTS: dict[str, Callable[[Faults], object]] = {
    "ConnectionError": lambda f: requests.get(f.refused_url, timeout=1),
    "ConnectTimeout": lambda f: requests.get(f"http://{HOST}:{f.unanswered_port()}/",
                                             timeout=(SHORT, 1)),
    "ReadTimeout": lambda f: requests.get(f.url("/hang", hang(2)), timeout=(1, SHORT)),
    "ChunkedEncodingError": lambda f: requests.get(f.url("/cut", reset_mid_body()), timeout=2),
    "SSLError": lambda f: requests.get(f.url("/tls").replace("http:", "https:"), timeout=2),
    "ProxyError": lambda f: requests.get("http://example.invalid/",
                                         proxies={"http": f.refused_url}, timeout=1),
    "RetryError": lambda f: _retrying_get(f.url("/503", reply(503))),
    "HTTPError": lambda f: requests.get(f.url("/503", reply(503)),
                                        timeout=2).raise_for_status(),
    "TooManyRedirects": lambda f: _redirecting_get(
        f.url("/loop", reply(302, headers={"Location": "/loop"}))),
    "ContentDecodingError": lambda f: requests.get(f.url("/gz", reply(
        200, b"not gzip at all", {"Content-Encoding": "gzip"})), timeout=2),
}


@pytest.mark.parametrize("error", row_ids(REQUESTS))
def test_requests(error: str, faults: Faults) -> None:
    exc = raised(lambda: REQUESTS[error](faults))
    assert type(exc).__module__.startswith("requests")
    judge(exc, "requests", error)


def test_requests_http_error_carries_its_status(faults: Faults) -> None:
    exc = raised(lambda: requests.get(faults.url("/503", reply(503)),
                                      timeout=2).raise_for_status())
    assert status_of(exc) == 503


# --------------------------------------------------------------------------- urllib3


def _request(url: str, *, proxy: str | None = None, **options: Any) -> object:
    """One urllib3 request through a pool closed afterwards (no socket left to the GC)."""
    with (urllib3.ProxyManager(proxy) if proxy else urllib3.PoolManager()) as pool:
        return pool.request("GET", url, **options)


def _unresolvable(monkeypatch: pytest.MonkeyPatch) -> object:
    # The resolver fails as a DNS server would: no name leaves the machine.
    def getaddrinfo(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return _request("http://brace-test.invalid/", retries=False)


URLLIB3: dict[str, Callable[[Faults, pytest.MonkeyPatch], object]] = {
    "NewConnectionError": lambda f, m: _request(f.refused_url, retries=False),
    "NameResolutionError": lambda f, m: _unresolvable(m),
    "ConnectTimeoutError": lambda f, m: _request(
        f"http://{HOST}:{f.unanswered_port()}/", retries=False,
        timeout=urllib3.Timeout(connect=SHORT, read=1)),
    "ReadTimeoutError": lambda f, m: _request(
        f.url("/hang", hang(2)), retries=False, timeout=urllib3.Timeout(connect=1, read=SHORT)),
    "ProtocolError": lambda f, m: _request(f.url("/rst", reset_before_response()),
                                           retries=False),
    "ResponseError": lambda f, m: _request(  # raised as MaxRetryError(reason=ResponseError)
        f.url("/503", reply(503)), retries=urllib3.Retry(total=0, status_forcelist=[503])),
    "SSLError": lambda f, m: _request(f.url("/tls").replace("http:", "https:"), retries=False),
    "ProxyError": lambda f, m: _request("http://example.invalid/", proxy=f.refused_url,
                                        retries=False),
    "DecodeError": lambda f, m: _request(f.url("/gz", reply(
        200, b"not gzip at all", {"Content-Encoding": "gzip"})), retries=False),
    "LocationValueError": lambda f, m: _request("http://", retries=False),
}


@pytest.mark.parametrize("error", row_ids(URLLIB3))
def test_urllib3(error: str, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = raised(lambda: URLLIB3[error](faults, monkeypatch))
    assert type(exc).__module__.startswith("urllib3")
    judge(exc, "urllib3", error)


def test_urllib3_max_retry_error_is_judged_by_its_reason(faults: Faults) -> None:
    exc = raised(lambda: _request(faults.refused_url, retries=0))
    assert type(exc).__name__ == "MaxRetryError"
    assert judge(exc, "urllib3", "NewConnectionError").retried


# --------------------------------------------------------------------------- httpx


def _proxy_refusal(conn: socket.socket) -> None:
    _read_head(conn)
    conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
    _until_closed(conn)


def _closes_without_answering(conn: socket.socket) -> None:
    _read_head(conn)  # then a FIN: "server disconnected without sending a response"


def _httpx_get(url: str, **client_options: Any) -> object:
    with httpx.Client(**client_options) as client:
        return client.get(url)


HTTPX: dict[str, Callable[[Faults], object]] = {
    "ConnectError": lambda f: httpx.get(f.refused_url),
    "TimeoutException": lambda f: httpx.get(f.url("/hang", hang(2)), timeout=SHORT),
    "ReadError": lambda f: httpx.get(f.url("/cut", reset_mid_body())),
    "RemoteProtocolError": lambda f: httpx.get(f.raw(_closes_without_answering).url),
    "LocalProtocolError": lambda f: httpx.get(f.url("/"), headers={"x-bad": "a\r\nb"}),
    "UnsupportedProtocol": lambda f: httpx.get(f"ftp://{HOST}/"),
    "DecodingError": lambda f: httpx.get(f.url("/gz", reply(
        200, b"not gzip at all", {"Content-Encoding": "gzip"}))),
    "TooManyRedirects": lambda f: _httpx_get(
        f.url("/loop", reply(302, headers={"Location": "/loop"})), max_redirects=2,
        follow_redirects=True),
    "ProxyError": lambda f: _httpx_get("https://example.invalid/",
                                       proxy=f.raw(_proxy_refusal).url),
    "HTTPStatusError": lambda f: httpx.get(f.url("/503", reply(503))).raise_for_status(),
}


@pytest.mark.parametrize("error", row_ids(HTTPX))
def test_httpx(error: str, faults: Faults) -> None:
    exc = raised(lambda: HTTPX[error](faults))
    assert type(exc).__module__.startswith("httpx")
    judge(exc, "httpx", error)


# --------------------------------------------------------------------------- aiohttp


async def _aiohttp_get(url: str, *, raise_for_status: bool = False,
                       **timeout: float) -> None:
    client_timeout = aiohttp.ClientTimeout(total=5, **timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.get(url, raise_for_status=raise_for_status) as response:
        await response.read()


AIOHTTP: dict[str, Callable[[Faults], Any]] = {
    "ClientConnectorError": lambda f: _aiohttp_get(f.refused_url),
    "ClientOSError": lambda f: _aiohttp_get(f.url("/rst", reset_before_response())),
    "ServerDisconnectedError": lambda f: _aiohttp_get(f.raw(_closes_without_answering).url),
    "ConnectionTimeoutError": lambda f: _aiohttp_get(f"http://{HOST}:{f.unanswered_port()}/",
                                                     sock_connect=SHORT),
    "SocketTimeoutError": lambda f: _aiohttp_get(f.url("/hang", hang(2)), sock_read=SHORT),
    "ClientPayloadError": lambda f: _aiohttp_get(f.url("/cut", reset_mid_body())),
    "ClientSSLError": lambda f: _aiohttp_get(f.url("/tls").replace("http:", "https:")),
    "ClientResponseError": lambda f: _aiohttp_get(f.url("/503", reply(503)),
                                                  raise_for_status=True),
    "InvalidURL": lambda f: _aiohttp_get("http://"),
}


@pytest.mark.parametrize("error", row_ids(AIOHTTP))
def test_aiohttp(error: str, faults: Faults) -> None:
    exc = raised(lambda: asyncio.run(AIOHTTP[error](faults)))
    assert type(exc).__module__.startswith("aiohttp")
    judge(exc, "aiohttp", error)


def test_aiohttp_response_error_carries_its_status_and_request(faults: Faults) -> None:
    async def post() -> None:
        async with aiohttp.ClientSession() as session, session.post(
                faults.url("/503", reply(503)), raise_for_status=True):
            pass

    exc = raised(lambda: asyncio.run(post()))
    assert status_of(exc) == 503
    # Its request_info says POST: under the http preset a 503 to a POST is not resent.
    assert not is_safe_to_resend(exc)
    assert classify(brace.http, exc, None).why == "not_idempotent"


# --------------------------------------------------------------------------- botocore

_AWS_KEYS = {"aws_access_key_id": "x", "aws_secret_access_key": "y"}
_NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[FaultServer, Any, Any]]:
    """One fault server, an S3 client and a DynamoDB client on it (clients are slow to make)."""
    session = _aws_session()
    with FaultServer() as server:
        config = Config(retries=_NO_RETRIES, s3={"addressing_style": "path"},
                        connect_timeout=1, read_timeout=SHORT)
        s3 = session.create_client("s3", endpoint_url=server.url, region_name="us-east-1",
                                   config=config, **_AWS_KEYS)
        dynamodb = session.create_client("dynamodb", endpoint_url=server.url,
                                         region_name="us-east-1",
                                         config=Config(retries=_NO_RETRIES), **_AWS_KEYS)
        try:
            yield server, s3, dynamodb
        finally:
            s3.close()
            dynamodb.close()


@functools.cache
def _aws_session() -> Any:
    # One session for every client: it loads the service models once.
    return botocore.session.get_session()


def _get_from(endpoint: str, key: str = "k", **config: Any) -> object:
    """GET an S3 object through a client of its own (made for ``endpoint``, then closed)."""
    s3 = _aws_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(retries=_NO_RETRIES, s3={"addressing_style": "path"}, **config),
        **_AWS_KEYS)
    try:
        return _get(s3, key)
    finally:
        s3.close()


def _get(s3: Any, key: str) -> object:
    return s3.get_object(Bucket="bucket", Key=key)["Body"].read()


def _without_credentials(f: Faults, monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    # Only the environment provider: no credential file is read, no instance metadata
    # endpoint asked.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = botocore.session.get_session()
    session.register_component("credential_provider",
                               CredentialResolver(providers=[EnvProvider()]))
    s3 = session.create_client("s3", endpoint_url=f.url("/"), region_name="us-east-1",
                               config=Config(retries=_NO_RETRIES))
    try:
        return s3.get_object(Bucket="bucket", Key="k")
    finally:
        s3.close()


BOTOCORE_CLASSES: dict[str, Callable[[Faults, Any, pytest.MonkeyPatch], object]] = {
    "NoCredentialsError": lambda f, s3, m: _without_credentials(f, m),
    "PartialCredentialsError": lambda f, s3, m: _without_credentials(
        f, m, AWS_ACCESS_KEY_ID="only-the-id"),
    "EndpointConnectionError": lambda f, s3, m: _get_from(f.refused_url),
    "ConnectTimeoutError": lambda f, s3, m: _get_from(f"http://{HOST}:{f.unanswered_port()}",
                                                      connect_timeout=SHORT),
    "ReadTimeoutError": lambda f, s3, m: _get(s3, "hang"),
    "ConnectionClosedError": lambda f, s3, m: _get(s3, "rst"),
    "ResponseStreamingError": lambda f, s3, m: _get(s3, "cut"),
    "SSLError": lambda f, s3, m: _get_from(f.url("/").replace("http:", "https:")),
    "ProxyConnectionError": lambda f, s3, m: _get_from("http://example.invalid",
                                                       proxies={"http": f.refused_url}),
    "ParamValidationError": lambda f, s3, m: s3.get_object(Bucket="bucket"),
    "ClientError": lambda f, s3, m: _get(s3, "missing"),
}


@pytest.mark.parametrize("error", row_ids(BOTOCORE_CLASSES))
def test_botocore_classes(error: str, faults: Faults, aws: tuple[FaultServer, Any, Any],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    server, s3, _ = aws
    server.script("/bucket/hang", hang(2))
    server.script("/bucket/rst", reset_before_response())
    server.script("/bucket/cut", reset_mid_body())
    server.script("/bucket/missing", reply(404, _s3_error("NoSuchKey")))
    exc = raised(lambda: BOTOCORE_CLASSES[error](faults, s3, monkeypatch))
    assert type(exc).__module__.startswith("botocore")
    judge(exc, "botocore", error)


def _s3_error(code: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>said by the test server</Message><RequestId>1</RequestId>"
            f"</Error>").encode()


def _status_for(code: str) -> int:
    row = _clients._CODES["botocore code"][code]
    if row.never:
        return 403
    return 503 if row.verdict == RETRY or code == "SlowDown" else 400


BOTOCORE_CODES = [row.error.removeprefix("ClientError code ") for row in _clients.rows()
                  if row.error.startswith("ClientError code ")]


@pytest.mark.parametrize("code", BOTOCORE_CODES)
def test_botocore_error_codes(code: str, aws: tuple[FaultServer, Any, Any]) -> None:
    server, s3, _ = aws
    # A 400 for throttling (as AWS's JSON protocols answer it): the code decides, not 5xx.
    server.script(f"/bucket/{code}", reply(_status_for(code), _s3_error(code),
                                           {"Content-Type": "application/xml"}))
    exc = raised(lambda: _get(s3, code))
    assert exc.response["Error"]["Code"] == code
    assert status_of(exc) == _status_for(code)
    judge(exc, "botocore", f"ClientError code {code}")


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 401, 403])
def test_botocore_other_codes_by_http_status(status: int,
                                             aws: tuple[FaultServer, Any, Any]) -> None:
    server, s3, _ = aws
    server.script(f"/bucket/s{status}", reply(status, _s3_error("SomethingNew")))
    exc = raised(lambda: _get(s3, f"s{status}"))
    assert status_of(exc) == status
    judge(exc, "botocore", f"ClientError HTTP {status} (any other code)")


def test_botocore_json_protocol_codes(aws: tuple[FaultServer, Any, Any]) -> None:
    server, _, dynamodb = aws
    server.script("/", reply(400, b'{"__type": "com.amazonaws.dynamodb.v20120810#'
                                  b'ProvisionedThroughputExceededException", '
                                  b'"message": "slow down"}',
                             {"Content-Type": "application/x-amz-json-1.0"}),
                  reply(400, b'{"__type": "com.amazon.coral.service#'
                             b'UnrecognizedClientException", "message": "who?"}',
                        {"Content-Type": "application/x-amz-json-1.0"}))
    throttled = raised(dynamodb.list_tables)
    assert type(throttled).__module__ == "botocore.errorfactory"  # a class per service
    judge(throttled, "botocore", "ClientError code ProvisionedThroughputExceededException")
    refused = raised(dynamodb.list_tables)
    judge(refused, "botocore", "ClientError code UnrecognizedClientException")


# --------------------------------------------------------------------------- grpc


class _Aborting(grpc.GenericRpcHandler):
    """Aborts each call with the status code its method is named after; HANG never answers."""

    def service(self, details: Any) -> Any:
        name = details.method.rsplit("/", 1)[-1]

        def handle(request: bytes, context: Any) -> bytes:
            if name == "HANG":  # until the client's deadline ends the call
                ended = threading.Event()
                context.add_callback(ended.set)
                ended.wait(5)
                return b""
            context.abort(getattr(grpc.StatusCode, name), f"{name} from the test server")
            raise AssertionError("abort returned")

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture(scope="module")
def grpc_port() -> Iterator[int]:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((_Aborting(),))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


def _rpc(port: int, method: str, timeout: float = 2) -> BaseException:
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        return raised(lambda: channel.unary_unary(f"/brace.Test/{method}")(b"",
                                                                         timeout=timeout))


GRPC_CODES = [row.error.removeprefix("RpcError ") for row in _clients.rows()
              if row.library == "grpc" and row.error.startswith("RpcError ")]


@pytest.mark.parametrize("code", GRPC_CODES)
def test_grpc_status_codes(code: str, grpc_port: int) -> None:
    if code == "DEADLINE_EXCEEDED":  # for real: the server never answers in time
        exc = _rpc(grpc_port, "HANG", timeout=SHORT)
    else:
        exc = _rpc(grpc_port, code)
    assert isinstance(exc, grpc.RpcError) and exc.code().name == code
    judge(exc, "grpc", f"RpcError {code}")


def test_grpc_codes_the_table_does_not_list_take_the_class_row(grpc_port: int) -> None:
    judge(_rpc(grpc_port, "ALREADY_EXISTS"), "grpc", "RpcError")


def test_grpc_unavailable_from_a_refused_port_sync_and_asyncio() -> None:
    port = _refused_port()
    judge(_rpc(port, "Anything"), "grpc", "RpcError UNAVAILABLE")

    async def call() -> None:
        async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
            await channel.unary_unary("/brace.Test/Anything")(b"", timeout=2)

    exc = raised(lambda: asyncio.run(call()))
    assert type(exc).__name__ == "AioRpcError"
    judge(exc, "grpc", "RpcError UNAVAILABLE")


# The grpc row is the class row for every code not listed: provoked above.
GRPC = {"RpcError": None, **{f"RpcError {code}": None for code in GRPC_CODES}}


# --------------------------------------------------------------------------- google-api-core

GOOGLE_FROM_GRPC = {
    "ServiceUnavailable": "UNAVAILABLE",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "InternalServerError": "INTERNAL",
    "DeadlineExceeded": "DEADLINE_EXCEEDED",
    "Unauthenticated": "UNAUTHENTICATED",
    "PermissionDenied": "PERMISSION_DENIED",
    "Aborted": "ABORTED",
    "GoogleAPICallError": "INVALID_ARGUMENT",  # InvalidArgument: no row of its own
}
GOOGLE_FROM_HTTP = {
    "TooManyRequests": 429,
    "BadGateway": 502,
    "GatewayTimeout": 504,
    "Unauthorized": 401,
    "Forbidden": 403,
}


@pytest.mark.parametrize("error", list(GOOGLE_FROM_GRPC))
def test_google_api_core_from_real_grpc_errors(error: str, grpc_port: int) -> None:
    code = GOOGLE_FROM_GRPC[error]
    rpc = _rpc(grpc_port, "HANG", timeout=SHORT) if code == "DEADLINE_EXCEEDED" else _rpc(
        grpc_port, code)
    judge(_from_grpc(rpc), "google.api_core", error)


@pytest.mark.parametrize("error", list(GOOGLE_FROM_HTTP))
def test_google_api_core_from_real_http_responses(error: str, faults: Faults) -> None:
    status = GOOGLE_FROM_HTTP[error]
    response = requests.get(faults.url(f"/{status}", reply(
        status, b'{"error": {"message": "said by the test server"}}',
        {"Content-Type": "application/json"})), timeout=2)
    exc = gexc.from_http_response(response)
    assert type(exc).__name__ == error
    assert status_of(exc) == status
    judge(exc, "google.api_core", error)


def test_google_api_core_retry_error_is_one_layer_up() -> None:
    calls: list[int] = []

    def unavailable() -> None:
        calls.append(1)
        raise gexc.ServiceUnavailable("down")

    retry = gretry.Retry(predicate=gretry.if_exception_type(gexc.ServiceUnavailable),
                         initial=0, maximum=0, timeout=0)
    exc = raised(retry(unavailable))
    assert calls == [1]
    judge(exc, "google.api_core", "RetryError")


def test_google_deadline_exceeded_has_no_http_status(grpc_port: int) -> None:
    # Its 504 is google's mapping of a gRPC code: read as a status, the http presets (which
    # retry 504) would resend a call that may have run.
    exc = _from_grpc(_rpc(grpc_port, "HANG", timeout=SHORT))
    assert exc.code == 504 and status_of(exc) is None
    assert classify(brace.http, exc, None).kind is Kind.NOT_RETRIED
    # ... and a caller who knows the call is idempotent says so with on=.
    told = brace.http(on=[gexc.DeadlineExceeded])
    assert classify(told, exc, None).kind is Kind.RETRYABLE


GOOGLE = {**GOOGLE_FROM_GRPC, **GOOGLE_FROM_HTTP, "RetryError": None}


# --------------------------------------------------------------------------- pymongo


# What a standalone MongoDB 7 answers to hello (wire version 21).
MONGO_HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True,
               "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000,
               "maxWriteBatchSize": 100_000, "logicalSessionTimeoutMinutes": 30,
               "connectionId": 1, "minWireVersion": 0, "maxWireVersion": 21,
               "readOnly": False, "ok": 1.0}


class FakeMongo:
    """A MongoDB stand-in speaking the wire protocol (OP_QUERY handshake, OP_MSG commands).

    It answers ``hello`` as a standalone server; every other command gets the next of
    ``script`` (the last repeats): a reply document, ``"hang"`` (never answer) or
    ``"close"`` (drop the connection), as a real server does in those faults.
    """

    def __init__(self, faults: Faults, *script: object) -> None:
        self.script = list(script)
        self.lock = threading.Lock()
        self.hanging = threading.Event()  # set once a command is held unanswered
        self.server = faults.raw(self._serve)
        self.uri = (f"mongodb://{HOST}:{self.server.port}/?directConnection=true"
                    f"&retryWrites=false&retryReads=false")

    def _next(self) -> object:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _serve(self, conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        while True:
            header = stream.read(16)
            if len(header) < 16:
                return
            length, request_id, _, opcode = struct.unpack("<iiii", header)
            body = stream.read(length - 16)
            if opcode == 2004:  # OP_QUERY: the handshake
                start = body.index(b"\0", 4) + 9  # flags, collection name, skip, return
                command = bson.decode(body[start:start + int.from_bytes(
                    body[start:start + 4], "little")])
            elif opcode == 2013:  # OP_MSG: flags, then section kind 0, a document
                command = bson.decode(body[5:5 + int.from_bytes(body[5:9], "little")])
            else:
                raise AssertionError(f"opcode {opcode}")
            name = next(iter(command)).lower()
            answer = MONGO_HELLO if name in ("hello", "ismaster") else (
                {"ok": 1.0} if name == "endsessions" else self._next())
            if answer == "hang":
                self.hanging.set()
                _until_closed(conn)
                return
            if answer == "close":
                return
            document = bson.encode(answer)
            if opcode == 2004:
                payload, reply_code = struct.pack("<iqii", 0, 0, 0, 1) + document, 1
            else:
                payload, reply_code = struct.pack("<iB", 0, 0) + document, 2013
            conn.sendall(struct.pack("<iiii", 16 + len(payload), 1, request_id, reply_code)
                         + payload)

    def command(self, **options: Any) -> object:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, **options)
        try:
            return client.admin.command("ping")
        finally:
            client.close()


def _failure(code: int, name: str, *labels: str) -> dict[str, Any]:
    return {"ok": 0.0, "errmsg": f"{name}, said by the test server", "code": code,
            "codeName": name, **({"errorLabels": list(labels)} if labels else {})}


def _unselectable(f: Faults) -> object:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        f"mongodb://{HOST}:{f.refused_port}/", serverSelectionTimeoutMS=SHORT * 1000,
        connectTimeoutMS=SHORT * 1000)
    try:
        return client.admin.command("ping")
    finally:
        client.close()


def _after_close(f: Faults) -> object:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        FakeMongo(f, {"ok": 1.0}).uri, serverSelectionTimeoutMS=2000)
    client.close()
    return client.admin.command("ping")


def _no_free_connection(f: Faults) -> object:
    # One connection, held by a call the server never answers; the next call waits for it.
    mongo = FakeMongo(f, "hang")
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        mongo.uri, serverSelectionTimeoutMS=2000, maxPoolSize=1, waitQueueTimeoutMS=50)
    holder = threading.Thread(target=lambda: raised(lambda: client.admin.command("ping")),
                              daemon=True)
    try:
        holder.start()
        # Once the server holds the call, the pool's one connection is in use.
        assert mongo.hanging.wait(5), "the holder's call never reached the server"
        return client.admin.command("hello")  # waits 50 ms for the connection, in vain
    finally:
        mongo.server.stop()  # the held call ends with its connection
        client.close()
        holder.join(5)


PYMONGO: dict[str, Callable[[Faults], object]] = {
    "ServerSelectionTimeoutError": _unselectable,
    "NetworkTimeout": lambda f: FakeMongo(f, "hang").command(socketTimeoutMS=SHORT * 1000),
    "AutoReconnect": lambda f: FakeMongo(f, "close").command(),
    "NotPrimaryError": lambda f: FakeMongo(f, _failure(10107, "NotWritablePrimary")).command(),
    "WaitQueueTimeoutError": _no_free_connection,
    "ConfigurationError": lambda f: pymongo.MongoClient(f"mongodb+srv://{HOST}:1/"),
    "OperationFailure": lambda f: FakeMongo(f, _failure(2, "BadValue")).command(),
    "PyMongoError": _after_close,
    "OperationFailure code 18": lambda f: FakeMongo(
        f, _failure(18, "AuthenticationFailed")).command(),
    "OperationFailure code 13": lambda f: FakeMongo(f, _failure(13, "Unauthorized")).command(),
    "OperationFailure code 8000": lambda f: FakeMongo(f, _failure(8000, "AtlasError")).command(),
    "PyMongoError label RetryableWriteError": lambda f: FakeMongo(
        f, _failure(262, "ExceededTimeLimit", "RetryableWriteError")).command(),
    "PyMongoError label TransientTransactionError": lambda f: FakeMongo(
        f, _failure(112, "WriteConflict", "TransientTransactionError")).command(),
}


@pytest.mark.parametrize("error", row_ids(PYMONGO))
def test_pymongo(error: str, faults: Faults) -> None:
    exc = raised(lambda: PYMONGO[error](faults))
    assert type(exc).__module__.startswith("pymongo")
    assert status_of(exc) is None  # an OperationFailure's code is no HTTP status
    judge(exc, "pymongo", error)


def test_pymongo_auth_codes_win_over_labels(faults: Faults) -> None:
    exc = raised(FakeMongo(faults, _failure(18, "AuthenticationFailed",
                                            "RetryableWriteError")).command)
    assert judge(exc, "pymongo", "OperationFailure code 18").never


# --------------------------------------------------------------------------- websockets

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_accept(conn: socket.socket) -> None:
    head = _read_head(conn)
    match = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
    assert match is not None, head
    accept = base64.b64encode(hashlib.sha1(match.group(1) + _WS_GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def _ws_closing(code: int | None) -> Callable[[socket.socket], None]:
    """A WebSocket server that accepts, then closes with ``code`` (None: drops the TCP)."""
    def serve(conn: socket.socket) -> None:
        _ws_accept(conn)
        if code is None:
            return  # no close frame: the client sees an abnormal closure (1006)
        reason = b"said by the test server"
        conn.sendall(struct.pack("!BBH", 0x88, 2 + len(reason), code) + reason)
        conn.recv(64)  # the client's close frame; then the server closes the TCP first
    return serve


def _ws_status(status: int) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        _read_head(conn)
        conn.sendall(f"HTTP/1.1 {status} Said By The Test Server\r\nContent-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())
    return serve


def _ws_receive(f: Faults, handler: Callable[[socket.socket], None]) -> object:
    server = f.raw(handler)
    with websockets.sync.client.connect(f"ws://{HOST}:{server.port}/", open_timeout=2,
                                        close_timeout=1) as ws:
        return ws.recv(timeout=2)


WEBSOCKETS: dict[str, Callable[[Faults], object]] = {
    "ConnectionClosedOK": lambda f: _ws_receive(f, _ws_closing(1000)),
    "ConnectionClosedError": lambda f: _ws_receive(f, _ws_closing(1008)),
    **{f"ConnectionClosedError code {code}": (
        lambda f, code=code: _ws_receive(f, _ws_closing(None if code == 1006 else code)))
        for code in (1006, 1011, 1012, 1013, 1014)},
    "InvalidStatus": lambda f: _ws_receive(f, _ws_status(404)),
    **{f"InvalidStatus HTTP {status}": (lambda f, status=status: _ws_receive(
        f, _ws_status(status))) for status in (429, 500, 502, 503, 504, 401, 403)},
    "InvalidURI": lambda f: websockets.sync.client.connect("http://example.invalid/"),
}


@pytest.mark.parametrize("error", row_ids(WEBSOCKETS))
def test_websockets(error: str, faults: Faults) -> None:
    exc = raised(lambda: WEBSOCKETS[error](faults))
    assert type(exc).__module__.startswith("websockets")
    judge(exc, "websockets", error)


def test_websockets_handshake_status_is_read(faults: Faults) -> None:
    exc = raised(lambda: _ws_receive(faults, _ws_status(503)))
    assert status_of(exc) == 503


# --------------------------------------------------------------------------- redis (RESP)


def _resp(*replies: bytes) -> Callable[[socket.socket], None]:
    """A Redis stand-in: ``+OK`` to the handshake, then ``replies`` in turn (last repeats).

    Each reply is what a real server sends in that fault (``-LOADING ...`` while it loads
    its dataset, ``-TRYAGAIN ...`` during a slot migration ...).
    """
    def serve(conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        left = list(replies)
        while True:
            line = stream.readline()
            if not line:
                return
            words = []
            for _ in range(int(line[1:])):
                size = int(stream.readline()[1:])
                words.append(stream.read(size + 2)[:-2])
            if words[0].upper() in (b"CLIENT", b"SELECT", b"AUTH"):
                conn.sendall(b"+OK\r\n")
            else:
                conn.sendall((left.pop(0) if len(left) > 1 else left[0]) + b"\r\n")
    return serve


def _redis_options(client_module: Any) -> dict[str, Any]:
    # No retries of the client's own (redis-py 6+ retries connection errors 3 times with
    # backoff by default): one attempt, one error. RESP2: the stand-in speaks no HELLO
    # (redis-py 8 asks for RESP3 by default).
    options = {"socket_timeout": 2, "retry": client_module.retry.Retry(
        client_module.backoff.NoBackoff(), 0)}
    return {**options, "protocol": 2} if client_module is redis else options


def _redis_get(f: Faults, client_module: Any, reply_line: bytes) -> object:
    server = f.raw(_resp(reply_line))
    client = client_module.Redis(host=HOST, port=server.port, **_redis_options(client_module))
    try:
        return client.get("key")
    finally:
        client.close()


def _redis_set_a_dict(f: Faults, client_module: Any) -> object:
    server = f.raw(_resp(b"+OK"))
    client = client_module.Redis(host=HOST, port=server.port, **_redis_options(client_module))
    try:
        return client.set("key", {"not": "a string"})  # refused by the client itself
    finally:
        client.close()


def _pool_exhausted(f: Faults, client_module: Any) -> object:
    server = f.raw(_resp(b"+OK"))
    pool = client_module.ConnectionPool(host=HOST, port=server.port, max_connections=1,
                                        **_redis_options(client_module))
    try:
        # valkey-py still wants the command's name; redis-py deprecates passing it.
        args = ("GET",) if client_module is valkey else ()
        held = pool.get_connection(*args)  # the one connection, in use
        try:
            return pool.get_connection(*args)
        finally:
            pool.release(held)
    finally:
        pool.disconnect()


REDIS_REPLIES = {
    "BusyLoadingError": b"-LOADING Redis is loading the dataset in memory",
    "TryAgainError": b"-TRYAGAIN Multiple keys request during rehashing of slot",
    "ClusterDownError": b"-CLUSTERDOWN The cluster is down",
    "MasterDownError": b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
                       b"is set to 'no'.",
    "ReadOnlyError": b"-READONLY You can't write against a read only replica.",
    "AuthenticationWrongNumberOfArgsError": b"-ERR wrong number of arguments for 'auth' "
                                            b"command",
    "ExternalAuthProviderError": b"-ERR problem with LDAP service",
    # "max number of clients reached" is a ConnectionError in redis-py: retried.
    "MaxConnectionsError": b"",  # made by the client's own pool, below
}
REDIS = {**REDIS_REPLIES, "DataError": b""}
# valkey-py parses the cluster replies (TRYAGAIN, CLUSTERDOWN, MASTERDOWN) only in its
# cluster client, and has no external auth providers: those are redis-py's alone here.
VALKEY_TOO = ("BusyLoadingError", "ReadOnlyError", "AuthenticationWrongNumberOfArgsError",
              "MaxConnectionsError", "DataError")


@pytest.mark.parametrize(("error", "client_module"), [
    *((error, redis) for error in REDIS), *((error, valkey) for error in VALKEY_TOO)],
    ids=[*(f"{error}-redis" for error in REDIS), *(f"{error}-valkey" for error in VALKEY_TOO)])
def test_redis_and_valkey(error: str, client_module: Any, faults: Faults) -> None:
    if error == "MaxConnectionsError":
        exc = raised(lambda: _pool_exhausted(faults, client_module))
    elif error == "DataError":
        exc = raised(lambda: _redis_set_a_dict(faults, client_module))
    else:
        exc = raised(lambda: _redis_get(faults, client_module, REDIS[error]))
    assert type(exc).__module__.startswith(client_module.__name__)
    if client_module is valkey and error == "MaxConnectionsError":
        error = "ConnectionError"  # valkey-py raises its ConnectionError for a full pool
    assert type(exc).__name__ == error
    judge(exc, "redis", error)


def test_redis_max_clients_reached_is_a_connection_error(faults: Faults) -> None:
    exc = raised(lambda: _redis_get(faults, redis, b"-ERR max number of clients reached"))
    judge(exc, "redis", "ConnectionError")


# --------------------------------------------------------------------------- all cases

ALL_CASES: list[tuple[str, Any]] = [
    ("requests", REQUESTS), ("urllib3", URLLIB3), ("httpx", HTTPX), ("aiohttp", AIOHTTP),
    ("botocore", BOTOCORE_CLASSES),
    ("botocore", {f"ClientError code {code}": None for code in BOTOCORE_CODES}),
    ("botocore", {f"ClientError HTTP {status} (any other code)": None
                  for status in (429, 500, 502, 503, 504, 401, 403)}),
    ("grpc", GRPC), ("google.api_core", GOOGLE), ("pymongo", PYMONGO),
    ("websockets", WEBSOCKETS), ("redis", REDIS),
]


# --------------------------------------------------------------------------- the presets


def test_network_retries_requests_on_a_refused_port(faults: Faults) -> None:
    attempts = []

    @brace.network
    def fetch() -> requests.Response:
        attempts.append(1)
        return requests.get(faults.refused_url, timeout=1)

    with no_waits(), pytest.raises(requests.ConnectionError):
        fetch()
    assert len(attempts) == brace.network.attempts  # every attempt the preset allows
    attempts.clear()
    with no_waits(attempts=4), pytest.raises(requests.ConnectionError):
        fetch()
    assert len(attempts) == 4


def test_http_retries_a_503_from_raise_for_status_and_not_a_404(faults: Faults) -> None:
    attempts = []

    @brace.http()
    def fetch(path: str) -> str:
        attempts.append(path)
        response = requests.get(faults.server.url_for(path), timeout=2)
        response.raise_for_status()
        return response.text

    faults.server.script("/flaky", reply(503), reply(503), reply(200, b"done"))
    faults.server.script("/gone", reply(404))
    with no_waits():
        assert fetch("/flaky") == "done"
        assert attempts == ["/flaky"] * 3
        with pytest.raises(requests.HTTPError):
            fetch("/gone")
    assert attempts == ["/flaky"] * 3 + ["/gone"]


def test_a_post_refused_before_sending_is_retried_one_that_timed_out_is_not(
        faults: Faults) -> None:
    refused = raised(lambda: requests.post(faults.refused_url, timeout=1))
    assert is_safe_to_resend(refused)  # nothing left the client (DESIGN rule 4)
    timed_out = raised(lambda: requests.post(faults.url("/hang", hang(2)), timeout=(1, SHORT)))
    assert not is_safe_to_resend(timed_out)  # the server may have acted on it
    assert classify(brace.http, timed_out, None).why == "not_idempotent"


def test_throttling_is_marked_for_events(faults: Faults, grpc_port: int) -> None:
    assert is_throttling(_rpc(grpc_port, "RESOURCE_EXHAUSTED"))
    assert not is_throttling(_rpc(grpc_port, "UNAVAILABLE"))
    too_many = raised(lambda: requests.get(faults.url("/429", reply(429)),
                                           timeout=2).raise_for_status())
    assert is_throttling(too_many)  # by its status, for every library


# --------------------------------------------------------------------------- status shapes


def test_status_of_reads_each_librarys_shape(faults: Faults) -> None:
    url = faults.url("/503", reply(503))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=2)  # urllib's HTTPError: `.code`
    assert status_of(info.value) == 503
    info.value.close()
    response = _request(url, retries=False)  # urllib3's response: `.status`
    assert status_of(response) == 503

    async def aiohttp_status() -> int | None:  # aiohttp's response: `.status`
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            return status_of(answer)

    assert asyncio.run(aiohttp_status()) == 503


def test_status_is_not_read_from_a_code_that_is_no_http_status() -> None:
    # `.code` is an errno, a database code or a method on most exceptions.
    error = OSError(111, "refused")
    assert status_of(error) is None
    odd = type("OddError", (Exception,), {"code": 503, "status": 503})()
    assert status_of(odd) is None
