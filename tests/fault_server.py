"""A real local HTTP/1.1 server with scripted faults, for tests of HTTP clients.

Stdlib only. Traffic stays on 127.0.0.1::

    with FaultServer() as server:
        server.script("/flaky", reply(503), reply(200, b"done"))
        httpx.get(server.url + "/flaky")  # 503
        httpx.get(server.url + "/flaky")  # 200 "done", and every later request too
        assert server.count("/flaky") == 2

Every request to a scripted path consumes the next action of its script; the last
action repeats. Unscripted paths answer ``200 ok``. Requests are recorded (before the
action runs) in ``server.requests``; ``connection_id`` tells whether connections were
reused. A request line in absolute form (``GET http://host/p HTTP/1.1``, what a client
sends to a forward proxy) is recorded with the URL's path, ``absolute_form=True`` and
the URL's host, so a client with ``proxy=server.url`` never reaches the real host.

In pytest, use the function-scoped ``fault_server`` fixture (started, always stopped).
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Action",
    "FaultServer",
    "Hang",
    "RecordedRequest",
    "Reply",
    "ResetBeforeResponse",
    "ResetMidBody",
    "SlowBody",
    "fault_server",
    "hang",
    "reply",
    "reset_before_response",
    "reset_mid_body",
    "slow_body",
]

_HOST = "127.0.0.1"
_POLL_INTERVAL_S = 0.02  # serve_forever's shutdown latency
_JOIN_TIMEOUT_S = 2.0
_SIOCOUTQNSQ = 0x894B  # Linux: bytes not yet sent from a TCP socket's send queue


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (recorded before its action ran)."""

    method: str
    path: str  # path including "?query"; for absolute-form targets the URL's path
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # de-chunked for Transfer-Encoding: chunked
    connection_id: int  # 1, 2, ... per accepted TCP connection of this server
    peer_port: int  # the client's source port
    absolute_form: bool  # request line had an absolute URL (the client used us as proxy)
    host: str  # the absolute URL's host[:port], otherwise the Host header ("" if none)
    target: str  # the request target exactly as sent
    http_version: str  # e.g. "HTTP/1.1"
    chunked: bool = False  # the body arrived with Transfer-Encoding: chunked
    received_at: float = field(default=0.0, compare=False)  # time.monotonic()

    @property
    def path_only(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]


# --------------------------------------------------------------------------- actions


