"""A real ``redis-server`` for the integration tests, on a free loopback port.

One server is started per session (cheap to restart: ``.stop()`` / ``.start()`` keep the
port); every test gets a flushed database, a unique breaker name and a fresh breaker
registry. Without ``redis-server`` on PATH the tests are skipped, except on CI
(``CI=true``), where a missing server is a failure: CI must install it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from brace.testing import reset_breakers

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:port answers PING (raw RESP, no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` child process bound to 127.0.0.1, without persistence."""

    def __init__(self, executable: str, directory: Path, port: int) -> None:
        self.executable = executable
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = directory / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "redis-server is not running"
        return self._proc.pid

    def start(self) -> None:
        """Start (or restart) the server on the same port; return once it answers PING."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.directory)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ping(self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                pytest.fail(f"redis-server exited with {code} on port {self.port}:\n"
                            f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING on port {self.port} "
                            f"within {START_TIMEOUT_S} s")
            time.sleep(0.01)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted but never answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._paused and self.running:
            os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        """Terminate the server and wait for it (kill it if it does not exit in time)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self._paused = False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        # The port is closed once the process is gone; make sure nothing answers there.
        assert not _answers_ping(self.port), f"something still answers on port {self.port}"


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        message = ("redis-server is not on PATH: install it (Debian/Ubuntu: "
                   "`apt-get install -y redis-server`; macOS: `brew install redis`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it with apt-get (see .ci/run)")
        pytest.skip(message)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"), _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _flush(server: RedisServer) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The running server with an empty database and no named breakers in this process."""
    server = redis_server_session
    server.resume()
    server.start()
    _flush(server)
    reset_breakers()
    try:
        yield server
    finally:
        server.resume()
        server.start()  # a test may have stopped it: reset_breakers() writes to Redis
        reset_breakers()
        _flush(server)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[object]:
    """A plain redis client for looking at the keys the breakers write."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def breaker_name() -> str:
    """A name no other test (or earlier run) uses."""
    return f"it-{uuid.uuid4().hex[:12]}"