class Action:
    """Something the server does with one request. Subclass and implement `run`."""

    def run(self, handler: _Handler) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Reply(Action):
    """A complete response with Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] | None = None

    def run(self, handler: _Handler) -> None:
        handler.send_complete(self.status, self.body, self.headers)


@dataclass(frozen=True)
class ResetMidBody(Action):
    """Status line, headers promising `content_length` bytes, `sent` bytes, then TCP RST."""

    status: int = 200
    content_length: int = 1000
    sent: int = 10

    def run(self, handler: _Handler) -> None:
        head = handler.head_bytes(self.status, {"Content-Length": str(self.content_length)})
        handler.send_raw(head + b"x" * self.sent)
        handler.abort_with_rst()


@dataclass(frozen=True)
class ResetBeforeResponse(Action):
    """Read the request, then abort the connection with TCP RST, sending nothing."""

    def run(self, handler: _Handler) -> None:
        handler.abort_with_rst()


@dataclass(frozen=True)
class Hang(Action):
    """Send nothing until the client closes, the server stops or `max_s` passes; then close."""

    max_s: float = 5.0

    def run(self, handler: _Handler) -> None:
        if handler.wait_for_client_gone(self.max_s):
            handler.fault_server._abandoned(handler.record)
        handler.close_connection = True


@dataclass(frozen=True)
class SlowBody(Action):
    """Headers with Content-Length, then the body in `chunks` pieces, `delay_s` apart."""

    chunks: int = 5
    delay_s: float = 0.05
    status: int = 200
    body: bytes = b""  # empty: b"chunk-0\n" b"chunk-1\n" ...

    @property
    def full_body(self) -> bytes:
        """The body the client should receive in total."""
        if self.body:
            return self.body
        return b"".join(b"chunk-%d\n" % i for i in range(self.chunks))

    def pieces(self) -> list[bytes]:
        """The body split into `chunks` consecutive pieces (the last may be longer)."""
        body = self.full_body
        n = max(1, self.chunks)
        size = len(body) // n
        out = [body[i * size : (i + 1) * size] for i in range(n - 1)]
        out.append(body[(n - 1) * size :])
        return out

    def run(self, handler: _Handler) -> None:
        body = self.full_body
        handler.send_raw(handler.head_bytes(self.status, {"Content-Length": str(len(body))}))
        for i, piece in enumerate(self.pieces()):
            if i and handler.fault_server.stopping.wait(self.delay_s):
                handler.close_connection = True  # server stopping: give up mid-body
                return
            handler.send_raw(piece)


def reply(
    status: int = 200, body: bytes | str = b"", headers: Mapping[str, str] | None = None
) -> Reply:
    """A complete response, e.g. ``reply(429, headers={"Retry-After": "1"})``."""
    data = body.encode() if isinstance(body, str) else bytes(body)
    return Reply(status, data, dict(headers) if headers is not None else None)


def reset_mid_body(status: int = 200, content_length: int = 1000, sent: int = 10) -> ResetMidBody:
    """Promise `content_length` bytes, send `sent`, then RST (client: ReadError/protocol error)."""
    if not 0 <= sent < content_length:
        raise ValueError("need 0 <= sent < content_length")
    return ResetMidBody(status, content_length, sent)


def reset_before_response() -> ResetBeforeResponse:
    """Read the request, then RST without a byte of response."""
    return ResetBeforeResponse()


def hang(max_s: float = 5.0) -> Hang:
    """Never answer; release when the client disconnects, the server stops or `max_s` passes."""
    return Hang(max_s)


def slow_body(
    chunks: int = 5, delay_s: float = 0.05, status: int = 200, body: bytes = b""
) -> SlowBody:
    """A body trickled out in `chunks` pieces, `delay_s` apart (keep below the read timeout)."""
    if chunks < 1 or delay_s < 0:
        raise ValueError("need chunks >= 1 and delay_s >= 0")
    return SlowBody(chunks, delay_s, status, body)


_DEFAULT_ACTION = Reply(200, b"ok")


# --------------------------------------------------------------------------- handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "FaultServer/1"
    sys_version = ""

    connection_id: int
    record: RecordedRequest
    _aborted: bool

    @property
    def fault_server(self) -> FaultServer:
        return cast(_HTTPServer, self.server).owner

    # -- connection lifecycle

    def setup(self) -> None:
        super().setup()
        self._aborted = False
        self.connection_id = self.fault_server._register_connection(self.connection)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        self.fault_server._unregister_connection(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        # Like the stdlib's, plus one dispatch for every method and quiet aborts.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_complete(414, b"request line too long", {"Connection": "close"})
                return
            if not self.raw_requestline or self.fault_server.stopping.is_set():
                self.close_connection = True
                return
            if not self.parse_request():  # has sent an error response already
                return
            self._dispatch()
            if not self._aborted:
                self.wfile.flush()
        except (OSError, ValueError):  # client went away, or socket closed by stop()
            self.close_connection = True

    def _dispatch(self) -> None:
        server = self.fault_server
        target = self.path
        parts = urlsplit(target)
        absolute = bool(parts.scheme and parts.netloc)
        if absolute:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc
        else:
            path = target
            host = self.headers.get("Host", "")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        body = self._read_body(chunked, headers)
        record = RecordedRequest(
            method=self.command,
            path=path,
            headers=headers,
            body=body,
            connection_id=self.connection_id,
            peer_port=int(self.client_address[1]),
            absolute_form=absolute,
            host=host,
            target=target,
            http_version=self.request_version,
            chunked=chunked,
            received_at=time.monotonic(),
        )
        self.record = record
        action = server._record_and_next_action(record)
        action.run(self)

    def _read_body(self, chunked: bool, headers: Mapping[str, str]) -> bytes:
        if chunked:
            return self._read_chunked()
        length = int(headers.get("content-length", "0") or "0")
        data = self.rfile.read(length) if length > 0 else b""
        if len(data) < length:
            self.close_connection = True  # client gave up mid-upload
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                self.close_connection = True
                break
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537).strip():  # trailers, up to the blank line
                    pass
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)  # CRLF after the chunk data
        return b"".join(parts)

    # -- primitives for actions

    def head_bytes(self, status: int, headers: Mapping[str, str]) -> bytes:
        """Status line and headers (Date, Server, and `headers`) ending in a blank line."""
        reason = self.responses.get(status, ("",))[0]
        lines = [f"{self.protocol_version} {status} {reason}".rstrip()]
        lines.append(f"Server: {self.version_string()}")
        lines.append(f"Date: {self.date_time_string()}")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_raw(self, data: bytes) -> None:
        self.wfile.write(data)

    def send_complete(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """A full response. `headers` may override Content-Type/Content-Length/Connection."""
        given = {k.lower(): (k, v) for k, v in (headers or {}).items()}
        out: dict[str, str] = {}
        if "content-type" not in given:
            out["Content-Type"] = "text/plain; charset=utf-8"
        if "content-length" not in given:
            out["Content-Length"] = str(len(body))
        out.update(dict(given.values()))
        if given.get("connection", ("", ""))[1].strip().lower() == "close":
            self.close_connection = True
        payload = b"" if self.command == "HEAD" or status in (204, 304) else body
        self.send_raw(self.head_bytes(status, out) + payload)

    def abort_with_rst(self) -> None:
        """Close the TCP connection with RST (SO_LINGER on, timeout 0) after sent data left."""
        sock = self.connection
        self._aborted = True
        self.close_connection = True
        self.fault_server._unregister_connection(sock)
        _wait_sent(sock, self.fault_server.stopping, timeout_s=0.25)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; close it first so close() is real.
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.wfile.close()
        sock.close()

    def wait_for_client_gone(self, max_s: float) -> bool:
        """Block until the peer closes, the server stops, or `max_s` seconds pass.

        Returns True when the client closed the connection while the server was still up.
        """
        stopping = self.fault_server.stopping
        deadline = time.monotonic() + max_s
        sock = self.connection
        while not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                readable, _, _ = select.select([sock], [], [], min(remaining, 0.1))
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    # EOF: the client gave up (or stop() shut the socket down)
                    return not stopping.is_set()
            except (OSError, ValueError):
                return not stopping.is_set()
            if readable:  # data pending (pipelined request): don't spin on select
                stopping.wait(min(remaining, 0.05))
        return False

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: nothing per request on stderr."""


def _wait_sent(sock: socket.socket, stopping: threading.Event, timeout_s: float) -> None:
    """Best effort (Linux): wait until the kernel has put all written bytes on the wire."""
    if fcntl is None:
        return
    deadline = time.monotonic() + timeout_s
    buf = struct.pack("i", 0)
    while time.monotonic() < deadline:
        try:
            unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQNSQ, buf))[0]
        except (OSError, ValueError):
            return
        if unsent <= 0 or stopping.wait(0.001):
            return


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent clients is accepted, not dropped
    owner: FaultServer

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._process_in_thread,
            args=(request, client_address),
            name=f"fault-server-conn-{client_address[1]}",
            daemon=True,
        )
        self.owner._add_thread(thread)
        thread.start()

    def _process_in_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._discard_thread(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Keep stderr quiet; keep the exception for debugging (server.errors).
        exc = sys.exc_info()[1]
        if exc is not None:
            self.owner._add_error(exc)


# --------------------------------------------------------------------------- server


class FaultServer:
    """Local HTTP/1.1 server with per-path scripts of faults. See the module docstring."""

    def __init__(self, host: str = _HOST) -> None:
        self.host = host
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._scripts: dict[str, tuple[list[Action], int]] = {}
        self._requests: list[RecordedRequest] = []
        self._abandoned_at: list[tuple[RecordedRequest, float]] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._connection_ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle

    def start(self) -> FaultServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FaultServer already started")
        self.stopping.clear()
        httpd = _HTTPServer((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._serve_thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"fault-server-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging handlers, close every socket. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()  # releases hang() / slow_body() waits
        httpd.shutdown()
        with self._lock:  # unblock handlers idling on keep-alive reads or hang()
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        httpd.server_close()
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        if self._serve_thread is not None:
            self._serve_thread.join(max(0.0, deadline - time.monotonic()))
            self._serve_thread = None
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if not self.port:
            raise RuntimeError("FaultServer not started")
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        """``self.url + path``."""
        return self.url + (path if path.startswith("/") else "/" + path)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # -- scripts and records

    def script(self, path: str, *actions: Action) -> None:
        """Each request to `path` takes the next action; the last one repeats.

        `path` matches a request's path exactly (query included); a `path` without "?"
        also matches that path with any query when no exact script exists. Scripting a
        path again replaces its script and starts from its first action.
        """
        if not actions:
            raise ValueError("script() needs at least one action")
        for action in actions:
            if not isinstance(action, Action):
                raise TypeError(f"not an action: {action!r}")
        with self._lock:
            self._scripts[path] = (list(actions), 0)

    def reset(self) -> None:
        """Forget every script and recorded request (and recorded handler errors)."""
        with self._lock:
            self._scripts.clear()
            self._requests.clear()
            self._abandoned_at.clear()
            self._errors.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised in request handlers (normally empty)."""
        with self._lock:
            return list(self._errors)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Recorded requests matching `path` (query-insensitive unless it has "?") and `method`."""
        return len(self.matching(path, method))

    def matching(self, path: str | None = None, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests matching `path` and `method` (see `count`)."""
        out = []
        for r in self.requests:
            if path is not None and (r.path if "?" in path else r.path_only) != path:
                continue
            if method is not None and r.method != method.upper():
                continue
            out.append(r)
        return out

    def wait_for_requests(
        self, n: int = 1, path: str | None = None, timeout: float = 2.0
    ) -> list[RecordedRequest]:
        """Block until at least `n` requests (matching `path`) are recorded; return them.

        Requests are recorded before their action runs, so this also tells a test that a
        ``hang()`` handler is now hanging. Raises TimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = len(self._requests)
            found = self.matching(path)
            if len(found) >= n:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(found)} of {n} requests to {path!r} after {timeout}s")
            with self._recorded:
                if len(self._requests) == seen:  # nothing new since we looked
                    self._recorded.wait(remaining)

    def wait_for_abandoned(
        self, n: int = 1, timeout: float = 2.0
    ) -> list[tuple[RecordedRequest, float]]:
        """Block until the clients of `n` hanging requests closed their connections.

        Returns ``(request, time.monotonic() when the server saw the client go)`` pairs,
        oldest first. Raises TimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._recorded:
            while len(self._abandoned_at) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._abandoned_at)} of {n} hanging requests "
                                       f"abandoned after {timeout}s")
                self._recorded.wait(remaining)
            return list(self._abandoned_at)

    def connection_ids(self, path: str | None = None) -> list[int]:
        """`connection_id` of each recorded request (matching `path`), oldest first."""
        return [r.connection_id for r in self.matching(path)]

    # -- internals (called from handler threads)

    def _record_and_next_action(self, record: RecordedRequest) -> Action:
        with self._lock:
            self._requests.append(record)
            self._recorded.notify_all()
            key = record.path if record.path in self._scripts else record.path_only
            entry = self._scripts.get(key)
            if entry is None:
                return _DEFAULT_ACTION
            actions, index = entry
            self._scripts[key] = (actions, min(index + 1, len(actions) - 1))
            return actions[index]

    def _abandoned(self, record: RecordedRequest) -> None:
        with self._lock:
            self._abandoned_at.append((record, time.monotonic()))
            self._recorded.notify_all()

    def _register_connection(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections.add(sock)
            if self.stopping.is_set():  # accepted while stop() ran: don't wait for the client
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return next(self._connection_ids)

    def _unregister_connection(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)

    def _add_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.add(thread)

    def _discard_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.discard(thread)

    def _add_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started FaultServer on 127.0.0.1, stopped after the test."""
    with FaultServer() as server:
        yield server
